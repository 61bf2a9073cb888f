"""The GPU command on a machine without CUDA: every GPU test is skipped, each
with the reasons for what it needs and this machine lacks.

Runs ``bash tools/test_gpu.sh`` as a user would (with the test's Python and
no wheel folder) and reads pytest's JUnit report. The table below is what
each test needs, written down from its purpose; the expected reasons are
worded from torch's own view of the machine.
"""
from __future__ import annotations

import os
import subprocess
import sys
import xml.etree.ElementTree as ET

import pytest
import torch
import torch.distributed as dist

from .gpu_helpers import REPO

# test id -> (native bf16, NCCL, GPUs)
NEEDS = {
    'test_amp_resume::test_killed_amp_run_resumes_the_loss_scaler':
    (False, False, 1),
    'test_amp_training::test_amp_optim_wrapper_keeps_the_layer_decay_groups':
    (False, False, 1),
    'test_amp_training::test_amp_training_step[float16]': (False, False, 1),
    'test_amp_training::test_amp_training_step[bfloat16]': (True, False, 1),
    'test_benchmark_cuda::test_benchmark_infer_on_cuda': (False, False, 1),
    'test_benchmark_cuda::test_benchmark_train_on_cuda': (False, False, 1),
    'test_ddp_syncbn::test_nccl_ddp_keeps_syncbn_and_loads_on_cpu[1]':
    (False, True, 1),
    'test_ddp_syncbn::test_nccl_ddp_keeps_syncbn_and_loads_on_cpu[2]':
    (False, True, 2),
    'test_inference_gpu::test_fp32_model_segments_the_scenes':
    (False, False, 1),
    'test_inference_gpu::test_gpu_inference_agrees_with_fp32[fp16]':
    (False, False, 1),
    'test_inference_gpu::test_gpu_inference_agrees_with_fp32['
    'fp16-channels_last-compile]': (False, False, 1),
    'test_inference_gpu::test_gpu_inference_agrees_with_fp32[bf16]':
    (True, False, 1),
    'test_inference_gpu::test_gpu_inference_agrees_with_fp32['
    'bf16-channels_last]': (True, False, 1),
    'test_inference_gpu::test_gpu_inference_agrees_with_fp32['
    'bf16-channels_last-compile]': (True, False, 1),
    'test_inference_gpu::test_default_autocast_is_bf16_only_where_native':
    (False, False, 1),
    'test_train_speed_cuda::test_bf16_switch_trains_in_bf16':
    (True, False, 1),
    'test_train_speed_cuda::test_fused_channels_last_compile_train':
    (False, False, 1),
}


def expected_reason(bf16: bool, nccl: bool, gpus: int) -> str:
    """What a machine without a usable GPU must say for these needs."""
    if torch.version.cuda is None:
        reasons = [f'no CUDA: torch {torch.__version__} is a build without '
                   'CUDA']
    else:
        reasons = [f'no CUDA: torch {torch.__version__} (CUDA '
                   f'{torch.version.cuda}) sees no GPU']
    if bf16:
        reasons.append('no native bf16: no GPU to run it on')
    if nccl and not dist.is_nccl_available():
        reasons.append('no NCCL: torch.distributed.is_nccl_available() is '
                       f'False in torch {torch.__version__}')
    if gpus > 1:
        reasons.append(f'fewer than {gpus} GPUs: found 0')
    return '; '.join(reasons)


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='a GPU is here: the GPU tests run for real')
def test_gpu_command_skips_every_test_with_its_reasons(tmp_path) -> None:
    report = tmp_path / 'report.xml'
    result = subprocess.run(
        ['bash', 'tools/test_gpu.sh', '-q', f'--junitxml={report}'],
        cwd=REPO, capture_output=True, text=True, timeout=300,
        env=dict(os.environ, PYTHON=sys.executable,
                 CONVSEG_WHEELS=str(tmp_path / 'no-wheels')))
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr
    assert (f'[test-gpu] no {tmp_path / "no-wheels"}: using the packages '
            f'{sys.executable} already has') in result.stdout
    assert (f'[test-gpu] torch {torch.__version__}, CUDA {torch.version.cuda}'
            ', 0 GPU(s)') in result.stdout.splitlines()
    skipped = {}
    for case in ET.parse(report).iter('testcase'):
        test_id = case.get('classname').split('.')[-1] + '::' + case.get(
            'name')
        reasons = [s.get('message') for s in case.iter('skipped')]
        assert len(reasons) == 1, f'{test_id} ran or failed here'
        skipped[test_id] = reasons[0]
    assert skipped == {
        test_id: expected_reason(*needs) for test_id, needs in NEEDS.items()
    }
    assert f'{len(NEEDS)} skipped' in result.stdout


@pytest.mark.skipif(torch.cuda.is_available(),
                    reason='a GPU is here: the GPU session runs for real')
def test_gpu_session_says_why_it_runs_nothing(tmp_path) -> None:
    result = subprocess.run(
        ['bash', 'tools/gpu_session.sh'], cwd=REPO, capture_output=True,
        text=True, timeout=120,
        env=dict(os.environ, PYTHON=sys.executable, OUT=str(tmp_path / 'out')))
    assert result.returncode == 0, result.stdout + result.stderr
    cuda = torch.version.cuda
    assert result.stdout == (f'[gpu-session] skipped: no CUDA GPU here '
                             f'(torch {torch.__version__}, CUDA {cuda})\n')
    assert not (tmp_path / 'out').exists()
