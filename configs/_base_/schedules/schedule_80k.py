# The lr formula of schedule_160k.py (1500 warm-up iterations, poly to 0)
# on mmseg's 80k-iteration schedule, the length of its UPerNet Cityscapes
# recipes (512x1024 crops, batch 8). No ConvNeXt Cityscapes recipe was published: this keeps what is
# specific to ConvNeXt as in the ADE20K release and takes the length, crop
# and batch from the established UPerNet Cityscapes runs. Cityscapes' 2975
# training images at batch 8 make 80k iterations about 215 epochs; ADE20K's
# 160k at batch 16 are about 127 epochs of its 20210 images.
_base_ = ['./schedule_160k.py']
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
        end=80001),
]
train_cfg = dict(max_iters=80000, val_interval=8000)
default_hooks = dict(checkpoint=dict(interval=8000))
