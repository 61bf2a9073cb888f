"""Small helpers several test modules share (imported as ``tests.helpers``
or relatively; fixtures live in the conftest files)."""
from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

#: the repository's root (the tools are under tools/)
REPO_ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str) -> ModuleType:
    """Import ``tools/NAME.py`` as a module (its functions, without running
    its ``main``)."""
    spec = importlib.util.spec_from_file_location(
        f'convseg_tool_{name}', REPO_ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def randomize_bn_stats(model: nn.Module, seed: int = 1) -> nn.Module:
    """Give every BatchNorm random running statistics, in place, so that
    each of them changes the predictions (fresh ones are 0 and 1: a mistake
    in folding or loading them would not show)."""
    generator = torch.Generator().manual_seed(seed)
    for name, buffer in model.named_buffers():
        if name.endswith('running_mean'):
            buffer.copy_(torch.randn(buffer.shape, generator=generator) * .1)
        elif name.endswith('running_var'):
            buffer.copy_(torch.rand(buffer.shape, generator=generator) + .5)
    return model


def openmmlab_names(state: dict) -> dict:
    """convseg's ConvNeXt keys spelled as mmseg's own ConvNeXt spells them."""
    names = {'.dwconv.': '.depthwise_conv.', '.pwconv1.': '.pointwise_conv1.',
             '.pwconv2.': '.pointwise_conv2.'}
    renamed = {}
    for key, value in state.items():
        for ours, theirs in names.items():
            key = key.replace(ours, theirs)
        renamed[key] = value
    return renamed


def confusion_miou(pairs, num_classes):
    """mIoU, aAcc, mAcc (percent, mmseg's 2 decimals) and the per-class IoU
    of (pred, gt) label arrays, gt 255 ignored, counted here with numpy."""
    n = num_classes
    cm = np.zeros((n, n), np.int64)
    for pred, gt in pairs:
        keep = gt != 255
        assert pred.shape == gt.shape
        cm += np.bincount(gt[keep].astype(np.int64) * n + pred[keep],
                          minlength=n * n).reshape(n, n)
    inter = np.diag(cm).astype(float)
    union = cm.sum(0) + cm.sum(1) - inter
    with np.errstate(invalid='ignore', divide='ignore'):
        iou, acc = inter / union, inter / cm.sum(1)
    return (round(np.nanmean(iou) * 100, 2), round(inter.sum() / cm.sum()
                                                   * 100, 2),
            round(np.nanmean(acc) * 100, 2), iou * 100)


#: how each flip of mmcv's RandomFlip reverses an (..., H, W) array
FLIP_AXES = {None: (), 'horizontal': (-1, ), 'vertical': (-2, )}


def plain_model_tta(config: str | Path, checkpoint: str | Path,
                    images: Sequence[Path], sizes: Sequence[tuple[int, int]],
                    flips: Sequence[str | None] = (None, 'horizontal')
                    ) -> list[np.ndarray]:
    """Labels of each image: the plain segmentor's softmax at each (H, W) in
    ``sizes`` and each flip in ``flips`` (None: as is, or RandomFlip's
    'horizontal' or 'vertical'), flipped and resized back to the image,
    averaged. Resizing, flipping and normalising are done here with cv2 and
    torch, not by the config's pipeline."""
    from mmengine.config import Config
    from mmengine.registry import init_default_scope
    from mmseg.registry import MODELS

    from convseg.checkpoint_reading import load_checkpoint_file

    init_default_scope('mmseg')
    # convseg is imported here; the config's test-only hook module is not
    cfg = Config.fromfile(str(config), import_custom_modules=False)
    model = MODELS.build(cfg.model).eval()
    model.load_state_dict(load_checkpoint_file(
        str(checkpoint), map_location='cpu')['state_dict'])
    pre = cfg.model.data_preprocessor
    mean = torch.tensor(pre.mean).view(1, 3, 1, 1)
    std = torch.tensor(pre.std).view(1, 3, 1, 1)
    labels = []
    for path in images:
        bgr = cv2.imread(str(path))
        height, width = bgr.shape[:2]
        total = 0
        for size in sizes:
            resized = cv2.resize(bgr, size[::-1],
                                 interpolation=cv2.INTER_LINEAR)
            rgb = torch.from_numpy(resized[:, :, ::-1].copy()).permute(2, 0, 1)
            for flip in flips:
                axes = FLIP_AXES[flip]
                x = (rgb.flip(axes) if axes else rgb)[None]
                meta = dict(ori_shape=size, img_shape=size, pad_shape=size)
                with torch.no_grad():
                    logits = model.inference((x.float() - mean) / std, [meta])
                if axes:
                    logits = logits.flip(axes)
                logits = F.interpolate(logits, (height, width),
                                       mode='bilinear', align_corners=False)
                total = total + logits.softmax(1)
        labels.append(total.argmax(1)[0].numpy())
    return labels
