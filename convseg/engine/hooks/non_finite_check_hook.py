"""``NonFiniteCheckHook``: stop on a NaN/inf loss; never save NaN/inf
weights."""
from __future__ import annotations

from typing import Any

import torch
from mmengine.dist import all_reduce, get_world_size
from mmengine.hooks import Hook
from mmseg.registry import HOOKS

from ...errors import ConvsegError
from ..checkpoint_files import last_checkpoint


class NonFiniteLossError(ConvsegError, FloatingPointError):
    """The training loss became NaN or infinite."""


class NonFiniteWeightsError(ConvsegError, FloatingPointError):
    """A checkpoint was about to be saved with NaN or infinite weights."""


def _batch_files(data_batch: Any) -> list[str]:
    """Image and label paths of a batch's data samples."""
    samples = data_batch.get('data_samples', []) if isinstance(
        data_batch, dict) else []
    return [str(sample.get(key)) for sample in samples
            for key in ('img_path', 'seg_map_path')
            if hasattr(sample, 'get') and sample.get(key)]


@HOOKS.register_module()
class NonFiniteCheckHook(Hook):
    """Stop on a NaN/inf loss; never save NaN/inf weights.

    After every training iteration the losses in the step's outputs are
    checked (in a distributed run every rank stops when one rank sees a
    non-finite loss). Before any checkpoint is written its ``state_dict`` is
    checked, so an update that overflowed the weights is never saved.

    Args:
        check_weights: check the state dict before saving (default True).
    """

    priority = 'ABOVE_NORMAL'

    def __init__(self, check_weights: bool = True) -> None:
        self.check_weights = check_weights

    def after_train_iter(self, runner, batch_idx: int, data_batch: Any = None,
                         outputs: dict | None = None) -> None:
        """Raise :class:`NonFiniteLossError` on a NaN or infinite loss."""
        bad = {}
        for name, value in (outputs or {}).items():
            if 'loss' not in name:
                continue
            value = torch.as_tensor(value).detach()
            if not bool(torch.isfinite(value).all()):
                bad[name] = value.float().mean().item()
        flag = torch.tensor(float(bool(bad)))
        if get_world_size() > 1:
            all_reduce(flag, op='max')
        if not flag.item():
            return
        iteration = runner.iter + 1
        if bad:
            losses = ', '.join(f'{k}={v}' for k, v in bad.items())
            files = _batch_files(data_batch)
            listed = ', '.join(files) if files else 'unknown'
            raise NonFiniteLossError(
                f'non-finite loss at iteration {iteration}: {losses}. The '
                f'batch held these files: {listed}. Training stopped; no '
                f'checkpoint of this iteration was written and the last '
                f'checkpoint is {last_checkpoint(runner)}. Check these '
                'files (tools/check_dataset.py), lower the learning rate or '
                'clip gradients (optim_wrapper.clip_grad).')
        raise NonFiniteLossError(
            f'another rank saw a non-finite loss at iteration {iteration}; '
            'training stopped on every rank (its log names the images).')

    def before_save_checkpoint(self, runner, checkpoint: dict) -> None:
        """Raise :class:`NonFiniteWeightsError` instead of saving NaN/inf."""
        if not self.check_weights:
            return
        for name, value in (checkpoint.get('state_dict') or {}).items():
            if not (torch.is_tensor(value) and value.is_floating_point()):
                continue
            finite = torch.isfinite(value)
            if not bool(finite.all()):
                count = int((~finite).sum())
                raise NonFiniteWeightsError(
                    f'refusing to save a checkpoint at iteration '
                    f'{runner.iter + 1}: weight {name} holds {count} '
                    f'non-finite value(s) of {value.numel()}. The last '
                    f'checkpoint, {last_checkpoint(runner)}, is kept. The '
                    'optimizer step overflowed: lower the learning rate or '
                    'clip gradients (optim_wrapper.clip_grad).')
