"""Errors and messages of the inference fast path."""
from __future__ import annotations

from ..errors import ConvsegError

TRAINING_ERROR = (
    'prepare_for_inference() makes an inference-only model, but this model '
    'is in training mode; call model.eval() first, and never prepare a '
    'model that will be trained.')
PREPARED_TRAINING_ERROR = (
    'this model was prepared for inference by '
    'convseg.fast.prepare_for_inference() and cannot train or run in '
    'training mode; build a fresh model to train.')
STALE_WEIGHTS_ERROR = (
    'this model was prepared for inference by '
    'convseg.fast.prepare_for_inference(), which derives its fast '
    'weights from the weights it had then; load weights before preparing '
    '(convseg.apis.init_model does), or build a fresh model.')

EDITED_WEIGHTS_ERROR = (
    '{name} changed after convseg.fast.prepare_for_inference() '
    'derived its fast weights, which are now stale; change weights before '
    'preparing, or prepare the plain model again.')


class UnsupportedModelError(ConvsegError, ValueError):
    """A model or head the fast path has no fast version of."""


class UnknownKernelError(ConvsegError, ValueError):
    """A kernel name the kernel table does not hold (or not for a dtype)."""


class UnsupportedPrecisionError(UnsupportedModelError):
    """A precision the model's hardware does not compute natively."""

    tool_hint = 'With the convseg tools, pass --precision fp32.'
