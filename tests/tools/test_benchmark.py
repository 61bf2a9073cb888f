"""tools/benchmark.py runs end to end and its figures agree with each other.

No time is asserted: the figures are checked for consistency (medians of the
listed runs, per-image and per-second figures derived from them) and the
fast path's agreement with the plain model is checked against the targets.
"""
import json
import os
import statistics

import pytest
import torch

from convseg.hardware import cpu_has_native_bf16, cpu_model, isa_summary
from convseg.fast.kernels import CACHE_ENV, KERNELS

CONFIG = 'configs/quickstart_convnext_atto_scenes.py'
BENCHMARK = 'tools/benchmark.py'


def _benchmark(run_script, script, tmp_path, *flags):
    out = tmp_path / 'figures.json'
    done = run_script(script, CONFIG, '--shape', '64', '64',
                      '--warmup', '1', '--json', out, *flags,
                      env={CACHE_ENV: str(tmp_path / 'kernels.json')})
    assert done.returncode == 0, done.stderr
    return json.loads(out.read_text()), done.stdout


def _check_timing(figures, batch):
    assert figures['ms_per_batch'] == pytest.approx(
        statistics.median(figures['times_ms']), abs=0.051)
    assert figures['ms_per_image'] == pytest.approx(
        figures['ms_per_batch'] / batch, abs=0.051)
    assert figures['images_per_s'] == pytest.approx(
        1000 * batch / figures['ms_per_batch'], rel=0.01)
    assert figures['peak_rss_mib'] > 0


def test_infer_compares_plain_and_fast_in_one_run(run_script, tmp_path):
    figures, stdout = _benchmark(run_script, BENCHMARK, tmp_path,
                                 '--repeat', '3', '--batch', '2', '--stages')
    results = figures['results']
    for variant in ('plain', 'fast'):
        assert len(results[variant]['times_ms']) == 3
        _check_timing(results[variant], batch=2)
        # a row per stage of the API, each timed as often
        for stage in ('encode_decode', 'inference_labels', 'inference_model',
                      'inference_model+logits'):
            row = results[f'{variant}/{stage}']
            assert len(row['times_ms']) == 3
            assert row['ms_per_batch'] == pytest.approx(
                statistics.median(row['times_ms']), abs=0.051)
            assert f'{variant}/{stage}: ' in stdout
        # the API's labels are its own encode_decode's argmax, every pixel
        agree = results[f'{variant}/labels_equal']
        assert agree['own'] == 1.0
        assert agree['plain'] >= 0.999
        assert f'{variant:>27}  ' in stdout
    assert 'API stages, ms per batch' in stdout
    assert results['speedup'] == pytest.approx(
        results['plain']['ms_per_batch'] / results['fast']['ms_per_batch'],
        rel=0.01)
    # the fast path's fp32 bound (tests/fast/test_fast.py: about five times
    # the 1e-6..2e-6 measured)
    assert results['agreement']['argmax_equal'] >= 0.999
    assert results['agreement']['max_rel_logit_diff'] <= 1e-5
    assert 'speedup (fast over plain):' in stdout
    assert figures['machine']['cores'] == os.cpu_count()
    assert figures['machine']['cpu'] == cpu_model()
    assert figures['machine']['isa'] == isa_summary()
    assert f'machine: {cpu_model()} ({isa_summary()})' in stdout
    # the kernel table: one line per op and shape, every candidate timed
    table = results['kernels']['fast'].splitlines()
    assert ('kernels of fast (op, shape, kernel, how chosen, timings):'
            in stdout)
    assert len(table) >= 10
    for line in table:
        op, kernel, source = line.split()[0], line.split()[4], line.split()[5]
        assert kernel in KERNELS[op] and source == '(measured)'
        # the fast variant is float32: its candidates are the float32 ones
        for candidate, entry in KERNELS[op].items():
            if torch.float32 in entry.dtypes:
                assert f'{candidate} ' in line.split('(measured)')[1]
    stored = json.loads((tmp_path / 'kernels.json').read_text())
    assert sum(len(v) for v in stored.values()) == len(table)


@pytest.mark.skipif(not cpu_has_native_bf16(),
                    reason='this CPU has no native bf16')
def test_infer_times_bf16_beside_fp32(run_script, tmp_path):
    figures, stdout = _benchmark(run_script, BENCHMARK, tmp_path,
                                 '--repeat', '2', '--precision', 'fp32',
                                 'bf16')
    results = figures['results']
    for variant in ('plain', 'fast', 'fast_bf16'):
        _check_timing(results[variant], batch=1)
    assert results['speedup_bf16'] == pytest.approx(
        results['plain']['ms_per_batch'] /
        results['fast_bf16']['ms_per_batch'],
        rel=0.01)
    assert results['agreement']['max_rel_logit_diff'] <= 1e-5
    # random weights make near-ties: bf16 moves a few of them
    assert results['agreement_bf16']['argmax_equal'] >= 0.98
    assert 1e-4 < results['agreement_bf16']['max_rel_logit_diff'] < 0.05
    assert 'speedup (fast_bf16 over plain):' in stdout
    assert all('bfloat16' in line
               for line in results['kernels']['fast_bf16'].splitlines())


def test_amp_on_cpu_points_to_precision(run_script, tmp_path):
    done = run_script(BENCHMARK, CONFIG, '--amp', 'bf16')
    assert done.returncode == 2
    assert 'error: --amp is for GPUs; on CPU use --precision bf16' in (
        done.stderr)


def test_train_measures_with_and_without_checkpointing(run_script, tmp_path):
    figures, stdout = _benchmark(run_script, BENCHMARK, tmp_path,
                                 '--mode', 'train', '--batch', '2',
                                 '--repeat', '2')
    results = figures['results']
    off, on = results['with_cp=False'], results['with_cp=True']
    for variant in (off, on):
        assert len(variant['times_ms']) == 2
        _check_timing(variant, batch=2)
    assert results['with_cp_time_cost'] == pytest.approx(
        on['ms_per_batch'] / off['ms_per_batch'] - 1, abs=0.002)
    assert results['with_cp_memory_saving'] == pytest.approx(
        1 - on['peak_rss_mib'] / off['peak_rss_mib'], abs=0.002)
    assert 'with_cp: peak memory' in stdout
