"""The GPU figures of docs/gpu.md in one run: training, memory, loss curves,
inference, each line printed as soon as it is measured.

    python tools/benchmark_gpu.py [--config CONFIG] [--device cuda:0]
        [--shape H W] [--train-batch 8] [--infer-batch 1 16] [--repeat 10]
        [--warmup 3] [--curve-steps 200] [--curve-shape 256 256]
        [--checkpoint FILE] [--variants NAME ...] [--json OUT]

Training (one ``train_step`` of the config's model and optimizer on random
images and labels, batch --train-batch): fp32, AMP fp16, AMP bf16, a
compiled backbone alone, and the training speed switches
(convseg.engine.train_speed: channels-last, fused AdamW, compiled backbone);
mmseg's reference model (convseg.benchmarks.reference: mmpretrain's
ConvNeXt with mmseg's heads, trained by mmseg's AMP config: fp16 with a
dynamic loss scale and mmseg's layer-decay constructor); and at batch 16 the
memory rows: the backbone's ``with_cp`` alone and with the head's FPN
checkpointed too (``CheckpointedUPerHead``). Each variant runs in a process
of its own, so that its peak memory (``torch.cuda.max_memory_allocated``) is
its own. Lines: ms/batch, images/s, peak GiB.

Loss curves (``curve:NAME``): --curve-steps steps of each speed-switch set
from the same initial weights on the same synthetic scenes (the quickstart's
generator, at --curve-shape), against fp32's curve: the first loss's
relative difference (bf16 bound 2e-2) and the largest relative difference of
20-step means (bound 5e-2). A set agrees when both hold; only such sets are
candidates for the configs' defaults.

Inference (``model.inference``, whole image, batch --infer-batch each): the
plain model in fp32, and the fast path
(``convseg.fast.prepare_for_inference``) in bf16 (bf16 autocast on a
GPU, the CPU's bf16 path on a CPU) and bf16 with a compiled backbone;
images/s and the argmax agreement with fp32 (meaningful with a trained
--checkpoint; random weights otherwise).

Figures are medians of --repeat timed steps after --warmup untimed ones.
bf16 variants are left out, with the reason, where bf16 is not native; AMP
training variants on a machine without CUDA; the reference model when
mmpretrain's ConvNeXt cannot be loaded. The helpers for timing, memory and
random batches are in :mod:`convseg.benchmarks`.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import copy
import json
import os
import statistics
from collections.abc import Callable
from typing import NamedTuple

import numpy as np
import torch
from mmengine.config import Config
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from convseg.apis import init_model
from convseg.benchmarks.batches import agreement, random_batch
from convseg.benchmarks.machine import machine_info
from convseg.benchmarks.reference import (ReferenceUnavailableError,
                                          load_mmpretrain_convnext,
                                          reference_config)
from convseg.benchmarks.timing import PeakMemory, summary, timed
from convseg.benchmarks.timing import in_subprocess as _in_subprocess
from convseg.datasets.synthetic import scene_sample
from convseg.engine.train_speed import compile_backbone, to_channels_last
from convseg.fast import prepare_for_inference
from convseg.fileio import atomic_write_text
from convseg.hardware import cpu_has_native_bf16, cuda_has_native_bf16

DEFAULT_CONFIG = 'configs/upernet_convnext_t_ade20k.py'


class Train(NamedTuple):
    """A training variant: precision and switches; ``batch`` (None:
    --train-batch) for the memory rows."""
    precision: str
    channels_last: bool = False
    fused: bool = False
    compiled: bool = False
    with_cp: bool = False
    fpn_cp: bool = False
    batch: int | None = None
    reference: bool = False


TRAIN_VARIANTS = {
    'fp32': Train('fp32'),
    'fp16': Train('fp16'),
    'bf16': Train('bf16'),
    'fp32+compile': Train('fp32', compiled=True),
    'fp16+cl': Train('fp16', channels_last=True),
    'bf16+cl': Train('bf16', channels_last=True),
    'bf16+cl+fused': Train('bf16', channels_last=True, fused=True),
    'bf16+cl+fused+compile': Train('bf16', True, True, True),
    'reference-fp16': Train('fp16', reference=True),
    'fp16+cp@16': Train('fp16', with_cp=True, batch=16),
    'fp16+cp+fpn_cp@16': Train('fp16', with_cp=True, fpn_cp=True, batch=16),
}
#: the loss curves: each speed-switch set against fp32
CURVE_VARIANTS = {
    f'curve:{name}': TRAIN_VARIANTS[name]
    for name in ('fp32', 'fp16', 'bf16', 'bf16+cl+fused',
                 'bf16+cl+fused+compile')
}
#: inference variants: autocast, compile
INFER_VARIANTS = {
    'infer-fp32': ('none', False),
    'infer-bf16': ('bf16', False),
    'infer-bf16+compile': ('bf16', True),
}
#: bounds of a speed-switch set's curve against fp32's
FIRST_LOSS_BOUND = 2e-2
CURVE_BOUND = 5e-2
CURVE_WINDOW = 20


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
    parser.add_argument('--curve-steps', type=int, default=200)
    parser.add_argument('--curve-shape', type=int, nargs=2,
                        default=[256, 256], metavar=('H', 'W'))
    parser.add_argument('--checkpoint',
                        help='weights for the inference agreement')
    parser.add_argument('--variants', nargs='+',
                        choices=list(TRAIN_VARIANTS) + list(CURVE_VARIANTS) +
                        list(INFER_VARIANTS),
                        help='run only these (default: all)')
    parser.add_argument('--json', metavar='OUT',
                        help='write the figures as JSON to OUT')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config):
        parser.error(f'config file {args.config} does not exist')
    if min([args.repeat, args.train_batch, args.curve_steps] +
           args.infer_batch) < 1 or args.warmup < 0:
        parser.error('--repeat, --curve-steps and the batches must be >= 1, '
                     '--warmup >= 0')
    return args


def left_out(name: str, device: torch.device) -> str | None:
    """Why variant ``name`` cannot run here, or None."""
    train = TRAIN_VARIANTS.get(name) or CURVE_VARIANTS.get(name)
    precision = train.precision if train else INFER_VARIANTS[name][0]
    if precision in ('fp16', 'bf16') and train and device.type != 'cuda':
        return 'AMP training needs a CUDA GPU'
    if precision == 'bf16' and device.type == 'cuda' \
            and not cuda_has_native_bf16(device):
        return f'{torch.cuda.get_device_name(device)} has no native bf16'
    if precision == 'bf16' and device.type == 'cpu' \
            and not cpu_has_native_bf16():
        return 'this CPU has no native bf16 (avx512_bf16 or amx_bf16)'
    if train and train.reference:
        try:
            load_mmpretrain_convnext()
        except ReferenceUnavailableError as err:
            return str(err)
    return None


# --------------------------------------------------------------- training


def train_config(args: argparse.Namespace, name: str) -> Config:
    """The config of a training variant: random weights, its precision, its
    checkpointing; for the reference model mmseg's config of the same
    shapes, trained as mmseg trains it."""
    variant = TRAIN_VARIANTS.get(name) or CURVE_VARIANTS[name]
    cfg = Config.fromfile(args.config)
    if variant.reference:
        cfg = reference_config(cfg)
    cfg.model.backbone.init_cfg = None
    wrapper = cfg.optim_wrapper
    if variant.precision == 'fp32':
        wrapper.type = 'OptimWrapper'
        for key in ('loss_scale', 'dtype'):
            wrapper.pop(key, None)
    else:
        wrapper.type = 'AmpOptimWrapper'
        wrapper.dtype = dict(fp16='float16',
                             bf16='bfloat16')[variant.precision]
    if variant.fused:
        wrapper.optimizer.fused = True
    if variant.with_cp:
        cfg.model.backbone.with_cp = True
    if variant.fpn_cp:
        # CheckpointedUPerHead is mmseg's UPerHead (3x3 fusion); on another
        # head it would time a different model
        if cfg.model.decode_head.type != 'UPerHead':
            raise SystemExit(
                f'error: variant {name} checkpoints a UPerHead, but '
                f'{args.config} has a {cfg.model.decode_head.type}: run it '
                'on a UPerHead config (e.g. the default '
                f'{DEFAULT_CONFIG})')
        cfg.model.decode_head.type = 'CheckpointedUPerHead'
        cfg.model.decode_head.with_cp = True
    return cfg


def build_for_training(args: argparse.Namespace, name: str,
                       device: torch.device) -> tuple[torch.nn.Module, object]:
    """A variant's model (train mode, seed 0) and optim wrapper, with its
    model-side switches applied."""
    from mmseg.registry import MODELS
    variant = TRAIN_VARIANTS.get(name) or CURVE_VARIANTS[name]
    cfg = train_config(args, name)
    if variant.reference:
        load_mmpretrain_convnext()
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = revert_sync_batchnorm(MODELS.build(cfg.model)).to(device)
    model.train()
    optim_wrapper = build_optim_wrapper(model, cfg.optim_wrapper)
    if variant.channels_last:
        to_channels_last(model, optim_wrapper)
    if variant.compiled:
        compile_backbone(model, True)
    return model, optim_wrapper


def train_variant(args: argparse.Namespace, name: str) -> dict[str, object]:
    """Median step time and peak memory of one training variant."""
    variant = TRAIN_VARIANTS[name]
    device = torch.device(args.device)
    batch_size = variant.batch or args.train_batch
    with PeakMemory(device) as peak:
        model, optim_wrapper = build_for_training(args, name, device)
        batch = random_batch(args.shape, batch_size,
                             model.decode_head.num_classes)

        def step() -> None:
            model.train_step(copy.deepcopy(batch), optim_wrapper)

        for _ in range(args.warmup):
            step()
        times = [timed(step, device) for _ in range(args.repeat)]
    return dict(summary(times, batch_size), **peak.figures(),
                batch=batch_size, optim_wrapper=type(optim_wrapper).__name__)


def scene_batches(shape: list[int], batch: int, count: int,
                  seed: int = 0) -> list[dict]:
    """``count`` dataloader batches of the synthetic scenes from a fixed
    seed: BGR images, labels 0..5 and 255 for 'other', as the quickstart
    reads them."""
    rng = np.random.default_rng(seed)
    batches = []
    for _ in range(count):
        data = random_batch(shape, batch, 6)
        for i, sample in enumerate(data['data_samples']):
            image, label = scene_sample(rng, *shape)
            data['inputs'][i] = torch.from_numpy(
                np.ascontiguousarray(image[..., ::-1].transpose(2, 0, 1)))
            labels = label.astype(np.int64) - 1
            labels[labels < 0] = 255  # label 0: 'other', ignored
            sample.gt_sem_seg.data = torch.from_numpy(labels)[None]
        batches.append(data)
    return batches


def curve_variant(args: argparse.Namespace, name: str) -> dict[str, object]:
    """The training loss at each of --curve-steps steps on the scenes."""
    device = torch.device(args.device)
    model, optim_wrapper = build_for_training(args, name, device)
    pool = scene_batches(args.curve_shape, args.train_batch,
                         min(args.curve_steps, 25))
    losses = []
    for step in range(args.curve_steps):
        log_vars = model.train_step(copy.deepcopy(pool[step % len(pool)]),
                                    optim_wrapper)
        losses.append(float(log_vars['loss']))
    return dict(losses=losses, optim_wrapper=type(optim_wrapper).__name__)


def compare_curves(curve: list[float], fp32: list[float]) -> dict[str, object]:
    """First-loss and windowed-mean relative differences from fp32's curve,
    and whether both are within the bounds."""
    first = abs(curve[0] - fp32[0]) / abs(fp32[0])
    windows = [(statistics.fmean(curve[i:i + CURVE_WINDOW]),
                statistics.fmean(fp32[i:i + CURVE_WINDOW]))
               for i in range(0, len(fp32), CURVE_WINDOW)]
    worst = max(abs(a - b) / abs(b) for a, b in windows)
    return dict(first_loss_rel_diff=round(first, 5),
                curve_max_rel_diff=round(worst, 5),
                agrees=first <= FIRST_LOSS_BOUND and worst <= CURVE_BOUND)


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
    agreement of each with fp32; each line printed when measured."""
    device = torch.device(args.device)
    plain = init_model(args.config, args.checkpoint, device=args.device,
                       cfg_options=None if args.checkpoint else {
                           'model.backbone.init_cfg': None},
                       fast=False)
    plain.test_cfg.mode = 'whole'
    models = {}
    for name in names:
        amp, compiled = INFER_VARIANTS[name]
        if amp == 'none' and not compiled:
            models[name] = plain
        elif device.type == 'cpu':
            models[name] = prepare_for_inference(
                copy.deepcopy(plain), precision=amp, measure=False,
                compile=compiled)
        else:
            models[name] = prepare_for_inference(
                copy.deepcopy(plain), amp=amp, compile=compiled)
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
                key = f'{name}@{batch}'
                results[key] = dict(
                    summary(times, batch), **peak.figures(),
                    agreement=agreement(reference, logits[name]))
                print(f'[done] {format_line(key, results[key]).strip()}',
                      flush=True)
    return results


# ---------------------------------------------------------------- output


def format_line(name: str, figures: dict[str, object]) -> str:
    """One variant's line of the report."""
    if 'left_out' in figures or 'error' in figures:
        return f'{name:>24}: {figures.get("left_out") or figures["error"]}'
    if 'losses' in figures:
        losses = figures['losses']
        line = (f'{name:>24}: loss {losses[0]:.4f} -> {losses[-1]:.4f} over '
                f'{len(losses)} steps')
        if 'vs_fp32' in figures:
            vs = figures['vs_fp32']
            line += (f'  vs fp32: first {vs["first_loss_rel_diff"]:.2e}, '
                     f'curve {vs["curve_max_rel_diff"]:.2e} '
                     f'({"agrees" if vs["agrees"] else "differs"})')
        return line
    memory = next(v for k, v in figures.items()
                  if k.startswith('peak_') and 'rise' not in k)
    extra = ''
    if 'agreement' in figures:
        extra = (f'  argmax equal '
                 f'{100 * figures["agreement"]["argmax_equal"]:.3f}%')
    return (f'{name:>24}: {figures["ms_per_batch"]:8.1f} ms/batch  '
            f'{figures["images_per_s"]:8.2f} images/s  peak '
            f'{memory / 1024:6.2f} GiB{extra}')


def report(results: dict[str, object], machine: dict[str, object]) -> None:
    print(f'machine: {machine.get("gpu", machine["cpu"])}, torch '
          f'{machine["torch"]}')
    for name, figures in results.items():
        print(format_line(name, figures))
    ref = results.get('reference-fp16', {})
    for name in ('fp16', 'bf16+cl+fused', 'bf16+cl+fused+compile'):
        ours = results.get(name, {})
        if 'images_per_s' in ours and 'images_per_s' in ref:
            print(f'{name} training throughput over mmseg\'s reference '
                  f'model: {ours["images_per_s"] / ref["images_per_s"]:.2f}x')


def run_one(args: argparse.Namespace, name: str,
            results: dict[str, object]) -> None:
    """Measure training or curve variant ``name`` into ``results`` and print
    its line at once, so that a run stopped by a time limit still leaves the
    figures it reached."""
    if name in TRAIN_VARIANTS:
        results[name] = in_subprocess(train_variant, args, name)
    else:
        results[name] = in_subprocess(curve_variant, args, name)
        fp32 = results.get('curve:fp32', {}).get('losses')
        if 'losses' in results[name] and fp32 and name != 'curve:fp32':
            results[name]['vs_fp32'] = compare_curves(
                results[name]['losses'], fp32)
    print(f'[done] {format_line(name, results[name]).strip()}', flush=True)


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    device = torch.device(args.device)
    names = args.variants or (list(TRAIN_VARIANTS) + list(CURVE_VARIANTS) +
                              list(INFER_VARIANTS))
    results: dict[str, object] = {}
    runnable_infer = []
    for name in names:
        reason = left_out(name, device)
        if reason is not None:
            results[name] = dict(left_out=reason)
            print(f'[left out] {format_line(name, results[name]).strip()}',
                  flush=True)
        elif name in INFER_VARIANTS:
            runnable_infer.append(name)
        else:
            run_one(args, name, results)
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
