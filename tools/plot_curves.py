"""Draw a training run's curves from mmengine's scalar logs.

    python tools/plot_curves.py WORK_DIR [--out PNG]

One PNG with three plots against the iteration: the training losses (total
and each head's terms), the learning rates of the heads and of the first
backbone stage, and the validation mIoU. Reads every
WORK_DIR/<timestamp>/vis_data/scalars.json (a resumed run adds one). The
default output is WORK_DIR/curves.png.
"""
import argparse
import os.path as osp
import sys

from convseg.cli import run_tool
from convseg.plots import plot_curves


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Draw the curves of a training run.')
    parser.add_argument('work_dir', help='the work dir of tools/train.py')
    parser.add_argument('--out', help='PNG to write (default: '
                        'WORK_DIR/curves.png)')
    return parser.parse_args()


def main(args: argparse.Namespace) -> None:
    out = plot_curves(args.work_dir,
                      args.out or osp.join(args.work_dir, 'curves.png'))
    print(f'wrote {out}')


if __name__ == '__main__':
    args = parse_args()
    sys.exit(run_tool(main, args))
