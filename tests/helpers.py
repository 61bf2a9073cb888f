"""Small helpers several test modules share (imported as ``tests.helpers``
or relatively; fixtures live in the conftest files)."""
from __future__ import annotations

import torch
import torch.nn as nn


def randomize_bn_stats(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every BatchNorm random running statistics, in place, so that
    each of them changes the predictions (fresh ones are 0 and 1: a mistake
    in folding or loading them would not show)."""
    generator = torch.Generator().manual_seed(seed)
    for name, buffer in model.named_buffers():
        if name.endswith('running_mean'):
            buffer.copy_(torch.randn(buffer.shape, generator=generator) * .1)
        elif name.endswith('running_var'):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + .5)
    return model


def openmmlab_names(state: dict) -> dict:
    """convseg's ConvNeXt keys spelled as mmseg's own ConvNeXt spells them."""
    names = {'.dwconv.': '.depthwise_conv.', '.pwconv1.': '.pointwise_conv1.',
             '.pwconv2.': '.pointwise_conv2.'}
    renamed = {}
    for key, value in state.items():
        for ours, theirs in names.items():
            key = key.replace(ours, theirs)
        renamed[key] = value
    return renamed
