"""Post-training int8 quantization of an OpenVINO model with NNCF.

Calibration images come from the config's train split, read by the config's
dataset with its *test* pipeline (:func:`calibration_images`); a graph of
fixed size gets a centre crop of that size (or a resize, for smaller
images). :func:`quantize_int8` runs ``nncf.quantize``;
:func:`quantize_int8_within` runs ``nncf.quantize_with_accuracy_control``
with :func:`val_miou` (mIoU on the config's val split, computed as mmseg's
``IoUMetric`` does, in percent) as the validation function, so that the
int8 model stays within ``max_drop`` mIoU points of fp32.

What stays in float: :data:`KEEP_FLOAT` names the choices measured on
ConvNeXt (whose LayerNorms feed the pointwise MLPs); ``keep='layernorm'``
leaves the LayerNorms (OpenVINO's ``MVN``) and the ``MatMul``s they feed
unquantized.
"""
from __future__ import annotations

import copy
import logging
from typing import Any

import cv2
import numpy as np
import torch
from mmengine.config import Config
from mmengine.logging import print_log
from mmseg.evaluation.metrics import IoUMetric
from mmseg.registry import DATASETS

from ..dataset_meta import test_dataset_cfg
from .errors import DeployError, require
from .openvino_runtime import OvSegmentor

#: keep -> (nncf.quantize keyword arguments as plain data)
KEEP_FLOAT = {
    'none': dict(),
    'layernorm': dict(ignore_types=('MVN', ), ignore_after=('MVN', )),
    'transformer': dict(model_type='transformer'),
}


def nncf() -> Any:
    """The ``nncf`` module, or :class:`MissingDeployPackageError`."""
    return require('nncf', 'openvino')


def _split_dataset(cfg: Config, split: str, pipeline: list | None) -> Any:
    """The config's ``split`` (train or val) dataset, with ``pipeline``
    in place of its own when given."""
    loader = cfg.get(f'{split}_dataloader')
    if not loader or 'dataset' not in loader:
        raise DeployError(f'the config has no {split}_dataloader.dataset: '
                          f'int8 quantization reads the {split} split')
    dataset = copy.deepcopy(loader['dataset'])
    inner = dataset
    while 'dataset' in inner or 'datasets' in inner:
        inner = inner['dataset'] if 'dataset' in inner else inner[
            'datasets'][0]
    if pipeline is not None:
        inner['pipeline'] = pipeline
    try:
        return DATASETS.build(inner)
    except FileNotFoundError as err:
        use = ('int8 calibration reads its images' if split == 'train' else
               'the int8 export measures float and int8 mIoU on it')
        raise DeployError(
            f'the {split} split of the config is not there '
            f'({err.filename or err}): {use}; point '
            f'{split}_dataloader.dataset.data_root at your data with '
            f'--cfg-options') from err


def _test_pipeline(cfg: Config, with_labels: bool) -> list:
    steps = cfg.get('test_pipeline')
    if steps is None:
        steps = (test_dataset_cfg(cfg) or {}).get('pipeline')
    if steps is None:
        raise DeployError('the config has no test_pipeline: set '
                          'test_pipeline or test_dataloader.dataset.pipeline')
    steps = copy.deepcopy(list(steps))
    if not with_labels:
        steps = [s for s in steps
                 if str(s['type']).split('.')[-1] != 'LoadAnnotations']
    return steps


def _fit(image: np.ndarray, shape: tuple[int | None, int | None]
         ) -> np.ndarray:
    """(H, W, 3) ``image`` cropped at the centre (or resized when smaller)
    to ``shape``; unchanged for a dynamic size."""
    height, width = shape
    if height is None or width is None:
        return image
    if image.shape[0] >= height and image.shape[1] >= width:
        top = (image.shape[0] - height) // 2
        left = (image.shape[1] - width) // 2
        return image[top:top + height, left:left + width]
    return cv2.resize(image, (width, height), interpolation=cv2.INTER_LINEAR)


def calibration_images(cfg: Config, count: int,
                       shape: tuple[int | None, int | None]
                       ) -> list[np.ndarray]:
    """``count`` RGB 0..255 float32 (1, 3, H, W) images, spread evenly
    over the config's train split, through its test pipeline, at
    ``shape`` (H, W; None for a dynamic axis)."""
    dataset = _split_dataset(cfg, 'train', _test_pipeline(cfg, False))
    if len(dataset) == 0:
        raise DeployError('the train split of the config is empty: nothing '
                          'to calibrate int8 on')
    images = []
    for index in _spread(len(dataset), count):
        bgr = dataset[index]['inputs'].permute(1, 2, 0).numpy()
        rgb = _fit(np.ascontiguousarray(bgr[..., ::-1]), shape)
        images.append(rgb.transpose(2, 0, 1)[None].astype(np.float32))
    print_log(f'int8 calibration on {len(images)} images of the train '
              'split', logger='current', level=logging.INFO)
    return images


def _spread(length: int, count: int | None) -> list[int]:
    """``count`` indices spread evenly over ``range(length)`` (all of them
    when ``count`` is None or not smaller)."""
    if count is None or count >= length:
        return list(range(length))
    return [int(i) for i in
            np.unique(np.linspace(0, length - 1, count).round().astype(int))]


def val_items(cfg: Config, count: int | None = None) -> list[dict]:
    """The val split's packed samples (image and labels), through the
    val dataset's own pipeline: all of them, or ``count`` spread evenly
    over the split."""
    dataset = _split_dataset(cfg, 'val', None)
    return [dataset[i] for i in _spread(len(dataset), count)]


def val_ignore_index(cfg: Config) -> int:
    """The label the config's val evaluator ignores (mmseg's default
    255)."""
    return int((cfg.get('val_evaluator') or {}).get('ignore_index', 255))


def val_miou(segmentor: OvSegmentor, items: list[dict],
             ignore_index: int = 255,
             labels: list[torch.Tensor] | None = None
             ) -> tuple[float, list[float]]:
    """mIoU in percent of ``segmentor`` on ``items`` (from
    :func:`val_items`), and each image's own mIoU; each image's predicted
    labels are appended to ``labels`` when given."""
    num_classes = segmentor.num_classes
    areas, per_image = [], []
    with torch.no_grad():
        for item in items:
            sample = segmentor.test_step(dict(
                inputs=[item['inputs']], data_samples=[item['data_samples']]
            ))[0]
            if labels is not None:
                labels.append(sample.pred_sem_seg.data)
            area = IoUMetric.intersect_and_union(
                sample.pred_sem_seg.data.squeeze(0).cpu(),
                sample.gt_sem_seg.data.squeeze(0).cpu(), num_classes,
                ignore_index)
            areas.append(area)
            per_image.append(_miou([area]))
    return _miou(areas), per_image


def _miou(areas: list[tuple[torch.Tensor, ...]]) -> float:
    intersect = sum(a[0] for a in areas)
    union = sum(a[1] for a in areas)
    with np.errstate(invalid='ignore', divide='ignore'):
        iou = (intersect / union).numpy()
    return float(np.nanmean(iou) * 100) if np.isfinite(iou).any() else 0.0


def _ignored_scope(ov_model: Any, ignore_types: tuple[str, ...] = (),
                   ignore_after: tuple[str, ...] = ()) -> Any:
    """NNCF ignored scope: every op of ``ignore_types`` and every MatMul
    or Convolution fed (through elementwise ops) by one of
    ``ignore_after``."""
    names = [op.get_friendly_name() for op in ov_model.get_ops()
             if op.get_type_name() in ignore_types]
    for op in ov_model.get_ops():
        if op.get_type_name() not in ('MatMul', 'Convolution'):
            continue
        source = op.input_value(0).get_node()
        while source.get_type_name() in ('Multiply', 'Add', 'Transpose',
                                         'Convert'):
            source = source.input_value(0).get_node()
        if source.get_type_name() in ignore_after:
            names.append(op.get_friendly_name())
    return nncf().IgnoredScope(names=names, validate=False)


def _quantize_kwargs(ov_model: Any, keep: str, count: int) -> dict:
    if keep not in KEEP_FLOAT:
        raise DeployError(f'keep {keep!r} is not one of '
                          f'{", ".join(KEEP_FLOAT)}')
    nn = nncf()
    choice = KEEP_FLOAT[keep]
    kwargs: dict[str, Any] = dict(subset_size=count,
                                  preset=nn.QuantizationPreset.MIXED)
    if 'model_type' in choice:
        kwargs['model_type'] = nn.ModelType(choice['model_type'])
    if 'ignore_types' in choice:
        kwargs['ignored_scope'] = _ignored_scope(
            ov_model, choice['ignore_types'], choice['ignore_after'])
    return kwargs


def quantize_int8(ov_model: Any, images: list[np.ndarray],
                  keep: str = 'layernorm') -> Any:
    """``ov_model`` quantized to int8 by NNCF on calibration ``images``,
    with ``keep`` (:data:`KEEP_FLOAT`) left in float."""
    nn = nncf()
    return nn.quantize(ov_model, nn.Dataset(images),
                       **_quantize_kwargs(ov_model, keep, len(images)))


def quantize_int8_within(ov_model: Any, images: list[np.ndarray],
                         cfg: Config, max_drop: float,
                         keep: str = 'layernorm', precision: str = 'fp32',
                         items: list[dict] | None = None) -> Any:
    """``ov_model`` quantized to int8 with NNCF's accuracy control: layers
    go back to float until the val mIoU (:func:`val_miou`, percent) is at
    most ``max_drop`` points below the float model's. ``items``: the val
    split as :func:`val_items` gives it (read from ``cfg`` when None)."""
    nn = nncf()
    if items is None:
        items = val_items(cfg)
    segmentor = OvSegmentor('int8 candidate.xml', cfg, precision,
                            model=ov_model)
    ignore_index = val_ignore_index(cfg)

    def validate(compiled: Any, data: Any) -> tuple[float, list[float]]:
        segmentor.compiled = compiled
        return val_miou(segmentor, list(data), ignore_index)

    return nn.quantize_with_accuracy_control(
        ov_model, nn.Dataset(images), nn.Dataset(items), validate,
        max_drop=max_drop, drop_type=nn.DropType.ABSOLUTE,
        **_quantize_kwargs(ov_model, keep, len(images)))

