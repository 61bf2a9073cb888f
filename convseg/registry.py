"""Where convseg's parts register: a map for readers, checked by a test.

convseg has no registries of its own. ``import convseg`` adds its parts to
mmseg's registries (which are children of mmengine's), so configs name them
by type like any mmseg part:

=============================  =============================================
mmseg registry                 convseg's parts (module)
=============================  =============================================
``MODELS``                     ``ConvNeXt`` (:mod:`convseg.models.convnext`),
                               ``PixelShuffleUPerHead``
                               (:mod:`convseg.models.pixel_shuffle_head`)
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
``TRANSFORMS``                 ``SkipUnreadable``
                               (:mod:`convseg.datasets.skip_unreadable`)
=============================  =============================================

On mmcv-lite, :mod:`convseg.compat` also puts stand-ins for mmcv's compiled
ops in ``MODELS`` under full mmcv's type names.
"""
from __future__ import annotations

#: registry name in ``mmseg.registry`` -> the types convseg registers there.
REGISTERED: dict[str, tuple[str, ...]] = {
    'MODELS': ('ConvNeXt', 'PixelShuffleUPerHead'),
    'OPTIM_WRAPPER_CONSTRUCTORS': ('LayerDecayOptimWrapperConstructor', ),
    'OPTIM_WRAPPERS': ('CPUAutocastOptimWrapper', ),
    'HOOKS': ('AtomicCheckpointHook', 'RandomStateHook', 'NonFiniteCheckHook',
              'CheckpointMatchHook', 'LrLoggerHook', 'ProgressBarHook',
              'TrainSpeedHook'),
    'METRICS': ('PerClassIoUMetric', ),
    'DATASETS': ('SyntheticScenesDataset', ),
    'TRANSFORMS': ('SkipUnreadable', ),
}
