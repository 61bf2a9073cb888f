"""tools/test.py loads the checkpoint through the runner (``load_from``) and
CheckpointMatchHook: another family's key names and Facebook's ``model``
entry load to the same predictions, URLs load through the torch hub cache,
and a checkpoint that lacks weights stops before the first image."""
from __future__ import annotations

import functools
import http.server
import threading
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from PIL import Image

import convseg  # noqa: F401

from ..helpers import openmmlab_names, randomize_bn_stats

#: the environment without proxies, so that 127.0.0.1 is asked directly
NO_PROXY = dict(http_proxy='', https_proxy='', HTTP_PROXY='', HTTPS_PROXY='',
                all_proxy='', ALL_PROXY='', no_proxy='*', NO_PROXY='*')


@pytest.fixture(scope='module')
def model_files(tmp_path_factory, tiny_train_config, dataset):
    """Config, data and the weights of a tiny model with random BatchNorm
    statistics (so every tensor matters to the predictions)."""
    root = tmp_path_factory.mktemp('test_tool')
    data_root = dataset('ade20k', num_train=1, num_val=2, size=(48, 64))
    config = tiny_train_config(root / 'tiny.py', data_root)
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    model = MODELS.build(Config.fromfile(str(config)).model)
    randomize_bn_stats(model)
    return dict(root=root, config=config, state=model.state_dict())


def predictions(run_script, config: Path, checkpoint: object,
                work_dir: Path, **env: str) -> dict:
    """Run tools/test.py; the label PNGs it wrote, by name."""
    run = run_script('tools/test.py', config, checkpoint, '--work-dir',
                     work_dir, '--out', work_dir / 'png', env=env)
    assert run.returncode == 0, run.stderr[-3000:]
    return {p.name: np.asarray(Image.open(p))
            for p in sorted((work_dir / 'png').iterdir())}


def test_other_families_and_urls_give_the_same_predictions(
        model_files, run_script):
    root, state = model_files['root'], model_files['state']
    torch.save({'state_dict': state, 'meta': {}}, root / 'convseg.pth')
    # OpenMMLab's key names, mmseg 0.x meta; Facebook's 'model' entry
    torch.save({'state_dict': openmmlab_names(state),
                'meta': {'CLASSES': [f'c{i}' for i in range(150)]}},
               root / 'openmmlab.pth')
    torch.save({'model': state}, root / 'facebook.pth')
    reference = predictions(run_script, model_files['config'],
                            root / 'convseg.pth', root / 'convseg')
    assert sorted(reference) == ['ADE_val_00000001.png',
                                 'ADE_val_00000002.png']
    # a model whose weights did not load predicts something else
    assert len({int(v) for p in reference.values() for v in np.unique(p)
                }) > 1

    handler = functools.partial(http.server.SimpleHTTPRequestHandler,
                                directory=str(root))
    server = http.server.ThreadingHTTPServer(('127.0.0.1', 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    url = f'http://127.0.0.1:{server.server_port}/convseg.pth'
    try:
        runs = {
            'openmmlab': (root / 'openmmlab.pth', {}),
            'facebook': (root / 'facebook.pth', {}),
            'url': (url, dict(TORCH_HOME=str(root / 'hub'), **NO_PROXY)),
        }
        for name, (checkpoint, env) in runs.items():
            got = predictions(run_script, model_files['config'], checkpoint,
                              root / name, **env)
            assert sorted(got) == sorted(reference), name
            for image, labels in reference.items():
                np.testing.assert_array_equal(got[image], labels, name)
    finally:
        server.shutdown()
    # downloaded once, into the hub cache
    assert [p.name for p in (root / 'hub').rglob('*.pth')] == ['convseg.pth']


def test_checkpoint_lacking_weights_stops_naming_them(model_files, tmp_path,
                                                      run_script):
    state = dict(model_files['state'])
    del state['auxiliary_head.conv_seg.weight']
    checkpoint = tmp_path / 'partial.pth'
    torch.save({'state_dict': state, 'meta': {}}, checkpoint)
    run = run_script('tools/test.py', model_files['config'], checkpoint,
                     '--work-dir', tmp_path / 'work', '--out', tmp_path / 'png')
    assert run.returncode == 1, run.stdout[-2000:]
    assert run.stderr.strip().splitlines()[-1] == (
        f'error: checkpoint {checkpoint} lacks 1 weights of the model: '
        'auxiliary_head.conv_seg.weight. Check that the config matches the '
        'checkpoint (heads, auxiliary head, arch).')
    # stopped before the first image
    assert list((tmp_path / 'png').rglob('*.png')) == []
