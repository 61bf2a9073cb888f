"""tools/benchmark.py --device cuda in both modes.

No time is asserted: the figures must be there, consistent with the GPU and
with each other, and the fast path must agree with the plain model on a
trained model.
"""
from __future__ import annotations

import json

import pytest
import torch

from .gpu_helpers import check_ok

T_CONFIG = 'configs/upernet_convnext_t_ade20k.py'


@pytest.mark.gpu
def test_benchmark_infer_on_cuda(tmp_path, trained_scenes,
                                 run_script) -> None:
    config, checkpoint, _ = trained_scenes
    out = tmp_path / 'infer.json'
    check_ok(run_script('tools/benchmark.py', config, '--checkpoint',
                        checkpoint, '--device', 'cuda:0', '--shape', '64',
                        '64', '--batch', '4', '--repeat', '3', '--json', out))
    figures = json.loads(out.read_text())
    assert figures['machine']['gpu'] == torch.cuda.get_device_name(0)
    results = figures['results']
    for name in ('plain', 'fast'):
        assert len(results[name]['times_ms']) == 3
        assert results[name]['ms_per_batch'] > 0
        assert results[name]['peak_allocated_mib'] > 0
    assert results['agreement']['argmax_equal'] >= 0.995


@pytest.mark.gpu
def test_benchmark_train_on_cuda(tmp_path, run_script) -> None:
    out = tmp_path / 'train.json'
    check_ok(run_script('tools/benchmark.py', T_CONFIG, '--device', 'cuda:0',
                        '--mode', 'train', '--shape', '256', '256',
                        '--batch', '2', '--repeat', '2', '--json', out))
    results = json.loads(out.read_text())['results']
    off, on = results['with_cp=False'], results['with_cp=True']
    # the ConvNeXt-T config trains with AMP on a GPU
    assert off['optim_wrapper'] == on['optim_wrapper'] == 'AmpOptimWrapper'
    assert off['ms_per_batch'] > 0 and on['ms_per_batch'] > 0
    # GPU memory is counted exactly: recomputing the blocks' activations
    # must lower the peak
    assert on['peak_allocated_mib'] < off['peak_allocated_mib']
    assert results['with_cp_memory_saving'] == pytest.approx(
        1 - on['peak_allocated_mib'] / off['peak_allocated_mib'], abs=1e-3)
