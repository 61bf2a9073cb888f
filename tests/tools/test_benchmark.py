"""tools/benchmark.py runs end to end and its figures agree with each other.

No time is asserted: the figures are checked for consistency (medians of the
listed runs, per-image and per-second figures derived from them) and the
fast path's agreement with the plain model is checked against the targets.
"""
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CONFIG = 'configs/quickstart_convnext_atto_scenes.py'


def _benchmark(tmp_path, *flags):
    out = tmp_path / 'figures.json'
    done = subprocess.run(
        [sys.executable, 'tools/benchmark.py', CONFIG, '--shape', '64', '64',
         '--warmup', '1', '--json', str(out), *flags],
        cwd=ROOT, capture_output=True, text=True, timeout=600,
        env=dict(os.environ, OMP_NUM_THREADS='1'))
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


def test_infer_compares_plain_and_fast_in_one_run(tmp_path):
    figures, stdout = _benchmark(tmp_path, '--repeat', '3', '--batch', '2')
    results = figures['results']
    for variant in ('plain', 'fast'):
        assert len(results[variant]['times_ms']) == 3
        _check_timing(results[variant], batch=2)
    assert results['speedup'] == pytest.approx(
        results['plain']['ms_per_batch'] / results['fast']['ms_per_batch'],
        rel=0.01)
    assert results['agreement']['argmax_equal'] >= 0.999
    assert results['agreement']['max_rel_logit_diff'] <= 1e-3
    assert 'speedup (fast over plain):' in stdout
    assert figures['machine']['cores'] == os.cpu_count()


def test_train_measures_with_and_without_checkpointing(tmp_path):
    figures, stdout = _benchmark(tmp_path, '--mode', 'train', '--batch', '2',
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
