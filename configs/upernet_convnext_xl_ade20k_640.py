# UPerNet + ConvNeXt-XL (ImageNet-22K weights) on ADE20K, 640x640 crops, full
# precision, base learning rate 8e-5 as released.
# Published: 53.6 mIoU (54.0 multi-scale + flip), 391M parameters,
# 3335 GFLOPs.
_base_ = ['./upernet_convnext_b_ade20k_640.py']
model = dict(
    backbone=dict(
        arch='xlarge',
        init_cfg=dict(checkpoint='https://dl.fbaipublicfiles.com/convnext/'
                      'convnext_xlarge_22k_224.pth')),
    decode_head=dict(in_channels=[256, 512, 1024, 2048]),
    auxiliary_head=dict(in_channels=1024))
# full precision: the layer-decay AdamW of the base without AMP
optim_wrapper = dict(type='OptimWrapper', optimizer=dict(lr=8e-5))
