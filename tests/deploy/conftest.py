"""A tiny UPerNet-ConvNeXt with a checkpoint, and ONNX files exported from
it once per session."""
from __future__ import annotations

from pathlib import Path

import pytest
import torch
from mmengine.runner import save_checkpoint

import convseg  # noqa: F401
from convseg.apis import init_model
from convseg.deploy.export import export_onnx

from ..conftest import made_once
from ..helpers import randomize_bn_stats

NUM_CLASSES = 5
CONFIG = """
_base_ = [{base!r}]
model = dict(
    decode_head=dict(num_classes={classes}),
    auxiliary_head=dict(num_classes={classes}),
    test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(48, 48)))
test_pipeline = [dict(type='LoadImageFromFile'), dict(type='PackSegInputs')]
"""
META = dict(classes=['sky', 'road', 'tree', 'car', 'person'],
            palette=[[70, 130, 180], [128, 64, 128], [107, 142, 35],
                     [0, 0, 142], [220, 20, 60]])


@pytest.fixture(scope='session')
def tiny(tmp_path_factory: pytest.TempPathFactory,
         tiny_config: Path) -> dict:
    """Config (slide 64x64 crops) and checkpoint of a tiny UPerNet whose
    BatchNorm statistics are not the identity, with class names; written
    once per session, for every worker."""
    with made_once(tmp_path_factory, 'deploy') as (root, ready):
        config = root / 'tiny.py'
        checkpoint = root / 'tiny.pth'
        if not ready:
            config.write_text(CONFIG.format(base=str(tiny_config),
                                            classes=NUM_CLASSES))
            torch.manual_seed(0)
            model = init_model(str(config), None, fast=False)
            randomize_bn_stats(model)
            save_checkpoint(dict(state_dict=model.state_dict(),
                                 meta=dict(dataset_meta=META)),
                            str(checkpoint))
    return dict(root=root, config=str(config), checkpoint=str(checkpoint),
                meta=META, num_classes=NUM_CLASSES)


@pytest.fixture(scope='session')
def torch_model(tiny: dict) -> torch.nn.Module:
    """The tiny model as PyTorch runs it (no fast path)."""
    return init_model(tiny['config'], tiny['checkpoint'], fast=False)


@pytest.fixture(scope='session')
def onnx_files(tmp_path_factory: pytest.TempPathFactory, tiny: dict,
               torch_model: torch.nn.Module) -> dict:
    """The tiny model exported at 64x64 batch 1, 64x96 batch 2, and with
    dynamic batch and size; once per session, for every worker."""
    with made_once(tmp_path_factory, 'deploy_onnx') as (root, ready):
        files = dict(fixed_64x64_b1=root / 'b1_64x64.onnx',
                     fixed_64x96_b2=root / 'b2_64x96.onnx',
                     dynamic=root / 'dynamic.onnx')
        if not ready:
            export_onnx(torch_model, files['fixed_64x64_b1'], (64, 64),
                        batch=1)
            export_onnx(torch_model, files['fixed_64x96_b2'], (64, 96),
                        batch=2)
            export_onnx(torch_model, files['dynamic'], (64, 64),
                        dynamic=True)
    return {name: str(path) for name, path in files.items()}
