"""Log the lr of chosen parameter groups beside mmengine's ``lr``."""
from __future__ import annotations

import logging
from collections.abc import Sequence

from mmengine.hooks import Hook
from mmengine.logging import print_log
from mmengine.model import is_model_wrapper
from mmseg.registry import HOOKS

#: log name -> parameter-name prefixes tried in order; the param group of the
#: first trainable parameter whose name starts with one of them is logged.
#: 'stage1' is the first backbone stage: ConvNeXt's ``stages.0``, ResNet's
#: ``layer1``.
DEFAULT_GROUPS: dict[str, Sequence[str]] = {
    'head_lr': ('decode_head.', ),
    'stage1_lr': ('backbone.stages.0.', 'backbone.layer1.'),
}


@HOOKS.register_module()
class LrLoggerHook(Hook):
    """Put the lr of the heads and of the first backbone stage in the log.

    mmengine logs ``lr``, the rate of the optimizer's first param group only;
    with layer-wise decay every group has its own. This hook adds one scalar
    per entry of ``groups`` (``train/<name>``), which mmengine's log line
    shows beside ``lr``, e.g. ``lr: 1.0e-04 head_lr: 1.0e-04 stage1_lr:
    5.3e-05``.

    Args:
        groups: log name -> parameter-name prefixes (relative to the model,
            e.g. ``'decode_head.'``). Names must end in ``lr``, as mmengine's
            log processor only prints such keys with the learning rates.
            Defaults to :data:`DEFAULT_GROUPS`.
    """

    priority = 'NORMAL'

    def __init__(self,
                 groups: dict[str, Sequence[str]] | None = None) -> None:
        groups = dict(DEFAULT_GROUPS if groups is None else groups)
        for name, prefixes in groups.items():
            if not name.endswith('lr'):
                raise ValueError(
                    f'LrLoggerHook log names must end in "lr" so that the log '
                    f'line shows them with the learning rates; got {name!r}.')
            if isinstance(prefixes, str):
                groups[name] = (prefixes, )
        self.groups = groups
        self._indices: dict[str, int] = {}

    def before_train(self, runner) -> None:
        """Find the param group of each entry of ``groups`` once."""
        model = runner.model.module if is_model_wrapper(
            runner.model) else runner.model
        param_groups = runner.optim_wrapper.optimizer.param_groups
        group_of = {
            id(p): index
            for index, group in enumerate(param_groups)
            for p in group['params']
        }
        named = [(name, p) for name, p in model.named_parameters()
                 if id(p) in group_of]
        self._indices = {}
        for log_name, prefixes in self.groups.items():
            index = next((group_of[id(p)] for prefix in prefixes
                          for name, p in named if name.startswith(prefix)),
                         None)
            if index is None:
                print_log(
                    f'LrLoggerHook: no trainable parameter of the model '
                    f'starts with any of {list(prefixes)}; {log_name} is not '
                    'logged. Set the prefixes with '
                    "custom_hooks=[dict(type='LrLoggerHook', groups=...)].",
                    logger='current', level=logging.WARNING)
                continue
            self._indices[log_name] = index

    def before_train_iter(self, runner, batch_idx: int,
                          data_batch=None) -> None:
        """Record the current lr of each found group."""
        param_groups = runner.optim_wrapper.optimizer.param_groups
        for log_name, index in self._indices.items():
            runner.message_hub.update_scalar(f'train/{log_name}',
                                             param_groups[index]['lr'])
