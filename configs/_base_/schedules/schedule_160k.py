# The ConvNeXt segmentation schedule: 160k iterations, validation and a
# checkpoint every 16k. The optimizer is in optimizers/adamw_layer_decay.py.
#
# Learning rate: 1500 iterations of linear warm-up starting at 1e-6 times the
# base rate, and a poly decay (power 1) to 0 over all 160k iterations: the
# released mmcv schedule (warmup_ratio=1e-6 scaling the poly rate of the same
# iteration), exactly. At iteration t (0-based)
#   lr(t) = lr * (1 - t / 160000) * w(t),   (lr: the optimizer's, 1e-4)
#   w(t) = 1e-6 + (1 - 1e-6) * t / 1500 for t < 1500, else 1.
# Both schedulers run from iteration 0 and multiply. mmengine's schedulers
# reach their final value at iteration end - 1, hence the ends 1501 and
# 160001.
param_scheduler = [
    dict(
        type='LinearLR', start_factor=1e-6, by_epoch=False, begin=0,
        end=1501),
    dict(
        type='PolyLR',
        power=1.0,
        eta_min=0.0,
        by_epoch=False,
        begin=0,
        end=160001),
]
train_cfg = dict(
    type='IterBasedTrainLoop', max_iters=160000, val_interval=16000)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    # crash-safe checkpoints (convseg.engine.hooks)
    checkpoint=dict(
        type='AtomicCheckpointHook', by_epoch=False, interval=16000),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
