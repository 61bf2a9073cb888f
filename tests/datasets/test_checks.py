"""Dataset checks on generated ADE20K and Cityscapes data in the real layouts,
with the project's dataset configs."""
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from mmengine.config import Config
from PIL import Image

import convseg  # noqa: F401
from convseg.datasets import generate_ade20k, generate_cityscapes
from convseg.datasets.checks import (DatasetCheckError, DatasetLayoutError,
                                     check_dataset, check_dataset_layout)

LOADERS = ('train_dataloader', 'val_dataloader', 'test_dataloader')


@pytest.fixture
def config_for(repo_root):
    """``config_for(name, data_root)``: ``configs/NAME`` on that data."""

    def load(name, data_root):
        cfg = Config.fromfile(str(repo_root / 'configs' / name))
        for key in LOADERS:
            if cfg.get(key):
                cfg[key].dataset.data_root = str(data_root)
        return cfg

    return load


@pytest.fixture
def ade(tmp_path):
    return generate_ade20k(str(tmp_path), num_train=4, num_val=1,
                           size=(32, 40))


# ---------------------------------------------------------------------------
# layout
# ---------------------------------------------------------------------------

def test_missing_ade20k_root_names_layout_and_download(tmp_path, config_for):
    root = tmp_path / 'ADEChallengeData2016'
    cfg = config_for('upernet_convnext_t_ade20k.py', root)
    with pytest.raises(DatasetLayoutError) as info:
        check_dataset_layout(cfg)
    message = str(info.value)
    assert message.startswith(
        'the dataset is missing or incomplete:\n'
        f'  - train, val, test: data root {root} does not exist.\n'
        'train_dataloader.dataset (ADE20KDataset) expects:\n'
        f'    {root}/images/training/**/*.jpg  (images)\n')
    assert 'http://data.csail.mit.edu/places/ADEchallenge/' \
        'ADEChallengeData2016.zip' in message
    assert 'list index out of range' not in message


def test_relative_root_is_reported_with_the_working_directory(
        tmp_path, monkeypatch, repo_root):
    monkeypatch.chdir(tmp_path)
    cfg = Config.fromfile(
        str(repo_root / 'configs' / 'upernet_convnext_t_ade20k.py'))
    with pytest.raises(DatasetLayoutError) as info:
        check_dataset_layout(cfg, ['train'])
    assert (f'  - train: data root data/ade/ADEChallengeData2016 (relative '
            f'to {tmp_path}) does not exist.') in str(info.value)


def test_missing_annotation_folder(ade, config_for):
    shutil.rmtree(os.path.join(ade, 'annotations', 'validation'))
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    check_dataset_layout(cfg, ['train'])
    with pytest.raises(DatasetLayoutError) as info:
        check_dataset_layout(cfg)
    assert ('  - val, test: label folder '
            f'{ade}/annotations/validation does not exist.\n') \
        in str(info.value)


def test_empty_image_folder_is_an_empty_split(ade, config_for):
    for name in os.listdir(os.path.join(ade, 'images', 'training')):
        os.remove(os.path.join(ade, 'images', 'training', name))
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    problems = check_dataset(cfg, 'train', full=False)
    assert [(p.kind, str(p)) for p in problems] == [(
        'empty_split',
        'train split (train_dataloader.dataset): no image files ending in '
        f"'.jpg' under {ade}/images/training (it is empty).")]


def test_cityscapes_without_train_ids_says_to_run_prepare(
        tmp_path, config_for):
    root = generate_cityscapes(str(tmp_path), num_train=2, num_val=1,
                               size=(32, 64), train_ids=False)
    cfg = config_for('upernet_convnext_t_cityscapes.py', root)
    with pytest.raises(DatasetLayoutError) as info:
        check_dataset_layout(cfg, ['train'])
    message = str(info.value)
    assert ("  - train: no label files ending in '_gtFine_labelTrainIds.png' "
            f'under {root}/gtFine/train') in message
    assert ('run `python tools/prepare_cityscapes.py '
            f'{root}` first.') in message
    assert 'https://www.cityscapes-dataset.com/downloads/' in message


def test_complete_datasets_pass(ade, tmp_path, config_for):
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    check_dataset_layout(cfg)
    assert check_dataset(cfg, 'train') == []
    assert check_dataset(cfg, 'val') == []
    city = generate_cityscapes(str(tmp_path / 'c'), num_train=2, num_val=1,
                               size=(32, 64))
    cfg = config_for('upernet_convnext_t_cityscapes.py', city)
    assert check_dataset(cfg, 'train') == []


# ---------------------------------------------------------------------------
# full checks
# ---------------------------------------------------------------------------

def _problems(cfg, split='train', **kwargs):
    return sorted((p.kind, p.path, str(p))
                  for p in check_dataset(cfg, split, **kwargs))


def test_each_broken_file_is_named(ade, config_for):
    img = os.path.join(ade, 'images', 'training', 'ADE_train_{:08d}.jpg')
    ann = os.path.join(ade, 'annotations', 'training', 'ADE_train_{:08d}.png')
    os.remove(ann.format(1))  # image without label
    orphan = ann.format(9)  # label without image
    shutil.copy(ann.format(2), orphan)
    data = open(img.format(2), 'rb').read()  # truncated JPEG
    with open(img.format(2), 'wb') as f:
        f.write(data[:len(data) // 2])
    label = np.array(Image.open(ann.format(3)))  # 40x32 label, 32x40 image
    Image.fromarray(np.zeros((40, 32), np.uint8)).save(ann.format(3))
    label[0, :3] = [151, 200, 255]  # 255 stays ignored; 151 and 200 do not
    Image.fromarray(label).save(ann.format(4))

    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    problems = _problems(cfg)
    assert [p[:2] for p in problems] == [
        ('label_values', ann.format(4)),
        ('missing_image', orphan),
        ('missing_label', ann.format(1)),
        ('size_mismatch', ann.format(3)),
        ('unreadable', img.format(2)),
    ]
    text = {kind: message for kind, _, message in problems}
    assert text['label_values'] == (
        f'label {ann.format(4)} has values 151, 200 that are neither a class '
        'id (1..150, shifted down by reduce_zero_label) nor ignored (0 and '
        '255).')
    assert text['missing_image'] == (
        f'label {orphan} has no image (expected {img.format(9)}).')
    assert text['missing_label'] == (
        f'image {img.format(1)} has no label (expected {ann.format(1)}).')
    assert text['size_mismatch'] == (
        f'label {ann.format(3)} is 32x40 (WxH) but its image {img.format(3)} '
        'is 40x32.')
    assert text['unreadable'].startswith(
        f'image {img.format(2)} is unreadable or truncated (OSError: ')
    # the same answers with worker processes
    assert _problems(cfg, nproc=2) == problems
    with pytest.raises(DatasetCheckError) as info:
        raise DatasetCheckError([p for p in check_dataset(cfg, 'train')])
    assert str(info.value).startswith('5 dataset problem(s):\n  - label ')


def test_label_values_without_reduce_zero_label(tmp_path, config_for):
    root = generate_cityscapes(str(tmp_path), num_train=1, num_val=1,
                               size=(32, 64))
    label_path = os.path.join(
        root, 'gtFine', 'train', 'aachen',
        'aachen_000000_000019_gtFine_labelTrainIds.png')
    label = np.array(Image.open(label_path))
    label[0, :4] = [0, 18, 19, 254]
    Image.fromarray(label).save(label_path)
    cfg = config_for('upernet_convnext_t_cityscapes.py', root)
    assert [str(p) for p in check_dataset(cfg, 'train')] == [
        f'label {label_path} has values 19, 254 that are neither a class id '
        '(0..18) nor the ignore index 255.']


def _loaded(cfg, img, seg):
    """The image and label as the training pipeline's own loading
    transforms (mmseg's LoadImageFromFile, LoadAnnotations) give them."""
    from mmengine.dataset import Compose
    from mmengine.registry import DefaultScope

    steps = cfg.train_dataloader.dataset.pipeline[:2]
    assert [s['type'] for s in steps] == ['LoadImageFromFile',
                                          'LoadAnnotations']
    with DefaultScope.overwrite_default_scope('mmseg'):
        results = Compose(steps)(dict(
            img_path=img, seg_map_path=seg, reduce_zero_label=True,
            seg_fields=[]))
    return results['img'], results['gt_seg_map']


def test_rgb_labels_fail_the_check_as_the_loader_keeps_three_channels(
        ade, config_for):
    ann = os.path.join(ade, 'annotations', 'training', 'ADE_train_{:08d}.png')
    img = os.path.join(ade, 'images', 'training', 'ADE_train_{:08d}.jpg')
    label = np.array(Image.open(ann.format(1)))
    grey = np.stack([label] * 3, axis=-1)  # grey values saved as RGB
    Image.fromarray(grey).save(ann.format(1))
    colour = np.stack([label, label, (label + 1) % 150], axis=-1)
    Image.fromarray(colour.astype(np.uint8)).save(ann.format(2))
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    fix = ('mmseg\'s LoadAnnotations reads it as shape (32, 40, 3), but '
           'labels must be single-channel class ids: save it as '
           'single-channel (mode L or P), e.g. '
           'Image.fromarray(ids.astype(np.uint8)).')
    assert [str(p) for p in check_dataset(cfg, 'train')] == [
        f'label {ann.format(1)} has 3 equal channels (grey values saved as '
        f'RGB); {fix}',
        f'label {ann.format(2)} has 3 different channels (a colour image?); '
        f'{fix}']
    # the loader agrees: three channels where the check complains, one
    # where it does not
    assert [_loaded(cfg, img.format(i), ann.format(i))[1].shape
            for i in (1, 2, 3)] == [(32, 40, 3), (32, 40, 3), (32, 40)]


def test_exif_rotated_jpegs_are_sized_as_the_loader_decodes_them(
        ade, config_for):
    img = os.path.join(ade, 'images', 'training', 'ADE_train_{:08d}.jpg')
    ann = os.path.join(ade, 'annotations', 'training', 'ADE_train_{:08d}.png')
    exif = Image.Exif()
    exif[0x0112] = 6  # shown turned 90 degrees clockwise
    pixels = np.random.default_rng(0).integers(0, 256, (40, 32, 3), np.uint8)
    # stored 32 wide and 40 high, shown 40x32 like its label: no mismatch
    Image.fromarray(pixels).save(img.format(1), exif=exif.tobytes())
    # stored 40x32 like its label, shown 32 wide and 40 high: a mismatch
    Image.fromarray(pixels.transpose(1, 0, 2)).save(img.format(2),
                                                    exif=exif.tobytes())
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    assert [(p.kind, str(p)) for p in check_dataset(cfg, 'train')] == [(
        'size_mismatch',
        f'label {ann.format(2)} is 40x32 (WxH) but its image {img.format(2)} '
        'is 32x40.')]
    shapes = [tuple(a.shape[:2] for a in _loaded(cfg, img.format(i),
                                                   ann.format(i)))
              for i in (1, 2, 3)]
    assert shapes == [((32, 40), (32, 40)), ((40, 32), (32, 40)),
                      ((32, 40), (32, 40))]


def test_oversized_files_are_problems_named_with_the_limit(
        ade, png_bomb, monkeypatch, config_for):
    img = os.path.join(ade, 'images', 'training', 'ADE_train_{:08d}.jpg')
    ann = os.path.join(ade, 'annotations', 'training', 'ADE_train_{:08d}.png')
    png_bomb(Path(img.format(1)))  # a PNG under the .jpg name: still read
    png_bomb(Path(ann.format(2)), 30000, 20000)
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    problems = check_dataset(cfg, 'train')
    assert [(p.kind, p.path) for p in problems] == [
        ('too_large', img.format(1)), ('too_large', ann.format(2))]
    assert str(problems[0]) == (
        f'image {img.format(1)} declares 40000x40000 = 1,600,000,000 pixels, '
        'more than the limit of 89,478,485 pixels (a guard against '
        'decompression bombs); it was not decoded. If the file is trusted, '
        'raise the limit with CONVSEG_MAX_IMAGE_PIXELS=1600000000 in the '
        'environment (and OPENCV_IO_MAX_IMAGE_PIXELS=1600000000, which '
        'OpenCV reads when it starts).')
    assert str(problems[1]).startswith(
        f'image {ann.format(2)} declares 30000x20000 = 600,000,000 pixels, ')
    assert str(problems[1]).endswith('CONVSEG_MAX_IMAGE_PIXELS=600000000 in '
                                     'the environment.')
    # the same answers from worker processes
    assert check_dataset(cfg, 'train', nproc=2) == problems
    # one setting for every reader: lowered below 40x32, it refuses them all
    monkeypatch.setenv('CONVSEG_MAX_IMAGE_PIXELS', '1000')
    assert {p.kind for p in check_dataset(cfg, 'val')} == {'too_large'}


def test_check_dataset_tool_lists_a_bomb_and_goes_on(ade, png_bomb,
                                                     repo_root, run_script):
    img = os.path.join(ade, 'images', 'training', 'ADE_train_{:08d}.jpg')
    ann = os.path.join(ade, 'annotations', 'training', 'ADE_train_{:08d}.png')
    png_bomb(Path(img.format(1)))
    os.remove(ann.format(3))
    config = str(repo_root / 'configs' / 'upernet_convnext_t_ade20k.py')
    done = run_script(
        'tools/check_dataset.py',
        config, '--cfg-options', f'train_dataloader.dataset.data_root={ade}',
        f'val_dataloader.dataset.data_root={ade}', timeout=300)
    assert done.returncode == 1
    assert 'Traceback' not in done.stderr
    assert done.stdout.splitlines() == [
        f'train: too_large: image {img.format(1)} declares 40000x40000 = '
        '1,600,000,000 pixels, more than the limit of 89,478,485 pixels (a '
        'guard against decompression bombs); it was not decoded. If the file '
        'is trusted, raise the limit with CONVSEG_MAX_IMAGE_PIXELS=1600000000 '
        'in the environment (and OPENCV_IO_MAX_IMAGE_PIXELS=1600000000, which '
        'OpenCV reads when it starts).',
        f'train: missing_label: image {img.format(3)} has no label (expected '
        f'{ann.format(3)}).',
        'val: OK']
    assert done.stderr.strip().splitlines()[-1] == '2 problem(s) found'


def test_num_classes_of_heads_against_dataset(ade, config_for):
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    cfg.model.decode_head.num_classes = 19
    problems = check_dataset(cfg, 'val', full=False)
    assert [str(p) for p in problems] == [
        'model.decode_head.num_classes is 19 but the val dataset '
        '(ADE20KDataset) has 150 classes; set '
        'model.decode_head.num_classes=150.']


# ---------------------------------------------------------------------------
# skipping unreadable images in training
# ---------------------------------------------------------------------------

def skipping_pipeline(pipeline: list) -> list:
    """``pipeline`` with its two loaders wrapped in ``SkipUnreadable``."""
    assert [s['type'] for s in pipeline[:2]] == [
        'LoadImageFromFile', 'LoadAnnotations']
    return [dict(type='SkipUnreadable', transforms=pipeline[:2])
            ] + pipeline[2:]


def test_training_skips_unreadable_images_when_asked(ade, config_for):
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS

    img = os.path.join(ade, 'images', 'training', 'ADE_train_00000002.jpg')
    with open(img, 'wb') as f:
        f.write(b'not a jpeg')
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    original = list(cfg.train_dataloader.dataset.pipeline)
    assert [s['type'] for s in original[:3]] == [
        'LoadImageFromFile', 'LoadAnnotations', 'RandomResize']
    with DefaultScope.overwrite_default_scope('mmseg'):
        plain = DATASETS.build(cfg.train_dataloader.dataset)
        with pytest.raises(AssertionError,
                           match=f'failed to load image: {img}'):
            plain[1]
        cfg.train_dataloader.dataset.pipeline = skipping_pipeline(original)
        skipping = DATASETS.build(cfg.train_dataloader.dataset)
        sample = skipping[1]  # another image is drawn instead
    assert sample['data_samples'].img_path != img
    assert os.path.isfile(sample['data_samples'].img_path)


def test_training_skips_oversized_images_by_the_shared_limit(
        ade, png_bomb, monkeypatch, config_for):
    from mmengine.registry import DefaultScope
    from mmseg.registry import DATASETS

    img = os.path.join(ade, 'images', 'training', 'ADE_train_{:08d}.jpg')
    ann = os.path.join(ade, 'annotations', 'training', 'ADE_train_{:08d}.png')
    png_bomb(Path(img.format(2)))
    # a valid 60x40 pair: over a limit of 2000 pixels, the 40x32 ones not
    Image.fromarray(np.zeros((40, 60, 3), np.uint8)).save(img.format(3))
    Image.fromarray(np.ones((40, 60), np.uint8)).save(ann.format(3))
    monkeypatch.setenv('CONVSEG_MAX_IMAGE_PIXELS', '2000')
    cfg = config_for('upernet_convnext_t_ade20k.py', ade)
    cfg.train_dataloader.dataset.pipeline = skipping_pipeline(
        cfg.train_dataloader.dataset.pipeline)
    with DefaultScope.overwrite_default_scope('mmseg'):
        dataset = DATASETS.build(cfg.train_dataloader.dataset)
        drawn = [dataset[i]['data_samples'].img_path for i in range(4)]
    assert drawn[0] == img.format(1) and drawn[3] == img.format(4)
    assert drawn[1] in (img.format(1), img.format(4))
    assert drawn[2] in (img.format(1), img.format(4))
