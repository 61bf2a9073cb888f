"""``FastInferenceHook``: test through convseg's inference fast path.

At ``before_test`` (after the runner has loaded the checkpoint) the segmentor
is prepared with :func:`convseg.fast.prepare_for_inference` and the prepared
model takes its place: as ``runner.model``, or as the ``module`` of the one
wrapper around it (a DDP wrapper or a test-time-augmentation model; with
both, the TTA model inside DDP). ``tools/test.py --fast`` adds this hook;
a config may name it in ``custom_hooks`` too.
"""
from __future__ import annotations

import torch.nn as nn
from mmengine.hooks import Hook
from mmengine.model import BaseTTAModel, is_model_wrapper
from mmseg.registry import HOOKS


@HOOKS.register_module()
class FastInferenceHook(Hook):
    """Run the test loop on the model prepared for fast inference.

    Args:
        precision: 'fp32' (default) or 'bf16', as
            :func:`convseg.fast.prepare_for_inference` takes it.
    """

    # after CheckpointMatchHook (NORMAL), which refuses incomplete weights
    priority = 'LOW'

    def __init__(self, precision: str = 'fp32') -> None:
        self.precision = precision

    def before_test(self, runner) -> None:
        """Prepare the loaded segmentor and put it where it was."""
        # the fast path is the inference front: loaded only when a test uses
        # it, so that `import convseg` stays without it
        from ...fast import prepare_for_inference

        owner: nn.Module | None = None  # what holds the segmentor
        model = runner.model
        if is_model_wrapper(model):
            owner, model = model, model.module
        if isinstance(model, BaseTTAModel):
            owner, model = model, model.module
        fast = prepare_for_inference(model.eval(), precision=self.precision)
        if owner is None:
            runner.model = fast
        else:
            owner.module = fast
