"""Old home of ``ProgressBarHook``, kept for one release: it lives in
:mod:`convseg.engine.hooks.progress_bar` now, and reading it from here
warns."""
from __future__ import annotations

from ..deprecation import moved_names

__getattr__ = moved_names(__name__, {
    'ProgressBarHook': 'convseg.engine.hooks.progress_bar'})
