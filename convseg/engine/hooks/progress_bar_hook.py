"""A progress bar with ETA for validation and testing."""
from __future__ import annotations

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.utils import ProgressBar
from mmseg.registry import HOOKS


@HOOKS.register_module()
class ProgressBarHook(Hook):
    """Draw mmengine's ``ProgressBar`` (done/total, rate, elapsed, ETA) on
    stdout while the validation or test loop runs, on the main process only.

    The count is the batches of the main process's dataloader; in a
    distributed run every process has about as many.
    """

    priority = 'VERY_LOW'

    def __init__(self) -> None:
        self._bar: ProgressBar | None = None

    def _start(self, num_batches: int) -> None:
        if is_main_process():
            self._bar = ProgressBar(num_batches)

    def _advance(self) -> None:
        if self._bar is not None:
            self._bar.update()

    def _finish(self) -> None:
        if self._bar is not None:
            self._bar.file.write('\n')
            self._bar.file.flush()
            self._bar = None

    def before_val_epoch(self, runner) -> None:
        self._start(len(runner.val_dataloader))

    def before_test_epoch(self, runner) -> None:
        self._start(len(runner.test_dataloader))

    def after_val_iter(self, runner, batch_idx: int, data_batch=None,
                       outputs=None) -> None:
        self._advance()

    def after_test_iter(self, runner, batch_idx: int, data_batch=None,
                        outputs=None) -> None:
        self._advance()

    def after_val_epoch(self, runner, metrics=None) -> None:
        self._finish()

    def after_test_epoch(self, runner, metrics=None) -> None:
        self._finish()
