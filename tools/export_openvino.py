"""Export a UPerNet segmentor to OpenVINO (fp32, bf16 hint or int8) and
check the file against PyTorch.

    python tools/export_openvino.py CONFIG CHECKPOINT OUT.xml \
        [--shape H W] [--dynamic] [--precision fp32|bf16] [--int8] \
        [--calib-images N] [--val-images N] [--max-miou-drop X] \
        [--keep-float K] \
        [--cfg-options KEY=VALUE ...]

The model goes through the ONNX export (same contract: ``image`` RGB 0..255
in, ``logits`` and ``labels`` out; classes and palette in the file) and
``openvino.convert_model``; OUT.xml and OUT.bin are written atomically, only
after every step before has worked. ``--precision`` is the inference
precision hint stored in the file. ``--int8`` quantizes with NNCF on
``--calib-images`` images of the config's train split (through its test
pipeline); ``--max-miou-drop`` turns on NNCF's accuracy control with the val
split's mIoU, and the tool prints the float and int8 mIoU and their pixel
agreement on the val split (``--val-images N``: N images spread evenly over
it, for a large split on a CPU).

After writing, the file runs on random images beside the PyTorch model. It
prints the max relative logit difference and the pixel agreement and exits
1 (the file is kept) when they are outside ``--max-rel-diff`` (default 1e-4
for fp32) or ``--min-agreement`` (default 99.99% for fp32); bf16 and int8
have no default limits. Needs the openvino extra:
``pip install -e ".[openvino]"`` (and the deploy extra for the ONNX step).
"""
from __future__ import annotations

import argparse
import sys

import torch
from mmengine.config import DictAction

from convseg.cli import add_unsafe_load_argument, run_tool
from convseg.deploy.errors import require

MAX_REL_DIFF = 1e-4
MIN_AGREEMENT = 0.9999


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('out', help='OpenVINO .xml file to write (and its '
                        '.bin beside it)')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (default: the slide '
                        'crop size of the config, else its training crop '
                        'size, else 512 512)')
    parser.add_argument('--dynamic', action='store_true',
                        help='any batch size and any H, W >= 64')
    parser.add_argument('--precision', choices=['fp32', 'bf16'],
                        default='fp32',
                        help="OpenVINO's inference precision hint")
    parser.add_argument('--int8', action='store_true',
                        help='quantize to int8 with NNCF')
    parser.add_argument('--calib-images', type=int, default=300,
                        help='train images to calibrate int8 on')
    parser.add_argument('--val-images', type=int,
                        help='with --int8: val images (spread evenly over '
                        'the split) for the mIoU report and the accuracy '
                        'control (default: all)')
    parser.add_argument('--max-miou-drop', type=float,
                        help='with --int8: NNCF accuracy control, at most '
                        'this many mIoU points below float on the val split')
    parser.add_argument('--keep-float', default='layernorm',
                        choices=['none', 'layernorm', 'transformer'],
                        help='with --int8: what stays in float (layernorm: '
                        "LayerNorms and the MatMuls they feed; transformer: "
                        "NNCF's transformer model type)")
    parser.add_argument('--max-rel-diff', type=float,
                        help='fail when max |ov - torch| / max |torch| of '
                        'the logits is larger (default 1e-4 for fp32)')
    parser.add_argument('--min-agreement', type=float,
                        help='fail when fewer pixels have the same label '
                        '(default 0.9999 for fp32)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config keys, e.g. '
                        'train_dataloader.dataset.data_root=DIR')
    add_unsafe_load_argument(parser)
    args = parser.parse_args(argv)
    if not args.out.lower().endswith('.xml'):
        parser.error(f'OUT must be an .xml file, got {args.out}')
    if args.calib_images < 1:
        parser.error(f'--calib-images must be at least 1, got '
                     f'{args.calib_images}')
    if args.val_images is not None and args.val_images < 1:
        parser.error(f'--val-images must be at least 1, got '
                     f'{args.val_images}')
    for name in ('max_miou_drop', 'val_images'):
        if getattr(args, name) is not None and not args.int8:
            parser.error(f'--{name.replace("_", "-")} is an option of --int8')
    if args.precision == 'fp32' and not args.int8:
        args.max_rel_diff = args.max_rel_diff or MAX_REL_DIFF
        args.min_agreement = args.min_agreement or MIN_AGREEMENT
    return args


def _limit(value: float | None, fmt: str) -> str:
    return 'no limit' if value is None else f'limit {fmt.format(value)}'


def val_report(items: list[dict], cfg, float_model, int8_model,
               precision: str) -> tuple[float, float]:
    """Print float and int8 mIoU and pixel agreement on the val split's
    ``items``; returns the two mIoUs."""
    from convseg.deploy.openvino_runtime import OvSegmentor
    from convseg.deploy.quantize import val_ignore_index, val_miou

    ignore_index = val_ignore_index(cfg)
    labels, mious = [], []
    for name, ov_model in (('float', float_model), ('int8', int8_model)):
        seg = OvSegmentor(f'{name}.xml', cfg, precision, model=ov_model)
        labels.append([])
        mious.append(val_miou(seg, items, ignore_index, labels[-1])[0])
    same = sum(int((a == b).sum()) for a, b in zip(*labels))
    total = sum(a.numel() for a in labels[0])
    print(f'val split ({len(items)} images): float mIoU {mious[0]:.2f}, '
          f'int8 mIoU {mious[1]:.2f} (drop {mious[0] - mious[1]:.2f}), '
          f'pixel agreement {100 * same / total:.4f}%')
    return mious[0], mious[1]


def run(args: argparse.Namespace) -> int:
    """Export, quantize, check, print the figures; returns the exit code."""
    for package, extra in (('onnx', 'deploy'), ('onnxscript', 'deploy'),
                           ('openvino', 'openvino')):
        require(package, extra)
    from convseg.apis import init_model
    from convseg.deploy.export import default_shape
    from convseg.deploy.openvino_export import (compare_with_openvino,
                                                convert_to_openvino,
                                                save_openvino)

    model = init_model(args.config, args.checkpoint, device='cpu',
                       fast=False, cfg_options=args.cfg_options)
    height, width = args.shape or default_shape(model)
    ov_model = convert_to_openvino(model, (height, width),
                                   dynamic=args.dynamic)
    failed = False
    if args.int8:
        from convseg.deploy.quantize import (calibration_images,
                                             quantize_int8,
                                             quantize_int8_within, val_items)

        # the val split first: a missing one stops here, not after the
        # minutes of calibration
        items = val_items(model.cfg, args.val_images)
        shape = (None, None) if args.dynamic else (height, width)
        images = calibration_images(model.cfg, args.calib_images, shape)
        if args.max_miou_drop is None:
            quantized = quantize_int8(ov_model, images, args.keep_float)
        else:
            quantized = quantize_int8_within(
                ov_model, images, model.cfg, args.max_miou_drop,
                args.keep_float, args.precision, items)
        float_miou, int8_miou = val_report(items, model.cfg, ov_model,
                                           quantized, args.precision)
        if (args.max_miou_drop is not None
                and float_miou - int8_miou > args.max_miou_drop):
            print(f'error: int8 mIoU is {float_miou - int8_miou:.2f} below '
                  f'float, over --max-miou-drop {args.max_miou_drop}',
                  file=sys.stderr)
            failed = True
        ov_model = quantized
    save_openvino(ov_model, args.out, args.precision)
    kind = ('any batch and size' if args.dynamic
            else f'batch 1, {height}x{width}')
    weights = 'int8' if args.int8 else 'fp32'
    print(f'wrote {args.out} ({kind}, {weights} weights, {args.precision} '
          'hint): image (N, 3, H, W) RGB 0..255 -> logits (N, C, H, W), '
          'labels (N, H, W)')
    checks = [(1, height, width)]
    if args.dynamic:
        checks.append((2, height + 32, width + 64))
    generator = torch.Generator().manual_seed(0)
    for batch, h, w in checks:
        images = torch.randint(0, 256, (batch, 3, h, w),
                               generator=generator).float()
        result = compare_with_openvino(model, args.out, images,
                                       args.precision)
        ok = ((args.max_rel_diff is None
               or result['max_rel_diff'] <= args.max_rel_diff)
              and (args.min_agreement is None
                   or result['agreement'] >= args.min_agreement))
        failed |= not ok
        print(f'check batch {batch}, {h}x{w}: max relative logit difference '
              f'{result["max_rel_diff"]:.3g} '
              f'({_limit(args.max_rel_diff, "{:g}")}), pixel agreement '
              f'{100 * result["agreement"]:.4f}% '
              f'({_limit(args.min_agreement, "{:.4%}")}): '
              f'{"ok" if ok else "FAILED"}')
    if failed:
        print(f'error: the OpenVINO model is outside the limits; {args.out} '
              'is kept for inspection', file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool; returns the exit code (1 with a message on errors)."""
    args = parse_args(argv)
    return run_tool(run, args, unsafe_load=args.unsafe_load)


if __name__ == '__main__':
    sys.exit(main())
