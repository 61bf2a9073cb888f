"""Statistics of a config's dataset, and class weights for the loss.

    python tools/dataset_stats.py CONFIG [--split train|val|test]
        [--out-dir DIR]
        [--class-weights {inverse,inverse-sqrt,median-frequency}]
        [--write NEW_CONFIG] [--cfg-options KEY=VALUE ...]

Prints per class the pixel share and the number of images it appears in,
per channel the image mean and std beside the config's data_preprocessor,
the image sizes (min, median, max) and the ignored-pixel share; writes them
to DIR/<config name>_<split>_stats.json and _stats.png (DIR default: the
config's folder). --class-weights prints the loss's class_weight list;
--write writes a config inheriting CONFIG whose losses use it.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import os.path as osp
import sys

from mmengine.config import DictAction

from convseg.cli import load_tool_config, run_tool
from convseg.datasets.stats import (WEIGHTINGS, class_weights,
                                    dataset_stats, weighted_config_text,
                                    write_stats)
from convseg.fileio import atomic_write_text


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="Statistics of a config's dataset; class weights.")
    parser.add_argument('config', help='config file')
    parser.add_argument('--split', default='train',
                        choices=['train', 'val', 'test'],
                        help='split to count (default: train)')
    parser.add_argument('--out-dir',
                        help="folder of the JSON and PNG (default: the "
                        "config's folder)")
    parser.add_argument('--class-weights', choices=WEIGHTINGS,
                        help='print a class_weight list for the loss')
    parser.add_argument('--write', metavar='NEW_CONFIG',
                        help='with --class-weights: write a config that '
                        'uses them')
    parser.add_argument('--cfg-options', nargs='+', action=DictAction,
                        help='override config entries')
    args = parser.parse_args()
    if args.write and not args.class_weights:
        parser.error('--write needs --class-weights')
    return args


def main(args: argparse.Namespace) -> None:
    cfg = load_tool_config(args.config, args.cfg_options)
    stats = dataset_stats(cfg, args.split)
    print(f"{stats['split']}: {stats['images']} images, ignored pixels "
          f"{100 * stats['ignored_share']:.2f}%")
    print(f"{'class':24s} {'pixels %':>9s} {'images':>7s}")
    for row in stats['classes']:
        print(f"{row['class']:24s} {100 * row['pixel_share']:9.3f} "
              f"{row['images']:7d}")
    print(f"mean RGB {stats['mean_rgb']} (config {stats['config_mean']})")
    print(f"std RGB {stats['std_rgb']} (config {stats['config_std']})")
    for key in ('height', 'width'):
        size = stats[key]
        print(f"{key}: min {size['min']}, median {size['median']:g}, "
              f"max {size['max']}")
    folder = args.out_dir or osp.dirname(osp.abspath(args.config))
    stem = osp.join(folder, osp.splitext(osp.basename(args.config))[0] +
                    f'_{args.split}_stats')
    write_stats(stats, stem + '.json', stem + '.png')
    print(f'written: {stem}.json, {stem}.png')
    if args.class_weights:
        weights = class_weights(stats, args.class_weights)
        print(f'class_weight ({args.class_weights}) = {weights}')
        if args.write:
            atomic_write_text(weighted_config_text(args.config, cfg, weights),
                              args.write)
            print(f'config with class weights: {args.write}')


if __name__ == '__main__':
    sys.exit(run_tool(main, parse_args()))
