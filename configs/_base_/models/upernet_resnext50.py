# UPerNet on mmseg's ResNeXt-50 (32x4d): the same UPerHead and FCN auxiliary
# head as upernet_convnext.py, so the two backbone families can be compared
# with everything else equal. The backbone uses SyncBN like the heads, as
# mmseg's ResNet-family UPerNet configs do, and starts from the ImageNet-1K
# ResNeXt-50 32x4d weights of OpenMMLab's model zoo
# (open-mmlab://resnext50_32x4d).
_base_ = ['./upernet_convnext.py']
model = dict(
    backbone=dict(
        _delete_=True,
        type='ResNeXt',
        depth=50,
        groups=32,
        base_width=4,
        num_stages=4,
        out_indices=(0, 1, 2, 3),
        norm_cfg=dict(type='SyncBN', requires_grad=True),
        norm_eval=False,
        style='pytorch',
        init_cfg=dict(
            type='Pretrained',
            checkpoint='https://download.openmmlab.com/pretrain/third_party/'
            'resnext50-32x4d-0ab1a123.pth')),
    decode_head=dict(in_channels=[256, 512, 1024, 2048]),
    auxiliary_head=dict(in_channels=1024))
