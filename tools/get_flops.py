"""Count the parameters and FLOPs of a config's segmentor.

    python tools/get_flops.py CONFIG [--shape H W] [--cfg-options ...]

FLOPs are counted with mmengine.analysis (fvcore's counter): one
multiply-add is one FLOP, the convention of the published tables (mmcv's
counter and fvcore's agree on it). They cover one inference pass of the
segmentor, backbone and decode head, on a 1 x 3 x H x W input (default
512 x 2048); the auxiliary head only trains and is not run. Parameters are
those of the whole model, auxiliary head included, as the published tables
count them.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import logging
import os.path as osp

import torch
from mmengine.analysis import FlopAnalyzer, parameter_count
from mmengine.config import Config, DictAction
from mmengine.logging import MMLogger
from mmengine.model import revert_sync_batchnorm
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Count the parameters and FLOPs of a segmentor.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--shape',
        type=int,
        nargs=2,
        default=[512, 2048],
        metavar=('H', 'W'),
        help='input height and width (default: 512 2048)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. model.decode_head.channels=256')
    args = parser.parse_args()
    if not osp.isfile(args.config):
        parser.error(f'config file {args.config} does not exist')
    if min(args.shape) < 32:
        parser.error(f'--shape {args.shape[0]} {args.shape[1]}: the '
                     'backbone downsamples by 32; use at least 32 x 32')
    return args


def _human(count: float) -> str:
    for unit, size in (('G', 1e9), ('M', 1e6), ('K', 1e3)):
        if count >= size:
            return f'{count / size:.2f}{unit}'
    return str(int(count))


def main() -> None:
    args = parse_args()
    cfg = Config.fromfile(args.config)
    if args.cfg_options:
        cfg.merge_from_dict(args.cfg_options)
    register_all_modules(init_default_scope=True)

    model = revert_sync_batchnorm(MODELS.build(cfg.model)).eval()
    height, width = args.shape
    inputs = torch.zeros(1, 3, height, width)

    # the counter reports ops it does not count (activations, elementwise
    # ops) at WARNING; keep the output to the figures
    MMLogger.get_current_instance().setLevel(logging.ERROR)
    params = parameter_count(model)['']
    with torch.no_grad():
        flops = FlopAnalyzer(model, (inputs, )).unsupported_ops_warnings(
            False).uncalled_modules_warnings(False)
        total = flops.total()
        by_module = flops.by_module()

    print(f'config: {args.config}')
    print(f'input: 1 x 3 x {height} x {width}')
    print(f'parameters: {params} ({_human(params)})')
    print(f'FLOPs: {total} ({_human(total)})')
    for name in ('backbone', 'decode_head'):
        print(f'  {name}: {_human(by_module.get(name, 0))}')


if __name__ == '__main__':
    main()
