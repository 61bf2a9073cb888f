"""tools/benchmark.py --onnx: onnxruntime timed beside the PyTorch model on
the same inputs, with its agreement."""
from __future__ import annotations

import json
import re


def test_benchmark_times_onnxruntime_beside_pytorch(tmp_path, tiny,
                                                    onnx_files, run_script):
    out = tmp_path / 'figures.json'
    result = run_script('tools/benchmark.py', tiny['config'],
                        '--checkpoint', tiny['checkpoint'], '--device', 'cpu',
                        '--shape', 100, 150, '--batch', 2, '--repeat', 2,
                        '--warmup', 1, '--test-mode', 'slide', '--onnx',
                        onnx_files['fixed_64x64_b1'], '--json', out)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr
    figures = json.loads(out.read_text())['results']
    for name in ('plain', 'fast', 'onnxruntime'):
        assert figures[name]['ms_per_batch'] > 0
        assert figures[name]['images_per_s'] > 0
    agree = figures['onnxruntime_agreement']
    assert agree['argmax_equal'] >= 0.9999
    assert agree['max_rel_logit_diff'] < 1e-4
    line = re.search(r'^onnxruntime: argmax equal on (\S+)% of pixels, max '
                     r'\|ort - plain\| / max \|plain\| = (\S+)$',
                     result.stdout, re.M)
    assert float(line.group(1)) == round(100 * agree['argmax_equal'], 4)
    assert float(line.group(2)) == float(
        f'{agree["max_rel_logit_diff"]:.2e}')


def test_onnx_is_refused_for_training(tmp_path, tiny, run_script):
    result = run_script('tools/benchmark.py', tiny['config'], '--mode',
                        'train', '--onnx', tmp_path / 'model.onnx')
    assert result.returncode == 2
    assert result.stderr.strip().splitlines()[-1].endswith(
        'error: --onnx is for --mode infer: an ONNX graph does not train')
