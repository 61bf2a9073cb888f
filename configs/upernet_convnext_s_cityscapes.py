# UPerNet + ConvNeXt-S (ImageNet-1K weights) on Cityscapes; the recipe of
# upernet_convnext_t_cityscapes.py with ConvNeXt-S's settings from ADE20K.
_base_ = ['./upernet_convnext_t_cityscapes.py']
model = dict(
    backbone=dict(
        arch='small',
        drop_path_rate=0.3,
        init_cfg=dict(checkpoint='https://dl.fbaipublicfiles.com/convnext/'
                      'convnext_small_1k_224.pth')))
optim_wrapper = dict(paramwise_cfg=dict(num_layers=12))
