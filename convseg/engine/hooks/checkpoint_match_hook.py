"""``CheckpointMatchHook``: does a checkpoint fit the model? Checked, and
mapped, before loading.

mmengine loads checkpoints with ``strict=False`` and only warns about
tensors whose shapes differ, so a checkpoint trained for 150 classes tested
with a 19-class config would run with a random head. These checks turn that
into an error naming both numbers. A whole segmentation checkpoint whose
backbone uses another family's key names (OpenMMLab's, timm's...) is mapped
to convseg's names first; a backbone-only checkpoint is refused with the way
to start from it.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ...checkpoint_reading import extract_state_dict
from ...errors import CheckpointFormatError
from ...models.checkpoint_loading import check_fits, check_num_classes
from ...models.convnext_keymaps import (FAMILIES, convert, detect_family,
                                        is_segmentor_state_dict)


def _strip_wrapper(state_dict: Mapping[str, Any]) -> dict:
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state_dict.items()}


def _family(state_dict: Mapping[str, Any]) -> str | None:
    try:
        return detect_family(state_dict)
    except CheckpointFormatError:
        return None


def map_checkpoint_to_model(model: torch.nn.Module,
                            checkpoint: dict[str, Any],
                            source: str = 'being loaded') -> None:
    """Give ``checkpoint`` convseg's key names in place, for ``model``.

    Only for a model with a convseg ConvNeXt backbone. A whole segmentation
    checkpoint of another family gets its ``backbone.*`` keys mapped
    (``checkpoint['state_dict']`` is replaced). A ConvNeXt checkpoint without
    heads raises :class:`CheckpointFormatError` naming its family and how to
    start from it. Anything else is left as it is.
    """
    if not any(k.startswith('backbone.stages.')
               and k.endswith('.dwconv.weight') for k in model.state_dict()):
        return
    state_dict = _strip_wrapper(extract_state_dict(checkpoint, str(source)))
    family = _family(state_dict)
    if family is None:
        return
    if not is_segmentor_state_dict(state_dict):
        raise CheckpointFormatError(
            f'checkpoint {source} holds a ConvNeXt backbone of the {family} '
            f'family (keys like {FAMILIES[family].layout}) and no '
            'segmentation heads, so it cannot be loaded as a whole model '
            "(load_from). Start from it through the backbone instead: "
            "model.backbone.init_cfg=dict(type='Pretrained', checkpoint="
            f"'{source}') with load_from=None; tools/convert_checkpoint.py "
            f'(--from {family}) writes it with convseg\'s key names.')
    if family == 'facebook':
        return
    result = convert(state_dict, family, str(source))
    checkpoint['state_dict'] = result.state_dict
    print_log(
        f'checkpoint {source}: mapped {len(result.sources)} keys from the '
        f'{family} family to convseg\'s names before loading.',
        logger='current', level=logging.INFO)


def check_checkpoint_matches_model(model: torch.nn.Module,
                                   checkpoint: Mapping[str, Any],
                                   source: str = 'being loaded') -> None:
    """Raise ``CheckpointMismatchError`` unless ``checkpoint`` fits ``model``.

    ``checkpoint`` is a loaded checkpoint (mmengine's dict with
    ``state_dict``, or a plain state dict). Checks, in this order: the number
    of classes of each head, the backbone arch (depths, dims, GRN, layer
    scale), then the shape of every tensor both have.
    """
    state_dict = _strip_wrapper(extract_state_dict(checkpoint, str(source)))
    model_state = model.state_dict()
    check_num_classes(state_dict, model_state, source)
    check_fits(state_dict, model_state, {}, source, prefix='backbone.')


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if is_model_wrapper(model) else model


@HOOKS.register_module()
class CheckpointMatchHook(Hook):
    """Refuse a checkpoint that does not fit the model before loading it.

    Runs on every checkpoint a runner loads (``load_from``, ``--resume``).
    A whole segmentation checkpoint whose backbone has another family's key
    names (OpenMMLab, timm, HuggingFace) is first mapped to convseg's names;
    a ConvNeXt checkpoint without heads is refused with the way to start
    from it. Then a head with another number of classes or a backbone of
    another arch raises ``CheckpointMismatchError`` naming both values,
    where mmengine alone would only warn and go on with random weights.
    """

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Map ``checkpoint``'s keys, then compare it with the model."""
        source = str(runner.cfg.get('load_from') or 'being loaded')
        model = _unwrap(runner.model)
        map_checkpoint_to_model(model, checkpoint, source)
        check_checkpoint_matches_model(model, checkpoint, source)
