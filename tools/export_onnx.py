"""Export a UPerNet segmentor to ONNX and check the file with onnxruntime.

    python tools/export_onnx.py CONFIG CHECKPOINT OUT.onnx \
        [--shape H W] [--dynamic] [--opset N] [--batch N]

The graph takes ``image``: float32 (N, 3, H, W), RGB, 0..255 (mean, std and
channel order are inside) and gives ``logits`` (N, num_classes, H, W) and
``labels`` (N, H, W). ``--shape`` defaults to the config's slide crop size,
else its training crop size, else 512x512. ``--dynamic`` takes any batch
and any H, W >= 64 (nothing is padded: the graph computes what the PyTorch
model computes at that size). Class names and palette go into the file's
metadata.

After writing, the file runs with onnxruntime on random images beside the
PyTorch model (at the export shape; with ``--dynamic`` also at a second
shape and batch). It prints the max relative logit difference and the pixel
agreement, and exits 1 (the file is kept) when the difference is over
``--max-rel-diff`` (1e-4) or the agreement under ``--min-agreement``
(99.99%). Needs the deploy extra: ``pip install -e ".[deploy]"``.
"""
from __future__ import annotations

import argparse
import sys

import torch

from convseg.cli import add_unsafe_load_argument, run_tool
from convseg.deploy.errors import require

MAX_REL_DIFF = 1e-4
MIN_AGREEMENT = 0.9999


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    """Command-line arguments."""
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('config', help='model config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument('out', help='ONNX file to write')
    parser.add_argument('--shape', type=int, nargs=2, metavar=('H', 'W'),
                        help='input height and width (default: the slide '
                        'crop size of the config, else its training crop '
                        'size, else 512 512)')
    parser.add_argument('--batch', type=int, default=1,
                        help='batch size of the graph (the example batch '
                        'with --dynamic)')
    parser.add_argument('--dynamic', action='store_true',
                        help='any batch size and any H, W >= 64')
    parser.add_argument('--opset', type=int,
                        help="ONNX opset (default: the exporter's)")
    parser.add_argument('--max-rel-diff', type=float, default=MAX_REL_DIFF,
                        help='fail when max |ort - torch| / max |torch| of '
                        'the logits is larger')
    parser.add_argument('--min-agreement', type=float, default=MIN_AGREEMENT,
                        help='fail when fewer pixels have the same label')
    add_unsafe_load_argument(parser)
    args = parser.parse_args(argv)
    if args.batch < 1:
        parser.error(f'--batch must be at least 1, got {args.batch}')
    return args


def run(args: argparse.Namespace) -> int:
    """Export, check, print the figures; returns the exit code."""
    for package in ('onnx', 'onnxruntime', 'onnxscript'):
        require(package)
    from convseg.apis import init_model
    from convseg.deploy.export import (compare_with_onnx, default_shape,
                                       export_onnx)

    model = init_model(args.config, args.checkpoint, fast=False)
    height, width = args.shape or default_shape(model)
    export_onnx(model, args.out, (height, width), batch=args.batch,
                dynamic=args.dynamic, opset=args.opset)
    shape = ('any batch and size' if args.dynamic
             else f'batch {args.batch}, {height}x{width}')
    print(f'wrote {args.out} ({shape}): image (N, 3, H, W) RGB 0..255 -> '
          'logits (N, C, H, W), labels (N, H, W)')
    checks = [(args.batch, height, width)]
    if args.dynamic:
        checks.append((args.batch + 1, height + 32, width + 64))
    generator = torch.Generator().manual_seed(0)
    failed = False
    for batch, h, w in checks:
        images = torch.randint(0, 256, (batch, 3, h, w),
                               generator=generator).float()
        result = compare_with_onnx(model, args.out, images)
        ok = (result['max_rel_diff'] <= args.max_rel_diff
              and result['agreement'] >= args.min_agreement)
        failed |= not ok
        print(f'check batch {batch}, {h}x{w}: max relative logit difference '
              f'{result["max_rel_diff"]:.3g} (limit {args.max_rel_diff:g}), '
              f'pixel agreement {100 * result["agreement"]:.4f}% (limit '
              f'{100 * args.min_agreement:g}%): {"ok" if ok else "FAILED"}')
    if failed:
        print(f'error: onnxruntime does not reproduce the PyTorch model; '
              f'{args.out} is kept for inspection', file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Run the tool; returns the exit code (1 with a message on errors)."""
    args = parse_args(argv)
    return run_tool(run, args, unsafe_load=args.unsafe_load)


if __name__ == '__main__':
    sys.exit(main())
