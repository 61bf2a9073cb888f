# UPerNet + ConvNeXt-T (ImageNet-1K weights) on Cityscapes, 512x1024 crops,
# 80k iterations at batch 8 (4 GPUs x 2 images), AMP.
# No ConvNeXt Cityscapes recipe was published. The length, crop and batch are
# mmseg's UPerNet Cityscapes recipe (upernet_r50_4xb2-80k_cityscapes-512x1024);
# the ConvNeXt parts (AdamW, layer decay, drop path, layer scale, warm-up and
# poly to 0) are those of the ADE20K release, see schedules/schedule_80k.py.
# Testing slides a window of the training crop size with 2/3 overlap over the
# full 1024x2048 image, as the ADE20K recipe does with its crops.
_base_ = [
    './_base_/models/upernet_convnext.py', './_base_/datasets/cityscapes.py',
    './_base_/default_runtime.py', './_base_/schedules/schedule_80k.py',
    './_base_/optimizers/adamw_layer_decay.py'
]
crop_size = (512, 1024)
model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=19),
    auxiliary_head=dict(num_classes=19),
    test_cfg=dict(crop_size=crop_size, stride=(341, 682)))
