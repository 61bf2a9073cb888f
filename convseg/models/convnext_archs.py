"""The named ConvNeXt variants: depths and widths, as data.

The single source of the variants, shared by the model
(:mod:`convseg.models.convnext`) and the checkpoint loaders, which name the
variant a checkpoint was made for.
"""
from __future__ import annotations

from collections.abc import Sequence

#: depths and stage-0 width of each named variant (widths double per stage).
arch_settings: dict[str, tuple[tuple[int, int, int, int], int]] = {
    'atto': ((2, 2, 6, 2), 40),
    'femto': ((2, 2, 6, 2), 48),
    'pico': ((2, 2, 6, 2), 64),
    'nano': ((2, 2, 8, 2), 80),
    'tiny': ((3, 3, 9, 3), 96),
    'small': ((3, 3, 27, 3), 96),
    'base': ((3, 3, 27, 3), 128),
    'large': ((3, 3, 27, 3), 192),
    'xlarge': ((3, 3, 27, 3), 256),
    'huge': ((3, 3, 27, 3), 352),
}


def arch_dims(arch: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Return ``(depths, dims)`` of a named variant, e.g. ``'tiny'``."""
    if arch not in arch_settings:
        raise ValueError(
            f'Unknown ConvNeXt arch {arch!r}; known archs: '
            f'{", ".join(arch_settings)} (or pass depths and dims).')
    depths, width = arch_settings[arch]
    return tuple(depths), tuple(width * 2**i for i in range(4))


def mmpretrain_arch(
    arch: dict, depths: Sequence[int] | None, dims: Sequence[int] | None
) -> tuple[Sequence[int], Sequence[int]]:
    """``(depths, dims)`` from mmpretrain's ``arch=dict(depths=[...],
    channels=[...])``; ValueError naming convseg's spelling otherwise."""
    if set(arch) != {'depths', 'channels'}:
        raise ValueError(
            f'arch as a dict must have exactly the keys depths and channels '
            f"(mmpretrain's spelling), got {sorted(arch)}; in convseg write "
            f'depths=(...), dims=(...) instead.')
    if depths is not None or dims is not None:
        raise ValueError(
            'arch=dict(depths=..., channels=...) and depths/dims both give '
            'the stage sizes; pass only one of them.')
    return arch['depths'], arch['channels']
