"""What every convseg command-line tool does around its work.

convseg's own errors (:class:`convseg.errors.ConvsegError`) say what is wrong
and what to do, so a tool prints them as one ``error: ...`` line, with the
remedy's command-line spelling, and exits 1, without a traceback; anything
else is a bug and keeps its traceback. ``--unsafe-load`` (trusted
checkpoints only) is honoured here for every tool.
"""
from __future__ import annotations

import argparse
import contextlib
import os
import os.path as osp
import sys
from collections.abc import Callable
from typing import Any

import torch

from mmengine.config import Config

from convseg.apis import init_model
from convseg.checkpoint_reading import unsafe_checkpoint_loading
from convseg.deploy.backends import BACKENDS
from convseg.errors import ConvsegError

#: errors whose message is the whole story for a user: convseg's own, and a
#: missing or taken path (named by the error itself)
USER_ERRORS = (ConvsegError, FileNotFoundError, FileExistsError)


def run_tool(main: Callable[..., Any], *args: Any,
             unsafe_load: bool = False) -> int:
    """Call ``main(*args)``; return its exit code, or 1 after a user error.

    ``main`` may return an int exit code or ``None`` (success). With
    ``unsafe_load`` checkpoints load with full pickle inside the call.
    """
    loading = (unsafe_checkpoint_loading() if unsafe_load
               else contextlib.nullcontext())
    try:
        with loading:
            code = main(*args)
    except USER_ERRORS as err:
        message = err.for_tools() if isinstance(err, ConvsegError) else err
        print(f'error: {message}', file=sys.stderr)
        return 1
    return 0 if code is None else int(code)


def load_tool_config(config: str, cfg_options: dict | None = None,
                     work_dir: str | None = None,
                     launcher: str = 'none') -> Config:
    """The config a tool runs: the file, ``--cfg-options`` merged in, the
    launcher, and the work dir (``--work-dir``, else the config's, else
    ``./work_dirs/<config name>``), as mmseg's tools set them."""
    cfg = Config.fromfile(config)
    cfg.launcher = launcher
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    if work_dir:
        cfg.work_dir = work_dir
    elif cfg.get('work_dir') is None:
        name = osp.splitext(osp.basename(config))[0]
        cfg.work_dir = osp.join('./work_dirs', name)
    return cfg


def ensure_custom_hook(cfg: Config, hook_type: str) -> None:
    """Append ``dict(type=hook_type)`` to ``cfg.custom_hooks`` unless one of
    that type is there: a tool relies on the hook even where a config
    replaced ``configs/_base_/default_runtime.py``'s list."""
    hooks = list(cfg.get('custom_hooks') or [])
    if not any(hook.get('type') == hook_type for hook in hooks):
        cfg.custom_hooks = hooks + [dict(type=hook_type)]


def add_no_fast_argument(parser: argparse.ArgumentParser) -> None:
    """``--no-fast``: run the model as built instead of the CPU fast path."""
    parser.add_argument(
        '--no-fast', action='store_true',
        help='on CPU, run the model as built instead of through the '
        'inference fast path (convseg.fast.prepare_for_inference)')


def add_precision_argument(parser: argparse.ArgumentParser) -> None:
    """``--precision {fp32,bf16}`` of the inference fast path."""
    parser.add_argument(
        '--precision', choices=['fp32', 'bf16'], default='fp32',
        help='fast path arithmetic: fp32 (default), or bf16 where the CPU '
        '(avx512_bf16 or AMX) or GPU has native bf16; logits stay fp32')


def add_unsafe_load_argument(parser: argparse.ArgumentParser) -> None:
    """``--unsafe-load``: full-pickle loading of trusted checkpoints."""
    parser.add_argument(
        '--unsafe-load', action='store_true',
        help='load checkpoints with full pickle: only for files you trust')


def add_launch_arguments(parser: argparse.ArgumentParser) -> None:
    """What tools/train.py and tools/test.py share: ``--launcher``,
    ``--unsafe-load`` and the ``--local-rank`` that torch.distributed.launch
    passes; :func:`check_launch_arguments` finishes them after parsing."""
    parser.add_argument(
        '--launcher', choices=['none', 'pytorch', 'slurm'], default='none',
        help='how the processes were started')
    add_unsafe_load_argument(parser)
    # torch.distributed.launch passes --local-rank; torchrun sets LOCAL_RANK
    parser.add_argument('--local-rank', '--local_rank', type=int, default=0)


def check_launch_arguments(parser: argparse.ArgumentParser,
                           args: argparse.Namespace) -> None:
    """Export LOCAL_RANK for mmengine and stop on a missing config file."""
    os.environ.setdefault('LOCAL_RANK', str(args.local_rank))
    if not osp.isfile(args.config):
        parser.error(f'config file {args.config} does not exist')


def add_model_arguments(parser: argparse.ArgumentParser) -> None:
    """The demos' model arguments: CONFIG CHECKPOINT [--device] [--no-fast]
    [--precision] [--unsafe-load] [--backend]; :func:`model_from_args`
    builds the model from them."""
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint',
                        help='checkpoint file or URL, or an .onnx file')
    parser.add_argument(
        '--backend', choices=list(BACKENDS),
        help='run the model with PyTorch, onnxruntime or OpenVINO (default: '
        'onnxruntime for an .onnx CHECKPOINT, see tools/export_onnx.py; '
        'openvino for an .xml one, see tools/export_openvino.py)')
    parser.add_argument(
        '--device', default='cuda:0' if torch.cuda.is_available() else 'cpu',
        help='device to run on, e.g. cpu or cuda:0')
    add_no_fast_argument(parser)
    add_precision_argument(parser)
    add_unsafe_load_argument(parser)


def model_from_args(args: argparse.Namespace) -> torch.nn.Module:
    """``init_model`` with the arguments of :func:`add_model_arguments`."""
    return init_model(args.config, args.checkpoint, device=args.device,
                      fast=False if args.no_fast else None,
                      backend=args.backend,
                      precision=args.precision)
