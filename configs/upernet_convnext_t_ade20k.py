# UPerNet + ConvNeXt-T (ImageNet-1K weights) on ADE20K, 512x512 crops, 160k
# iterations at batch 16 (8 GPUs x 2 images), AMP, sliding-window test.
# Published: 46.0 mIoU (46.7 multi-scale + flip), 60M parameters,
# 939 GFLOPs at 2048x512.
_base_ = [
    './_base_/models/upernet_convnext.py', './_base_/datasets/ade20k.py',
    './_base_/default_runtime.py', './_base_/schedules/schedule_160k.py',
    './_base_/optimizers/adamw_layer_decay.py'
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
