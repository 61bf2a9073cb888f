"""Train a segmentor from an mmengine config.

    python tools/train.py CONFIG [--work-dir DIR] [--resume [CKPT]] [--amp]
        [--cfg-options KEY=VALUE ...] [--launcher none|pytorch|slurm]
        [--check-dataset] [--unsafe-load]

One process trains on one device (a GPU if there is one, else the CPU);
tools/dist_train.sh (torchrun) and tools/slurm_train.sh (srun) start one
process per GPU with --launcher pytorch / slurm.
"""
import convseg  # noqa: F401  (first: installs the shims, registers convseg)

import argparse
import logging
import sys

import torch
from mmengine.config import DictAction
from mmengine.logging import print_log
from mmengine.runner import Runner

from convseg.cli import (add_launch_arguments, check_launch_arguments,
                         ensure_custom_hook, load_tool_config, run_tool)
from convseg.datasets import check_dataset, check_dataset_layout
from convseg.datasets.checks import SPLITS, DatasetCheckError
from convseg.engine import find_resume_checkpoint, fit_to_device
from convseg.engine.launch import finish_distributed
from convseg.engine.config_checks import check_model_config


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description='Train a segmentor.')
    parser.add_argument('config', help='config file')
    parser.add_argument(
        '--work-dir',
        help='where logs and checkpoints go (default: the config\'s '
        'work_dir, else ./work_dirs/<config name>)')
    parser.add_argument(
        '--resume',
        nargs='?',
        const='auto',
        metavar='CKPT',
        help='resume from CKPT, or without a value from the latest '
        'checkpoint in the work dir; the schedule continues where it stopped')
    parser.add_argument(
        '--amp',
        action='store_true',
        help='mixed-precision training (needs a CUDA GPU)')
    parser.add_argument(
        '--cfg-options',
        nargs='+',
        action=DictAction,
        help='override config entries, e.g. train_dataloader.batch_size=4 '
        'model.backbone.init_cfg=None')
    parser.add_argument(
        '--check-dataset',
        action='store_true',
        help='before training, read every image and label of the train and '
        'val splits and stop on any problem (as tools/check_dataset.py); '
        'without it only the folder layout is checked')
    add_launch_arguments(parser)
    args = parser.parse_args()
    check_launch_arguments(parser, args)
    if args.amp and not torch.cuda.is_available():
        parser.error('--amp needs a CUDA GPU (torch.cuda.amp) and this '
                     'machine has none; train without it.')
    return args


def main(args: argparse.Namespace) -> None:
    cfg = load_tool_config(args.config, args.cfg_options, args.work_dir,
                           args.launcher)

    if args.amp and cfg.optim_wrapper.type != 'AmpOptimWrapper':
        cfg.optim_wrapper.type = 'AmpOptimWrapper'
        cfg.optim_wrapper.loss_scale = 'dynamic'

    # --resume: the checkpoint given, or the newest complete one in the work
    # dir (none: start from scratch)
    if args.resume is not None:
        cfg.load_from = (find_resume_checkpoint(cfg.work_dir)
                         if args.resume == 'auto' else args.resume)
        cfg.resume = cfg.load_from is not None
        if not cfg.resume:
            print_log(f'--resume: no complete checkpoint in {cfg.work_dir}; '
                      'training starts from scratch', level=logging.WARNING)

    # mistakes in the config and the dataset stop the run before it starts
    check_model_config(cfg.model)
    check_dataset_layout(cfg)
    if args.check_dataset:
        problems = [problem for split in ('train', 'val')
                    if cfg.get(SPLITS[split])
                    for problem in check_dataset(cfg, split)]
        if problems:
            raise DatasetCheckError(problems)

    fit_to_device(cfg)
    # the train_speed switches, also where a config replaced the runtime's
    # custom_hooks
    ensure_custom_hook(cfg, 'TrainSpeedHook')

    runner = Runner.from_cfg(cfg)
    runner.train()
    finish_distributed()


if __name__ == '__main__':
    args = parse_args()
    sys.exit(run_tool(main, args, unsafe_load=args.unsafe_load))
