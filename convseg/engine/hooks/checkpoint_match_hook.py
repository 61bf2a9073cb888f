"""``CheckpointMatchHook``: does a checkpoint fit the model? Checked, and
mapped, before loading.

mmengine loads checkpoints with ``strict=False`` and only warns about
tensors whose shapes differ, so a checkpoint trained for 150 classes tested
with a 19-class config would run with a random head. These checks turn that
into an error naming both numbers. A whole segmentation checkpoint whose
backbone uses another family's key names (OpenMMLab's, timm's...) is mapped
to convseg's names first; a backbone-only checkpoint is refused with the way
to start from it.

For a test run (``Runner.test()``, as ``tools/test.py`` and mmseg's own
tools/test.py run it with ``load_from``) the hook also refuses, before the
first image, a checkpoint that lacks weights of the model, which mmengine's
non-strict loading would leave at their initialisation; for a model without
convseg's ConvNeXt backbone (the ResNeXt baseline), also one with weights the
model lacks, as strict loading would. The checkpoint's classes and palette
become the model's ``dataset_meta``.
"""
from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

import torch
from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmseg.registry import HOOKS

from ...checkpoint_reading import extract_state_dict
from ...errors import CheckpointFormatError
from ...models.checkpoint_loading import (check_complete, check_fits,
                                          check_num_classes,
                                          dataset_meta_from)
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


def has_convnext_backbone(model: torch.nn.Module) -> bool:
    """Whether ``model``'s backbone has convseg's ConvNeXt key names."""
    return any(k.startswith('backbone.stages.') and
               k.endswith('.dwconv.weight') for k in model.state_dict())


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
    if not has_convnext_backbone(model):
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
    """The segmentor inside a DDP wrapper and / or a test-time-augmentation
    model (mmengine loads weights through both the same way)."""
    if is_model_wrapper(model):
        model = model.module
    if isinstance(model, BaseTTAModel):
        model = model.module
    return model


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
    Before a test, a checkpoint that lacks weights of the model (or, for a
    model without convseg's ConvNeXt backbone, has others) raises
    ``CheckpointMismatchError`` too; training may start from a partial
    checkpoint, as mmengine allows.
    """

    def __init__(self) -> None:
        # the last load's key names, source and strictness, for before_test
        self._loaded: tuple[list, list, str, bool] | None = None

    def after_load_checkpoint(self, runner, checkpoint: dict) -> None:
        """Map ``checkpoint``'s keys, compare it with the model, hand
        mmengine the weights under ``state_dict`` and take the checkpoint's
        dataset meta."""
        source = str(runner.cfg.get('load_from') or 'being loaded')
        model = _unwrap(runner.model)
        map_checkpoint_to_model(model, checkpoint, source)
        check_checkpoint_matches_model(model, checkpoint, source)
        # mmengine reads checkpoint['state_dict'] or the checkpoint itself;
        # Facebook's releases keep their weights under 'model'
        state_dict = _strip_wrapper(extract_state_dict(checkpoint, source))
        checkpoint['state_dict'] = state_dict
        dataset_meta = dataset_meta_from(checkpoint.get('meta'))
        if dataset_meta is not None:
            model.dataset_meta = dataset_meta
        self._loaded = (list(state_dict), list(model.state_dict()), source,
                        not has_convnext_backbone(model))

    def before_test(self, runner) -> None:
        """Refuse to test with weights the checkpoint did not have."""
        if self._loaded is not None:
            keys, model_keys, source, strict = self._loaded
            self._loaded = None
            check_complete(keys, model_keys, source, strict=strict)
