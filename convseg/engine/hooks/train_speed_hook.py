"""The model-side training speed switches (channels-last, a compiled
backbone), applied before the first iteration. ``apply_train_speed``
(:mod:`convseg.engine.train_speed`) adds this hook when a config turns
them on."""
from __future__ import annotations

import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

from ..train_speed import compile_backbone, to_channels_last


def _log(message: str) -> None:
    print_log(message, logger='current', level=logging.INFO)


@HOOKS.register_module()
class TrainSpeedHook(Hook):
    """Channels-last model and ``torch.compile`` of the backbone for
    training, applied before the first iteration (after a resume)."""

    priority = 'VERY_LOW'

    def __init__(self, channels_last: bool = False,
                 compile_backbone: bool | str | dict = False) -> None:
        self.channels_last = channels_last
        self.compile_backbone = compile_backbone

    def before_train(self, runner) -> None:
        """Convert the (unwrapped) model as the switches say."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if self.channels_last:
            count = to_channels_last(model, runner.optim_wrapper)
            _log(f'train_speed: channels-last ({count} conv weights)')
        if self.compile_backbone:
            compile_backbone(model, self.compile_backbone)
            _log('train_speed: torch.compile (backbone)')
