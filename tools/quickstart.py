"""Quickstart: generate the scene dataset, train, test and draw overlays.

    python tools/quickstart.py            # what `make quickstart` runs

End to end on CPU with the real tools, each run as ``python TOOL ...`` would
run it, in a fork of this process (convseg.warm_fork: the imports, about 18 s
a tool on a 2-vCPU Xeon, are paid once; CONVSEG_NO_FORK=1 starts each tool as
its own process):

1. generate the synthetic scene dataset (ADE20K layout) under ``data/``;
2. train a small UPerNet-ConvNeXt with ``tools/train.py``;
3. evaluate it with ``tools/test.py --tta`` (mIoU and the per-class table,
   each scene as is, mirrored and upside down: the config's tta_pipeline);
   the one-pass mIoU is the training's last validation;
4. overlay its predictions on a few validation images with
   ``demo/image_demo.py``;
5. write a summary sheet (WORK_DIR/summary.png): those validation scenes as
   input | ground truth | prediction with the class legend, and the training
   curves (loss, learning rates, validation mIoU);
6. print where everything is.

Re-running is safe: the dataset is reused when it was generated with the same
settings (and written atomically otherwise); training starts again from
scratch in the same work dir.
"""
from __future__ import annotations

import argparse
import json
import os
import os.path as osp
import shutil
import sys
import time

REPO = osp.dirname(osp.dirname(osp.abspath(__file__)))
DEFAULT_CONFIG = osp.join('configs', 'quickstart_convnext_atto_scenes.py')


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description='Generate the synthetic scenes, train, test and draw '
        'overlays with the real tools.')
    parser.add_argument('--config', default=DEFAULT_CONFIG)
    parser.add_argument('--data-root', default='data',
                        help='the dataset goes to DATA_ROOT/synthetic_scenes')
    parser.add_argument('--work-dir', default='work_dirs/quickstart')
    parser.add_argument('--num-train', type=int, default=4000,
                        help='training images')
    parser.add_argument('--num-val', type=int, default=100,
                        help='validation images')
    parser.add_argument('--iters', type=int, default=None,
                        help='training iterations (default: the config\'s)')
    parser.add_argument('--seed', type=int, default=0,
                        help='seed of the generated dataset')
    parser.add_argument('--num-overlays', type=int, default=4,
                        help='validation images to draw predictions on')
    return parser.parse_args()


def run(step: str, cmd: list[str]) -> None:
    """Run ``cmd`` from the repository root, its output going to ours.

    Exits, naming the step, when it fails.
    """
    from convseg.warm_fork import run_script
    print(f'\n==> {step}\n$ python {" ".join(cmd)}', flush=True)
    returncode = run_script(cmd, cwd=REPO)
    if returncode != 0:
        sys.exit(f'quickstart: {step} failed (exit status {returncode}); its '
                 'output is above.')


def last_validation_miou(work_dir: str, iters: int) -> float:
    """The mIoU of the training's validation at iteration ``iters`` (the
    model tested in one pass), from its scalar log (this run's value
    replaces an earlier run's in the same work dir, which may have run
    longer)."""
    from convseg.plots import read_scalars

    miou = dict(read_scalars(work_dir).val.get('mIoU', [])).get(iters)
    if miou is None:
        sys.exit(f'quickstart: the scalar log in {work_dir} has no '
                 f'validation mIoU at iteration {iters}')
    return miou


def write_summary(cfg, data_root: str, overlay_dir: str, work_dir: str,
                  names: list[str], title: str) -> str:
    """The summary sheet of the scenes ``names``: the image, its label
    (ADE20K convention: 0 ignored, k is class k - 1) and the demo's mask."""
    import numpy as np
    from PIL import Image

    from convseg.dataset_meta import config_dataset_meta
    from convseg.plots import summary_sheet

    meta = config_dataset_meta(cfg)
    scenes = []
    for name in names:
        stem = osp.splitext(name)[0]
        image = np.asarray(Image.open(
            osp.join(data_root, 'images', 'validation', name)).convert('RGB'))
        label = np.asarray(Image.open(osp.join(
            data_root, 'annotations', 'validation', stem + '.png')))
        truth = np.where(label == 0, 255, label.astype(np.int64) - 1)
        prediction = np.asarray(Image.open(
            osp.join(overlay_dir, f'{stem}_mask.png')))
        scenes.append((stem, image, truth, prediction))
    path, _ = summary_sheet(
        scenes, meta['classes'], meta['palette'], work_dir,
        osp.join(work_dir, 'summary.png'),
        title=title)
    return path


def main() -> None:
    args = parse_args()
    os.chdir(REPO)
    started = time.time()
    timings = {}

    import convseg  # noqa: F401  (registers the dataset type)
    from mmengine.config import Config

    from convseg.warm_fork import fork_available, import_tool_modules
    if fork_available():
        import_tool_modules()

    from convseg.datasets import generate_scenes

    cfg = Config.fromfile(args.config)
    num_train, num_val = args.num_train, args.num_val
    iters = args.iters or cfg.train_cfg.max_iters

    t = time.time()
    print('==> 1. generating the synthetic scene dataset', flush=True)
    data_root = generate_scenes(args.data_root, num_train=num_train,
                                num_val=num_val, size=cfg.crop_size,
                                seed=args.seed)
    timings['dataset'] = time.time() - t
    print(f'{num_train} training and {num_val} validation images of '
          f'{cfg.crop_size[0]}x{cfg.crop_size[1]} in {data_root}')

    options = [f'{loader}.dataset.data_root={data_root}'
               for loader in ('train_dataloader', 'val_dataloader',
                              'test_dataloader')]
    # five validations and about 25 logged points draw the curves
    train_options = options + [
        f'train_cfg.max_iters={iters}',
        f'train_cfg.val_interval={max(1, iters // 5)}',
        f'default_hooks.logger.interval={max(1, min(100, iters // 25))}',
        f'default_hooks.checkpoint.interval={iters}',
        f'param_scheduler.1.end={iters}']
    work_dir = osp.abspath(args.work_dir)

    t = time.time()
    run('2. training with tools/train.py',
        ['tools/train.py', args.config, '--work-dir', work_dir,
         '--cfg-options', *train_options])
    timings['train'] = time.time() - t
    checkpoint = osp.join(work_dir, f'iter_{iters}.pth')
    if not osp.isfile(checkpoint):
        sys.exit(f'quickstart: training finished but {checkpoint} is missing')

    t = time.time()
    test_dir = osp.join(work_dir, 'test')
    run('3. evaluating with tools/test.py (--tta: as is, mirrored, upside '
        'down)',
        ['tools/test.py', args.config, checkpoint, '--tta', '--work-dir',
         test_dir, '--cfg-options', *options])
    timings['test'] = time.time() - t
    metrics_file = osp.join(test_dir, f'iter_{iters}_tta_metrics.json')
    with open(metrics_file) as f:
        metrics = json.load(f)
    one_pass = last_validation_miou(work_dir, iters)

    t = time.time()
    overlay_dir = osp.join(work_dir, 'overlays')
    inputs_dir = osp.join(overlay_dir, 'inputs')
    val_dir = osp.join(data_root, 'images', 'validation')
    shutil.rmtree(overlay_dir, ignore_errors=True)
    os.makedirs(inputs_dir)
    for name in sorted(os.listdir(val_dir))[:args.num_overlays]:
        shutil.copy(osp.join(val_dir, name), inputs_dir)
    run('4. overlays of validation images with demo/image_demo.py',
        [osp.join('demo', 'image_demo.py'), inputs_dir, args.config,
         checkpoint, '--device', 'cpu', '--out-dir', overlay_dir])
    timings['overlays'] = time.time() - t

    t = time.time()
    print('\n==> 5. summary sheet', flush=True)
    result = (f'validation mIoU {metrics["mIoU"]:.2f}% with flips, '
              f'{one_pass:.2f}% in one pass')
    sheet = write_summary(cfg, data_root, overlay_dir, work_dir,
                          sorted(os.listdir(inputs_dir)),
                          f'quickstart: {result}')
    timings['summary'] = time.time() - t

    total = time.time() - started
    print('\n==> 6. done')
    print(f'{result} ({metrics_file})')
    print('    class          IoU     Acc')
    for row in metrics['per_class']:
        iou, acc = (' n/a' if v is None else f'{v:6.2f}'
                    for v in (row['IoU'], row['Acc']))
        print(f'    {row["class"]:<10} {iou:>7} {acc:>7}')
    print(f'dataset:     {data_root}')
    print(f'config:      {osp.abspath(args.config)}')
    print(f'work dir:    {work_dir} (training log and checkpoint)')
    print(f'checkpoint:  {checkpoint}')
    print(f'test output: {test_dir}')
    print(f'overlays:    {overlay_dir}')
    print(f'summary:     {sheet}')
    print('time: ' + ', '.join(f'{k} {v:.0f}s' for k, v in timings.items())
          + f', total {total:.0f}s')


if __name__ == '__main__':
    main()
