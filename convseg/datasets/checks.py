"""Dataset checks: the folder layout (cheap) and every file (full).

:func:`check_dataset_layout` runs at the start of ``tools/train.py`` and
``tools/test.py``: a missing or incomplete data root stops the run with the
expected layout, what is missing and where to download the data.
:func:`check_dataset` (``tools/check_dataset.py``) opens every image and
label: pairs without a partner, unreadable or truncated files, size
mismatches, label values that are neither a class id nor the ignore index,
and ``num_classes`` of the model heads against the dataset's classes.

Datasets are resolved through mmseg's own dataset classes (built without
reading files), so suffixes, prefixes, ``reduce_zero_label`` and the class
list are exactly those training would use. Files are decoded as the split's
pipeline decodes them (``mmcv.imfrombytes`` with the ``color_type`` and
``imdecode_backend`` of its ``LoadImageFromFile`` and ``LoadAnnotations``):
images with OpenCV, which turns EXIF-rotated JPEGs upright, labels with
Pillow as stored, so a size or channel problem is reported exactly when
training would meet it. Before decoding, each file's header size is held
against the pixel limit shared by all convseg readers
(:func:`convseg.imageio.max_image_pixels`).

The module is over 400 lines because layout and full checks share the
config resolution above them; splitting would only move private helpers.
"""
from __future__ import annotations

import os
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from collections.abc import Iterable, Iterator, Mapping, Sequence
from typing import Any

import mmcv
import numpy as np
from PIL import Image

from ..errors import ConvsegError
from ..imageio import (ImageTooLargeError, check_image_size,
                       max_image_pixels, pillow_pixel_limit)

SPLITS = {'train': 'train_dataloader', 'val': 'val_dataloader',
          'test': 'test_dataloader'}

ADE20K_HELP = (
    'ADE20K: download ADEChallengeData2016.zip from '
    'http://data.csail.mit.edu/places/ADEchallenge/ADEChallengeData2016.zip '
    'and unzip it; data_root must be the ADEChallengeData2016 folder:\n'
    '    ADEChallengeData2016/images/{training,validation}/*.jpg\n'
    '    ADEChallengeData2016/annotations/{training,validation}/*.png')
CITYSCAPES_HELP = (
    'Cityscapes: download leftImg8bit_trainvaltest.zip and '
    'gtFine_trainvaltest.zip from '
    'https://www.cityscapes-dataset.com/downloads/ '
    '(free registration), unzip both into data_root, then write the training '
    'labels with `python tools/prepare_cityscapes.py DATA_ROOT`:\n'
    '    cityscapes/leftImg8bit/{train,val}/<city>/*_leftImg8bit.png\n'
    '    cityscapes/gtFine/{train,val}/<city>/*_gtFine_labelTrainIds.png')

_MAX_LISTED = 10


@dataclass(frozen=True)
class DatasetProblem:
    """One problem found in a dataset.

    ``kind`` is one of ``missing_root``, ``missing_folder``, ``empty_split``,
    ``missing_ann_file``, ``missing_label``, ``missing_image``,
    ``unreadable``, ``too_large``, ``size_mismatch``, ``label_channels``,
    ``label_values``, ``num_classes``; ``path`` the file, folder or config
    key concerned; ``message`` a sentence naming it and the offending value.
    """

    kind: str
    path: str
    message: str

    def __str__(self) -> str:
        return self.message


class DatasetLayoutError(ConvsegError, FileNotFoundError):
    """The data root is missing or lacks a folder the config needs."""


class DatasetCheckError(ConvsegError, ValueError):
    """A dataset has problems; ``problems`` lists them."""

    def __init__(self, problems: Sequence[DatasetProblem]) -> None:
        self.problems = list(problems)
        lines = [f'  - {p}' for p in self.problems[:50]]
        if len(self.problems) > 50:
            lines.append(f'  ... and {len(self.problems) - 50} more')
        super().__init__(f'{len(self.problems)} dataset problem(s):\n'
                         + '\n'.join(lines))


# --------------------------------------------------------------------------
# resolving the config
# --------------------------------------------------------------------------

@dataclass
class _Split:
    """The settings of one leaf dataset of a split, as training sees them."""

    split: str
    key: str
    dataset: Any
    type_name: str
    data_root: str | None
    img_dir: str | None
    seg_dir: str | None
    img_suffix: str
    seg_suffix: str
    ann_file: str | None
    reduce_zero_label: bool
    label_map: Mapping[int, int] | None
    classes: tuple
    decoding: _Decoding


@dataclass(frozen=True)
class _Decoding:
    """How the split's pipeline decodes its files (``mmcv.imfrombytes``)."""

    color_type: str = 'color'
    img_backend: str = 'cv2'
    seg_backend: str = 'pillow'


def _loading_steps(pipeline: Any) -> Iterator[Mapping]:
    """The pipeline's steps, those wrapped by other steps included."""
    for step in pipeline or []:
        if isinstance(step, Mapping):
            yield step
            yield from _loading_steps(step.get('transforms'))
        elif isinstance(step, (list, tuple)):
            yield from _loading_steps(step)


def _decoding(pipeline: Any) -> _Decoding:
    """The decoding settings of a pipeline's loading transforms."""
    settings = {}
    for step in _loading_steps(pipeline):
        kind = step.get('type')
        name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
        if name == 'LoadImageFromFile':
            settings.update(
                color_type=step.get('color_type', 'color'),
                img_backend=step.get('imdecode_backend', 'cv2'))
        elif name == 'LoadAnnotations':
            settings['seg_backend'] = step.get('imdecode_backend', 'pillow')
    return _Decoding(**settings)


def _leaf_configs(ds_cfg: Any, key: str) -> Iterator[tuple[str, dict]]:
    if not isinstance(ds_cfg, Mapping):
        return
    if 'datasets' in ds_cfg:
        for i, inner in enumerate(ds_cfg['datasets']):
            yield from _leaf_configs(inner, f'{key}.datasets[{i}]')
    elif 'dataset' in ds_cfg:
        yield from _leaf_configs(ds_cfg['dataset'], f'{key}.dataset')
    else:
        yield key, dict(ds_cfg)


def _build_lazily(ds_cfg: dict, key: str) -> Any:
    import mmseg.datasets  # noqa: F401  (registers mmseg's datasets)
    from mmseg.registry import DATASETS

    ds_cfg = dict(ds_cfg, pipeline=[], lazy_init=True, serialize_data=False)
    try:
        return DATASETS.build(ds_cfg)
    except KeyError as err:
        raise ValueError(f'{key}: unknown dataset type {ds_cfg.get("type")!r} '
                         f'({err})') from None


def resolve_split(cfg: Any, split: str) -> list[_Split]:
    """The datasets that the config's loader of ``split`` ('train', 'val'
    or 'test') reads, one per dataset (a concatenation gives several)."""
    if split not in SPLITS:
        raise ValueError(f'unknown split {split!r}; choose one of '
                         f'{", ".join(SPLITS)}')
    loader = cfg.get(SPLITS[split])
    if not loader or 'dataset' not in loader:
        return []
    resolved = []
    for key, ds_cfg in _leaf_configs(loader['dataset'],
                                     f'{SPLITS[split]}.dataset'):
        ds = _build_lazily(ds_cfg, key)
        prefix = getattr(ds, 'data_prefix', {}) or {}
        ann_file = getattr(ds, 'ann_file', '') or ''
        if ann_file and os.path.isdir(ann_file):
            ann_file = ''
        resolved.append(_Split(
            split=split, key=key, dataset=ds, type_name=type(ds).__name__,
            data_root=getattr(ds, 'data_root', None),
            img_dir=prefix.get('img_path'),
            seg_dir=prefix.get('seg_map_path'),
            img_suffix=getattr(ds, 'img_suffix', ''),
            seg_suffix=getattr(ds, 'seg_map_suffix', ''),
            ann_file=ann_file or None,
            reduce_zero_label=bool(getattr(ds, 'reduce_zero_label', False)),
            label_map=getattr(ds, 'label_map', None),
            classes=tuple(ds.metainfo.get('classes') or ()),
            decoding=_decoding(ds_cfg.get('pipeline'))))
    return resolved


def _download_help(info: _Split) -> str:
    from mmseg.datasets import ADE20KDataset, CityscapesDataset

    if isinstance(info.dataset, ADE20KDataset):
        return ADE20K_HELP
    if isinstance(info.dataset, CityscapesDataset):
        return CITYSCAPES_HELP
    return ('Put the data in the layout above or point data_root / '
            'data_prefix at it (--cfg-options '
            f'{info.key}.data_root=/path/to/data).')


def _expected_layout(info: _Split) -> str:
    lines = []
    if info.img_dir:
        lines.append(f'    {info.img_dir}/**/*{info.img_suffix}  (images)')
    if info.seg_dir:
        lines.append(f'    {info.seg_dir}/**/*{info.seg_suffix}  (labels: the '
                     f'image names with {info.seg_suffix!r} for '
                     f'{info.img_suffix!r})')
    if info.ann_file:
        lines.append(f'    {info.ann_file}  (one image name per line)')
    return '\n'.join(lines)


# --------------------------------------------------------------------------
# listing files
# --------------------------------------------------------------------------

def _walk(folder: str, suffix: str) -> Iterator[str]:
    """Files under ``folder`` ending in ``suffix``, relative, sorted."""
    for root, dirs, files in os.walk(folder, followlinks=True):
        dirs.sort()
        for name in sorted(files):
            if name.endswith(suffix):
                yield os.path.relpath(os.path.join(root, name), folder)


def _first_files(folder: str, count: int = 3) -> list[str]:
    found = []
    for root, _, files in os.walk(folder):
        for name in files:
            found.append(os.path.relpath(os.path.join(root, name), folder))
            if len(found) >= count:
                return found
    return found


def _layout_problems(info: _Split) -> list[DatasetProblem]:
    problems = []
    where = f'{info.split} split ({info.key})'
    if info.data_root and not os.path.isdir(info.data_root):
        relative = ('' if os.path.isabs(info.data_root) else
                    f' (relative to {os.getcwd()})')
        return [DatasetProblem(
            'missing_root', info.data_root,
            f'{where}: data root {info.data_root}{relative} does not '
            'exist.')]
    for folder, suffix, what in ((info.img_dir, info.img_suffix, 'image'),
                                 (info.seg_dir, info.seg_suffix, 'label')):
        if not folder:
            continue
        if not os.path.isdir(folder):
            problems.append(DatasetProblem(
                'missing_folder', folder,
                f'{where}: {what} folder {folder} does not exist.'))
            continue
        if info.ann_file is None and next(_walk(folder, suffix), None) is None:
            others = _first_files(folder)
            seen = (f' (it holds e.g. {", ".join(others)})' if others
                    else ' (it is empty)')
            hint = ''
            if what == 'label' and suffix.endswith('_labelTrainIds.png') and \
                    any(f.endswith(('_polygons.json', '_labelIds.png'))
                        for f in _walk(folder, '')):
                hint = (' The gtFine polygons are there but not the '
                        'training labels: run `python '
                        'tools/prepare_cityscapes.py '
                        f'{info.data_root or "DATA_ROOT"}` first.')
            problems.append(DatasetProblem(
                'empty_split', folder,
                f'{where}: no {what} files ending in {suffix!r} under '
                f'{folder}{seen}.{hint}'))
    if info.ann_file and not os.path.isfile(info.ann_file):
        problems.append(DatasetProblem(
            'missing_ann_file', info.ann_file,
            f'{where}: annotation list {info.ann_file} does not exist.'))
    return problems


def _splits_in(cfg: Any, splits: Iterable[str] | None) -> list[str]:
    if splits is None:
        return [s for s, key in SPLITS.items() if cfg.get(key)]
    return list(splits)


def check_dataset_layout(cfg: Any,
                         splits: Iterable[str] | None = None) -> None:
    """Raise :class:`DatasetLayoutError` if a split's folders are missing.

    Cheap: checks that the data root and the image and label folders exist
    and hold at least one file with the configured suffix (no file is read).
    ``splits`` defaults to every split the config has a dataloader for. The
    message names what is missing, the layout the config expects, and where
    to download the data.
    """
    problems: dict[str, list[str]] = {}
    layouts: dict[str, list[str]] = {}
    helps: list[str] = []
    for split in _splits_in(cfg, splits):
        for info in resolve_split(cfg, split):
            found = _layout_problems(info)
            for problem in found:
                # splits sharing a folder (val and test) share a problem
                text = problem.message.split(': ', 1)[1]
                problems.setdefault(text, []).append(info.split)
            if found:
                layouts.setdefault(_expected_layout(info), []).append(
                    f'{info.key} ({info.type_name})')
                help_text = _download_help(info)
                if help_text not in helps:
                    helps.append(help_text)
    if not problems:
        return
    lines = ['the dataset is missing or incomplete:']
    lines += [f'  - {", ".join(who)}: {text}'
              for text, who in problems.items()]
    for layout, keys in layouts.items():
        verb = 'expects' if len(keys) == 1 else 'expect'
        lines.append(f'{" and ".join(keys)} {verb}:\n{layout}')
    raise DatasetLayoutError('\n'.join(lines + helps))


# --------------------------------------------------------------------------
# full checks
# --------------------------------------------------------------------------

def _head_classes(model_cfg: Any) -> list[tuple[str, int]]:
    heads = []
    for name in ('decode_head', 'auxiliary_head'):
        head = model_cfg.get(name) if model_cfg else None
        items = head if isinstance(head, (list, tuple)) else [head]
        for i, item in enumerate(items):
            if isinstance(item, Mapping) and 'num_classes' in item:
                key = f'model.{name}' + (f'[{i}]' if len(items) > 1 else '')
                heads.append((key, int(item['num_classes'])))
    return heads


def _ignore_index(model_cfg: Any) -> int:
    head = (model_cfg or {}).get('decode_head')
    if isinstance(head, (list, tuple)):
        head = head[0] if head else None
    return int(head.get('ignore_index', 255)) if isinstance(head, Mapping) \
        else 255


def _num_classes_problems(cfg: Any, info: _Split) -> list[DatasetProblem]:
    problems = []
    for key, num in _head_classes(cfg.get('model')):
        if info.classes and num != len(info.classes):
            problems.append(DatasetProblem(
                'num_classes', f'{key}.num_classes',
                f'{key}.num_classes is {num} but the {info.split} dataset '
                f'({info.type_name}) has {len(info.classes)} classes; set '
                f'{key}.num_classes={len(info.classes)}.'))
    return problems


def _pairs(info: _Split) -> tuple[list[tuple[str, str | None]],
                                   list[DatasetProblem]]:
    data_list = info.dataset.load_data_list()
    pairs = [(d['img_path'], d.get('seg_map_path')) for d in data_list]
    problems = []
    if info.ann_file is None and info.seg_dir and os.path.isdir(info.seg_dir):
        images = {os.path.normpath(img) for img, _ in pairs}
        for rel in _walk(info.seg_dir, info.seg_suffix):
            img = os.path.join(info.img_dir or '',
                               rel[:len(rel) - len(info.seg_suffix)]
                               + info.img_suffix)
            if os.path.normpath(img) not in images:
                problems.append(DatasetProblem(
                    'missing_image', os.path.join(info.seg_dir, rel),
                    f'label {os.path.join(info.seg_dir, rel)} has no image '
                    f'(expected {img}).'))
    return pairs, problems


def _decode(path: str, flag: str, backend: str,
            limit: int) -> tuple[np.ndarray | None, str | None]:
    """``path`` decoded as the pipeline decodes it, or why it cannot be.

    The header size is checked first; Pillow also decodes the whole file,
    since OpenCV fills a truncated image in instead of failing.
    """
    try:
        check_image_size(path, limit)
        with pillow_pixel_limit(limit), Image.open(path) as image:
            image.load()
        with open(path, 'rb') as f:
            with pillow_pixel_limit(limit):
                array = mmcv.imfrombytes(f.read(), flag=flag, backend=backend)
    except ImageTooLargeError:
        raise
    except (OSError, SyntaxError, ValueError) as err:
        return None, f'{type(err).__name__}: {err}'
    if array is None:
        return None, f'{backend} cannot decode it'
    return array, None


@dataclass(frozen=True)
class _LabelRule:
    num_classes: int
    ignore_index: int
    reduce_zero_label: bool
    label_map: tuple | None

    def describe(self) -> str:
        if self.reduce_zero_label:
            return (f'neither a class id (1..{self.num_classes}, shifted down '
                    'by reduce_zero_label) nor ignored (0 and 255)')
        return (f'neither a class id (0..{self.num_classes - 1}) nor the '
                f'ignore index {self.ignore_index}')

    def bad_values(self, values: np.ndarray) -> list[int]:
        """Raw label values that training would not accept."""
        raw = values.astype(np.int64)
        mapped = raw.copy()
        if self.reduce_zero_label:
            mapped = np.where(raw == 0, 255, raw - 1)
            mapped = np.where(raw == 255, 255, mapped)
        if self.label_map:
            before = mapped.copy()
            for old, new in self.label_map:
                mapped[before == old] = new
        ok = ((mapped >= 0) & (mapped < self.num_classes)) | (
            mapped == self.ignore_index)
        if self.reduce_zero_label:
            ok |= mapped == 255
        ok &= raw <= 255  # mmseg reads labels as uint8
        return [int(v) for v in raw[~ok]]


def _check_pair(img: str, seg: str | None, rule: _LabelRule,
                decoding: _Decoding, limit: int) -> list[DatasetProblem]:
    problems = []
    if not os.path.isfile(img):
        return [DatasetProblem('unreadable', img, f'image {img} does not '
                               'exist.')]
    try:
        image, err = _decode(img, decoding.color_type, decoding.img_backend,
                             limit)
    except ImageTooLargeError as too_large:
        image, err = None, None
        problems.append(DatasetProblem('too_large', img, str(too_large)))
    if err:
        problems.append(DatasetProblem(
            'unreadable', img, f'image {img} is unreadable or truncated '
            f'({err}).'))
    if seg is None:
        return problems
    if not os.path.isfile(seg):
        return problems + [DatasetProblem(
            'missing_label', seg, f'image {img} has no label (expected '
            f'{seg}).')]
    try:
        label, err = _decode(seg, 'unchanged', decoding.seg_backend, limit)
    except ImageTooLargeError as too_large:
        return problems + [DatasetProblem('too_large', seg, str(too_large))]
    if err:
        return problems + [DatasetProblem(
            'unreadable', seg, f'label {seg} is unreadable or truncated '
            f'({err}).')]
    # mmseg's LoadAnnotations keeps what it decodes, squeezed: anything but
    # one channel stays (H, W, C) and breaks the losses and metrics
    label = label.squeeze()
    if label.ndim == 3:
        same = all(np.array_equal(label[..., 0], label[..., c])
                   for c in range(1, label.shape[2]))
        what = ('equal channels (grey values saved as RGB)' if same else
                'different channels (a colour image?)')
        return problems + [DatasetProblem(
            'label_channels', seg,
            f'label {seg} has {label.shape[2]} {what}; mmseg\'s '
            f'LoadAnnotations reads it as shape {label.shape}, but labels '
            'must be single-channel class ids: save it as single-channel '
            '(mode L or P), e.g. Image.fromarray(ids.astype(np.uint8)).')]
    if image is not None and image.shape[:2] != label.shape[:2]:
        problems.append(DatasetProblem(
            'size_mismatch', seg,
            f'label {seg} is {label.shape[1]}x{label.shape[0]} (WxH) but its '
            f'image {img} is {image.shape[1]}x{image.shape[0]}.'))
    bad = sorted(set(rule.bad_values(np.unique(label))))
    if bad:
        shown = ', '.join(map(str, bad[:_MAX_LISTED]))
        more = f' (+{len(bad) - _MAX_LISTED} more)' if len(bad) > _MAX_LISTED \
            else ''
        problems.append(DatasetProblem(
            'label_values', seg,
            f'label {seg} has values {shown}{more} that are '
            f'{rule.describe()}.'))
    return problems


def _check_pair_args(args: tuple) -> list[DatasetProblem]:
    return _check_pair(*args)


def check_dataset(cfg: Any, split: str = 'train', full: bool = True,
                  nproc: int = 1) -> list[DatasetProblem]:
    """Problems of one split of the config's dataset (empty list: all good).

    Always: the layout (see :func:`check_dataset_layout`) and ``num_classes``
    of the model heads against the dataset's classes. With ``full``: every
    image has a label and every label an image, each file decodes completely,
    sizes agree as the pipeline decodes the files, labels have one channel,
    no file declares more pixels than the shared limit, and label values are
    class ids or the ignore index (after ``reduce_zero_label`` and
    ``label_map``). ``nproc`` processes read files.
    """
    problems: list[DatasetProblem] = []
    limit = max_image_pixels()
    for info in resolve_split(cfg, split):
        layout = _layout_problems(info)
        problems += layout + _num_classes_problems(cfg, info)
        if layout or not full:
            continue
        pairs, unpaired = _pairs(info)
        problems += unpaired
        if not pairs:
            problems.append(DatasetProblem(
                'empty_split', info.img_dir or info.key,
                f'{info.split} split ({info.key}): no images found.'))
            continue
        label_map = tuple(sorted(info.label_map.items())) \
            if info.label_map else None
        rule = _LabelRule(len(info.classes), _ignore_index(cfg.get('model')),
                          info.reduce_zero_label, label_map)
        jobs = [(img, seg, rule, info.decoding, limit) for img, seg in pairs]
        if nproc > 1:
            with ProcessPoolExecutor(nproc) as pool:
                results = list(pool.map(_check_pair_args, jobs,
                                        chunksize=16))
        else:
            results = [_check_pair(*job) for job in jobs]
        for found in results:
            problems += found
    return problems
