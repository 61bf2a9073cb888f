"""``CheckpointMatchHook``: refuse a checkpoint that does not fit the model
before it is loaded."""
from __future__ import annotations

import torch
from mmengine.hooks import Hook
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ..checkpoint_match import (check_checkpoint_matches_model,
                                map_checkpoint_to_model)


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
