"""Does a whole segmentation checkpoint fit a model? Checked before loading.

mmengine loads checkpoints with ``strict=False`` and only warns about
tensors whose shapes differ, so a checkpoint trained for 150 classes tested
with a 19-class config would run with a random head. These checks turn that
into an error naming both numbers.
"""
from __future__ import annotations

from typing import Any, Mapping

import torch

from ..checkpoint_reading import extract_state_dict
from ..models.checkpoint_loading import check_fits, check_num_classes


def _strip_wrapper(state_dict: Mapping[str, Any]) -> dict:
    return {k[len('module.'):] if k.startswith('module.') else k: v
            for k, v in state_dict.items()}


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
