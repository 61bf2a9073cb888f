"""What every convseg command-line tool does around its work.

convseg's own errors say what is wrong and what to do, so a tool prints them
as one ``error: ...`` line and exits 1, without a traceback; anything else is
a bug and keeps its traceback. ``--unsafe-load`` (trusted checkpoints only)
is honoured here for every tool.
"""
from __future__ import annotations

import contextlib
import sys
from typing import Any, Callable

from convseg import compat
from convseg.apis.fast import UnsupportedModelError
from convseg.apis.images import ImageReadError
from convseg.datasets.checks import DatasetCheckError, DatasetLayoutError
from convseg.datasets.synthetic import SyntheticDatasetError
from convseg.engine.config_checks import ConfigArgumentError
from convseg.engine.hooks import (CheckpointSaveError, NonFiniteLossError,
                                  NonFiniteWeightsError)
from convseg.engine.launch import LaunchError
from convseg.models.checkpoints import (CheckpointFormatError,
                                        CheckpointMismatchError)

#: errors whose message is the whole story for a user (a missing or taken
#: path is named by the error itself)
USER_ERRORS = (FileNotFoundError, FileExistsError,
               compat.CheckpointDownloadError, compat.UnsafeCheckpointError,
               compat.MissingMmcvOpError, ConfigArgumentError,
               DatasetLayoutError, DatasetCheckError, SyntheticDatasetError,
               LaunchError, CheckpointFormatError, CheckpointMismatchError,
               CheckpointSaveError, NonFiniteLossError, NonFiniteWeightsError,
               UnsupportedModelError, ImageReadError)


def run_tool(main: Callable[..., Any], *args: Any,
             unsafe_load: bool = False) -> int:
    """Call ``main(*args)``; return its exit code, or 1 after a user error.

    ``main`` may return an int exit code or ``None`` (success). With
    ``unsafe_load`` checkpoints load with full pickle inside the call.
    """
    loading = (compat.unsafe_checkpoint_loading() if unsafe_load
               else contextlib.nullcontext())
    try:
        with loading:
            code = main(*args)
    except USER_ERRORS as err:
        print(f'error: {err}', file=sys.stderr)
        return 1
    return 0 if code is None else int(code)
