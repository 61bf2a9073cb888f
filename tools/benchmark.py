"""Time a segmentor's inference or training step on random images.

    python tools/benchmark.py CONFIG [--checkpoint FILE] [--device cpu|cuda:0]
        [--shape H W] [--batch N] [--mode infer|train] [--repeat N]
        [--warmup N] [--fast | --no-fast] [--precision fp32|bf16 ...]
        [--kernels OP=NAME ...] [--amp bf16|fp16|none] [--compile]
        [--test-mode config|whole|slide] [--stages] [--onnx FILE]
        [--openvino FILE ... [--openvino-precision fp32|bf16 ...]]
        [--reference] [--json OUT]

infer: ``model.inference`` on a batch of random images, whole-image unless
--test-mode says slide (or the config's mode). Without --fast/--no-fast the
plain model and the one prepared by
``convseg.fast.prepare_for_inference`` (one per --precision: ``fast``
for fp32, ``fast_bf16`` for bf16) run in the same process, interleaved
(plain, fast, fast, plain, ...), and each fast variant's speedup and
agreement with the plain model are printed: the fraction of pixels whose
argmax is equal and max |fast - plain| / max |plain| over the logits.
--fast or --no-fast times only that one. The CPU's model and ISA flags
(AVX-512, avx512_bf16, AMX) and the fast path's kernel table (measured on
the first, untimed run, or read from the kernel cache) are printed too.
--stages adds, per convseg model (not onnxruntime or --reference: they have
no convseg API), a row for each stage of the API on one random
image: ``encode_decode`` (the network, the resize of its logits, argmax),
``inference_labels``, ``inference_model`` and ``inference_model`` with
``return_logits=True`` (test pipeline, data preprocessor, network, labels),
all interleaved, printed side by side as multiples of ``encode_decode``, so
that the API's overhead over the network shows; with each model's labels'
agreement with its own ``encode_decode`` argmax and with the plain model's
labels. --onnx adds an exported file run by
onnxruntime (same inputs, same interleaving) and its agreement with plain;
--openvino adds OpenVINO files, each at every --openvino-precision hint, the
same way. --reference adds mmseg's reference model of the same shapes
(:mod:`convseg.benchmarks.reference`), or says why it is left out.

train: one ``train_step`` (forward, backward, optimizer step) of the config's
model and optimizer on random images and labels, with the backbone's
``with_cp`` off and on: the two step times interleaved in one subprocess, the
peak memory of each in a subprocess of its own (model built, warm-up steps
and one more step), so that the two do not mix.

Every figure is a median over --repeat timed runs after --warmup untimed
ones: ms per batch, ms per image, images/s, and peak memory (GPU:
``torch.cuda.max_memory_allocated``; CPU: the peak resident set size of the
process during the runs, and its rise over the size before them; for
inference, during the warm-up runs, which build the fast path's caches). The
machine and its load (/proc/loadavg) are printed with them. Without
--checkpoint the weights are random (the backbone's pretrained init_cfg is
dropped).

The machine, memory, timing and random-batch helpers are
:mod:`convseg.benchmarks`, shared with tools/benchmark_gpu.py; this file
reads top to bottom: arguments, inference, training, output.
"""
from __future__ import annotations

import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import copy
import json
import os
from collections.abc import Callable

import numpy as np
import torch
from mmengine.config import Config, DictAction
from mmengine.model import revert_sync_batchnorm
from mmengine.optim import build_optim_wrapper
from mmengine.registry import init_default_scope

from convseg.apis import inference_labels, inference_model, init_model
from convseg.apis.inference import build_test_pipeline
from convseg.benchmarks.batches import agreement, random_batch
from convseg.benchmarks.machine import load_average, machine_info
from convseg.benchmarks.reference import (ReferenceUnavailableError,
                                          build_reference)
from convseg.benchmarks.timing import (PeakMemory, in_subprocess, summary,
                                       timed)
from convseg.deploy.openvino_runtime import init_openvino_model
from convseg.engine import fit_to_device
from convseg.fast import (UnknownKernelError, check_precision,
                          prepare_for_inference)
from convseg.fast.kernels import kernel


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Time inference or a training step of a segmentor.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--checkpoint',
                        help='checkpoint file (default: '
                        'random weights)')
    parser.add_argument('--device', default='cpu', help='cpu or cuda[:N]')
    parser.add_argument('--shape',
                        type=int,
                        nargs=2,
                        default=[512, 512],
                        metavar=('H', 'W'),
                        help='image size (512 512)')
    parser.add_argument('--batch',
                        type=int,
                        default=1,
                        help='images per call (1)')
    parser.add_argument('--mode', choices=['infer', 'train'], default='infer')
    parser.add_argument('--repeat',
                        type=int,
                        default=5,
                        help='timed runs per variant; the median is given')
    parser.add_argument('--warmup',
                        type=int,
                        default=1,
                        help='untimed runs per variant before timing')
    fast = parser.add_mutually_exclusive_group()
    fast.add_argument('--fast',
                      dest='fast',
                      action='store_true',
                      default=None,
                      help='infer: time only the fast path')
    fast.add_argument('--no-fast',
                      dest='fast',
                      action='store_false',
                      help='infer: time only the plain model')
    parser.add_argument('--precision',
                        nargs='+',
                        choices=['fp32', 'bf16'],
                        default=['fp32'],
                        help='infer: fast path arithmetic, one variant per '
                        'value (fp32; bf16 needs native bf16)')
    parser.add_argument('--kernels',
                        nargs='+',
                        default=[],
                        metavar='OP=NAME',
                        help='infer, CPU fast path: force these kernels, '
                        'e.g. conv3x3=direct (default: measured)')
    parser.add_argument('--amp',
                        choices=['bf16', 'fp16', 'none'],
                        help='infer, fast path on GPU: autocast dtype '
                        '(default: bf16 where native, else fp16); on CPU '
                        'use --precision')
    parser.add_argument('--compile',
                        action='store_true',
                        help='infer, fast path: torch.compile the backbone')
    parser.add_argument('--test-mode',
                        choices=['config', 'whole', 'slide'],
                        default='whole',
                        help='infer: whole-image (default), sliding-window, '
                        'or the config\'s test_cfg.mode')
    parser.add_argument('--stages',
                        action='store_true',
                        help='infer: also time encode_decode, '
                        'inference_labels and inference_model per model')
    parser.add_argument('--cfg-options',
                        nargs='+',
                        action=DictAction,
                        help='override config entries')
    parser.add_argument('--onnx',
                        metavar='FILE',
                        help='infer: also time this ONNX file (from '
                        'tools/export_onnx.py) with onnxruntime, interleaved '
                        'with the others, and its agreement with plain')
    parser.add_argument('--reference',
                        action='store_true',
                        help="infer: also time mmseg's reference model "
                        "(mmpretrain's ConvNeXt, mmseg's heads; "
                        'convseg.benchmarks.reference) of the same shapes, '
                        'interleaved, or say why it is left out')
    parser.add_argument('--openvino',
                        metavar='FILE',
                        nargs='+',
                        help='infer: also time these OpenVINO .xml files '
                        '(from tools/export_openvino.py), each at every '
                        '--openvino-precision, and their agreement with plain')
    parser.add_argument('--openvino-precision',
                        nargs='+',
                        choices=['fp32', 'bf16'],
                        default=['fp32'],
                        help="OpenVINO's inference precision hints to run")
    parser.add_argument('--json',
                        metavar='OUT',
                        help='write the figures '
                        'as JSON to OUT')
    args = parser.parse_args(argv)
    if not os.path.isfile(args.config):
        parser.error(f'config file {args.config} does not exist')
    if args.checkpoint and not os.path.isfile(args.checkpoint):
        parser.error(f'checkpoint {args.checkpoint} does not exist')
    if args.repeat < 1 or args.batch < 1 or args.warmup < 0:
        parser.error('--repeat and --batch must be >= 1, --warmup >= 0')
    if args.mode == 'train' and (args.fast is not None or args.compile
                                 or args.amp or args.kernels
                                 or args.precision != ['fp32']):
        parser.error('--fast/--no-fast, --precision, --kernels, --amp and '
                     '--compile are for --mode infer: training never uses '
                     'the fast path')
    if args.amp and args.device == 'cpu':
        parser.error('--amp is for GPUs; on CPU use --precision bf16')
    args.precision = list(dict.fromkeys(args.precision))
    forced = {}
    for item in args.kernels:
        op, _, name = item.partition('=')
        try:
            kernel(op, name)
        except UnknownKernelError as err:
            parser.error(f'--kernels {item}: {err}')
        forced[op] = name
    args.kernels = forced
    if args.mode == 'train' and args.onnx:
        parser.error('--onnx is for --mode infer: an ONNX graph does not '
                     'train')
    return args


# -------------------------------------------------------------- inference


#: the fast variant of each precision; its figures' keys end the same way
FAST_NAMES = {'fp32': 'fast', 'bf16': 'fast_bf16'}


def run_infer(args: argparse.Namespace) -> dict[str, object]:
    device = torch.device(args.device)
    cfg_options = dict(args.cfg_options or {})
    if args.checkpoint is None:
        cfg_options['model.backbone.init_cfg'] = None
    plain = init_model(args.config,
                       args.checkpoint,
                       device=args.device,
                       cfg_options=cfg_options,
                       fast=False)
    if args.test_mode != 'config':
        plain.test_cfg.mode = args.test_mode
    variants = {}
    if args.fast is not True:
        variants['plain'] = plain
    if args.fast is not False:
        for precision in args.precision:
            check_precision(precision, device)
            variants[FAST_NAMES[precision]] = prepare_for_inference(
                copy.deepcopy(plain) if args.fast is None else plain,
                precision=precision,
                kernels=args.kernels,
                amp=args.amp,
                compile=args.compile)
    if args.onnx:
        variants['onnxruntime'] = init_model(args.config, args.onnx,
                                             device=args.device,
                                             cfg_options=cfg_options)
        variants['onnxruntime'].test_cfg.mode = plain.test_cfg.mode
    reference_left_out = None
    if args.reference:
        try:
            reference, route = build_reference(plain.cfg)
        except ReferenceUnavailableError as err:
            reference_left_out = str(err)
        else:
            variants[f'reference ({route})'] = reference.to(device).eval()
            variants[f'reference ({route})'].test_cfg = plain.test_cfg
    for path in args.openvino or ():
        for precision in args.openvino_precision:
            name = f'openvino:{os.path.basename(path)}:{precision}'
            variants[name] = init_openvino_model(args.config, path,
                                                 args.device, cfg_options,
                                                 precision)
            variants[name].test_cfg.mode = plain.test_cfg.mode
    data = plain.data_preprocessor(
        random_batch(args.shape, args.batch, plain.decode_head.num_classes),
        False)
    inputs = data['inputs'].to(device)
    metas = [s.metainfo for s in data['data_samples']]
    logits: dict[str, torch.Tensor] = {}
    times: dict[str, list[float]] = {name: [] for name in variants}
    memory: dict[str, dict[str, float]] = {}

    def call(name: str) -> None:
        logits[name] = variants[name].inference(inputs, copy.deepcopy(metas))

    with torch.no_grad():
        for name in variants:
            with PeakMemory(device) as peak:
                for _ in range(max(1, args.warmup)):
                    call(name)
            memory[name] = peak.figures()
        names = list(variants)
        for rep in range(args.repeat):
            for name in (names if rep % 2 == 0 else names[::-1]):
                times[name].append(timed(lambda: call(name), device))
    results = {
        name: dict(summary(times[name], args.batch), **memory[name])
        for name in variants
    }
    if args.stages:
        # onnxruntime and mmseg's reference have no convseg API to time:
        # their rows are the table's above
        results.update(run_stages(args, {
            name: model for name, model in variants.items()
            if name != 'onnxruntime' and not name.startswith('reference')}))
    if reference_left_out is not None:
        results['reference'] = dict(left_out=reference_left_out)
    if 'plain' in variants and 'onnxruntime' in variants:
        results['onnxruntime_agreement'] = agreement(logits['plain'],
                                                     logits['onnxruntime'])
    for name in variants:
        if name.startswith('openvino:') and 'plain' in variants:
            results[name + '_agreement'] = agreement(logits['plain'],
                                                     logits[name])
    for name, model in variants.items():
        chooser = getattr(model, 'kernel_chooser', None)
        if chooser is not None and chooser.decisions:
            results.setdefault('kernels', {})[name] = chooser.table()
        if name not in FAST_NAMES.values() or 'plain' not in variants:
            continue
        suffix = name[len('fast'):]
        results['speedup' + suffix] = round(
            results['plain']['ms_per_batch'] / results[name]['ms_per_batch'],
            3)
        results['agreement' + suffix] = agreement(logits['plain'],
                                                  logits[name])
    return results


STAGES = ('encode_decode', 'inference_labels', 'inference_model',
          'inference_model+logits')


def run_stages(args: argparse.Namespace,
               variants: dict[str, torch.nn.Module]) -> dict[str, dict]:
    """``NAME/STAGE`` figures of each model's API stages, interleaved, and
    ``NAME/labels_equal``: the fraction of pixels where its
    ``inference_labels`` equal the argmax of its own ``encode_decode``
    (``own``) and the plain model's ``inference_labels`` (``plain``)."""
    device = torch.device(args.device)
    gen = np.random.default_rng(0)
    images = [
        gen.integers(0, 256, (*args.shape, 3), dtype=np.uint8)
        for _ in range(args.batch)
    ]
    calls: dict[str, Callable[[], object]] = {}
    for name, model in variants.items():
        pipeline = build_test_pipeline(model.cfg)
        packed = [pipeline(dict(img=image)) for image in images]
        data = model.data_preprocessor(
            dict(inputs=[p['inputs'] for p in packed],
                 data_samples=[p['data_samples'] for p in packed]), False)
        inputs = data['inputs'].to(device)
        metas = [sample.metainfo for sample in data['data_samples']]
        calls[f'{name}/encode_decode'] = (
            lambda model=model, inputs=inputs, metas=metas: model.
            encode_decode(inputs, copy.deepcopy(metas)).argmax(1))
        calls[f'{name}/inference_labels'] = (
            lambda model=model: inference_labels(model, images))
        calls[f'{name}/inference_model'] = (
            lambda model=model: inference_model(model, images))
        calls[f'{name}/inference_model+logits'] = (
            lambda model=model: inference_model(model, images,
                                                return_logits=True))
    times: dict[str, list[float]] = {key: [] for key in calls}
    outputs: dict[str, object] = {}
    keys = list(calls)
    with torch.no_grad():
        for key in keys:
            outputs[key] = calls[key]()
        for rep in range(args.repeat):
            for key in (keys if rep % 2 == 0 else keys[::-1]):
                times[key].append(timed(calls[key], device))
    results = {key: summary(t, args.batch) for key, t in times.items()}
    for name in variants:
        labels = np.stack(outputs[f'{name}/inference_labels'])
        own = outputs[f'{name}/encode_decode'].cpu().numpy()
        agree = dict(own=float((labels == own).mean()))
        if 'plain' in variants:
            plain = np.stack(outputs['plain/inference_labels'])
            agree['plain'] = float((labels == plain).mean())
        results[f'{name}/labels_equal'] = agree
    return results


def print_stages(results: dict[str, object]) -> None:
    """The API stages of each model side by side, each as ms per batch and
    as a multiple of its ``encode_decode`` (network, resize, argmax)."""
    names = [key[:-len('/encode_decode')] for key in results
             if key.endswith('/encode_decode')]
    if not names:
        return
    print('API stages, ms per batch (x its encode_decode + argmax); labels '
          'equal to its own encode_decode argmax / to plain\'s labels:')
    print(f'{"model":>27}  ' + '  '.join(f'{s:>22}' for s in STAGES) +
          '  labels equal')
    for name in names:
        base = results[f'{name}/encode_decode']['ms_per_batch']
        cells = []
        for stage in STAGES:
            ms = results[f'{name}/{stage}']['ms_per_batch']
            cells.append(f'{ms:>13.1f} ({ms / base:5.2f}x)')
        agree = results[f'{name}/labels_equal']
        equal = f'{100 * agree["own"]:.3f}%' + (
            f' / {100 * agree["plain"]:.3f}%' if 'plain' in agree else '')
        print(f'{name:>27}  ' + '  '.join(f'{c:>22}' for c in cells) +
              f'  {equal}')


# --------------------------------------------------------------- training


def _build_for_training(args: argparse.Namespace, with_cp: bool):
    """The config's model (random weights, train mode) and optimizer."""
    from mmseg.registry import MODELS
    device = torch.device(args.device)
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    cfg.model.backbone.init_cfg = None
    cfg.model.backbone.with_cp = with_cp
    fit_to_device(cfg)
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    torch.manual_seed(0)
    model = MODELS.build(cfg.model)
    if device.type == 'cpu':
        model = revert_sync_batchnorm(model)
    model.to(device)
    model.train()
    return model, build_optim_wrapper(model, cfg.optim_wrapper)


def _train_memory(args: argparse.Namespace, with_cp: bool) -> dict:
    """Peak memory over the warm-up steps and one more training step."""
    device = torch.device(args.device)
    with PeakMemory(device) as peak:
        model, optim_wrapper = _build_for_training(args, with_cp)
        batch = random_batch(args.shape, args.batch,
                             model.decode_head.num_classes)
        for _ in range(args.warmup + 1):
            model.train_step(copy.deepcopy(batch), optim_wrapper)
    return dict(peak.figures(), optim_wrapper=type(optim_wrapper).__name__)


def _train_times(args: argparse.Namespace) -> dict:
    """Step times without and with with_cp, interleaved in one process."""
    device = torch.device(args.device)
    variants = [_build_for_training(args, with_cp) for with_cp in (0, 1)]
    batch = random_batch(args.shape, args.batch,
                         variants[0][0].decode_head.num_classes)
    times: list[list[float]] = [[], []]
    for _ in range(args.warmup):
        for model, optim_wrapper in variants:
            model.train_step(copy.deepcopy(batch), optim_wrapper)
    for rep in range(args.repeat):
        for index in ((0, 1) if rep % 2 == 0 else (1, 0)):
            model, optim_wrapper = variants[index]
            times[index].append(
                timed(
                    lambda: model.train_step(copy.deepcopy(batch),
                                             optim_wrapper), device))
    return {
        f'with_cp={bool(i)}': summary(times[i], args.batch)
        for i in (0, 1)
    }


def run_train(args: argparse.Namespace) -> dict[str, object]:
    """Peak memory of each variant in its own process, then both timed."""
    results: dict[str, object] = in_subprocess(_train_times, args)
    for with_cp in (False, True):
        results[f'with_cp={with_cp}'].update(
            in_subprocess(_train_memory, args, with_cp))
    off, on = results['with_cp=False'], results['with_cp=True']
    key = next(k for k in off
               if k.startswith('peak_') and not k.endswith('rise_mib'))
    rise = key.replace('_mib', '_rise_mib')
    results['with_cp_memory_saving'] = round(1 - on[key] / off[key], 3)
    results['with_cp_memory_rise_saving'] = round(1 - on[rise] / off[rise], 3)
    results['with_cp_time_cost'] = round(
        on['ms_per_batch'] / off['ms_per_batch'] - 1, 3)
    return results


# ---------------------------------------------------------------- output


def report(args: argparse.Namespace, results: dict[str, object],
           machine: dict[str, object]) -> None:
    print(f'{args.config}  mode={args.mode}  device={args.device}  '
          f'shape={args.shape[0]}x{args.shape[1]}  batch={args.batch}  '
          f'median of {args.repeat}')
    print(f'machine: {machine["cpu"]} ({machine["isa"]}), '
          f'{machine["cores"]} cores, torch {machine["torch"]} with '
          f'{machine["torch_threads"]} threads' +
          (f', {machine["gpu"]}' if 'gpu' in machine else ''))
    print(f'load average before: {machine["loadavg"]}  after: '
          f'{results["loadavg_after"]}')
    for name, figures in results.items():
        if isinstance(figures, dict) and 'left_out' in figures:
            print(f'{name:>14}: left out: {figures["left_out"]}')
        if not isinstance(figures, dict) or 'ms_per_batch' not in figures:
            continue
        memory = '  '.join(f'{k} {v}' for k, v in figures.items()
                           if k.startswith('peak_'))
        print(f'{name:>27}: {figures["ms_per_batch"]:9.1f} ms/batch  '
              f'{figures["ms_per_image"]:9.1f} ms/image  '
              f'{figures["images_per_s"]:7.3f} images/s  {memory}')
    for name in FAST_NAMES.values():
        suffix = name[len('fast'):]
        if 'speedup' + suffix not in results:
            continue
        agree = results['agreement' + suffix]
        print(f'speedup ({name} over plain): '
              f'{results["speedup" + suffix]:.2f}x')
        print(f'agreement ({name}): argmax equal on '
              f'{100 * agree["argmax_equal"]:.4f}% of pixels, max |{name} - '
              f'plain| / max |plain| = {agree["max_rel_logit_diff"]:.2e}')
    print_stages(results)
    for name, table in results.get('kernels', {}).items():
        print(f'kernels of {name} (op, shape, kernel, how chosen, timings):')
        print(table)
    if 'onnxruntime_agreement' in results:
        agree = results['onnxruntime_agreement']
        print(f'onnxruntime: argmax equal on '
              f'{100 * agree["argmax_equal"]:.4f}% of pixels, max |ort - '
              f'plain| / max |plain| = {agree["max_rel_logit_diff"]:.2e}')
    for name, agree in results.items():
        if name.startswith('openvino:') and name.endswith('_agreement'):
            print(f'{name[:-len("_agreement")]}: argmax equal on '
                  f'{100 * agree["argmax_equal"]:.4f}% of pixels, max |ov - '
                  f'plain| / max |plain| = {agree["max_rel_logit_diff"]:.2e}')
    if 'with_cp_memory_saving' in results:
        peak = -100 * results['with_cp_memory_saving']
        rise = -100 * results['with_cp_memory_rise_saving']
        cost = 100 * results['with_cp_time_cost']
        print(f'with_cp: peak memory {peak:+.1f}% (rise over the start '
              f'{rise:+.1f}%), time {cost:+.1f}% per step')


def main(argv: list[str] | None = None) -> dict[str, object]:
    args = parse_args(argv)
    device = torch.device(args.device)
    torch.manual_seed(0)
    np.random.seed(0)
    machine = machine_info(device)
    results = run_infer(args) if args.mode == 'infer' else run_train(args)
    results['loadavg_after'] = load_average()
    report(args, results, machine)
    if args.json:
        with open(args.json, 'w') as f:
            json.dump(dict(args=vars(args), machine=machine, results=results),
                      f,
                      indent=2)
    return results


if __name__ == '__main__':
    main()
