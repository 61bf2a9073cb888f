"""Check the dataset of a config file by file before training on it.

    python tools/check_dataset.py CONFIG [--split train|val|test ...]
        [--quick] [--nproc N] [--cfg-options KEY=VALUE ...]

Reads every image and label of the chosen splits (default: train and val)
and prints one line per problem: an image without a label or a label
without an image, unreadable or truncated files, files whose header declares
more pixels than $CONVSEG_MAX_IMAGE_PIXELS allows (not decoded), image/label
size mismatches as the pipeline decodes the files (EXIF orientation
applied), label values that are neither a class id nor the ignore index,
labels with more than one channel, an empty split, and model heads whose
num_classes differs from the dataset's. --quick checks only the folders and
the config. Exits 1 if there is any problem, 0 otherwise.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import os.path as osp
import sys

from mmengine.config import Config, DictAction

from convseg.datasets.checks import SPLITS, check_dataset


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Check the dataset of a config file by file.')
    parser.add_argument('config', help='config file')
    parser.add_argument('--split', nargs='+', choices=list(SPLITS),
                        default=['train', 'val'],
                        help='splits to check (default: train val)')
    parser.add_argument('--quick', action='store_true',
                        help='check folders and config only, read no file')
    parser.add_argument('--nproc', type=int, default=1,
                        help='processes reading files (default: 1)')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries, e.g. '
                        'train_dataloader.dataset.data_root=/data/ade')
    args = parser.parse_args()
    if not osp.isfile(args.config):
        parser.error(f'config file {args.config} does not exist')
    if args.nproc < 1:
        parser.error(f'--nproc must be at least 1, got {args.nproc}')
    return args


def main() -> int:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    total = 0
    for split in args.split:
        if not cfg.get(SPLITS[split]):
            print(f'{split}: the config has no {SPLITS[split]}')
            continue
        problems = check_dataset(cfg, split, full=not args.quick,
                                 nproc=args.nproc)
        total += len(problems)
        for problem in problems:
            print(f'{split}: {problem.kind}: {problem}')
        if not problems:
            print(f'{split}: OK')
    if total:
        print(f'{total} problem(s) found', file=sys.stderr)
        return 1
    return 0


if __name__ == '__main__':
    sys.exit(main())
