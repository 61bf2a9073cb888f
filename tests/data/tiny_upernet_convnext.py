# The tiny UPerNet-ConvNeXt the tests build: the project's model config with
# one block per stage, 8-64 channels, slim heads and no pretrained weights.
# Tests inherit from this file and override what they need (crop size,
# test mode, norm layers, classes).
_base_ = ['../../configs/_base_/models/upernet_convnext.py']
model = dict(
    backbone=dict(arch=None, depths=(1, 1, 1, 1), dims=(8, 16, 32, 64),
                  drop_path_rate=0.0, init_cfg=None),
    decode_head=dict(in_channels=[8, 16, 32, 64], channels=16),
    auxiliary_head=dict(in_channels=32, channels=8))
