# UPerNet + ConvNeXt-T (ImageNet-1K weights) on your own data. Copy this file
# next to it (configs/my_data.py), set the values of the first block, check
# the data with `python tools/check_dataset.py configs/my_data.py`, then train.
# Everything else (the number of classes of both heads, the pipelines, the
# data loaders) follows from that block. The layout mmseg expects:
#   DATA_ROOT/img_dir/{train,val}/NAME{img_suffix}
#   DATA_ROOT/ann_dir/{train,val}/NAME{seg_map_suffix}
# Labels are single-channel PNGs of class ids (0, 1, ... in the order of
# `classes`); 255 marks pixels to ignore.
_base_ = [
    './_base_/models/upernet_convnext.py', './_base_/default_runtime.py',
    './_base_/schedules/schedule_160k.py',
    './_base_/optimizers/adamw_layer_decay.py'
]

# ---- your data ---------------------------------------------------------------
data_root = 'data/my_dataset'
# class names, one per label id
classes = ('background', 'foreground')
# one [R, G, B] per class for the drawings, or None for generated colours
palette = None
img_suffix = '.jpg'
seg_map_suffix = '.png'
# True when label 0 means "ignore" (as in ADE20K): ids 1..N are then the
# classes above, and 0 becomes 255
reduce_zero_label = False
# training crop and the (long side, short side) images are resized to
crop_size = (512, 512)
image_scale = (2048, 512)
# ------------------------------------------------------------------------------

num_classes = len(classes)
metainfo = dict(classes=classes)
if palette is not None:
    metainfo = dict(classes=classes, palette=palette)

model = dict(
    data_preprocessor=dict(size=crop_size),
    decode_head=dict(num_classes=num_classes),
    auxiliary_head=dict(num_classes=num_classes),
    test_cfg=dict(crop_size=crop_size,
                  stride=(crop_size[0] * 2 // 3, crop_size[1] * 2 // 3)))

train_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='LoadAnnotations', reduce_zero_label=reduce_zero_label),
    dict(type='RandomResize', scale=image_scale, ratio_range=(0.5, 2.0),
         keep_ratio=True),
    dict(type='RandomCrop', crop_size=crop_size, cat_max_ratio=0.75),
    dict(type='RandomFlip', prob=0.5),
    dict(type='PhotoMetricDistortion'),
    dict(type='PackSegInputs')
]
test_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(type='Resize', scale=image_scale, keep_ratio=True),
    dict(type='LoadAnnotations', reduce_zero_label=reduce_zero_label),
    dict(type='PackSegInputs')
]
# tools/test.py --tta: the image scale times 0.5 .. 1.75, with and without
# a horizontal flip
tta_pipeline = [
    dict(type='LoadImageFromFile'),
    dict(
        type='TestTimeAug',
        transforms=[
            [
                dict(type='Resize',
                     scale=(int(image_scale[0] * r), int(image_scale[1] * r)),
                     keep_ratio=True)
                for r in (0.5, 0.75, 1.0, 1.25, 1.5, 1.75)
            ],
            [
                dict(type='RandomFlip', prob=0., direction='horizontal'),
                dict(type='RandomFlip', prob=1., direction='horizontal')
            ],
            [dict(type='LoadAnnotations',
                  reduce_zero_label=reduce_zero_label)],
            [dict(type='PackSegInputs')]
        ])
]
dataset = dict(
    type='BaseSegDataset',
    data_root=data_root,
    metainfo=metainfo,
    img_suffix=img_suffix,
    seg_map_suffix=seg_map_suffix,
    reduce_zero_label=reduce_zero_label)
train_dataloader = dict(
    batch_size=2,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='InfiniteSampler', shuffle=True),
    dataset=dict(
        dataset,
        data_prefix=dict(img_path='img_dir/train', seg_map_path='ann_dir/train'),
        pipeline=train_pipeline))
val_dataloader = dict(
    batch_size=1,
    num_workers=4,
    persistent_workers=True,
    sampler=dict(type='DefaultSampler', shuffle=False),
    dataset=dict(
        dataset,
        data_prefix=dict(img_path='img_dir/val', seg_map_path='ann_dir/val'),
        pipeline=test_pipeline))
test_dataloader = val_dataloader
val_evaluator = dict(type='PerClassIoUMetric', iou_metrics=['mIoU'])
test_evaluator = val_evaluator
