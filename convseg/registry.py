"""Where convseg's parts register: a map for readers, checked by a test.

convseg has no registries of its own. ``import convseg`` adds its parts to
mmseg's registries (which are children of mmengine's), so configs name them
by type like any mmseg part:

=============================  =============================================
mmseg registry                 convseg's parts (module)
=============================  =============================================
``MODELS``                     ``ConvNeXt`` (:mod:`convseg.models.convnext`),
                               ``PixelShuffleUPerHead``
                               (:mod:`convseg.models.pixel_shuffle_head`),
                               ``PointwiseFuseUPerHead``
                               (:mod:`convseg.models.pointwise_fuse_head`)
``OPTIM_WRAPPER_CONSTRUCTORS`` ``LayerDecayOptimWrapperConstructor``
                               (:mod:`convseg.engine.layer_decay`)
``OPTIM_WRAPPERS``             ``CPUAutocastOptimWrapper``
                               (:mod:`convseg.engine.cpu_autocast`)
``HOOKS``                      one hook per module of
                               :mod:`convseg.engine.hooks`
``METRICS``                    ``PerClassIoUMetric``
                               (:mod:`convseg.evaluation.metric`)
``DATASETS``                   ``SyntheticScenesDataset``
                               (:mod:`convseg.datasets.synthetic`)
``TRANSFORMS``                 ``SkipUnreadable``, ``CachedLoad``
                               (:mod:`convseg.datasets.skip_unreadable`,
                               :mod:`convseg.datasets.cached_load`)
=============================  =============================================

Outside mmseg's registries, ``import convseg`` also registers:

- the mmengine file backend ``'atomic_local'`` (atomic writes for checkpoint
  files, :mod:`convseg.engine.checkpoint_files`);
- mmengine ``CheckpointLoader`` schemes for local paths and ``http(s)://``
  (weights-only loading, :mod:`convseg.compat`);
- on mmcv-lite, stand-ins for mmcv's compiled ops in mmengine's ``MODELS``
  under full mmcv's type names (:data:`convseg.compat.MMCV_OP_TYPES`).
"""
from __future__ import annotations

#: registry name in ``mmseg.registry`` -> the types convseg registers there.
REGISTERED: dict[str, tuple[str, ...]] = {
    'MODELS': ('ConvNeXt', 'CheckpointedUPerHead', 'PixelShuffleUPerHead',
               'PointwiseFuseUPerHead'),
    'OPTIM_WRAPPER_CONSTRUCTORS': ('LayerDecayOptimWrapperConstructor', ),
    'OPTIM_WRAPPERS': ('CPUAutocastOptimWrapper', ),
    'HOOKS': ('AtomicCheckpointHook', 'RandomStateHook', 'NonFiniteCheckHook',
              'CheckpointMatchHook', 'FastInferenceHook', 'LrLoggerHook',
              'ProgressBarHook', 'TrainSpeedHook'),
    'METRICS': ('PerClassIoUMetric', ),
    'DATASETS': ('SyntheticScenesDataset', ),
    'TRANSFORMS': ('SkipUnreadable', 'CachedLoad'),
}

#: mmengine file backends (``mmengine.fileio.register_backend``).
FILE_BACKENDS: tuple[str, ...] = ('atomic_local', )

#: mmengine ``CheckpointLoader`` schemes, replaced by convseg's loaders.
CHECKPOINT_SCHEMES: tuple[str, ...] = ('', 'http://', 'https://')
