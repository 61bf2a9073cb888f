"""CheckpointMatchHook: load_from maps another family's segmentation
checkpoint and refuses a backbone-only one with the remedy."""
import pytest
import torch

import convseg  # noqa: F401
from convseg.errors import CheckpointFormatError

from ...helpers import openmmlab_names


def test_load_from_maps_an_openmmlab_segmentation_checkpoint(
        tmp_path, ade_48x48, build_runner):
    runner, _ = build_runner(tmp_path, ade_48x48)
    generator = torch.Generator().manual_seed(5)
    trained = {k: v + torch.randn(v.shape, generator=generator)
               if v.is_floating_point() else v
               for k, v in runner.model.state_dict().items()}
    source = tmp_path / 'upernet_convnext_mmseg.pth'
    foreign = openmmlab_names(trained)
    assert 'backbone.stages.0.0.depthwise_conv.weight' in foreign
    torch.save({'state_dict': foreign, 'meta': {}}, source)
    runner, _ = build_runner(tmp_path, ade_48x48,
                             edit=lambda cfg: setattr(cfg, 'load_from',
                                                      str(source)))
    runner.load_or_resume()
    loaded = runner.model.state_dict()
    assert list(loaded) == list(trained)
    assert [k for k in trained if not torch.equal(loaded[k], trained[k])
            ] == []


def test_load_from_a_backbone_checkpoint_names_family_and_remedy(
        tmp_path, ade_48x48, build_runner):
    runner, _ = build_runner(tmp_path, ade_48x48)
    backbone = {k[len('backbone.'):]: v
                for k, v in runner.model.state_dict().items()
                if k.startswith('backbone.')}
    source = tmp_path / 'convnext_in1k.pth'
    torch.save({'model': openmmlab_names(backbone)}, source)
    runner, _ = build_runner(tmp_path, ade_48x48,
                             edit=lambda cfg: setattr(cfg, 'load_from',
                                                      str(source)))
    with pytest.raises(CheckpointFormatError) as info:
        runner.load_or_resume()
    assert str(info.value) == (
        f'checkpoint {source} holds a ConvNeXt backbone of the openmmlab '
        'family (keys like backbone.downsample_layers.0.0.weight, '
        'backbone.stages.0.0.depthwise_conv.weight, head.fc.weight) and no '
        'segmentation heads, so it cannot be loaded as a whole model '
        '(load_from). Start from it through the backbone instead: '
        "model.backbone.init_cfg=dict(type='Pretrained', "
        f"checkpoint='{source}') with load_from=None; "
        'tools/convert_checkpoint.py (--from openmmlab) writes it with '
        "convseg's key names.")
