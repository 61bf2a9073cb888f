"""The GPU figures of the README in one run: training steps and inference.

    python tools/benchmark_gpu.py [--config CONFIG] [--device cuda:0]
        [--shape H W] [--train-batch 8] [--infer-batch 1 16] [--repeat 10]
        [--warmup 3] [--checkpoint FILE] [--variants NAME ...] [--json OUT]

Training (one ``train_step`` of the config's model and optimizer on random
images and labels, batch --train-batch): fp32, AMP fp16, AMP bf16, and with
the training speed switches (convseg.engine.train_speed: channels-last,
fused AdamW, compiled backbone); then mmseg's reference model, mmpretrain's
ConvNeXt with mmseg's UPerHead and its own layer-decay constructor, in fp16
AMP as mmseg trains it. Each variant runs in a process of its own, so that
its peak memory (``torch.cuda.max_memory_allocated``) is its own.

Inference (``model.inference``, whole image, batch --infer-batch each): the
plain model in fp32, and the GPU path of
``convseg.fast.prepare_for_inference`` in bf16 and bf16 with a
compiled backbone; images/s and the argmax agreement with fp32 (meaningful
with a trained --checkpoint; random weights otherwise).

Figures are medians of --repeat timed steps after --warmup untimed ones.
bf16 variants are left out, with the reason, on a GPU without native bf16;
AMP variants on a machine without CUDA; the reference model when mmpretrain
(which imports torchvision) cannot be imported. The helpers for timing,
memory and random batches are tools/benchmark.py's.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import copy
import json
from collections.abc import Callable

import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from convseg.benchmarks.batches import agreement, random_batch
from convseg.benchmarks.machine import machine_info
from convseg.benchmarks.timing import PeakMemory, summary, timed
from convseg.benchmarks.timing import in_subprocess as _in_subprocess

from convseg.apis import init_model
from convseg.fast import prepare_for_inference
from convseg.engine.train_speed import (compile_backbone,
                                        to_channels_last)
from convseg.hardware import cuda_has_native_bf16
from convseg.fileio import atomic_write_text

DEFAULT_CONFIG = 'configs/upernet_convnext_t_ade20k.py'
#: training variants: precision, channels-last, fused AdamW, compile
TRAIN_VARIANTS = {
    'fp32': ('fp32', False, False, False),
    'fp16': ('fp16', False, False, False),
    'bf16': ('bf16', False, False, False),
    'fp16+cl': ('fp16', True, False, False),
    'bf16+cl': ('bf16', True, False, False),
    'bf16+cl+fused': ('bf16', True, True, False),
    'bf16+cl+fused+compile': ('bf16', True, True, True),
    'reference-fp16': ('fp16', False, False, False),
}
#: inference variants: autocast, compile
INFER_VARIANTS = {
    'infer-fp32': ('none', False),
    'infer-bf16': ('bf16', False),
    'infer-bf16+compile': ('bf16', True),
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='GPU training and inference figures, with mmseg\'s '
        'reference model.')
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--device', default='cuda:0')
    parser.add_argument('--shape', type=int, nargs=2, default=[512, 512],
                        metavar=('H', 'W'))
    parser.add_argument('--train-batch', type=int, default=8)
    parser.add_argument('--infer-batch', type=int, nargs='+',
                        default=[1, 16])
    parser.add_argument('--repeat', type=int, default=10)
    parser.add_argument('--warmup', type=int, default=3)
    parser.add_argument('--checkpoint',
                        help='weights for the inference agreement')
    parser.add_argument('--variants', nargs='+',
                        choices=list(TRAIN_VARIANTS) + list(INFER_VARIANTS),
                        help='run only these (default: all)')
    parser.add_argument('--json', metavar='OUT',
                        help='write the figures as JSON to OUT')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config):
        parser.error(f'config file {args.config} does not exist')
    if min([args.repeat, args.train_batch] + args.infer_batch) < 1 \
            or args.warmup < 0:
        parser.error('--repeat and the batches must be >= 1, --warmup >= 0')
    return args


def left_out(name: str, device: torch.device) -> str | None:
    """Why variant ``name`` cannot run here, or None."""
    precision = (TRAIN_VARIANTS.get(name) or INFER_VARIANTS[name])[0]
    if precision in ('fp16', 'bf16') and name in TRAIN_VARIANTS \
            and device.type != 'cuda':
        return 'AMP training needs a CUDA GPU'
    if precision == 'bf16' and device.type == 'cuda' and not cuda_has_native_bf16():
        return f'{torch.cuda.get_device_name(device)} has no native bf16'
    if name.startswith('reference'):
        try:
            import mmpretrain  # noqa: F401  (registers its ConvNeXt)
        except ImportError as err:
            return f'mmpretrain cannot be imported ({err})'
    return None


# --------------------------------------------------------------- training


def train_config(args: argparse.Namespace, name: str) -> Config:
    """The config of a training variant: random weights, its precision, and
    for the reference model mmpretrain's ConvNeXt with mmseg's constructor."""
    precision = TRAIN_VARIANTS[name][0]
    cfg = Config.fromfile(args.config)
    cfg.model.backbone.init_cfg = None
    wrapper = cfg.optim_wrapper
    if precision == 'fp32':
        wrapper.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            wrapper.pop(key, None)
    else:
        wrapper.type = 'AmpOptimWrapper'
        wrapper.dtype = dict(fp16='float16', bf16='bfloat16')[precision]
    if name.startswith('reference'):
        backbone = cfg.model.backbone
        cfg.model.backbone = dict(
            type='mmpretrain.ConvNeXt', arch=backbone.arch,
            out_indices=[0, 1, 2, 3], drop_path_rate=backbone.drop_path_rate,
            layer_scale_init_value=1.0, gap_before_final_norm=False)
        wrapper.constructor = 'LearningRateDecayOptimizerConstructor'
    return cfg


def train_variant(args: argparse.Namespace, name: str) -> dict[str, object]:
    """Median step time and peak memory of one training variant."""
    from mmseg.registry import MODELS
    _, channels_last, fused, compiled = TRAIN_VARIANTS[name]
    device = torch.device(args.device)
    cfg = train_config(args, name)
    if fused:
        cfg.optim_wrapper.optimizer.fused = True
    init_default_scope('mmseg')
    torch.manual_seed(0)
    with PeakMemory(device) as peak:
        model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(device)
        model.train()
        optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
        if channels_last:
            to_channels_last(model, optim_wrapper)
        if compiled:
            compile_backbone(model, True)
        batch = random_batch(args.shape, args.train_batch,
                             model.decode_head.num_classes)

        def step() -> None:
            model.train_step(copy.deepcopy(batch), optim_wrapper)

        for _ in range(args.warmup):
            step()
        times = [timed(step, device) for _ in range(args.repeat)]
    return dict(summary(times, args.train_batch), **peak.figures(),
                optim_wrapper=type(optim_wrapper).__name__)


def in_subprocess(target: Callable, *args) -> dict[str, object]:
    """``target(*args)`` in a fresh process; its error becomes a figure, so
    that one failing variant does not end the run."""
    try:
        return _in_subprocess(target, *args)
    except RuntimeError as err:
        return dict(error=str(err))


# -------------------------------------------------------------- inference


def infer_variants(args: argparse.Namespace,
                   names: list[str]) -> dict[str, object]:
    """Inference figures of ``names`` at every --infer-batch, with the
    agreement of each with fp32."""
    device = torch.device(args.device)
    plain = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=None if args.checkpoint else {
                           'model.backbone.init_cfg': None},
                       fast=False)
    plain.test_cfg.mode = 'whole'
    models = {}
    for name in names:
        amp, compiled = INFER_VARIANTS[name]
        models[name] = plain if amp == 'none' and not compiled else \
            prepare_for_inference(copy.deepcopy(plain), amp=amp,
                                  compile=compiled)
    results: dict[str, object] = {}
    for batch in args.infer_batch:
        data = plain.data_preprocessor(
            random_batch(args.shape, batch, plain.decode_head.num_classes),
            False)
        inputs = data['inputs'].to(device)
        metas = [s.metainfo for s in data['data_samples']]
        logits = {}
        with torch.no_grad():
            reference = plain.inference(inputs, copy.deepcopy(metas))
            for name, model in models.items():

                def call() -> None:
                    logits[name] = model.inference(inputs,
                                                   copy.deepcopy(metas))

                with PeakMemory(device) as peak:
                    for _ in range(max(1, args.warmup)):
                        call()
                times = [timed(call, device) for _ in range(args.repeat)]
                results[f'{name}@{batch}'] = dict(
                    summary(times, batch), **peak.figures(),
                    agreement=agreement(reference, logits[name]))
    return results


# ---------------------------------------------------------------- output


def format_line(name: str, figures: dict[str, object]) -> str:
    """One variant's line of the report."""
    if 'left_out' in figures or 'error' in figures:
        return f'{name:>24}: {figures.get("left_out") or figures["error"]}'
    memory = next(v for k, v in figures.items()
                  if k.startswith('peak_') and 'rise' not in k)
    extra = ''
    if 'agreement' in figures:
        extra = (f'  argmax equal '
                 f'{100 * figures["agreement"]["argmax_equal"]:.3f}%')
    return (f'{name:>24}: {figures["ms_per_batch"]:8.1f} ms/batch  '
            f'{figures["images_per_s"]:8.2f} images/s  peak '
            f'{memory:8.1f} MiB{extra}')


def report(results: dict[str, object], machine: dict[str, object]) -> None:
    print(f'machine: {machine.get("gpu", machine["cpu"])}, torch '
          f'{machine["torch"]}')
    for name, figures in results.items():
        print(format_line(name, figures))
    ours, ref = results.get('fp16', {}), results.get('reference-fp16', {})
    if 'images_per_s' in ours and 'images_per_s' in ref:
        print(f'fp16 training throughput over mmseg\'s reference model: '
              f'{ours["images_per_s"] / ref["images_per_s"]:.2f}x')


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    device = torch.device(args.device)
    names = args.variants or list(TRAIN_VARIANTS) + list(INFER_VARIANTS)
    results: dict[str, object] = {}
    runnable_infer = []
    for name in names:
        reason = left_out(name, device)
        if reason is not None:
            results[name] = dict(left_out=reason)
        elif name in TRAIN_VARIANTS:
            results[name] = in_subprocess(train_variant, args, name)
            # each variant's line as soon as it is measured, so that a run
            # stopped by a time limit still leaves the figures it reached
            print(f'[done] {format_line(name, results[name]).strip()}',
                  flush=True)
        else:
            runnable_infer.append(name)
    if runnable_infer:
        results.update(infer_variants(args, runnable_infer))
    machine = machine_info(device)
    report(results, machine)
    if args.json:
        atomic_write_text(
            json.dumps(dict(args=vars(args), machine=machine,
                            results=results), indent=2), args.json)
    return results


if __name__ == '__main__':
    main()
