"""mmseg's reference model: mmpretrain's ConvNeXt with mmseg's heads, built
from mmseg's own config, computes what convseg's model computes with the
same weights (convseg's keys are the official ones, mapped from
mmpretrain's by the checkpoint key maps)."""
from __future__ import annotations

import json

import pytest
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

from convseg.benchmarks.reference import (ROUTES, ReferenceUnavailableError,
                                          build_reference, mmseg_config_path,
                                          reference_config)
from convseg.models.convnext_keymaps import convert_state_dict


def torchvision_imports() -> bool:
    try:
        import torchvision  # noqa: F401
    except Exception:
        return False
    return True


def test_reference_config_is_mmsegs_with_our_shapes(tiny_config) -> None:
    mmseg = Config.fromfile(mmseg_config_path(), import_custom_modules=False)
    cfg = reference_config(Config.fromfile(tiny_config))
    assert cfg.model.backbone.type == 'mmpretrain.ConvNeXt'
    assert cfg.model.backbone.arch == dict(depths=[1, 1, 1, 1],
                                           channels=[8, 16, 32, 64])
    assert cfg.model.backbone.init_cfg is None
    assert cfg.model.decode_head.channels == 16
    assert cfg.model.auxiliary_head.channels == 8
    # mmseg's training recipe is kept as mmseg writes it
    assert cfg.optim_wrapper == mmseg.optim_wrapper
    assert cfg.optim_wrapper.constructor == \
        'LearningRateDecayOptimizerConstructor'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.model.backbone.drop_path_rate == 0.4
    assert 'custom_imports' not in cfg


def test_reference_computes_what_convseg_computes(tiny_config) -> None:
    from mmseg.registry import MODELS
    ours_cfg = Config.fromfile(tiny_config)
    torch.manual_seed(0)
    reference, route = build_reference(ours_cfg)
    assert route == (ROUTES[0] if torchvision_imports() else ROUTES[1])
    assert type(reference.backbone).__module__ == \
        'mmpretrain.models.backbones.convnext'
    init_default_scope('mmseg')
    ours = revert_sync_batchnorm(MODELS.build(ours_cfg.model))
    # random BN statistics, so that the heads' norms are not the identity
    for module in reference.modules():
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-0.5, 0.5)
            module.running_var.uniform_(0.5, 2.0)
    ours.load_state_dict(convert_state_dict(reference.state_dict(),
                                            'openmmlab'), strict=True)
    reference.eval(), ours.eval()
    images = torch.randn(2, 3, 64, 64,
                         generator=torch.Generator().manual_seed(1))
    metas = [dict(img_shape=(64, 64))] * 2
    with torch.no_grad():
        features = [reference.backbone(images), ours.backbone(images)]
        logits = [reference.encode_decode(images, metas),
                  ours.encode_decode(images, metas)]
    assert [f.shape for f in features[1]] == [
        (2, 8, 16, 16), (2, 16, 8, 8), (2, 32, 4, 4), (2, 64, 2, 2)]
    for theirs, mine in zip(*features):
        torch.testing.assert_close(mine, theirs, rtol=0, atol=5e-6)
    assert logits[1].shape == (2, 150, 64, 64)
    # measured: 1.4e-6 on features of up to 3.1, 7.3e-6 on logits up to 15.6
    torch.testing.assert_close(logits[1], logits[0], rtol=0, atol=2e-5)


def test_a_missing_mmseg_config_is_named() -> None:
    with pytest.raises(ReferenceUnavailableError,
                       match=r'^mmseg has no config convnext/none\.py \(.*'
                       r'\.mim/configs/convnext/none\.py is missing\); '
                       r'install mmsegmentation 1\.2 from its wheel, which '
                       r'ships its configs$'):
        mmseg_config_path('convnext/none.py')


def test_benchmark_times_the_reference_interleaved(tmp_path, run_script,
                                                   tiny_config) -> None:
    out = tmp_path / 'figures.json'
    done = run_script('tools/benchmark.py', tiny_config, '--no-fast',
                      '--reference', '--shape', '32', '32', '--repeat', '2',
                      '--warmup', '1', '--json', out)
    assert done.returncode == 0, done.stderr[-3000:]
    route = ROUTES[0] if torchvision_imports() else ROUTES[1]
    results = json.loads(out.read_text())['results']
    figures = results[f'reference ({route})']
    assert len(figures['times_ms']) == len(results['plain']['times_ms']) == 2
    assert figures['ms_per_image'] == pytest.approx(figures['ms_per_batch'],
                                                    abs=0.051)
    assert f"reference ({route}): " in done.stdout
