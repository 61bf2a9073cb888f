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
from mmengine.config import Config
from mmengine.logging import print_log
from mmengine.model import revert_sync_batchnorm
from mmengine.registry import init_default_scope

from ..dataset_meta import (config_dataset_meta, resolve_dataset_meta,
                            test_dataset_cfg)
from ..deploy.backends import choose_backend, init_deployed_model
from ..fast import FastEncoderDecoder, prepare_for_inference
from ..fast.postprocess import (original_size, predictions, resize_logits,
                                restore_logits, single_window_logits,
                                slide_grid, unflip, unpad, upsampled_argmax)
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


def _resized_argmax(logits: torch.Tensor, size: tuple[int, int],
                    align_corners: bool) -> torch.Tensor:
    """argmax over classes of ``logits`` (C, h, w) resized to ``size``.

    Resizes a few classes at a time where all C full-resolution maps
    would pass :data:`RESIZE_BUDGET`; equal to
    ``resize_logits(logits).argmax(0)`` (for channels-last logits up to
    float rounding, which may move near-ties: PyTorch's channels-last
    resize rounds by the channel count).
    """
    step = max(1, RESIZE_BUDGET // max(1, size[0] * size[1]))
    if tuple(logits.shape[1:]) == tuple(size) or step >= logits.shape[0]:
        return resize_logits(logits, size, align_corners).argmax(dim=0)
    best = labels = None
    for start in range(0, logits.shape[0], step):
        values, index = resize_logits(logits[start:start + step], size,
                                      align_corners).max(dim=0)
        if best is None:
            best, labels = values, index
        else:
            better = values > best
            best = torch.where(better, values, best)
            labels = torch.where(better, index + start, labels)
    return labels


def _labels(model: torch.nn.Module, logits: torch.Tensor,
            meta: dict) -> torch.Tensor:
    """(H, W) int64 label map at the original size from one image's
    logits, as mmseg's ``postprocess_result`` makes ``pred_sem_seg``,
    never holding all classes' full-size logits beyond the budget."""
    size = original_size(meta)
    align_corners = bool(getattr(model, 'align_corners', False))
    if logits.shape[0] == 1:
        scores = resize_logits(restore_logits(logits, meta), size,
                               align_corners).sigmoid()
        return (scores[0] > model.decode_head.threshold).long()
    logits = unpad(logits, meta)
    if tuple(logits.shape[1:]) == size:
        # flipping the labels, not the C maps: the same argmax
        return unflip(logits.argmax(dim=0, keepdim=True), meta)[0]
    return _resized_argmax(unflip(logits, meta), size, align_corners)


def _fast_labels(model: torch.nn.Module, inputs: torch.Tensor,
                 metas: list[dict]) -> list[np.ndarray] | None:
    """The label maps :func:`_labels` gives for a fast model's batch, from
    its logits at the head's resolution (:func:`upsampled_argmax`), where
    that is the same computation: a multi-class head run on the whole batch
    at once (``whole`` mode, or a single sliding window), whose logits mmseg
    resizes to the input's size and, without the padding, to each image's
    original size already. None elsewhere."""
    if not isinstance(model, FastEncoderDecoder):
        return None
    mode = model.test_cfg.get('mode', 'whole')
    height, width = inputs.shape[2:]
    if (model.decode_head.out_channels < 2 or mode not in ('whole', 'slide')
            or mode == 'slide'
            and slide_grid(model.test_cfg, height, width) != (1, 1)):
        return None
    blank = torch.empty(0, height, width)
    if any(tuple(unpad(blank, meta).shape[1:]) != original_size(meta)
           for meta in metas):
        return None
    logits = model._fast_logits(inputs)
    align_corners = bool(model.decode_head.align_corners)
    return [unflip(unpad(upsampled_argmax(image_logits, (height, width),
                                          align_corners)[None], meta),
                   meta)[0].cpu().numpy().astype(np.int64)
            for image_logits, meta in zip(logits, metas)]


def _postprocess(model: torch.nn.Module, logits: torch.Tensor, meta: dict,
                 return_scores: bool) -> Result:
    """Label map (and scores) at the original size from one image's logits."""
    if not return_scores:
        return _labels(model, logits, meta).cpu().numpy().astype(np.int64)
    logits = resize_logits(restore_logits(logits, meta), original_size(meta),
                           bool(getattr(model, 'align_corners', False)))
    if logits.shape[0] == 1:
        scores = logits.sigmoid()
        labels = (scores[0] > model.decode_head.threshold).long()
    else:
        scores = logits.softmax(dim=0)
        labels = scores.argmax(dim=0)
    return (labels.cpu().numpy().astype(np.int64),
            scores.float().cpu().numpy())


def _logits(model: torch.nn.Module, data: dict) -> torch.Tensor:
    """The model's logits (N, C, H, W) of a preprocessed batch by its
    ``test_cfg`` mode (a single sliding window as one ``encode_decode``)."""
    metas = [sample.metainfo for sample in data['data_samples']]
    logits = single_window_logits(model, data['inputs'], metas)
    if logits is None:
        logits = model.inference(data['inputs'], metas)
    return logits


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


def _samples(model: torch.nn.Module, batch: dict,
             return_logits: bool) -> list[Any]:
    """mmseg's ``SegDataSample`` results of one batch, as ``test_step``
    gives them, with ``seg_logits`` only if ``return_logits``."""
    from mmengine.structures import PixelData
    data = model.data_preprocessor(batch, False)
    samples = data['data_samples']
    logits = _logits(model, data)
    align_corners = bool(getattr(model, 'align_corners', False))
    for sample, image_logits in zip(samples, logits):
        meta = sample.metainfo
        if return_logits:
            pred, kept = predictions(
                model, resize_logits(restore_logits(image_logits, meta),
                                     original_size(meta), align_corners))
            sample.set_data(dict(seg_logits=PixelData(data=kept)))
        elif image_logits.shape[0] == 1:
            pred = _labels(model, image_logits, meta)[None].to(image_logits)
        else:
            pred = _labels(model, image_logits, meta)[None]
        sample.set_data(dict(pred_sem_seg=PixelData(data=pred)))
    return samples


def inference_model(model: torch.nn.Module,
                    inputs: ImageInput | Sequence[ImageInput],
                    channel_order: str = 'bgr', batch_size: int = 4,
                    return_logits: bool = False) -> Any | list[Any]:
    """Segment one image or a list of images, as ``mmseg.apis`` does.

    Returns, like ``mmseg.apis.inference_model``, one mmseg
    ``SegDataSample`` for one input and a list for a list: its
    ``pred_sem_seg.data`` is the (1, H, W) int64 label map at the input's
    size, so mmseg's ``SegLocalVisualizer`` and ``show_result_pyplot`` draw
    it; with ``return_logits`` also ``seg_logits.data``, the (C, H, W)
    logits at that size (sigmoid scores for a one-channel head), as mmseg
    always gives them. Off by default: they cost C floats per pixel per
    result (150 x 512 x 512: 150 MiB) and nothing reads them to draw or
    score. The results equal those of mmseg's ``test_step`` on the model.
    Inputs are as for :func:`inference_labels`, which returns numpy label
    maps instead.
    """
    if not isinstance(return_logits, bool):
        raise TypeError(f'return_logits must be True or False, got '
                        f'{return_logits!r}')
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    results: list[Any] = []
    with torch.no_grad():
        for batch in _batches(model, items, channel_order, batch_size):
            results.extend(_samples(model, batch, return_logits))
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
    full-size logits at once unless ``return_scores`` asks for them; a fast
    model's labels come from its logits at the head's resolution where mmseg
    would only resize them to the input's size
    (:func:`convseg.fast.postprocess.upsampled_argmax`: the same labels).
    """
    single = not isinstance(inputs, (list, tuple))
    items = [inputs] if single else list(inputs)
    results: list[Result] = []
    with torch.no_grad():
        for batch in _batches(model, items, channel_order, batch_size):
            data = model.data_preprocessor(batch, False)
            labels = None if return_scores else _fast_labels(
                model, data['inputs'],
                [sample.metainfo for sample in data['data_samples']])
            if labels is not None:
                results.extend(labels)
                continue
            logits = _logits(model, data)
            for sample, image_logits in zip(data['data_samples'], logits):
                results.append(_postprocess(model, image_logits,
                                            sample.metainfo, return_scores))
    return results[0] if single else results
