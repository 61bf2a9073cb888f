"""The top-down half of mmseg's UPerHead, shared by convseg's UPerHead
subclasses, which differ only in how they fuse the levels afterwards."""
from __future__ import annotations

import torch
from mmseg.models.decode_heads import UPerHead
from mmseg.models.utils import resize


def top_down_laterals(head: UPerHead,
                      inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """``head``'s lateral maps, finest first, the pooling module's last:
    each coarser map resized and added into the next finer one, as
    ``UPerHead._forward_feature`` does before its FPN convs."""
    inputs = head._transform_inputs(inputs)
    laterals = [conv(inputs[i]) for i, conv in enumerate(head.lateral_convs)]
    laterals.append(head.psp_forward(inputs))
    for i in range(len(laterals) - 1, 0, -1):
        laterals[i - 1] = laterals[i - 1] + resize(
            laterals[i], size=laterals[i - 1].shape[2:], mode='bilinear',
            align_corners=head.align_corners)
    return laterals
