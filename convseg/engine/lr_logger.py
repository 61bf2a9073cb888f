"""Old home of ``LrLoggerHook``, kept for one release: it lives in
:mod:`convseg.engine.hooks.lr_logger` now, and reading it from here warns."""
from __future__ import annotations

from ..deprecation import moved_names

__getattr__ = moved_names(__name__, {
    'LrLoggerHook': 'convseg.engine.hooks.lr_logger',
    'DEFAULT_GROUPS': 'convseg.engine.hooks.lr_logger'})
