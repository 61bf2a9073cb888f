"""Training that skips unreadable images instead of stopping.

Opt in in the training pipeline: wrap its loading transforms in
:class:`SkipUnreadable`::

    train_pipeline = [
        dict(type='SkipUnreadable', transforms=[
            dict(type='LoadImageFromFile'),
            dict(type='LoadAnnotations', reduce_zero_label=True)]),
        ...
    ]

A sample whose files fail to load is logged with a warning naming them and
the transform returns ``None``; mmengine's ``BaseDataset`` then draws
another sample, as it does for any transform that returns ``None``. Being
part of the pipeline, it works under every tool that builds the dataset
from the config, in data-loader workers too. A file whose header declares more
pixels than the limit shared by convseg's readers
(:func:`convseg.imageio.max_image_pixels`) is skipped the same way,
before anything is decoded. It belongs in training pipelines only: every
validation and test file must be read.
"""
from __future__ import annotations

import logging
import os

from mmcv.transforms import BaseTransform, Compose
from mmengine.logging import print_log
from mmseg.registry import TRANSFORMS

from ..imageio import check_image_size


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
                f'({type(err).__name__}: {err}); SkipUnreadable is in the '
                'pipeline, so another sample is drawn instead.',
                logger='current', level=logging.WARNING)
            return None

    def __repr__(self) -> str:
        return f'{type(self).__name__}({self.transforms!r})'
