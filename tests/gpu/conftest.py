"""Skip logic of the GPU tests: each says which capability this machine lacks.

A test marked ``@pytest.mark.gpu(bf16=False, nccl=False, gpus=1)`` runs only
where CUDA is available with at least ``gpus`` devices, and, when asked, the
GPU computes bf16 natively (compute capability 8.0 or newer; older GPUs only
emulate it) and torch has NCCL. Otherwise it is skipped with one reason per
missing capability, joined by '; ', so a dry run on a CPU machine lists what
each test needs. ``bash tools/test_gpu.sh`` runs them (``pytest -m gpu``).
"""
from __future__ import annotations

import pytest
import torch
import torch.distributed as dist

from .gpu_helpers import check_ok, scenes_config

#: iterations of the model the inference tests compare on: enough for the
#: quickstart model to segment the scenes (see trained_scenes)
TRAIN_ITERS = 1000

#: the first compute capability with native bf16 (Ampere)
from convseg.hardware import NATIVE_BF16_CAPABILITY


def pytest_report_header(config) -> str:
    """The line ``bash tools/test_gpu.sh`` starts with: torch, CUDA and
    the GPUs this run sees."""
    return (f'[test-gpu] torch {torch.__version__}, CUDA '
            f'{torch.version.cuda}, {torch.cuda.device_count()} GPU(s)')


def missing_cuda() -> str | None:
    """Why CUDA cannot be used here, or None."""
    if torch.version.cuda is None:
        return f'no CUDA: torch {torch.__version__} is a build without CUDA'
    if not torch.cuda.is_available():
        return (f'no CUDA: torch {torch.__version__} (CUDA '
                f'{torch.version.cuda}) sees no GPU')
    return None


def missing_native_bf16() -> str | None:
    """Why device 0 cannot compute bf16 natively, or None."""
    if not torch.cuda.is_available():
        return 'no native bf16: no GPU to run it on'
    capability = torch.cuda.get_device_capability(0)
    if capability < NATIVE_BF16_CAPABILITY:
        return (f'no native bf16: {torch.cuda.get_device_name(0)} (compute '
                f'capability {capability[0]}.{capability[1]}) only emulates '
                'it; needs 8.0 or newer')
    return None


def missing_nccl() -> str | None:
    """Why NCCL process groups cannot be made, or None."""
    if not dist.is_available() or not dist.is_nccl_available():
        return ('no NCCL: torch.distributed.is_nccl_available() is False '
                f'in torch {torch.__version__}')
    return None


def missing_gpus(count: int) -> str | None:
    """Why fewer than ``count`` GPUs are at hand, or None."""
    found = torch.cuda.device_count() if torch.cuda.is_available() else 0
    if found < count:
        return f'fewer than {count} GPUs: found {found}'
    return None


def skip_reasons(bf16: bool = False, nccl: bool = False,
                 gpus: int = 1) -> list[str]:
    """Every capability a ``gpu``-marked test asks for and this machine
    lacks, CUDA first."""
    checks = [missing_cuda()]
    if bf16:
        checks.append(missing_native_bf16())
    if nccl:
        checks.append(missing_nccl())
    if gpus > 1:
        checks.append(missing_gpus(gpus))
    return [reason for reason in checks if reason]


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark each ``gpu`` test this machine cannot run as skipped, with the
    reasons (reported at the test's own line)."""
    for item in items:
        marker = item.get_closest_marker('gpu')
        reasons = skip_reasons(**marker.kwargs) if marker else []
        if reasons:
            item.add_marker(pytest.mark.skip(reason='; '.join(reasons)))


@pytest.fixture(scope='session')
def scenes(dataset) -> str:
    """The synthetic scenes at the quickstart's size, 200 + 20 images."""
    return dataset('scenes', num_train=200, num_val=20, size=(64, 64))


@pytest.fixture(scope='session')
def trained_scenes(tmp_path_factory, scenes,
                   run_script) -> tuple[str, str, str]:
    """(config, checkpoint, data root) of the quickstart model trained on
    the GPU by tools/train.py for TRAIN_ITERS iterations in fp32."""
    work = tmp_path_factory.mktemp('gpu-trained')
    config = scenes_config(work / 'config.py', scenes)
    check_ok(run_script(
        'tools/train.py', config, '--work-dir', work, '--cfg-options',
        f'train_cfg.max_iters={TRAIN_ITERS}',
        f'train_cfg.val_interval={TRAIN_ITERS}',
        f'default_hooks.checkpoint.interval={TRAIN_ITERS}',
        f'param_scheduler.1.end={TRAIN_ITERS}'))
    return config, str(work / f'iter_{TRAIN_ITERS}.pth'), scenes
