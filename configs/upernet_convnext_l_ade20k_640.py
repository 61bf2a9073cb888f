# UPerNet + ConvNeXt-L (ImageNet-22K weights) on ADE20K, 640x640 crops,
# trained in full precision as released.
# Published: 53.2 mIoU (53.7 multi-scale + flip), 235M parameters,
# 2458 GFLOPs.
_base_ = ['./upernet_convnext_b_ade20k_640.py']
model = dict(
    backbone=dict(
        arch='large',
        init_cfg=dict(checkpoint='https://dl.fbaipublicfiles.com/convnext/'
                      'convnext_large_22k_224.pth')),
    decode_head=dict(in_channels=[192, 384, 768, 1536]),
    auxiliary_head=dict(in_channels=768))
# full precision: the layer-decay AdamW of the base without AMP
optim_wrapper = dict(type='OptimWrapper')
