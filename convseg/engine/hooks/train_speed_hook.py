"""``TrainSpeedHook``: the config's ``train_speed`` switches
(:mod:`convseg.engine.train_speed`) on the runner's built parts, so that they
work under any tool that builds a runner from the config.

``configs/_base_/default_runtime.py`` lists it in ``custom_hooks``; convseg's
tools/train.py adds it to a config whose own list lacks it.
"""
from __future__ import annotations

import logging

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmengine.optim import OptimWrapper, OptimWrapperDict
from mmseg.registry import HOOKS

from ..train_speed import (compile_backbone, read_switches, to_channels_last,
                           use_bf16, use_fused_adamw)


def _log(message: str) -> None:
    print_log(message, logger='current', level=logging.INFO)


@HOOKS.register_module()
class TrainSpeedHook(Hook):
    """Apply ``runner.cfg.train_speed``: fused AdamW and bf16 autocast on the
    built optimizer and optim wrapper at ``before_run`` (``Runner.train()``
    builds them before any hook runs, and loads a resumed state after), the
    channels-last model and the compiled backbone before the first
    iteration (after a resume)."""

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self.switches: dict = {}

    def before_run(self, runner) -> None:
        """Read and check the switches; in a training run, apply the
        optimizer ones."""
        self.switches = read_switches(runner.cfg)
        optim_wrapper = runner.optim_wrapper
        # test() and val() build no optim wrapper: nothing to train
        if not isinstance(optim_wrapper, OptimWrapper) or isinstance(
                optim_wrapper, OptimWrapperDict):
            return
        device = next(runner.model.parameters()).device.type
        if self.switches['fused_adamw']:
            use_fused_adamw(optim_wrapper.optimizer, device)
        if self.switches['bf16']:
            use_bf16(optim_wrapper, device)

    def before_train(self, runner) -> None:
        """Convert the (unwrapped) model as the switches say."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        if self.switches['channels_last']:
            count = to_channels_last(model, runner.optim_wrapper)
            _log(f'train_speed: channels-last ({count} conv weights)')
        if self.switches['compile_backbone']:
            compile_backbone(model, self.switches['compile_backbone'])
            _log('train_speed: torch.compile (backbone)')
