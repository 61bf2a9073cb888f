"""demo/image_demo.py and demo/video_demo.py run end to end as subprocesses.

A tiny UPerNet-ConvNeXt from the repo's configs writes a real checkpoint; the
inputs are files as users have them (grayscale, RGBA, 16-bit, EXIF-rotated
JPEG, odd sizes, a corrupt file) and a short video written with cv2. Outputs
are checked against inference_labels and against the blend formula computed
here with numpy on independently decoded pixels.
"""
import argparse
import importlib.util
import struct

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmengine.runner import save_checkpoint
from PIL import Image

import convseg  # noqa: F401
from convseg.apis import inference_labels, init_model
from convseg.visualization import random_palette

# the shared tiny model (tests/data/tiny_upernet_convnext.py) on ADE20K,
# slide inference and a small test pipeline
CONFIG = """
_base_ = [{tiny!r}, {ade20k!r}]
model = dict(
    test_cfg=dict(mode='slide', crop_size=(64, 64), stride=(48, 48)))
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=(128, 96), keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=True),
    dict(type='PackSegInputs')]
test_dataloader = dict(dataset=dict(pipeline=test_pipeline))
"""


def _smooth(height, width, seed, channels=3):
    rng = np.random.default_rng(seed)
    image = rng.integers(0, 256, (height, width, channels)).astype(np.uint8)
    image = cv2.GaussianBlur(image, (0, 0), 3)
    image = cv2.normalize(image, None, 0, 255, cv2.NORM_MINMAX)
    return image.reshape(height, width, channels)


@pytest.fixture
def run_demo(run_script):
    """``run_demo(script, *args)``: ``demo/SCRIPT`` run as users run it."""
    return lambda script, *args: run_script(f'demo/{script}', *args,
                                            timeout=300)


@pytest.fixture(scope='module')
def demo_tiny(tmp_path_factory, repo_root, tiny_config):
    """Config, checkpoint, the in-process model and the ADE20K palette."""
    root = tmp_path_factory.mktemp('demo')
    (root / 'tiny.py').write_text(CONFIG.format(
        tiny=str(tiny_config),
        ade20k=str(repo_root / 'configs/_base_/datasets/ade20k.py')))
    init_default_scope('mmseg')
    from mmseg.registry import MODELS
    torch.manual_seed(0)
    net = MODELS.build(Config.fromfile(root / 'tiny.py').model)
    save_checkpoint(dict(state_dict=net.state_dict(), meta=dict()),
                    str(root / 'tiny.pth'))
    model = init_model(str(root / 'tiny.py'), str(root / 'tiny.pth'))
    return dict(root=root, config=root / 'tiny.py',
                checkpoint=root / 'tiny.pth', model=model)


@pytest.fixture(scope='module')
def inputs(demo_tiny, png_bomb):
    """Image files as users have them, and their upright RGB pixels."""
    folder = demo_tiny['root'] / 'photos'
    (folder / 'sub').mkdir(parents=True)
    expected = {}
    gray = _smooth(48, 64, 1, channels=1)[:, :, 0]
    cv2.imwrite(str(folder / 'gray.png'), gray)
    expected['gray'] = np.dstack([gray] * 3)

    rgb = _smooth(50, 70, 2)
    alpha = np.random.default_rng(3).integers(0, 256, (50, 70), np.uint8)
    Image.fromarray(np.dstack([rgb, alpha]), 'RGBA').save(folder / 'rgba.png')
    expected['rgba'] = rgb

    deep = (_smooth(40, 60, 4, channels=1)[:, :, 0].astype(np.uint16) * 257
            + np.random.default_rng(5).integers(0, 257, (40, 60))
            ).astype(np.uint16)
    cv2.imwrite(str(folder / 'deep.png'), deep)
    scaled = np.floor(deep * 255.0 / 65535.0 + 0.5).astype(np.uint8)
    expected['deep'] = np.dstack([scaled] * 3)

    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    Image.fromarray(_smooth(36, 80, 6)).save(folder / 'rotated.jpg',
                                             exif=exif.tobytes(), quality=95)
    raw = cv2.imread(str(folder / 'rotated.jpg'),
                     cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    expected['rotated'] = np.rot90(raw, k=-1)[:, :, ::-1]

    odd = _smooth(37, 53, 7)
    Image.fromarray(odd).save(folder / 'sub' / 'odd.png')
    expected['sub/odd'] = odd

    (folder / 'broken.jpg').write_bytes(b'\xff\xd8\xff\xe0 truncated')
    png_bomb(folder / 'huge.png')  # 40000x40000, ~200 KB
    (folder / 'notes.txt').write_text('not an image')
    return folder, {k: np.ascontiguousarray(v) for k, v in expected.items()}


def _assert_blend(drawn, image, labels, palette, opacity):
    """Pixels equal (1 - opacity) * image + opacity * colour, to rounding."""
    colors = np.asarray(palette, np.float64)[labels]
    exact = (1 - opacity) * image.astype(np.float64) + opacity * colors
    assert np.abs(drawn.astype(np.float64) - exact).max() <= 0.5 + 1e-4


def _blocks(frame):
    """Means of the 8x8 blocks of a (48, 64, 3) frame."""
    return frame.reshape(6, 8, 8, 8, 3).mean(axis=(1, 3))


def _swatch_colours(strip, palette):
    """Palette colours filling a solid 5x5 block of the legend strip.

    Swatches are solid squares; anti-aliased text may hit a palette colour
    on scattered pixels, which the erosion removes.
    """
    kernel = np.ones((5, 5), np.uint8)
    return {i for i, color in enumerate(palette)
            if cv2.erode(np.all(strip == color, axis=-1).astype(np.uint8),
                         kernel).any()}


def test_image_demo_on_a_folder(demo_tiny, inputs, run_demo):
    folder, expected = inputs
    out = demo_tiny['root'] / 'out'
    done = run_demo('image_demo.py', folder, demo_tiny['config'],
                    demo_tiny['checkpoint'], '--out-dir', out)
    assert done.returncode == 1, done.stderr
    assert f'skipped {folder / "broken.jpg"}: cannot decode' in done.stderr
    assert (f'skipped {folder / "huge.png"}: image {folder / "huge.png"} '
            'declares 40000x40000 = 1,600,000,000 pixels, more than the '
            'limit of 89,478,485 pixels') in done.stderr
    assert 'CONVSEG_MAX_IMAGE_PIXELS=1600000000' in done.stderr
    assert 'Traceback' not in done.stderr
    assert 'notes.txt' not in done.stdout + done.stderr
    assert 'wrote overlays and masks of 5 image(s)' in done.stdout
    assert not list(out.glob('broken*')) and not list(out.glob('huge*'))

    model = demo_tiny['model']
    palette = model.dataset_meta['palette']
    for name, image in expected.items():
        with Image.open(out / f'{name}_mask.png') as mask:
            assert mask.mode == 'P'
            labels = np.asarray(mask).astype(np.int64)
            assert mask.getpalette()[:450] == [c for rgb in palette
                                              for c in rgb]
        source = next(folder.glob(f'{name}.*'))
        np.testing.assert_array_equal(labels, inference_labels(model, source))
        height, width = image.shape[:2]
        assert labels.shape == (height, width)

        drawn = np.asarray(Image.open(out / f'{name}_overlay.png'))
        _assert_blend(drawn[:height, :width], image, labels, palette, 0.5)
        assert drawn.shape[0] > height or drawn.shape[1] > width
        legend = drawn.copy()
        legend[:height, :width] = 255  # everything but the image part
        assert _swatch_colours(legend, palette) == set(np.unique(labels))
    assert expected['rotated'].shape[:2] == (80, 36)


def test_image_demo_on_one_image_with_options(demo_tiny, inputs, run_demo):
    folder, expected = inputs
    out = demo_tiny['root'] / 'single'
    done = run_demo('image_demo.py', folder / 'rgba.png', demo_tiny['config'],
                    demo_tiny['checkpoint'], '--out-dir', out, '--no-legend',
                    '--palette', 'random', '--opacity', '0.7')
    assert done.returncode == 0, done.stderr
    assert sorted(p.name for p in out.iterdir()) == ['rgba_mask.png',
                                                     'rgba_overlay.png']
    labels = np.asarray(Image.open(out / 'rgba_mask.png')).astype(np.int64)
    drawn = np.asarray(Image.open(out / 'rgba_overlay.png'))
    assert drawn.shape == expected['rgba'].shape
    _assert_blend(drawn, expected['rgba'], labels, random_palette(150), 0.7)
    np.testing.assert_array_equal(
        labels, inference_labels(demo_tiny['model'], folder / 'rgba.png'))


def test_image_demo_with_labels_and_no_fast(demo_tiny, inputs, run_demo):
    folder, expected = inputs
    drawn = {}
    for flags in ((), ('--with-labels',)):
        out = demo_tiny['root'] / ('labels' if flags else 'plain')
        done = run_demo('image_demo.py', folder / 'rgba.png',
                        demo_tiny['config'],
                        demo_tiny['checkpoint'], '--out-dir', out, *flags)
        assert done.returncode == 0, done.stderr
        drawn[bool(flags)] = np.asarray(Image.open(out / 'rgba_overlay.png'))
    plain, labelled = drawn[False], drawn[True]
    assert plain.shape == labelled.shape
    height, width = expected['rgba'].shape[:2]
    changed = np.any(plain != labelled, axis=-1)
    assert changed[:height, :width].any()
    changed[:height, :width] = False
    assert not changed.any()

    out = demo_tiny['root'] / 'no_fast'
    done = run_demo('image_demo.py', folder / 'rgba.png', demo_tiny['config'],
                    demo_tiny['checkpoint'], '--out-dir', out, '--no-fast')
    assert done.returncode == 0, done.stderr
    plain_model = np.asarray(Image.open(out / 'rgba_mask.png'))
    fast_model = np.asarray(Image.open(demo_tiny['root'] / 'plain' /
                                       'rgba_mask.png'))
    assert (plain_model == fast_model).mean() >= 0.999


def _write_clip(path, codec, fps, seed, count):
    """``count`` 48x64 frames: one smooth image moving 4 pixels a frame."""
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*codec), fps,
                             (64, 48))
    for index in range(count):
        writer.write(np.roll(_smooth(48, 64, seed), 4 * index, axis=1))
    writer.release()


def _read_clip(path):
    """(fps, decoded frames) of a video file."""
    capture = cv2.VideoCapture(str(path))
    fps = capture.get(cv2.CAP_PROP_FPS)
    read = []
    while True:
        ok, frame = capture.read()
        if not ok:
            break
        read.append(frame)
    capture.release()
    return fps, read


def test_video_demo_keeps_fps_size_and_frames(demo_tiny, run_demo):
    source = demo_tiny['root'] / 'clip.avi'
    _write_clip(source, 'MJPG', 7.0, 10, 6)
    target = demo_tiny['root'] / 'clip_seg.mp4'
    done = run_demo('video_demo.py', source, demo_tiny['config'],
                    demo_tiny['checkpoint'], '--out', target, '--batch-size',
                    '4')
    assert done.returncode == 0, done.stderr
    assert '6 frames in' in done.stdout
    assert 'frames per second' in done.stdout
    fps_in, originals = _read_clip(source)
    fps_out, written = _read_clip(target)
    assert fps_out == fps_in == 7.0
    assert len(written) == len(originals) == 6
    assert all(f.shape == (48, 64, 3) for f in written)
    model = demo_tiny['model']
    palette = np.asarray(model.dataset_meta['palette'], np.float64)
    for original, output in zip(originals, written):
        labels = inference_labels(model, original)
        rgb = original[:, :, ::-1].astype(np.float64)
        blended = 0.5 * rgb + 0.5 * palette[labels]
        output = output[:, :, ::-1].astype(np.float64)
        # mp4v is lossy, so compare 8x8 block means: the written frame is
        # close to the blend and far from the plain input frame
        near = np.abs(_blocks(output) - _blocks(blended)).mean()
        assert near < 5
        assert np.abs(_blocks(output) - _blocks(rgb)).mean() > 5 * near


def test_video_demo_sizes_its_output_from_the_decoded_rotated_frames(
        demo_tiny, run_demo):
    """An mp4 whose track header says 'turn 90 degrees': OpenCV decodes the
    frames upright (48 wide, 64 high); the output has their size and every
    frame. (OpenCV 5 also reports the turned size as the container's; older
    versions reported the stored one, and the writer dropped every frame.)"""
    stored = demo_tiny['root'] / 'stored.mp4'
    _write_clip(stored, 'mp4v', 5.0, 11, 5)
    data = bytearray(stored.read_bytes())
    tkhd = data.index(b'tkhd')
    assert data[tkhd + 4] == 0  # version 0: the matrix is 40 bytes on
    matrix = tkhd + 8 + 20 + 8 + 8
    assert struct.unpack_from('>9i', data, matrix) == (
        1 << 16, 0, 0, 0, 1 << 16, 0, 0, 0, 1 << 30)
    struct.pack_into('>9i', data, matrix, 0, 1 << 16, 0, -(1 << 16), 0, 0,
                     0, 0, 1 << 30)
    source = demo_tiny['root'] / 'turned.mp4'
    source.write_bytes(bytes(data))
    target = demo_tiny['root'] / 'turned_seg.avi'
    done = run_demo('video_demo.py', source, demo_tiny['config'],
                    demo_tiny['checkpoint'], '--out', target)
    assert done.returncode == 0, done.stderr
    assert f'wrote {target} (48x64, 5 fps)' in done.stdout
    _, written = _read_clip(target)
    assert len(written) == 5 and all(f.shape == (64, 48, 3) for f in written)


@pytest.fixture
def load_demo(repo_root):
    """``load_demo(name)``: ``demo/NAME.py`` imported as a module."""

    def load(name):
        spec = importlib.util.spec_from_file_location(
            name, repo_root / 'demo' / f'{name}.py')
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return module

    return load


def test_image_demo_unsafe_load_is_opt_in(demo_tiny, inputs, capsys,
                                          load_demo):
    folder, _ = inputs
    checkpoint = torch.load(demo_tiny['checkpoint'], weights_only=True)
    checkpoint['meta']['args'] = argparse.Namespace(lr=0.1)  # a pickled object
    pickled = demo_tiny['root'] / 'pickled.pth'
    torch.save(checkpoint, pickled)
    image_demo = load_demo('image_demo')
    args = [str(folder / 'gray.png'), str(demo_tiny['config']), str(pickled),
            '--out-dir', str(demo_tiny['root'] / 'unsafe')]
    assert image_demo.main(args) == 1
    err = capsys.readouterr().err
    assert err.startswith(f'error: refusing to load checkpoint {pickled}: it '
                          'holds a pickled object (argparse.Namespace)')
    assert 'Traceback' not in err
    assert not (demo_tiny['root'] / 'unsafe').exists()
    assert image_demo.main(args + ['--unsafe-load']) == 0
    assert (demo_tiny['root'] / 'unsafe' / 'gray_mask.png').is_file()


def test_video_demo_reports_a_missing_input(demo_tiny, capsys, load_demo):
    video_demo = load_demo('video_demo')
    missing = demo_tiny['root'] / 'none.avi'
    code = video_demo.main([str(missing), str(demo_tiny['config']),
                            str(demo_tiny['checkpoint']), '--out',
                            str(demo_tiny['root'] / 'x.mp4')])
    assert code == 1
    assert f'cannot open video {missing}' in capsys.readouterr().err
    assert not (demo_tiny['root'] / 'x.mp4').exists()
