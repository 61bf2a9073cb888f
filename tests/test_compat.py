"""Tests of convseg.compat: the mmcv.ops stand-in and weights-only loading."""
import os
import sys

import numpy as np
import pytest
import torch

import convseg  # noqa: F401
from convseg import checkpoint_reading, compat

from .conftest import free_port, run_group


def _bilinear(image: np.ndarray, x: float, y: float) -> np.ndarray:
    """Bilinear sample of (C, H, W) at pixel coords, zeros outside."""
    c, h, w = image.shape
    x0, y0 = int(np.floor(x)), int(np.floor(y))
    out = np.zeros(c)
    for yy, wy in ((y0, 1 - (y - y0)), (y0 + 1, y - y0)):
        for xx, wx in ((x0, 1 - (x - x0)), (x0 + 1, x - x0)):
            if 0 <= yy < h and 0 <= xx < w:
                out += wy * wx * image[:, yy, xx]
    return out


@pytest.mark.parametrize('align_corners', [False, True])
def test_point_sample_equals_bilinear_interpolation(align_corners):
    gen = torch.Generator().manual_seed(0)
    feats = torch.randn(2, 3, 5, 7, generator=gen, dtype=torch.float64)
    points = torch.rand(2, 11, 2, generator=gen, dtype=torch.float64)
    out = compat.point_sample(feats, points, align_corners=align_corners)
    assert out.shape == (2, 3, 11)
    h, w = feats.shape[2:]
    for n in range(2):
        for p in range(11):
            px, py = points[n, p].tolist()
            if align_corners:
                x, y = px * (w - 1), py * (h - 1)
            else:
                x, y = px * w - 0.5, py * h - 0.5
            expected = _bilinear(feats[n].numpy(), x, y)
            np.testing.assert_allclose(out[n, :, p].numpy(), expected,
                                       rtol=1e-12, atol=1e-12)


def test_point_sample_keeps_grid_shape():
    feats = torch.randn(1, 4, 6, 6)
    grid = torch.rand(1, 3, 5, 2)
    out = compat.point_sample(feats, grid)
    assert out.shape == (1, 4, 3, 5)
    flat = compat.point_sample(feats, grid.reshape(1, 15, 2))
    torch.testing.assert_close(out.reshape(1, 4, 15), flat, rtol=0, atol=0)


def _missing_op_message(name: str, prefix: str = 'mmcv.ops.') -> str:
    return (f"{prefix}{name} needs mmcv's compiled ops, and the installed "
            f'mmcv has none (mmcv-lite). ' + compat.FULL_MMCV_HINT)


def test_lite_stand_in_serves_mmseg_and_raises_on_compiled_ops():
    import mmcv.ops
    from mmseg.registry import MODELS
    assert compat.mmcv_has_compiled_ops() is False
    assert mmcv.ops.point_sample is compat.point_sample
    with pytest.raises(compat.MissingMmcvOpError) as err:
        mmcv.ops.sigmoid_focal_loss(torch.randn(4, 3), torch.zeros(4).long())
    assert str(err.value) == _missing_op_message('sigmoid_focal_loss')
    head = dict(type='CCHead', in_channels=8, channels=4, num_classes=3)
    with pytest.raises(compat.MissingMmcvOpError) as err:
        MODELS.build(head)
    assert str(err.value) == _missing_op_message('CrissCrossAttention')


#: fresh-interpreter checks that need no more than torch loaded: each runs
#: in its own fork of one interpreter that imported torch
#: (tests/fork_snippets.py), so none sees what another imported
AFTER_TORCH = {
    # A finder that reports mmcv._ext as present, and a module standing for
    # full mmcv's compiled mmcv.ops: importing convseg must leave it alone.
    'compiled_ops': '''
        import importlib.machinery, sys, types
        assert 'mmcv' not in sys.modules
        class Finder:
            def find_spec(self, name, path=None, target=None):
                if name == 'mmcv._ext':
                    return importlib.machinery.ModuleSpec(name, None)
        sys.meta_path.insert(0, Finder())
        import mmcv
        full_ops = types.ModuleType('mmcv.ops')
        def compiled(name):
            if name.startswith('__'):
                raise AttributeError(name)
            return f'compiled_{name}'
        full_ops.__getattr__ = compiled  # mmseg imports a few op names
        sys.modules['mmcv.ops'] = full_ops
        mmcv.ops = full_ops
        import convseg
        from convseg import compat
        from mmengine.registry import MODELS
        assert compat.mmcv_has_compiled_ops()
        import mmcv.ops
        print(sys.modules['mmcv.ops'] is full_ops, mmcv.ops.point_sample,
              MODELS.get('DCN'))
    ''',
    'imports': '''
        import sys
        assert 'mmcv' not in sys.modules and 'convseg' not in sys.modules
        import convseg, mmseg.models, mmseg.apis
    ''',
}


@pytest.fixture(scope='module')
def after_torch(tmp_path_factory, snippets_in_forks):
    # (the interpreter's own stderr, torch's import included, must be empty)
    return snippets_in_forks(tmp_path_factory.mktemp('after_torch'),
                             'import torch', AFTER_TORCH)


def test_nothing_is_patched_when_compiled_ops_are_present(after_torch):
    result = after_torch['compiled_ops']
    assert result.returncode == 0, result.stderr
    # no stand-in registered under full mmcv's type names either
    assert result.stdout.split() == ['True', 'compiled_point_sample', 'None']


def test_import_prints_no_warnings(after_torch):
    result = after_torch['imports']
    assert result.returncode == 0, result.stderr
    assert result.stderr == ''


class _Foreign:
    """A class that is not on the allow-list."""

    def __init__(self, value: int) -> None:
        self.value = value


def test_foreign_pickled_object_is_refused_with_opt_in(tmp_path):
    path = tmp_path / 'foreign.pth'
    torch.save({'state_dict': {'w': torch.ones(2)}, 'extra': _Foreign(3)},
               path)
    with pytest.raises(checkpoint_reading.UnsafeCheckpointError) as err:
        checkpoint_reading.load_checkpoint_file(str(path))
    assert str(err.value) == (
        f'refusing to load checkpoint {path}: it holds a pickled object '
        f'({__name__}._Foreign) that is not plain weights or one of the '
        f'types mmengine writes. Loading it could run code. Only if you trust '
        f'where the file comes from, load it inside '
        f'convseg.checkpoint_reading.unsafe_checkpoint_loading() or set '
        f'CONVSEG_UNSAFE_LOAD=1.')
    assert err.value.for_tools() == (
        f'{err.value} With the convseg tools, pass --unsafe-load.')
    with checkpoint_reading.unsafe_checkpoint_loading():
        loaded = checkpoint_reading.load_checkpoint_file(str(path))
    assert loaded['extra'].value == 3
    assert checkpoint_reading.UNSAFE_LOAD_ENV not in os.environ


def test_mmengine_types_load_weights_only_through_mmengine(tmp_path):
    from mmengine.logging import HistoryBuffer, MessageHub
    from mmengine.runner.checkpoint import _load_checkpoint
    hub = MessageHub.get_instance('compat_test')
    hub.update_scalar('train/loss', 0.5)
    hub.update_scalar('train/loss', np.float32(0.25))
    hub.update_info('iter', np.int64(7))
    path = tmp_path / 'run.pth'
    torch.save({'message_hub': hub.state_dict(),
                'meta': {'arr': np.arange(3, dtype=np.uint8),
                         'f': np.float64(1.5)}}, path)
    loaded = _load_checkpoint(str(path), map_location='cpu')
    buffer = loaded['message_hub']['log_scalars']['train/loss']
    assert isinstance(buffer, HistoryBuffer)
    assert buffer.mean() == pytest.approx(0.375)
    assert loaded['message_hub']['runtime_info']['iter'] == 7
    assert loaded['meta']['arr'].tolist() == [0, 1, 2]
    assert loaded['meta']['f'] == 1.5


def test_getattr_in_a_checkpoint_reaches_nothing_but_statistics(tmp_path):
    import pickle
    import zipfile

    class Probe:
        def __reduce__(self):
            return getattr, (np.ndarray, 'tofile')

    path = tmp_path / 'probe.pth'
    torch.save({'x': Probe()}, path)
    with zipfile.ZipFile(path) as archive:
        names = archive.namelist()
    assert any(name.endswith('data.pkl') for name in names)
    with pytest.raises(checkpoint_reading.UnsafeCheckpointError) as err:
        checkpoint_reading.load_checkpoint_file(str(path))
    assert "(builtins.getattr(<class 'numpy.ndarray'>, 'tofile')" in str(
        err.value)
    assert isinstance(err.value, pickle.UnpicklingError)


def test_a_config_text_goes_through_yapf_once(monkeypatch):
    from mmengine.config import Config
    from mmengine.config import config as mmengine_config
    from yapf.yapflib.yapf_api import FormatCode

    # import convseg wrapped mmengine's own FormatCode
    assert mmengine_config.FormatCode.__wrapped__ is FormatCode
    calls = []

    def counting(text, **kwargs):
        calls.append((text, kwargs))
        return FormatCode(text, **kwargs)

    monkeypatch.setattr(mmengine_config, 'FormatCode',
                        compat.cached_format_code(counting))
    cfg = Config(dict(model=dict(type='EncoderDecoder', depths=[3, 3, 9]),
                      lr=6e-3))
    first = cfg.pretty_text
    assert cfg.pretty_text == first and len(calls) == 1
    # what yapf itself makes of the text mmengine passed
    text, kwargs = calls[0]
    assert first == FormatCode(text, **kwargs)[0]
    assert "type='EncoderDecoder'" in first
    cfg.lr = 1e-3
    assert 'lr = 0.001' in cfg.pretty_text and len(calls) == 2
    assert len(cfg.pretty_text) == len(first) and len(calls) == 2


@pytest.mark.parametrize('channels_last', [False, True])
def test_top1_accuracy_is_mmsegs_to_the_bit(channels_last):
    from mmseg.models.decode_heads import decode_head
    from mmseg.models.losses import accuracy

    # import convseg wrapped the name the decode heads call, not mmseg's
    # function itself
    assert decode_head.accuracy.__wrapped__ is accuracy
    assert not getattr(accuracy, 'convseg_top1', False)
    fast = compat.top1_accuracy(accuracy)
    assert compat.top1_accuracy(fast) is fast
    generator = torch.Generator().manual_seed(0)
    scores = torch.randn(4, 6, 16, 16, generator=generator)
    if channels_last:
        scores = scores.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, 6, (4, 16, 16), generator=generator)
    labels[0, :5] = 255
    labels[3] = 255
    # about one in six right, by chance: mmseg's figure, and a hand count
    expected = accuracy(scores, labels, ignore_index=255)
    got = fast(scores, labels, ignore_index=255)
    assert got.dtype == torch.float32 and got.shape == (1, )
    assert torch.equal(got, expected)
    valid = labels != 255
    right = ((scores.argmax(1) == labels) & valid).sum().item()
    assert got.item() == pytest.approx(100 * right / valid.sum().item(),
                                       rel=1e-6)
    assert 10 < got.item() < 25
    assert torch.equal(fast(scores, labels), accuracy(scores, labels))
    # an ignored class that the argmax can pick: those pixels do not count
    assert torch.equal(fast(scores, labels, ignore_index=2),
                       accuracy(scores, labels, ignore_index=2))
    # every pixel ignored: mmseg says 100 (eps / eps)
    unlabelled = torch.full_like(labels, 255)
    assert torch.equal(fast(scores, unlabelled, ignore_index=255),
                       accuracy(scores, unlabelled, ignore_index=255))


def test_top1_accuracy_hands_other_cases_to_mmseg():
    from mmseg.models.losses import accuracy
    calls = []

    def counting(*args):
        calls.append(args)
        return accuracy(*args)

    fast = compat.top1_accuracy(counting)
    generator = torch.Generator().manual_seed(1)
    scores = torch.randn(2, 4, 8, 8, generator=generator)
    labels = scores.argmax(1)
    labels[0, 0, 0] = (labels[0, 0, 0] + 1) % 4
    assert fast(scores, labels).item() == pytest.approx(100 * 127 / 128)
    assert calls == []
    top2 = fast(scores, labels, (1, 2))
    assert isinstance(top2, list) and len(top2) == 2 and len(calls) == 1
    # (mmseg's thresh works on (N, C) scores only)
    flat_scores = scores.permute(0, 2, 3, 1).reshape(-1, 4)
    sure = fast(flat_scores, labels.reshape(-1), 1, 0.5)
    assert torch.equal(sure, accuracy(flat_scores, labels.reshape(-1), 1, 0.5))
    assert len(calls) == 2
    empty = fast(scores[:0], labels[:0])
    assert empty.item() == 0 and len(calls) == 3


def test_a_decode_head_logs_mmsegs_accuracy():
    from mmseg.models.decode_heads import FCNHead
    from mmseg.models.losses import accuracy
    from mmseg.models.utils import resize
    from mmseg.structures import SegDataSample
    from mmengine.structures import PixelData

    torch.manual_seed(0)
    head = FCNHead(in_channels=8, channels=8, num_convs=1, num_classes=5)
    logits = torch.randn(3, 5, 8, 8)
    samples = []
    for _ in range(3):
        sample = SegDataSample()
        label = torch.randint(0, 5, (1, 16, 16))
        label[:, :3] = 255
        sample.gt_sem_seg = PixelData(data=label)
        samples.append(sample)
    losses = head.loss_by_feat(logits, samples)
    labels = torch.stack([s.gt_sem_seg.data for s in samples]).squeeze(1)
    upsampled = resize(logits, size=(16, 16), mode='bilinear',
                       align_corners=False)
    assert torch.equal(losses['acc_seg'],
                       accuracy(upsampled, labels, ignore_index=255))


def test_missing_local_file_names_it(tmp_path):
    from mmengine.runner.checkpoint import _load_checkpoint
    missing = tmp_path / 'nope.pth'
    with pytest.raises(FileNotFoundError) as err:
        _load_checkpoint(str(missing))
    assert str(err.value) == f'checkpoint {missing} does not exist'


@pytest.fixture
def hub_dir(tmp_path):
    """A fresh torch hub directory for the test, the previous one after."""
    before = torch.hub.get_dir()
    torch.hub.set_dir(str(tmp_path / 'hub'))
    yield tmp_path / 'hub'
    torch.hub.set_dir(before)


def test_url_download_goes_to_hub_cache(tmp_path, hub_dir):
    source = tmp_path / 'convnext_atto.pth'
    torch.save({'model': {'w': torch.arange(4.)}}, source)
    url = source.as_uri()
    cached = checkpoint_reading.download_checkpoint(url)
    assert cached == str(hub_dir / 'checkpoints' / 'convnext_atto.pth')
    loaded = checkpoint_reading.load_checkpoint_file(cached)
    assert loaded['model']['w'].tolist() == [0., 1., 2., 3.]


def test_offline_url_gives_actionable_error(hub_dir):
    from mmengine.runner.checkpoint import _load_checkpoint
    url = 'http://127.0.0.1:9/convnext_tiny_1k_224.pth'
    with pytest.raises(checkpoint_reading.CheckpointDownloadError) as err:
        _load_checkpoint(url)
    message = str(err.value)
    assert message.startswith(f'could not download checkpoint {url} (')
    cached = hub_dir / 'checkpoints' / 'convnext_tiny_1k_224.pth'
    assert f'put it at {cached}' in message
    assert 'model.backbone.init_cfg=None' in message
    assert not cached.exists()


def test_generic_file_names_get_distinct_cache_paths(hub_dir):
    cache_path = checkpoint_reading.hub_checkpoint_path
    a = cache_path('https://h/a/resolve/main/model.safetensors')
    b = cache_path('https://h/b/resolve/main/model.safetensors')
    assert a != b
    assert os.path.basename(a).endswith('-model.safetensors')
    official = 'https://dl.fbaipublicfiles.com/convnext/convnext_tiny_1k_224.pth'
    assert cache_path(official) == str(
        hub_dir / 'checkpoints' / 'convnext_tiny_1k_224.pth')


@pytest.mark.parametrize('name', sorted(compat.MMCV_OP_TYPES))
def test_config_naming_a_compiled_op_type_gets_the_clear_error(name):
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS
    init_default_scope('mmseg')
    with pytest.raises(compat.MissingMmcvOpError) as err:
        MODELS.build(dict(type=name, in_channels=8, out_channels=8,
                          kernel_size=3))
    assert str(err.value) == _missing_op_message(
        f"type='{name}' (mmcv.ops.{compat.MMCV_OP_TYPES[name]})",
        prefix='')


def test_resnet_with_dcn_gets_the_clear_error():
    # as mmseg's own ResNet unit tests build it
    from mmseg.models.backbones import ResNet
    with pytest.raises(compat.MissingMmcvOpError) as err:
        ResNet(depth=50, dcn=dict(type='DCN', deform_groups=1,
                                  fallback_on_stride=False),
               stage_with_dcn=(False, False, True, True))
    assert str(err.value).startswith(
        "type='DCN' (mmcv.ops.DeformConv2dPack) needs mmcv's compiled ops")


@pytest.mark.parametrize('module', ['mmcv.ops.nms', 'mmcv.ops.roi_align'])
def test_submodule_import_gets_the_clear_error(module):
    import importlib
    with pytest.raises(compat.MissingMmcvOpError) as err:
        importlib.import_module(module)
    assert isinstance(err.value, ImportError)  # so fallbacks keep working
    assert str(err.value) == _missing_op_message(module, prefix='')
    assert module not in sys.modules


DOWNLOAD_ON_A_NODE = '''
import os, torch.distributed as dist
from convseg.checkpoint_reading import download_checkpoint
dist.init_process_group('gloo')
path = download_checkpoint({url!r})
print(path, os.path.isfile(path))
dist.destroy_process_group()
'''


def test_every_node_downloads_into_its_own_hub_cache(tmp_path):
    # two nodes of one process each, without a shared TORCH_HOME: global
    # rank 1 is local rank 0 of its node and must download there too (each
    # rank a fork of the warm tool server, the rank's variables set in it)
    source = tmp_path / 'convnext_atto_1k.pth'
    torch.save({'model': {'w': torch.arange(3.)}}, source)
    port = str(free_port())
    ranks = {}
    for rank in (0, 1):
        ranks[f'rank{rank}'] = dict(
            RANK=str(rank), LOCAL_RANK='0', WORLD_SIZE='2',
            LOCAL_WORLD_SIZE='1', MASTER_ADDR='127.0.0.1', MASTER_PORT=port,
            TORCH_HOME=str(tmp_path / f'node{rank}'))
    script = tmp_path / 'download_on_a_node.py'
    script.write_text(DOWNLOAD_ON_A_NODE.format(url=source.as_uri()))
    results = dict(zip(ranks, run_group(script, envs=list(ranks.values()),
                                        timeout=300)))
    for rank in (0, 1):
        node = results[f'rank{rank}']
        assert node.returncode == 0, node.stderr
        cached = tmp_path / f'node{rank}' / 'hub' / 'checkpoints' / \
            'convnext_atto_1k.pth'
        assert node.stdout.split() == [str(cached), 'True']
        assert cached.read_bytes() == source.read_bytes()
