"""Does a whole segmentation checkpoint fit a model? Checked before loading.

mmengine loads checkpoints with ``strict=False`` and only warns about
tensors whose shapes differ, so a checkpoint trained for 150 classes tested
with a 19-class config would run with a random head. These checks turn that
into an error naming both numbers.
"""
from __future__ import annotations

import re
from typing import Any, Mapping

import torch

from convseg.models.checkpoints import (CheckpointMismatchError, check_fits,
                                        extract_state_dict)

_CLASSIFIER = re.compile(r'^((?:decode_head|auxiliary_head)(?:\.\d+)?)'
                         r'\.conv_seg\.weight$')


def _strip_wrapper(state_dict: Mapping[str, Any]) -> dict:
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state_dict.items()}


def check_num_classes(state_dict: Mapping[str, torch.Tensor],
                      model_state: Mapping[str, torch.Tensor],
                      source: str) -> None:
    """Raise if a head's classifier has another number of classes.

    Compares ``<head>.conv_seg.weight`` (shape ``(num_classes, C, 1, 1)``) of
    the decode and auxiliary heads.
    """
    for key, value in state_dict.items():
        found = _CLASSIFIER.match(key)
        if not found or key not in model_state:
            continue
        ckpt_classes = int(value.shape[0])
        model_classes = int(model_state[key].shape[0])
        if ckpt_classes != model_classes:
            head = found.group(1)
            raise CheckpointMismatchError(
                f'checkpoint {source} was trained for {ckpt_classes} classes '
                f'({key} has {ckpt_classes} outputs), but the model\'s {head} '
                f'has num_classes={model_classes}. Set '
                f'model.{head}.num_classes={ckpt_classes} (with the dataset '
                f'the checkpoint was trained on), or start from its backbone '
                f'only: model.backbone.init_cfg=dict(type=\'Pretrained\', '
                f'prefix=\'backbone.\', checkpoint=...).')


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
