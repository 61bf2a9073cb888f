"""Export a UPerNet segmentor to ONNX and check the file against PyTorch.

The graph takes ``image``: float32 (N, 3, H, W), RGB, 0..255, not
normalised (the data preprocessor's channel order, mean and std are inside
the graph) and returns ``logits``: float32 (N, num_classes, H, W) at the
input's size, and ``labels``: int64 (N, H, W) class ids. The class names and
palette are stored as JSON in the file's ``metadata_props`` (keys
``classes`` and ``palette``).

The graph is captured with ``torch.onnx.export(..., dynamo=True)``. The
pooling pyramid's adaptive average pools are exported as two small matrix
products whose pooling matrices the graph builds from the map's size
(:class:`BinAveragePool`): the same bins as ``nn.AdaptiveAvgPool2d``, for
any input size, which the exporter cannot do for sizes that are not
multiples of the bin count. A ``dynamic`` graph therefore takes any batch
and any height and width (at least 64): it computes what the PyTorch model
computes on that input, nothing is padded.
"""
from __future__ import annotations

import copy
import logging
import os
from typing import Any

import torch
import torch.nn as nn
import torch.nn.functional as F
from mmengine.logging import print_log
from mmseg.models.decode_heads import UPerHead
from mmseg.models.segmentors import EncoderDecoder

from ..fileio import atomic_write_bytes
from .contract import (INPUT_NAME, OUTPUT_NAMES, compare_outputs,
                       head_threshold, metadata_strings)
from .errors import UnsupportedExportError, require
from .runtime import ort_session

#: smallest height and width a dynamic graph is exported for
MIN_DYNAMIC_SIZE = 64
MAX_DYNAMIC_SIZE = 8192
MAX_DYNAMIC_BATCH = 256


class BinAveragePool(nn.Module):
    """``nn.AdaptiveAvgPool2d(bins)`` as ``P_h @ x @ P_w^T``.

    Bin ``i`` of a size-``n`` axis averages ``floor(i n / b)`` to
    ``ceil((i + 1) n / b)`` (exclusive), as adaptive pooling does; the
    matrices are built from the input's size with tensor ops, so an exported
    graph keeps them for any size.
    """

    def __init__(self, bins: int | tuple[int, int]) -> None:
        super().__init__()
        self.bins = (bins, bins) if isinstance(bins, int) else tuple(bins)

    @staticmethod
    def pool_matrix(size: int, bins: int, like: torch.Tensor) -> torch.Tensor:
        """(bins, size) matrix whose row i averages bin i of the axis."""
        position = torch.arange(size, device=like.device)
        index = torch.arange(bins, device=like.device)
        start = torch.div(index * size, bins, rounding_mode='floor')
        end = torch.div((index + 1) * size + bins - 1, bins,
                        rounding_mode='floor')
        inside = ((position[None] >= start[:, None])
                  & (position[None] < end[:, None])).to(like.dtype)
        return inside / inside.sum(dim=1, keepdim=True)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C, H, W) -> (N, C, bins_h, bins_w)."""
        rows = self.pool_matrix(x.shape[2], self.bins[0], x)
        cols = self.pool_matrix(x.shape[3], self.bins[1], x)
        return torch.matmul(torch.matmul(rows, x), cols.transpose(0, 1))


def _replace_adaptive_pools(module: nn.Module) -> None:
    for parent in list(module.modules()):
        for name, child in list(parent.named_children()):
            if not isinstance(child, nn.AdaptiveAvgPool2d):
                continue
            size = child.output_size
            if None not in (size if isinstance(size, tuple) else (size, )):
                setattr(parent, name, BinAveragePool(size))


class ExportedSegmentor(nn.Module):
    """What the ONNX graph computes: RGB 0..255 image -> (logits, labels).

    Holds copies of the segmentor's backbone, neck and decode head (under
    those names) with the adaptive pools as :class:`BinAveragePool`.
    """

    def __init__(self, model: EncoderDecoder) -> None:
        super().__init__()
        pre = model.data_preprocessor
        normalize = getattr(pre, '_enable_normalize', False)
        mean = pre.mean.flatten() if normalize else torch.zeros(3)
        std = pre.std.flatten() if normalize else torch.ones(3)
        self.register_buffer('mean', mean.float().view(1, -1, 1, 1).clone())
        self.register_buffer('std', std.float().view(1, -1, 1, 1).clone())
        # the test pipeline gives BGR; channel_conversion makes it RGB
        self.to_bgr = not getattr(pre, 'channel_conversion', False)
        self.backbone = copy.deepcopy(model.backbone)
        self.neck = copy.deepcopy(model.neck) if model.with_neck else None
        self.decode_head = copy.deepcopy(model.decode_head)
        self.align_corners = bool(model.decode_head.align_corners)
        self.threshold = head_threshold(model.decode_head)
        _replace_adaptive_pools(self)
        self.eval()

    def forward(self, image: torch.Tensor
                ) -> tuple[torch.Tensor, torch.Tensor]:
        """image (N, 3, H, W) -> logits (N, C, H, W), labels (N, H, W)."""
        x = image.flip(1) if self.to_bgr else image
        x = (x - self.mean) / self.std
        feats = self.backbone(x)
        if self.neck is not None:
            feats = self.neck(feats)
        logits = F.interpolate(self.decode_head(feats), size=image.shape[2:],
                               mode='bilinear',
                               align_corners=self.align_corners)
        if logits.shape[1] == 1:
            labels = (logits[:, 0].sigmoid() > self.threshold).long()
        else:
            labels = logits.argmax(dim=1)
        return logits, labels


def check_exportable(model: nn.Module) -> None:
    """Raise :class:`UnsupportedExportError` unless ``model`` is a UPerNet:
    an mmseg ``EncoderDecoder`` whose decode head is a ``UPerHead``."""
    if not isinstance(model, EncoderDecoder):
        raise UnsupportedExportError(
            f'the model is a {type(model).__name__}; ONNX export supports '
            'UPerNet segmentors (an mmseg EncoderDecoder with a UPerHead '
            'decode head)')
    head = model.decode_head
    if not isinstance(head, UPerHead):
        raise UnsupportedExportError(
            f'model.decode_head is a {type(head).__name__}; ONNX export '
            'supports UPerNet segmentors (an mmseg EncoderDecoder with a '
            'UPerHead decode head): use a UPerHead config')


def _first_line(err: BaseException) -> str:
    lines = [line.strip() for line in str(err).splitlines() if line.strip()]
    return lines[0][:300] if lines else type(err).__name__


def find_untraceable(root: nn.Module, args: tuple, prefix: str) -> str:
    """Dotted name of the deepest module under ``root`` (``prefix`` names
    root) that ``torch.export`` cannot trace on the inputs it receives
    when ``root(*args)`` runs; ``prefix`` itself when its submodules all
    trace."""
    calls: dict[str, tuple] = {}
    handles = []
    for name, module in root.named_modules():
        if name:
            handles.append(module.register_forward_pre_hook(
                lambda m, a, kw, name=name: calls.setdefault(name, (a, kw)),
                with_kwargs=True))
    try:
        with torch.no_grad():
            root(*args)
    finally:
        for handle in handles:
            handle.remove()
    outermost = [name for name in calls
                 if not any(name.startswith(other + '.') for other in calls)]
    for name in outermost:
        child = root.get_submodule(name)
        child_args, child_kwargs = calls[name]
        try:
            torch.export.export(child, child_args, child_kwargs, strict=False)
        except Exception:  # noqa: BLE001 (any failure to trace localises)
            return find_untraceable(child, child_args, f'{prefix}.{name}')
    return prefix


def default_shape(model: nn.Module) -> tuple[int, int]:
    """The export size of ``model``: the slide crop size of its test_cfg,
    else the training crop size of its data preprocessor, else 512x512."""
    test_cfg = model.test_cfg or {}
    if test_cfg.get('mode') == 'slide':
        return tuple(int(s) for s in test_cfg['crop_size'])
    size = getattr(model.data_preprocessor, 'size', None)
    return tuple(int(s) for s in size) if size else (512, 512)


def _dynamic_shapes() -> tuple[dict, ...]:
    dim = torch.export.Dim
    return ({0: dim('batch', min=1, max=MAX_DYNAMIC_BATCH),
             2: dim('height', min=MIN_DYNAMIC_SIZE, max=MAX_DYNAMIC_SIZE),
             3: dim('width', min=MIN_DYNAMIC_SIZE, max=MAX_DYNAMIC_SIZE)}, )


def export_onnx(model: EncoderDecoder, path: str | os.PathLike,
                shape: tuple[int, int] = (512, 512), batch: int = 1,
                dynamic: bool = False, opset: int | None = None) -> str:
    """Write ``model`` as an ONNX file at ``path`` (atomically); returns it.

    ``shape`` (H, W) and ``batch`` are the graph's input size, or with
    ``dynamic`` the example it is traced on (any batch, any H and W of at
    least 64 then run). ``opset`` defaults to the exporter's. The model's
    ``dataset_meta`` classes and palette go into the metadata. Raises
    :class:`UnsupportedExportError` naming the module that is not a UPerNet
    part or that cannot be traced.
    """
    require('onnx')
    require('onnxscript')
    check_exportable(model)
    height, width = shape
    if dynamic:
        if min(height, width) < MIN_DYNAMIC_SIZE:
            raise ValueError(f'--dynamic exports from an example of at least '
                             f'{MIN_DYNAMIC_SIZE}x{MIN_DYNAMIC_SIZE}; got '
                             f'{height}x{width}')
        # distinct example sizes keep batch, height and width independent
        batch, width = max(batch, 2), width + 32 * (width == height)
    wrapper = ExportedSegmentor(model).cpu()
    example = torch.randint(0, 256, (batch, 3, height, width),
                            generator=torch.Generator().manual_seed(0)
                            ).float()
    try:
        program = torch.onnx.export(
            wrapper, (example, ), None, input_names=[INPUT_NAME],
            output_names=list(OUTPUT_NAMES), opset_version=opset,
            dynamo=True, external_data=False, verbose=False,
            dynamic_shapes=_dynamic_shapes() if dynamic else None)
    except torch.onnx.OnnxExporterError as err:
        name = find_untraceable(wrapper, (example[:1], ), 'model')
        module = model if name == 'model' else model.get_submodule(
            name[len('model.'):])
        raise UnsupportedExportError(
            f'{name} ({type(module).__name__}) cannot be exported to ONNX: '
            f'{_first_line(err.__cause__ or err)}. Its forward must be '
            'traceable by torch.export: no Python branches on tensor '
            'values and no conversion of tensors to Python or numpy values '
            '(.item(), .tolist(), .numpy())') from err
    proto = program.model_proto
    set_metadata(proto, getattr(model, 'dataset_meta', None) or {})
    atomic_write_bytes(proto.SerializeToString(), path)
    print_log(f'wrote {path}', logger='current', level=logging.INFO)
    return os.fspath(path)


def set_metadata(proto: Any, meta: dict) -> None:
    """Store ``meta``'s classes and palette in an ONNX ``ModelProto``."""
    for key, value in metadata_strings(meta).items():
        entry = proto.metadata_props.add()
        entry.key, entry.value = key, value


def compare_with_onnx(model: EncoderDecoder, path: str | os.PathLike,
                      images: torch.Tensor) -> dict[str, float]:
    """Run the ONNX file with onnxruntime and the PyTorch model on RGB
    0..255 ``images``: :func:`~convseg.deploy.contract.compare_outputs`."""
    logits, labels = ort_session(path).run(
        list(OUTPUT_NAMES), {INPUT_NAME: images.float().numpy()})
    return compare_outputs(model, images, logits, labels)
