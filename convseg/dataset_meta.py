"""Class names and palette of a segmentor, from its config or checkpoint.

:func:`test_dataset_cfg` finds the innermost test dataset of a config (through
wrappers such as ``ConcatDataset`` and ``RepeatDataset``);
:func:`config_dataset_meta` reads that dataset's ``METAINFO`` and ``metainfo``;
:func:`resolve_dataset_meta` picks classes and palette for a model's number of
classes from the first source that has them, with generated fallbacks.
"""
from __future__ import annotations

import logging
from typing import Any

from mmengine.config import Config
from mmengine.logging import print_log

from .visualization import random_palette


def test_dataset_cfg(cfg: Config) -> dict | None:
    """The config's innermost test dataset dict (None if it has none)."""
    dataset = (cfg.get('test_dataloader') or {}).get('dataset')
    while isinstance(dataset, dict) and 'type' in dataset:
        if 'datasets' in dataset:
            dataset = dataset['datasets'][0]
        elif 'dataset' in dataset:
            dataset = dataset['dataset']
        else:
            return dataset
    return None


def config_dataset_meta(cfg: Config) -> dict[str, Any]:
    """Classes and palette of the test dataset in ``cfg`` ({} if none).

    The dataset class's ``METAINFO`` updated by the config's ``metainfo``.
    """
    from mmseg.registry import DATASETS
    dataset = test_dataset_cfg(cfg)
    if dataset is None:
        return {}
    kind = dataset['type']
    dataset_cls = DATASETS.get(kind) if isinstance(kind, str) else kind
    meta = dict(getattr(dataset_cls, 'METAINFO', {}) or {})
    meta.update(dataset.get('metainfo') or {})
    return meta


def resolve_dataset_meta(num_classes: int,
                         *sources: dict[str, Any] | None
                         ) -> dict[str, Any]:
    """Class names and palette for ``num_classes`` classes.

    Each of ``classes`` and ``palette`` comes from the first source holding
    ``num_classes`` entries of it; failing that, names are ``class i`` and
    colours :func:`convseg.visualization.random_palette`.
    """
    classes = palette = None
    for source in sources:
        source = source or {}
        found = source.get('classes')
        if classes is None and found is not None:
            if len(found) == num_classes:
                classes = tuple(str(name) for name in found)
            else:
                print_log(f'ignoring {len(found)} class names that do not '
                          f'match the model\'s {num_classes} classes',
                          logger='current', level=logging.WARNING)
        found = source.get('palette')
        if palette is None and found is not None and len(found) >= num_classes:
            palette = [tuple(int(c) for c in color)
                       for color in found][:num_classes]
    if classes is None:
        print_log('no class names in the checkpoint or the config; using '
                  '"class 0", "class 1", ...', logger='current',
                  level=logging.WARNING)
        classes = tuple(f'class {i}' for i in range(num_classes))
    if palette is None:
        palette = random_palette(num_classes)
    return dict(classes=classes, palette=palette)
