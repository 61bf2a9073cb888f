# UPerNet + ConvNeXt-S (ImageNet-1K weights) on ADE20K, 512x512 crops.
# Published: 48.7 mIoU (49.6 multi-scale + flip), 82M parameters, 1027 GFLOPs.
_base_ = ['./upernet_convnext_t_ade20k.py']
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='https://dl.fbaipublicfiles.com/convnext/'
                      'convnext_small_1k_224.pth')))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
