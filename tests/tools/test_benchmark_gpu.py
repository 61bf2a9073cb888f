"""tools/benchmark_gpu.py on CPU: the variants that can run here give
figures consistent with their runs; the others are left out with the
reason. The GPU run itself is in tests/gpu/test_benchmark_cuda.py."""
import json
import statistics

import pytest

CONFIG = 'configs/quickstart_convnext_atto_scenes.py'


def test_benchmark_gpu_recipe_on_cpu(tmp_path, run_script):
    out = tmp_path / 'figures.json'
    done = run_script(
        'tools/benchmark_gpu.py', '--config', CONFIG,
        '--device', 'cpu', '--shape', '32', '32', '--train-batch', '2',
        '--infer-batch', '1', '2', '--repeat', '3', '--warmup', '1',
        '--variants', 'fp32', 'bf16+cl', 'reference-fp16', 'infer-fp32',
        '--json', str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())['results']
    assert set(results) == {'fp32', 'bf16+cl', 'reference-fp16',
                            'infer-fp32@1', 'infer-fp32@2'}
    for name in ('bf16+cl', 'reference-fp16'):
        assert results[name] == dict(left_out='AMP training needs a CUDA GPU')
    train = results['fp32']
    assert train['optim_wrapper'] == 'OptimWrapper'
    assert len(train['times_ms']) == 3
    assert train['ms_per_batch'] == pytest.approx(
        statistics.median(train['times_ms']), abs=0.051)
    assert train['images_per_s'] == pytest.approx(
        2000 / train['ms_per_batch'], rel=0.01)
    for batch in (1, 2):
        infer = results[f'infer-fp32@{batch}']
        assert infer['ms_per_image'] == pytest.approx(
            infer['ms_per_batch'] / batch, abs=0.051)
        # the fp32 variant is the reference model itself
        assert infer['agreement'] == dict(argmax_equal=1.0,
                                          max_rel_logit_diff=0.0)
    assert 'fp32: ' in done.stdout
    assert 'reference-fp16: AMP training needs a CUDA GPU' in done.stdout
    # a measured training variant's line comes out before the final table,
    # so that a run stopped by a time limit keeps what it measured
    progress = f"[done] fp32: {train['ms_per_batch']:8.1f} ms/batch"
    assert done.stdout.index(progress) < done.stdout.index('machine: ')
