"""Training that skips unreadable images instead of stopping.

Opt in with ``skip_unreadable_images = True`` in a config (or
``--cfg-options skip_unreadable_images=True``): :func:`apply_skip_unreadable`
wraps the loading transforms of the training pipeline in
:class:`SkipUnreadable`, which logs a warning naming the file and returns
``None``; mmengine's ``BaseDataset`` then draws another sample, as it does
for any transform that returns ``None``. A file whose header declares more
pixels than the limit shared by convseg's readers
(:func:`convseg.imageio.max_image_pixels`) is skipped the same way,
before anything is decoded. Validation and test pipelines are left alone:
every file there must be read.
"""
from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from typing import Any

from mmcv.transforms import BaseTransform, Compose
from mmengine.logging import print_log
from mmseg.registry import TRANSFORMS

from ..imageio import check_image_size

#: the config key that switches skipping on.
OPTION = 'skip_unreadable_images'


@TRANSFORMS.register_module()
class SkipUnreadable(BaseTransform):
    """Run loading ``transforms``; on a read error warn and return ``None``.

    Args:
        transforms: transform configs, typically ``LoadImageFromFile`` and
            ``LoadAnnotations``.
    """

    def __init__(self, transforms: list) -> None:
        self.transforms = Compose(transforms)

    def transform(self, results: dict) -> dict | None:
        """Load, or return ``None`` (skip this sample) if a file is too
        large or fails to load."""
        files = [str(results[k]) for k in ('img_path', 'seg_map_path')
                 if results.get(k)]
        try:
            for path in files:
                if os.path.isfile(path):  # local: the header is cheap
                    check_image_size(path)
            return self.transforms(results)
        except Exception as err:  # decoders raise many types
            print_log(
                f'skipping unreadable sample {", ".join(files)} '
                f'({type(err).__name__}: {err}); {OPTION} is set, so another '
                'sample is drawn instead.', logger='current',
                level=logging.WARNING)
            return None

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.transforms!r})'


def _leaf_datasets(ds_cfg: Any) -> Iterator[Any]:
    if 'datasets' in ds_cfg:
        for inner in ds_cfg['datasets']:
            yield from _leaf_datasets(inner)
    elif 'dataset' in ds_cfg:
        yield from _leaf_datasets(ds_cfg['dataset'])
    else:
        yield ds_cfg


def _is_loader(step: Any) -> bool:
    kind = step.get('type') if hasattr(step, 'get') else None
    name = kind if isinstance(kind, str) else getattr(kind, '__name__', '')
    return name.startswith('Load')


def apply_skip_unreadable(cfg: Any) -> bool:
    """Wrap the training pipeline's loaders if the config opts in.

    Edits ``cfg.train_dataloader.dataset`` (each dataset inside wrappers) in
    place: the leading ``Load*`` transforms become one ``SkipUnreadable``.
    Returns whether the option was set.
    """
    if not cfg.get(OPTION, False):
        return False
    for ds_cfg in _leaf_datasets(cfg.train_dataloader.dataset):
        pipeline = list(ds_cfg.get('pipeline') or [])
        count = 0
        while count < len(pipeline) and _is_loader(pipeline[count]):
            count += 1
        if count:  # an already wrapped pipeline starts with no Load*
            ds_cfg['pipeline'] = [
                dict(type='SkipUnreadable', transforms=pipeline[:count])
            ] + pipeline[count:]
    return True
