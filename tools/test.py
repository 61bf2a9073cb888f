"""Evaluate a segmentation checkpoint on a config's test set.

    python tools/test.py CONFIG CHECKPOINT [--work-dir DIR] [--out DIR]
        [--show-dir DIR] [--tta] [--confusion-matrix [DIR]]
        [--cfg-options KEY=VALUE ...]
        [--launcher none|pytorch|slurm] [--unsafe-load] [--fast]
        [--precision fp32|bf16]

Prints aAcc, mIoU, mAcc and the per-class IoU / accuracy table, and writes
them to WORK_DIR/<checkpoint name>[_tta]_metrics.json and _per_class.csv.
--confusion-matrix adds <checkpoint name>[_tta]_confusion.csv and .png (in
DIR, default WORK_DIR), counted in the same pass as the mIoU.
CHECKPOINT may be one written by tools/train.py or a released UPerNet-ConvNeXt
checkpoint (Facebook's or OpenMMLab's key names), as a path or URL.
The model runs as configured (the numbers papers report); --fast runs it on
CPU through convseg's inference fast path instead. The log says which ran.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import logging
import os.path as osp
import sys

from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner
from mmseg.evaluation import IoUMetric
from mmseg.registry import METRICS

from convseg.cli import (add_launch_arguments, add_precision_argument,
                         check_launch_arguments, ensure_custom_hook,
                         load_tool_config, run_tool)
from convseg.datasets import check_dataset_layout
from convseg.engine import fit_to_device
from convseg.engine.launch import finish_distributed
from convseg.engine.config_checks import (check_model_config,
                                          check_tta_config)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Evaluate a segmentation checkpoint.')
    parser.add_argument('config', help='config file')
    parser.add_argument('checkpoint', help='checkpoint file or URL')
    parser.add_argument(
        '--work-dir',
        help='where the log and the result files go (default: the config\'s '
        'work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--out',
        metavar='DIR',
        help='write one PNG per test image, named after it, in the '
        'dataset\'s official label ids (ADE20K 0..150, Cityscapes labelIds)')
    parser.add_argument(
        '--show-dir',
        metavar='DIR',
        help='draw the predictions over the images into DIR')
    parser.add_argument(
        '--tta',
        action='store_true',
        help='test-time augmentation: the views of the config\'s '
        'tta_pipeline, merged by its tta_model (the ADE20K and Cityscapes '
        'configs: scales 0.5 .. 1.75, each also mirrored; the quickstart '
        'config: the scene as is, mirrored and upside down)')
    parser.add_argument(
        '--confusion-matrix',
        nargs='?',
        const='',
        metavar='DIR',
        help='write the confusion matrix (CSV of counts, row-normalised '
        'PNG) to DIR (default: the work dir)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. test_dataloader.batch_size=2')
    parser.add_argument(
        '--fast', action='store_true',
        help='on CPU, run the model through the inference fast path '
        '(convseg.fast.prepare_for_inference): same predictions up to '
        'float rounding, about 2x faster; default: the model as configured')
    add_precision_argument(parser)
    add_launch_arguments(parser)
    args = parser.parse_args()
    check_launch_arguments(parser, args)
    if args.precision != 'fp32' and not args.fast:
        parser.error('--precision bf16 is a mode of the fast path: add '
                     '--fast')
    is_url = args.checkpoint.startswith(('http://', 'https://'))
    if not is_url and not osp.isfile(args.checkpoint):
        parser.error(f'checkpoint {args.checkpoint} does not exist')
    return args


def main(args: argparse.Namespace) -> None:
    cfg = load_tool_config(args.config, args.cfg_options, args.work_dir,
                           args.launcher)

    # mistakes in the config and the dataset stop before anything is built
    check_model_config(cfg.model)
    if args.tta:
        check_tta_config(cfg, args.config)
    check_dataset_layout(cfg, splits=['test'])

    # result files named after the checkpoint; prediction PNGs if asked.
    # They come from convseg's PerClassIoUMetric, mmseg's IoUMetric plus
    # files: configs that name IoUMetric get it, with the same numbers.
    if METRICS.get(cfg.test_evaluator.type) is IoUMetric:
        cfg.test_evaluator.type = 'PerClassIoUMetric'
    stem = osp.splitext(osp.basename(args.checkpoint.split('?')[0]))[0]
    cfg.test_evaluator.result_prefix = osp.join(
        cfg.work_dir, stem + ('_tta' if args.tta else ''))
    if args.out:
        cfg.test_evaluator.out_dir = args.out
    if args.confusion_matrix is not None:
        cfg.test_evaluator.confusion_prefix = osp.join(
            args.confusion_matrix or cfg.work_dir,
            stem + ('_tta' if args.tta else ''))

    # mmseg's visualization hook draws every test image into --show-dir
    if args.show_dir:
        cfg.default_hooks.visualization.draw = True
        cfg.default_hooks.visualization.interval = 1
        cfg.visualizer.save_dir = args.show_dir

    if args.tta:
        cfg.test_dataloader.dataset.pipeline = cfg.tta_pipeline
        cfg.tta_model.module = cfg.model
        cfg.model = cfg.tta_model

    # the runner loads the weights (mmengine's loaders, weights-only, URLs
    # through the torch hub cache); CheckpointMatchHook maps other families'
    # key names, checks classes and arch, and refuses incomplete weights
    cfg.load_from = args.checkpoint
    cfg.resume = False
    ensure_custom_hook(cfg, 'CheckpointMatchHook')
    fit_to_device(cfg)

    runner = Runner.from_cfg(cfg)
    # --fast: same logits up to rounding, faster, on CPU; FastInferenceHook
    # prepares the model once the weights are loaded
    on_cpu = next(runner.model.parameters()).device.type == 'cpu'
    if args.fast and not on_cpu:
        print_log('--fast applies on CPU only: running the model as '
                  'configured', logger='current', level=logging.WARNING)
    print_log('inference path: ' + (
        'fast (--fast: convseg.fast.prepare_for_inference)'
        if args.fast and on_cpu else 'the model as configured'),
              logger='current')
    if args.fast and on_cpu:
        runner.register_hook(
            dict(type='FastInferenceHook', precision=args.precision))
    metrics = runner.test()
    finish_distributed()

    if runner.rank == 0:
        summary = '  '.join(f'{k}: {v:.2f}' for k, v in metrics.items())
        print(f'{args.checkpoint}: {summary}')


if __name__ == '__main__':
    args = parse_args()
    sys.exit(run_tool(main, args, unsafe_load=args.unsafe_load))
