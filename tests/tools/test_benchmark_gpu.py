"""tools/benchmark_gpu.py on CPU: the variants that can run here give
figures consistent with their runs (fp32 training, a loss curve, fp32 and
bf16 inference); the others are left out with the reason. The AMP,
compile and reference training variants cannot run here: mmengine's
AmpOptimWrapper refuses to be built without CUDA, and compiling the
backbone with inductor takes minutes on 2 cores; their configs are checked
here and their runs are in the GPU session (tools/gpu_session.sh)."""
import json
import statistics

import pytest
import torch

from convseg.hardware import cpu_has_native_bf16

from ..helpers import load_tool

CONFIG = 'configs/quickstart_convnext_atto_scenes.py'


@pytest.fixture(scope='module')
def tool():
    return load_tool('benchmark_gpu')


@pytest.mark.skipif(not cpu_has_native_bf16(),
                    reason='the bf16 variant needs a CPU with native bf16')
def test_benchmark_gpu_recipe_on_cpu(tmp_path, run_script, tool):
    out = tmp_path / 'figures.json'
    done = run_script(
        'tools/benchmark_gpu.py', '--config', CONFIG,
        '--device', 'cpu', '--shape', '32', '32', '--train-batch', '2',
        '--infer-batch', '2', '--repeat', '3', '--warmup', '1',
        '--curve-steps', '3', '--curve-shape', '32', '32',
        '--variants', 'fp32', 'bf16+cl', 'reference-fp16', 'curve:fp32',
        'infer-fp32', 'infer-bf16', '--json', str(out))
    assert done.returncode == 0, done.stderr[-3000:]
    results = json.loads(out.read_text())['results']
    assert set(results) == {'fp32', 'bf16+cl', 'reference-fp16',
                            'curve:fp32', 'infer-fp32@2', 'infer-bf16@2'}
    for name in ('bf16+cl', 'reference-fp16'):
        assert results[name] == dict(left_out='AMP training needs a CUDA GPU')
    train = results['fp32']
    assert train['optim_wrapper'] == 'OptimWrapper' and train['batch'] == 2
    assert len(train['times_ms']) == 3
    assert train['ms_per_batch'] == pytest.approx(
        statistics.median(train['times_ms']), abs=0.051)
    assert train['images_per_s'] == pytest.approx(
        2000 / train['ms_per_batch'], rel=0.01)
    # the curve's first loss is one step of the model on the first scenes
    losses = results['curve:fp32']['losses']
    assert len(losses) == 3 and losses[0] != losses[1]
    args = tool.parse_args(['--config', CONFIG, '--train-batch', '2'])
    model, optim_wrapper = tool.build_for_training(args, 'curve:fp32',
                                                   torch.device('cpu'))
    first = model.train_step(tool.scene_batches([32, 32], 2, 3)[0],
                             optim_wrapper)['loss']
    assert losses[0] == pytest.approx(float(first.detach()), rel=1e-6)
    fp32, bf16 = results['infer-fp32@2'], results['infer-bf16@2']
    assert fp32['ms_per_image'] == pytest.approx(fp32['ms_per_batch'] / 2,
                                                 abs=0.051)
    # the fp32 variant is the plain model itself
    assert fp32['agreement'] == dict(argmax_equal=1.0,
                                     max_rel_logit_diff=0.0)
    # bf16 against fp32 on random weights: bf16's bounds. The logits show
    # that bf16 ran; the labels may all agree (the kernels are chosen by
    # measurement, so their rounding differs between runs: 100% was seen on
    # the AMD EPYC; 98.8% on the Xeon with AMX, whose bf16 GEMMs round
    # otherwise; random weights leave small margins between classes)
    assert bf16['agreement']['argmax_equal'] >= 0.97
    assert 1e-4 < bf16['agreement']['max_rel_logit_diff'] < 3e-2
    assert 'reference-fp16: AMP training needs a CUDA GPU' in done.stdout
    # each line comes out as it is measured, before the final table, so that
    # a run stopped by a time limit keeps what it measured
    for line in (f"[done] fp32: {train['ms_per_batch']:8.1f} ms/batch",
                 '[done] curve:fp32: loss', '[done] infer-bf16@2: '):
        assert done.stdout.index(line) < done.stdout.index('machine: ')


def test_reference_variant_trains_as_mmseg_does(tool) -> None:
    args = tool.parse_args(['--config', CONFIG])
    cfg = tool.train_config(args, 'reference-fp16')
    assert cfg.model.backbone.type == 'mmpretrain.ConvNeXt'
    assert cfg.model.backbone.arch == dict(depths=[1, 1, 3, 1],
                                           channels=[40, 80, 160, 320])
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.dtype == 'float16'
    assert cfg.optim_wrapper.loss_scale == 'dynamic'
    assert cfg.optim_wrapper.constructor == \
        'LearningRateDecayOptimizerConstructor'
    # the quickstart's head fuses with a 1x1 conv: the checkpointed
    # UPerHead would be another model
    with pytest.raises(SystemExit) as err:
        tool.train_config(args, 'fp16+cp+fpn_cp@16')
    assert str(err.value) == (
        f'error: variant fp16+cp+fpn_cp@16 checkpoints a UPerHead, but '
        f'{CONFIG} has a PointwiseFuseUPerHead: run it on a UPerHead config '
        '(e.g. the default configs/upernet_convnext_t_ade20k.py)')
    assert tool.train_config(args, 'fp16+cp@16').model.decode_head.type == \
        'PointwiseFuseUPerHead'
    ade = tool.parse_args([])
    memory = tool.train_config(ade, 'fp16+cp+fpn_cp@16')
    assert memory.model.backbone.with_cp is True
    assert memory.model.decode_head.type == 'CheckpointedUPerHead'
    assert tool.train_config(ade, 'fp16+cp@16').model.decode_head.type == \
        'UPerHead'


def test_curves_agree_within_the_bf16_bounds(tool) -> None:
    fp32 = [2.0] * 20 + [1.0] * 20
    assert tool.compare_curves(fp32, fp32) == dict(
        first_loss_rel_diff=0.0, curve_max_rel_diff=0.0, agrees=True)
    close = [2.02] + [2.0] * 19 + [1.04] * 20
    assert tool.compare_curves(close, fp32) == dict(
        first_loss_rel_diff=0.01, curve_max_rel_diff=0.04, agrees=True)
    late = [2.0] * 20 + [1.06] * 20
    assert tool.compare_curves(late, fp32)['agrees'] is False
    first = [2.05] + [2.0] * 19 + [1.0] * 20
    assert tool.compare_curves(first, fp32) == dict(
        first_loss_rel_diff=0.025, curve_max_rel_diff=0.00125, agrees=False)


def test_scene_batches_are_the_quickstart_scenes(tool) -> None:
    batches = tool.scene_batches([32, 32], 2, 2)
    assert len(batches) == 2
    image = batches[0]['inputs'][0]
    assert image.shape == (3, 32, 32) and image.dtype == torch.uint8
    labels = torch.cat([s.gt_sem_seg.data for b in batches
                        for s in b['data_samples']])
    assert set(labels.unique().tolist()) <= {0, 1, 2, 3, 4, 5, 255}
    assert 0 in labels.unique().tolist()
