"""What the GPU tests share: checking a tool's run, configs on the scenes,
random batches. The tools run through the suite's ``run_script`` fixture."""
from __future__ import annotations

import os.path as osp
import subprocess
from pathlib import Path

from ..helpers import load_tool

REPO = osp.dirname(osp.dirname(osp.dirname(osp.abspath(__file__))))
QUICKSTART = osp.join(REPO, 'configs', 'quickstart_convnext_atto_scenes.py')


def random_batch(shape: tuple[int, int], batch: int, num_classes: int,
                 seed: int = 0) -> dict:
    """A dataloader batch of random images and labels, as
    tools/benchmark.py makes them."""
    return load_tool('benchmark').random_batch(list(shape), batch,
                                               num_classes, seed)


def check_ok(result: subprocess.CompletedProcess) -> str:
    """The output of a tool run, after checking it exited 0."""
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-4000:]
    return output


def scenes_config(path: Path, data_root: str, **settings: object) -> str:
    """Write a config that inherits the quickstart's, reads the scenes at
    ``data_root`` and sets ``settings`` (top-level keys, as Python
    literals); return its path."""
    lines = [f'_base_ = [{QUICKSTART!r}]']
    for loader in ('train', 'val', 'test'):
        lines.append(f'{loader}_dataloader = dict(dataset=dict('
                     f'data_root={data_root!r}))')
    lines += [f'{key} = {value!r}' for key, value in settings.items()]
    path.write_text('\n'.join(lines) + '\n')
    return str(path)
