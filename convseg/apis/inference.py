"""Build a segmentor for inference and run it on images as users have them.

:func:`init_model` turns a config (and a checkpoint of any family
:mod:`convseg.models.checkpoint_loading` reads) into an eval-mode ``EncoderDecoder``
with ``dataset_meta`` (class names and palette) and its config on
``model.cfg``. :func:`inference_model` runs the config's test pipeline and the
model's test mode (``whole`` or ``slide`` from ``model.test_cfg``) on paths,
arrays or PIL images and returns mmseg's ``SegDataSample`` results, as
``mmseg.apis.inference_model`` does; :func:`inference_labels` returns plain
label maps (and class probabilities) at each input's original size.
"""
from __future__ import annotations

import copy
import logging
from pathlib import Path
from collections.abc import Iterator, Sequence
from typing import Any, Union

import numpy as np
import torch
import torch.nn.functional as F
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

from ..dataset_meta import (config_dataset_meta, resolve_dataset_meta,
                            test_dataset_cfg)
from ..deploy.backends import choose_backend, init_deployed_model
from ..fast import prepare_for_inference
from ..imageio import ImageInput, load_image
from ..models.checkpoint_loading import load_segmentor_checkpoint

Result = Union[np.ndarray, tuple[np.ndarray, np.ndarray]]

# Upper bound, in float32 elements, on the class logits resized to full
# resolution at once; larger outputs are resized a few classes at a time.
RESIZE_BUDGET = 1 << 26

IMAGE_LOADERS = ('LoadImageFromFile', 'LoadImageFromNDArray')
ANNOTATION_LOADERS = ('LoadAnnotations', 'LoadDepthAnnotation',
                      'LoadBiomedicalAnnotation')


def _load_config(config: str | Path | Config) -> Config:
    if isinstance(config, (str, Path)):
        return Config.fromfile(str(config))
    if isinstance(config, Config):
        return copy.deepcopy(config)
    raise TypeError(f'config must be a file path or an mmengine Config, got '
                    f'{type(config).__name__}')


def init_model(config: str | Path | Config,
               checkpoint: str | None = None,
               device: str | None = None,
               cfg_options: dict | None = None,
               fast: bool | None = None,
               backend: str | None = None,
               precision: str = 'fp32') -> torch.nn.Module:
    """Build an eval-mode segmentor from a config and checkpoint on ``device``.

    ``device`` None means ``cuda`` when CUDA is available, else ``cpu``.
    ``config`` is a config file or an mmengine ``Config`` (copied, not
    changed); ``cfg_options`` are merged into it. With a checkpoint the
    backbone's ``init_cfg`` is dropped so nothing is downloaded. SyncBN
    layers become BatchNorm. ``model.dataset_meta`` holds ``classes`` and
    ``palette`` from the checkpoint's meta, else from the config's test
    dataset, else generated; ``model.cfg`` holds the config. ``fast``
    (default: on for CPU devices) applies
    :func:`convseg.fast.prepare_for_inference`; ``precision='bf16'``
    runs it in bf16 where the hardware has native bf16 (ValueError
    elsewhere, or with ``fast=False``). An ``.onnx``
    checkpoint (or ``backend='onnxruntime'``) gives a
    :class:`convseg.deploy.runtime.OrtSegmentor` instead, an ``.xml`` one
    (or ``backend='openvino'``) a
    :class:`convseg.deploy.openvino_runtime.OvSegmentor`, whose precision
    hint is ``precision`` when it is not fp32, else the file's.
    """
    from mmseg.registry import MODELS

    if precision != 'fp32' and fast is False:
        raise ValueError(f'precision={precision!r} is a mode of the fast '
                         'path; it cannot be combined with fast=False')
    backend = choose_backend(checkpoint, backend)
    if backend != 'pytorch':
        return init_deployed_model(
            backend, config, checkpoint, device, cfg_options,
            None if precision == 'fp32' else precision)
    cfg = _load_config(config)
    if cfg_options:
        cfg.merge_from_dict(cfg_options)
    cfg.model.pretrained = None
    cfg.model.train_cfg = None
    if checkpoint is not None and 'backbone' in cfg.model:
        cfg.model.backbone.init_cfg = None
    init_default_scope(cfg.get('default_scope', 'mmseg'))
    model = revert_sync_batchnorm(MODELS.build(cfg.model))
    if checkpoint is None:
        print_log('no checkpoint given: the model has random weights',
                  logger='current', level=logging.WARNING)
    else:
        load_segmentor_checkpoint(model, checkpoint)
    model.dataset_meta = resolve_dataset_meta(
        model.decode_head.num_classes, getattr(model, 'dataset_meta', None),
        config_dataset_meta(cfg))
    model.cfg = cfg
    if device is None:
        device = 'cuda' if torch.cuda.is_available() else 'cpu'
    model.to(device)
    model.eval()
    if fast is None:
        fast = torch.device(device).type == 'cpu'
    if precision != 'fp32':
        fast = True
    return prepare_for_inference(model, enable=fast, precision=precision)


def _transform_name(step: dict) -> str:
    kind = step['type']
    return (kind if isinstance(kind, str) else kind.__name__).split('.')[-1]


def build_test_pipeline(cfg: Config):
    """The config's test pipeline, reading in-memory arrays and no annotations.

    Callable on ``dict(img=BGR uint8 array)``; returns mmseg's packed
    ``dict(inputs=..., data_samples=...)``.
    """
    from mmengine.dataset import Compose
    from mmseg.registry import TRANSFORMS

    steps = cfg.get('test_pipeline')
    if steps is None:
        dataset = test_dataset_cfg(cfg)
        steps = None if dataset is None else dataset.get('pipeline')
    if steps is None:
        raise KeyError('the config has no test pipeline: set test_pipeline '
                       'or test_dataloader.dataset.pipeline')
    pipeline = []
    for step in copy.deepcopy(list(steps)):
        name = _transform_name(step)
        if name in ANNOTATION_LOADERS:
            continue
        if name in IMAGE_LOADERS:
            step['type'] = 'LoadImageFromNDArray'
        pipeline.append(step)
    if not any(_transform_name(s) in IMAGE_LOADERS for s in pipeline):
        pipeline.insert(0, dict(type='LoadImageFromNDArray'))
    return Compose([TRANSFORMS.build(step) for step in pipeline])


def _resize(logits: torch.Tensor, size: tuple[int, int],
            align_corners: bool) -> torch.Tensor:
    """Bilinear resizing of (C, h, w) logits; none where already ``size``
    (the same values: resizing to the same size is the identity)."""
    if tuple(logits.shape[1:]) == tuple(size):
        return logits
    return F.interpolate(logits[None], size=size, mode='bilinear',
                         align_corners=align_corners)[0]


def _resized_argmax(logits: torch.Tensor, size: tuple[int, int],
                    align_corners: bool) -> torch.Tensor:
    """argmax over classes of ``logits`` (C, h, w) resized to ``size``.

    Resizes a few classes at a time so that big images never hold all C
    full-resolution maps; equal to ``_resize(logits).argmax(0)``.
    """
    step = max(1, RESIZE_BUDGET // max(1, size[0] * size[1]))
    if tuple(logits.shape[1:]) == tuple(size) or step >= logits.shape[0]:
        return _resize(logits, size, align_corners).argmax(dim=0)
    best = labels = None
    for start in range(0, logits.shape[0], step):
        values, index = _resize(logits[start:start + step], size,
                                align_corners).max(dim=0)
        if best is None:
            best, labels = values, index
        else:
            better = values > best
            best = torch.where(better, values, best)
            labels = torch.where(better, index + start, labels)
    return labels


def _postprocess(model: torch.nn.Module, logits: torch.Tensor, meta: dict,
                 return_scores: bool) -> Result:
    """Label map (and scores) at the original size from one image's logits."""
    left, right, top, bottom = meta.get(
        'img_padding_size', meta.get('padding_size', [0, 0, 0, 0]))
    height, width = logits.shape[1:]
    logits = logits[:, top:height - bottom, left:width - right]
    if meta.get('flip'):
        logits = logits.flip(dims=(2, ) if meta.get('flip_direction') ==
                             'horizontal' else (1, ))
    size = tuple(int(s) for s in meta['ori_shape'][:2])
    align_corners = bool(getattr(model, 'align_corners', False))
    if logits.shape[0] == 1:
        scores = _resize(logits, size, align_corners).sigmoid()
        labels = (scores[0] > model.decode_head.threshold).long()
    elif return_scores:
        scores = _resize(logits, size, align_corners).softmax(dim=0)
        labels = scores.argmax(dim=0)
    else:
        labels = _resized_argmax(logits, size, align_corners)
    label_map = labels.cpu().numpy().astype(np.int64)
    if return_scores:
        return label_map, scores.float().cpu().numpy()
    return label_map


def _batches(model: torch.nn.Module, items: list[ImageInput],
             channel_order: str, batch_size: int) -> Iterator[dict]:
    """The test pipeline's packed inputs, grouped into batches of one size.

    Consecutive inputs of the same size share a batch of up to
    ``batch_size``; each batch is ``dict(inputs=[...], data_samples=[...])``
    as mmseg's ``test_step`` takes it.
    """
    if batch_size < 1:
        raise ValueError(f'batch_size must be at least 1, got {batch_size}')
    if not hasattr(model, 'cfg'):
        raise AttributeError('the model has no .cfg; build it with '
                             'convseg.apis.init_model')
    pipeline = build_test_pipeline(model.cfg)
    batch: list[dict] = []

    def packed_batch() -> dict:
        return dict(inputs=[b['inputs'] for b in batch],
                    data_samples=[b['data_samples'] for b in batch])

    def batch_key(packed: dict) -> tuple:
        return (tuple(packed['inputs'].shape),
                tuple(packed['data_samples'].metainfo['ori_shape']))

    for item in items:
        packed = pipeline(dict(img=load_image(item, channel_order)))
        if batch and (len(batch) == batch_size
                      or batch_key(batch[0]) != batch_key(packed)):
            yield packed_batch()
            batch = []
        batch.append(packed)
    if batch:
        yield packed_batch()


def inference_model(model: torch.nn.Module,
                    inputs: ImageInput | Sequence[ImageInput],
                    channel_order: str = 'bgr', batch_size: int = 4
                    ) -> Any | list[Any]:
    """Segment one image or a list of images, as ``mmseg.apis`` does.

    Returns, like ``mmseg.apis.inference_model``, one mmseg
    ``SegDataSample`` for one input and a list for a list: its
    ``pred_sem_seg.data`` is the (1, H, W) int64 label map and
    ``seg_logits.data`` the (C, H, W) logits, both at the input's size, so
    mmseg's ``SegLocalVisualizer`` and ``show_result_pyplot`` draw it. The
    results come from the model's own ``test_step``. Inputs are as for
    :func:`inference_labels`, which returns numpy label maps instead.
    """
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    results: list[Any] = []
    with torch.no_grad():
        for batch in _batches(model, items, channel_order, batch_size):
            results.extend(model.test_step(batch))
    return results[0] if single else results


def inference_labels(model: torch.nn.Module,
                     inputs: ImageInput | Sequence[ImageInput],
                     return_scores: bool = False, channel_order: str = 'bgr',
                     batch_size: int = 4) -> Result | list[Result]:
    """Label maps of one image or a list of images.

    An input is a file path, a numpy array (BGR as cv2 reads, or
    ``channel_order='rgb'``; (H, W), (H, W, 3) or (H, W, 4), uint8 or uint16)
    or a PIL image; see :mod:`convseg.imageio` for grayscale, alpha,
    16-bit and EXIF handling. Consecutive inputs of the same size run as one
    batch of up to ``batch_size``. Each result is an (H, W) int64 label map at
    the input's size, or with ``return_scores`` a pair (label map, (C, H, W)
    float32 class probabilities: softmax of the logits, sigmoid for a
    one-channel binary head). One input gives one result, a list a list.
    Unlike :func:`inference_model`, big images never hold all classes'
    full-size logits at once unless ``return_scores`` asks for them.
    """
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    results: list[Result] = []
    with torch.no_grad():
        for batch in _batches(model, items, channel_order, batch_size):
            data = model.data_preprocessor(batch, False)
            metas = [sample.metainfo for sample in data['data_samples']]
            logits = model.inference(data['inputs'], metas)
            for index, meta in enumerate(metas):
                results.append(
                    _postprocess(model, logits[index], meta, return_scores))
    return results[0] if single else results
