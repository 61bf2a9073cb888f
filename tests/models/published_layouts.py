"""ConvNeXt checkpoint layouts as the Facebook, OpenMMLab and timm families
publish them, written out here (not produced by convseg's mapping): each
published key is paired with the convseg tensor it must land in, the
checkpoint gets distinct values per tensor, and :func:`assert_landed` checks
that every value arrived where it should."""
from __future__ import annotations

import torch

from convseg.models.convnext import ConvNeXt

DEPTHS = (2, 1, 2, 1)
DIMS = (8, 16, 32, 64)
Pair = tuple[str, torch.Tensor, tuple[int, ...]]


def small_backbone(**kwargs) -> ConvNeXt:
    kwargs.setdefault('depths', DEPTHS)
    kwargs.setdefault('dims', DIMS)
    return ConvNeXt(**kwargs)


# Each function pairs the key names of one published layout with the convseg
# tensor the key must load into, and the shape the family stores it in.

def facebook_pairs(bb: ConvNeXt, v2: bool) -> list[Pair]:
    """Official ConvNeXt / ConvNeXt-V2 (models/convnext.py, convnextv2.py)."""
    pairs: list[Pair] = []
    for i, layer in enumerate(bb.downsample_layers):
        for k in (0, 1):
            for p in ('weight', 'bias'):
                t = getattr(layer[k], p)
                pairs.append((f'downsample_layers.{i}.{k}.{p}', t, t.shape))
    for i, stage in enumerate(bb.stages):
        for j, blk in enumerate(stage):
            for name in ('dwconv', 'norm', 'pwconv1', 'pwconv2'):
                for p in ('weight', 'bias'):
                    t = getattr(getattr(blk, name), p)
                    pairs.append((f'stages.{i}.{j}.{name}.{p}', t, t.shape))
            if v2:
                c = blk.grn.gamma.shape[-1]
                pairs.append((f'stages.{i}.{j}.grn.gamma', blk.grn.gamma,
                              (1, 1, 1, c)))
                pairs.append((f'stages.{i}.{j}.grn.beta', blk.grn.beta,
                              (1, 1, 1, c)))
            else:
                pairs.append((f'stages.{i}.{j}.gamma', blk.gamma,
                              blk.gamma.shape))
    return pairs


def openmmlab_pairs(bb: ConvNeXt, v2: bool, norms=(3, )) -> list[Pair]:
    """mmpretrain's ConvNeXt: models/backbones/convnext.py, under backbone."""
    pairs: list[Pair] = []
    for i, layer in enumerate(bb.downsample_layers):
        for k in (0, 1):
            for p in ('weight', 'bias'):
                t = getattr(layer[k], p)
                pairs.append(
                    (f'backbone.downsample_layers.{i}.{k}.{p}', t, t.shape))
    for i, stage in enumerate(bb.stages):
        for j, blk in enumerate(stage):
            pre = f'backbone.stages.{i}.{j}'
            for mm, ours in (('depthwise_conv', blk.dwconv),
                             ('norm', blk.norm),
                             ('pointwise_conv1', blk.pwconv1),
                             ('pointwise_conv2', blk.pwconv2)):
                for p in ('weight', 'bias'):
                    t = getattr(ours, p)
                    pairs.append((f'{pre}.{mm}.{p}', t, t.shape))
            if v2:
                c = blk.grn.gamma.shape[-1]
                pairs.append((f'{pre}.grn.gamma', blk.grn.gamma, (c, )))
                pairs.append((f'{pre}.grn.beta', blk.grn.beta, (c, )))
            else:
                pairs.append((f'{pre}.gamma', blk.gamma, blk.gamma.shape))
    for i in norms:
        for p in ('weight', 'bias'):
            t = getattr(getattr(bb, f'norm{i}'), p)
            pairs.append((f'backbone.norm{i}.{p}', t, t.shape))
    return pairs


def timm_pairs(bb: ConvNeXt, v2: bool) -> list[Pair]:
    """timm's models/convnext.py (stem, stages.N.downsample, blocks)."""
    pairs: list[Pair] = []
    for k in (0, 1):
        for p in ('weight', 'bias'):
            t = getattr(bb.downsample_layers[0][k], p)
            pairs.append((f'stem.{k}.{p}', t, t.shape))
    for i in (1, 2, 3):
        for k in (0, 1):
            for p in ('weight', 'bias'):
                t = getattr(bb.downsample_layers[i][k], p)
                pairs.append((f'stages.{i}.downsample.{k}.{p}', t, t.shape))
    for i, stage in enumerate(bb.stages):
        for j, blk in enumerate(stage):
            pre = f'stages.{i}.blocks.{j}'
            for tm, ours in (('conv_dw', blk.dwconv), ('norm', blk.norm),
                             ('mlp.fc1', blk.pwconv1),
                             ('mlp.fc2', blk.pwconv2)):
                for p in ('weight', 'bias'):
                    t = getattr(ours, p)
                    pairs.append((f'{pre}.{tm}.{p}', t, t.shape))
            if v2:
                c = blk.grn.gamma.shape[-1]
                pairs.append((f'{pre}.mlp.grn.weight', blk.grn.gamma, (c, )))
                pairs.append((f'{pre}.mlp.grn.bias', blk.grn.beta, (c, )))
            else:
                pairs.append((f'{pre}.gamma', blk.gamma, blk.gamma.shape))
    return pairs


CLASSIFIER_KEYS = {
    # 1K head on V1, 22K head on V2: both are dropped alike.
    'facebook': lambda c, v2: {
        'norm.weight': (c, ), 'norm.bias': (c, ),
        'head.weight': (21841 if v2 else 1000, c),
        'head.bias': (21841 if v2 else 1000, )},
    'openmmlab': lambda c, v2: {'head.fc.weight': (1000, c),
                                'head.fc.bias': (1000, )},
    'timm': lambda c, v2: {'head.norm.weight': (c, ), 'head.norm.bias': (c, ),
                           'head.fc.weight': (1000, c),
                           'head.fc.bias': (1000, )},
}
LAYOUTS = {'facebook': facebook_pairs, 'openmmlab': openmmlab_pairs,
           'timm': timm_pairs}


def distinct(shape, index: int) -> torch.Tensor:
    """A tensor whose values differ from every other tensor's (by index).

    Values stay exact in float32 for up to 256 tensors.
    """
    numel = int(torch.Size(shape).numel())
    assert index < 256
    return (torch.arange(numel, dtype=torch.float32) % 2.0**16 +
            index * 2.0**16).reshape(shape)


def published_state_dict(pairs: list[Pair], classifier: dict[str, tuple]):
    state = {key: distinct(shape, n)
             for n, (key, _, shape) in enumerate(pairs)}
    for n, (key, shape) in enumerate(classifier.items(), start=len(pairs)):
        state[key] = torch.full(shape, -float(n))
    return state


def wrap(family: str, state: dict) -> dict:
    """The container each family's files use."""
    if family == 'facebook':
        return {'model': state}
    if family == 'openmmlab':
        return {'meta': {'mmpretrain_version': '1.2.0'}, 'state_dict': state}
    return state


def assert_landed(pairs: list[Pair], state: dict, bb: ConvNeXt) -> None:
    for key, tensor, _ in pairs:
        assert torch.equal(tensor, state[key].reshape(tensor.shape)), key
    covered = {id(t) for _, t, _ in pairs}
    left = [name for name, t in bb.named_parameters() if id(t) not in covered]
    assert all(name.startswith(('norm0.', 'norm1.', 'norm2.', 'norm3.'))
               for name in left), left
