default_scope = 'mmseg'
# stock mmengine/mmseg tooling (Runner.from_cfg, mmseg's tools/train.py, mim)
# imports convseg, which registers its parts (convseg/registry.py); every
# key below works there too (train_speed through TrainSpeedHook)
custom_imports = dict(imports=['convseg'], allow_failed_imports=False)
env_cfg = dict(
    cudnn_benchmark=True,
    mp_cfg=dict(mp_start_method='fork', opencv_num_threads=0),
    dist_cfg=dict(backend='nccl'),
)
vis_backends = [dict(type='LocalVisBackend')]
visualizer = dict(
    type='SegLocalVisualizer', vis_backends=vis_backends, name='visualizer')
log_processor = dict(by_epoch=False)
log_level = 'INFO'
load_from = None
resume = False
# tools/test.py --tta wraps the model in this and uses the dataset's
# tta_pipeline.
tta_model = dict(type='SegTTAModel')
custom_hooks = [
    # the lr of the heads and of the first backbone stage in the train log
    dict(type='LrLoggerHook'),
    # a progress bar with ETA during validation and testing
    dict(type='ProgressBarHook'),
    # crash safety: random states in checkpoints for exact resumes, a stop
    # on NaN/inf losses with no NaN checkpoint, checkpoints checked against
    # the model (classes, arch) before loading
    dict(type='RandomStateHook'),
    dict(type='NonFiniteCheckHook'),
    dict(type='CheckpointMatchHook'),
    # the train_speed switches below, applied to the built optimizer, optim
    # wrapper and model (a config that replaces this list keeps it to keep
    # them; convseg's tools/train.py adds it back)
    dict(type='TrainSpeedHook'),
]
# Training speed switches (convseg.engine.train_speed, applied by
# TrainSpeedHook), off until measured on a GPU: channels-last model,
# fused AdamW, bf16 instead of fp16 autocast where the GPU computes bf16
# natively, torch.compile of the backbone (True, a backend name or a dict of
# torch.compile arguments).
train_speed = dict(
    channels_last=False,
    fused_adamw=False,
    bf16=False,
    compile_backbone=False)
