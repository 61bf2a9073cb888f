# UPerNet + ConvNeXt-B (ImageNet-22K weights) on ADE20K, 640x640 crops, 160k
# iterations at batch 16 (8 GPUs x 2 images), AMP, sliding-window test.
# Published: 52.6 mIoU (53.1 multi-scale + flip), 122M parameters,
# 1828 GFLOPs.
_base_ = [
    './_base_/models/upernet_convnext.py',
    './_base_/datasets/ade20k_640x640.py', './_base_/default_runtime.py',
    './_base_/schedules/schedule_160k.py',
    './_base_/optimizers/adamw_layer_decay.py'
]
crop_size = (640, 640)
model = dict(
    data_preprocessor=dict(size=crop_size),
    backbone=dict(
        arch='base',
        init_cfg=dict(checkpoint='https://dl.fbaipublicfiles.com/convnext/'
                      'convnext_base_22k_224.pth')),
    decode_head=dict(in_channels=[128, 256, 512, 1024]),
    auxiliary_head=dict(in_channels=512),
    test_cfg=dict(crop_size=crop_size, stride=(426, 426)))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
