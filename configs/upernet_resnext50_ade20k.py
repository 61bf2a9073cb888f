# Baseline: UPerNet + ResNeXt-50 32x4d (ImageNet-1K weights) on ADE20K with
# the ConvNeXt configs' data, heads, crop, batch (8 GPUs x 2), length (160k)
# and sliding-window test, so that only the backbone and its optimizer differ.
# The optimizer is mmseg's UPerNet ResNet-family recipe (SGD lr 0.01,
# momentum 0.9, weight decay 5e-4, poly power 0.9 to 1e-4, full precision):
# the AdamW + layer-decay recipe was tuned for ConvNeXt, and ResNeXt has no
# layer-depth rule for it, while the SGD recipe is the one that ResNe(X)t
# UPerNet results are published with.
_base_ = [
    './_base_/models/upernet_resnext50.py', './_base_/datasets/ade20k.py',
    './_base_/default_runtime.py', './_base_/schedules/schedule_160k.py'
]
crop_size = (512, 512)
model = dict(data_preprocessor=dict(size=crop_size))
optim_wrapper = dict(
    type='OptimWrapper',
    optimizer=dict(type='SGD', lr=0.01, momentum=0.9, weight_decay=0.0005))
param_scheduler = [
    dict(
        type='PolyLR',
        power=0.9,
        eta_min=1e-4,
        by_epoch=False,
        begin=0,
        end=160000)
]
