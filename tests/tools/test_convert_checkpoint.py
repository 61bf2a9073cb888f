"""tools/convert_checkpoint.py on each checkpoint family, as a subprocess.

The sources are written in each family's published layout (key names spelled
out below); the conversions run concurrently in one module fixture.
"""
from __future__ import annotations

import argparse
import os
import stat

import pytest
import torch
import torch.nn.functional as F

import convseg  # noqa: F401
from convseg import checkpoint_reading
from convseg.models.checkpoint_loading import load_backbone_weights
from convseg.models.convnext import ConvNeXt

from ..helpers import load_tool

TOOL = 'tools/convert_checkpoint.py'
DEPTHS = (1, 2, 1, 1)
DIMS = (8, 16, 32, 64)


def values(shape, index: int) -> torch.Tensor:
    """Distinct values per tensor (exact in float32)."""
    numel = int(torch.Size(shape).numel())
    return (torch.arange(numel, dtype=torch.float32) +
            index * 2.0**16).reshape(shape)


def numbered(shapes: dict[str, tuple]) -> dict[str, torch.Tensor]:
    return {k: values(s, n) for n, (k, s) in enumerate(shapes.items())}


def facebook_v2_shapes() -> dict[str, tuple]:
    """Official ConvNeXt-V2 keys and shapes, 22K classifier included."""
    shapes: dict[str, tuple] = {
        'downsample_layers.0.0.weight': (8, 3, 4, 4),
        'downsample_layers.0.0.bias': (8, ),
        'downsample_layers.0.1.weight': (8, ),
        'downsample_layers.0.1.bias': (8, ),
    }
    for i in (1, 2, 3):
        c_in, c = DIMS[i - 1], DIMS[i]
        shapes.update({
            f'downsample_layers.{i}.0.weight': (c_in, ),
            f'downsample_layers.{i}.0.bias': (c_in, ),
            f'downsample_layers.{i}.1.weight': (c, c_in, 2, 2),
            f'downsample_layers.{i}.1.bias': (c, )})
    for i, (depth, c) in enumerate(zip(DEPTHS, DIMS)):
        for j in range(depth):
            b = f'stages.{i}.{j}'
            shapes.update({
                f'{b}.dwconv.weight': (c, 1, 7, 7), f'{b}.dwconv.bias': (c, ),
                f'{b}.norm.weight': (c, ), f'{b}.norm.bias': (c, ),
                f'{b}.pwconv1.weight': (4 * c, c),
                f'{b}.pwconv1.bias': (4 * c, ),
                f'{b}.grn.gamma': (1, 1, 1, 4 * c),
                f'{b}.grn.beta': (1, 1, 1, 4 * c),
                f'{b}.pwconv2.weight': (c, 4 * c), f'{b}.pwconv2.bias': (c, )})
    shapes.update({'norm.weight': (64, ), 'norm.bias': (64, ),
                   'head.weight': (21841, 64), 'head.bias': (21841, )})
    return shapes


def timm_v1_shapes() -> dict[str, tuple]:
    """timm ConvNeXt keys (stem, stages.N.downsample, blocks, head)."""
    shapes: dict[str, tuple] = {
        'stem.0.weight': (8, 3, 4, 4), 'stem.0.bias': (8, ),
        'stem.1.weight': (8, ), 'stem.1.bias': (8, )}
    for i, (depth, c) in enumerate(zip(DEPTHS, DIMS)):
        if i:
            c_in = DIMS[i - 1]
            shapes.update({
                f'stages.{i}.downsample.0.weight': (c_in, ),
                f'stages.{i}.downsample.0.bias': (c_in, ),
                f'stages.{i}.downsample.1.weight': (c, c_in, 2, 2),
                f'stages.{i}.downsample.1.bias': (c, )})
        for j in range(depth):
            b = f'stages.{i}.blocks.{j}'
            shapes.update({
                f'{b}.gamma': (c, ),
                f'{b}.conv_dw.weight': (c, 1, 7, 7),
                f'{b}.conv_dw.bias': (c, ),
                f'{b}.norm.weight': (c, ), f'{b}.norm.bias': (c, ),
                f'{b}.mlp.fc1.weight': (4 * c, c),
                f'{b}.mlp.fc1.bias': (4 * c, ),
                f'{b}.mlp.fc2.weight': (c, 4 * c),
                f'{b}.mlp.fc2.bias': (c, )})
    shapes.update({'head.norm.weight': (64, ), 'head.norm.bias': (64, ),
                   'head.fc.weight': (1000, 64), 'head.fc.bias': (1000, )})
    return shapes


def openmmlab_segmentor_shapes() -> dict[str, tuple]:
    """mmseg UPerNet with mmcls ConvNeXt names (only a few head keys)."""
    shapes: dict[str, tuple] = {}
    for key, shape in facebook_v2_shapes().items():
        if key.startswith(('head.', 'norm.')) or '.grn.' in key:
            continue
        key = (key.replace('.dwconv.', '.depthwise_conv.')
               .replace('.pwconv1.', '.pointwise_conv1.')
               .replace('.pwconv2.', '.pointwise_conv2.'))
        shapes[f'backbone.{key}'] = shape
        if key.endswith('.norm.weight'):
            stage_block = key[:-len('.norm.weight')]
            shapes[f'backbone.{stage_block}.gamma'] = (shape[0], )
    for i, c in enumerate(DIMS):
        shapes[f'backbone.norm{i}.weight'] = (c, )
        shapes[f'backbone.norm{i}.bias'] = (c, )
    shapes.update({'decode_head.conv_seg.weight': (3, 16, 1, 1),
                   'decode_head.conv_seg.bias': (3, ),
                   'auxiliary_head.conv_seg.weight': (3, 8, 1, 1),
                   'auxiliary_head.conv_seg.bias': (3, )})
    return shapes


@pytest.fixture(scope='module')
def converted(tmp_path_factory, run_script):
    """Write one source per family, convert each with the tool."""
    from safetensors.torch import save_file
    from transformers import ConvNextV2Config, ConvNextV2Model

    tmp = tmp_path_factory.mktemp('convert')
    sources = {}

    fb = numbered(facebook_v2_shapes())
    torch.save({'model': fb}, tmp / 'convnextv2_22k.pt')
    sources['facebook'] = (tmp / 'convnextv2_22k.pt', fb)

    timm = numbered(timm_v1_shapes())
    save_file(timm, str(tmp / 'timm.safetensors'))
    sources['timm'] = (tmp / 'timm.safetensors', timm)

    mm = numbered(openmmlab_segmentor_shapes())
    torch.save({'meta': {'mmcv_version': '1.4.0', 'iter': 80000,
                         'CLASSES': ('road', 'car', 'sky'),
                         'PALETTE': [[128, 64, 128], [0, 0, 142],
                                     [70, 130, 180]]},
                'state_dict': mm, 'optimizer': {'state': {}}},
               tmp / 'upernet_mmcls.pth')
    sources['openmmlab'] = (tmp / 'upernet_mmcls.pth', mm)

    hf = ConvNextV2Model(ConvNextV2Config(depths=list(DEPTHS),
                                          hidden_sizes=list(DIMS)))
    with torch.no_grad():
        gen = torch.Generator().manual_seed(0)
        for p in hf.parameters():
            p.copy_(torch.randn(p.shape, generator=gen) * 0.3)
    hf.eval().save_pretrained(tmp / 'hf_model')
    sources['hf'] = (tmp / 'hf_model', hf)

    results = {}
    for name, (src, _) in sources.items():
        done = run_script(TOOL, src, tmp / f'{name}_convseg.pth', '--from',
                          'auto' if name == 'hf' else name, umask=0o022,
                          timeout=300)
        results[name] = (done.returncode, done.stdout, done.stderr,
                         tmp / f'{name}_convseg.pth')
    return sources, results


def output_of(converted, name):
    sources, results = converted
    rc, out, err, dst = results[name]
    assert rc == 0, err
    loaded = checkpoint_reading.load_checkpoint_file(str(dst))
    return sources[name], out, loaded, dst


def test_outputs_are_readable_like_plain_files(converted):
    # the tools ran under umask 022, where a plain open gives 0644
    for name in converted[1]:
        dst = output_of(converted, name)[3]
        assert stat.S_IMODE(os.stat(dst).st_mode) == 0o644, name
    assert sorted(os.listdir(dst.parent)) == sorted(
        [f'{name}_convseg.pth' for name in converted[1]] +
        ['convnextv2_22k.pt', 'hf_model', 'timm.safetensors',
         'upernet_mmcls.pth'])


def test_facebook_v2_drops_the_22k_classifier(converted):
    (src, fb), out, ckpt, dst = output_of(converted, 'facebook')
    kept = {k: v for k, v in fb.items()
            if not k.startswith(('head.', 'norm.'))}
    assert set(ckpt['state_dict']) == set(kept)
    for key, value in kept.items():
        assert torch.equal(ckpt['state_dict'][key], value), key
    assert ckpt['meta'] == {'converted_from': {'source': str(src),
                                               'family': 'facebook'}}
    assert out.splitlines()[:2] == [
        f'wrote {dst}: backbone checkpoint, family facebook, '
        f'{len(kept)} tensors',
        '  backbone: an unnamed ConvNeXt V2 (depths (1, 2, 1, 1), dims '
        '(8, 16, 32, 64), GRN, no layer scale)']


def test_timm_safetensors_to_official_names(converted):
    (src, timm), _, ckpt, dst = output_of(converted, 'timm')
    state = ckpt['state_dict']
    assert len(state) == len(timm) - 4
    for theirs, ours in [
            ('stem.0.weight', 'downsample_layers.0.0.weight'),
            ('stem.1.bias', 'downsample_layers.0.1.bias'),
            ('stages.2.downsample.0.weight', 'downsample_layers.2.0.weight'),
            ('stages.3.downsample.1.weight', 'downsample_layers.3.1.weight'),
            ('stages.1.blocks.1.conv_dw.weight', 'stages.1.1.dwconv.weight'),
            ('stages.1.blocks.1.norm.bias', 'stages.1.1.norm.bias'),
            ('stages.0.blocks.0.mlp.fc1.weight', 'stages.0.0.pwconv1.weight'),
            ('stages.3.blocks.0.mlp.fc2.bias', 'stages.3.0.pwconv2.bias'),
            ('stages.2.blocks.0.gamma', 'stages.2.0.gamma')]:
        assert torch.equal(state[ours], timm[theirs]), theirs

    bb = ConvNeXt(depths=DEPTHS, dims=DIMS)
    summary = load_backbone_weights(bb, str(dst))
    assert summary['family'] == 'facebook'
    assert summary['unexpected'] == [] and summary['dropped'] == []
    assert torch.equal(bb.stages[1][1].pwconv2.weight,
                       timm['stages.1.blocks.1.mlp.fc2.weight'])


def test_openmmlab_segmentor_keeps_heads_and_normalises_meta(converted):
    (src, mm), out, ckpt, _ = output_of(converted, 'openmmlab')
    state = ckpt['state_dict']
    assert len(state) == len(mm)
    for theirs, ours in [
            ('backbone.stages.1.1.depthwise_conv.weight',
             'backbone.stages.1.1.dwconv.weight'),
            ('backbone.stages.0.0.pointwise_conv1.weight',
             'backbone.stages.0.0.pwconv1.weight'),
            ('backbone.stages.3.0.pointwise_conv2.bias',
             'backbone.stages.3.0.pwconv2.bias'),
            ('backbone.stages.2.0.gamma', 'backbone.stages.2.0.gamma'),
            ('backbone.norm2.weight', 'backbone.norm2.weight'),
            ('decode_head.conv_seg.weight', 'decode_head.conv_seg.weight'),
            ('auxiliary_head.conv_seg.bias', 'auxiliary_head.conv_seg.bias')]:
        assert torch.equal(state[ours], mm[theirs]), theirs
    assert ckpt['meta'] == {
        'mmcv_version': '1.4.0', 'iter': 80000,
        'dataset_meta': {'classes': ('road', 'car', 'sky'),
                         'palette': [[128, 64, 128], [0, 0, 142],
                                     [70, 130, 180]]},
        'converted_from': {'source': str(src), 'family': 'openmmlab'}}
    assert '  classes: 3' in out.splitlines()


def test_hf_directory_gives_transformers_hidden_states(converted):
    (src, hf), _, ckpt, dst = output_of(converted, 'hf')
    assert ckpt['meta']['converted_from']['family'] == 'hf'
    bb = ConvNeXt(depths=DEPTHS, dims=DIMS, use_grn=True,
                  init_cfg=dict(type='Pretrained', checkpoint=str(dst)))
    bb.init_weights()
    bb.eval()
    x = torch.randn(1, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ours = bb(x)
        hidden = hf(x, output_hidden_states=True).hidden_states[1:]
    for a, h in zip(ours, hidden):
        expected = F.layer_norm(h.permute(0, 2, 3, 1), h.shape[1:2],
                                eps=1e-6).permute(0, 3, 1, 2)
        torch.testing.assert_close(a, expected, rtol=1e-5, atol=1e-5)


# ------------------------------------------------ errors (in-process main)

@pytest.fixture
def tool():
    """The tool's module, imported from its file."""
    return load_tool('convert_checkpoint')


def test_errors_leave_files_alone(tmp_path, capsys, tool):
    src = tmp_path / 'mystery.pth'
    torch.save({'encoder.weight': torch.zeros(2)}, src)
    assert tool.main([str(src), str(tmp_path / 'out.pth')]) == 1
    err = capsys.readouterr().err
    assert err.startswith(
        f'error: cannot tell which ConvNeXt checkpoint family {src} belongs '
        'to; its first keys are: encoder.weight. Known families')
    assert not (tmp_path / 'out.pth').exists()

    dst = tmp_path / 'taken.pth'
    dst.write_bytes(b'precious')
    assert tool.main([str(src), str(dst)]) == 1
    assert capsys.readouterr().err == (
        f'error: {dst} exists; pass --force to overwrite it, or pick another '
        'DST.\n')
    assert dst.read_bytes() == b'precious'
    assert sorted(os.listdir(tmp_path)) == ['mystery.pth', 'taken.pth']


def test_unsafe_load_for_training_checkpoints(tmp_path, capsys, tool):
    shapes = facebook_v2_shapes()
    state = numbered(shapes)
    src = tmp_path / 'checkpoint-best.pth'
    torch.save({'model': state, 'epoch': 99,
                'args': argparse.Namespace(model='convnextv2_tiny')}, src)
    dst = tmp_path / 'out.pth'
    assert tool.main([str(src), str(dst)]) == 1
    assert 'refusing to load checkpoint' in capsys.readouterr().err
    assert not dst.exists()

    assert tool.main([str(src), str(dst), '--unsafe-load']) == 0
    ckpt = checkpoint_reading.load_checkpoint_file(str(dst))
    assert set(ckpt) == {'meta', 'state_dict'}
    assert len(ckpt['state_dict']) == len(shapes) - 4
    assert os.environ.get(checkpoint_reading.UNSAFE_LOAD_ENV) is None
