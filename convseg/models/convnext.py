"""ConvNeXt (V1 and V2) as an mmseg backbone.

`A ConvNet for the 2020s <https://arxiv.org/abs/2201.03545>`_ and
`ConvNeXt V2 <https://arxiv.org/abs/2301.00808>`_. The module tree, and so the
state-dict keys, follow the official segmentation backbone:

* ``downsample_layers.0`` stem: 4x4 conv stride 4 + channels-first LayerNorm;
  ``downsample_layers.{1,2,3}``: channels-first LayerNorm + 2x2 conv stride 2;
* ``stages.{i}.{j}``: residual blocks (``dwconv``, ``norm``, ``pwconv1``,
  ``pwconv2``, then ``gamma`` (layer scale) for V1 or ``grn.{gamma,beta}``
  for V2);
* ``norm{i}``: a channels-first LayerNorm on each returned feature map.

An official classification checkpoint therefore loads after dropping its
``head.*`` and final ``norm.*`` (the ``norm{i}`` output norms are new), and an
official segmentation checkpoint's ``backbone.*`` entries load as they are.

The module is a little over 400 lines: the model family in one file (norms,
GRN, block and backbone, as in timm), with its argument checks. The variant
table and the checkpoint key maps live beside it in ``convnext_archs.py`` and
``convnext_keymaps.py``.
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn as nn
import torch.nn.functional as F
import torch.utils.checkpoint as cp
from mmcv.cnn.bricks import DropPath
from mmengine.model import BaseModule
from mmengine.model.weight_init import trunc_normal_, update_init_info
from mmseg.registry import MODELS

from .checkpoint_loading import load_backbone_weights
from .convnext_archs import arch_dims, arch_settings, mmpretrain_arch

DECAY_TYPES = ('stage_wise', 'layer_wise')

#: layer scale used when ``layer_scale_init_value`` is not given: the official
#: V1 default; V2 blocks have no layer scale.
V1_LAYER_SCALE_INIT = 1e-6


class LayerNorm2d(nn.LayerNorm):
    """LayerNorm over the channels of a channels-first map.

    (N, C, H, W) -> (N, C, H, W); parameters ``weight`` and ``bias`` of shape
    (C,), as the official channels-first LayerNorm.
    """

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalise ``x`` (N, C, H, W) over C."""
        x = x.permute(0, 2, 3, 1)
        x = F.layer_norm(x, self.normalized_shape, self.weight, self.bias,
                         self.eps)
        return x.permute(0, 3, 1, 2)


#: Largest map (H * W) whose depthwise conv :func:`small_map_depthwise_conv`
#: computes in training: oneDNN's depthwise backward takes 4-9 ms on a
#: (16, 160, 4, 4) or (16, 320, 2, 2) map on 2 CPU cores (AMD EPYC, Zen 3),
#: this 0.6-2.5 ms.
SMALL_MAP_PIXELS = 16

_SHIFT_BASES: dict[tuple[int, int, int], torch.Tensor] = {}


def _shift_basis(height: int, width: int, kernel: int) -> torch.Tensor:
    """(kernel**2, (H*W)**2) 0/1 matrix: row ``a * kernel + b`` marks the
    (output pixel p, input pixel q) pairs that tap ``(a, b)`` of a
    ``kernel`` x ``kernel`` kernel, zero padding ``kernel // 2``."""
    key = (height, width, kernel)
    if key not in _SHIFT_BASES:
        r = kernel // 2
        rows, cols = torch.meshgrid(torch.arange(height), torch.arange(width),
                                    indexing='ij')
        rows, cols = rows.reshape(-1), cols.reshape(-1)
        dy = rows[None, :] - rows[:, None] + r  # [p, q]
        dx = cols[None, :] - cols[:, None] + r
        inside = (dy >= 0) & (dy < kernel) & (dx >= 0) & (dx < kernel)
        pairs = torch.arange((height * width)**2).reshape(dy.shape)
        basis = torch.zeros(kernel * kernel, (height * width)**2)
        basis[(dy * kernel + dx)[inside], pairs[inside]] = 1.0
        _SHIFT_BASES[key] = basis
    return _SHIFT_BASES[key]


def small_map_depthwise_conv(x: torch.Tensor, conv: nn.Conv2d) -> torch.Tensor:
    """``conv(x)`` for a depthwise ``conv`` (odd square kernel, stride 1,
    'same' zero padding) on a small map, as one product per channel with the
    (H*W, H*W) matrix of its taps; the same values as ``conv`` up to float
    rounding, and in training about 3-10x faster on CPU for maps of 4 pixels
    or 16 (:data:`SMALL_MAP_PIXELS`). Returns ``x``'s memory format."""
    n, c, h, w = x.shape
    k = conv.kernel_size[0]
    basis = _shift_basis(h, w, k).to(x)
    taps = (conv.weight.reshape(c, k * k) @ basis).reshape(c, h * w, h * w)
    pixels = x.permute(0, 2, 3, 1).reshape(n, 1, h * w, c)  # n, 1, q, c
    out = (pixels * taps.permute(1, 2, 0)).sum(2)  # n, p, c
    if conv.bias is not None:
        out = out + conv.bias
    out = out.reshape(n, h, w, c).permute(0, 3, 1, 2)
    if x.is_contiguous(memory_format=torch.channels_last):
        return out
    return out.contiguous()


class GRN(nn.Module):
    """Global Response Normalisation of ConvNeXt V2, channels-last.

    (N, H, W, C) -> (N, H, W, C). Parameters ``gamma`` and ``beta`` have the
    official shape (1, 1, 1, C) and start at zero, so a fresh GRN is the
    identity.
    """

    def __init__(self, dim: int, eps: float = 1e-6) -> None:
        super().__init__()
        self.gamma = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.beta = nn.Parameter(torch.zeros(1, 1, 1, dim))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Apply GRN to ``x`` (N, H, W, C)."""
        spatial_norm = torch.linalg.vector_norm(x, dim=(1, 2), keepdim=True)
        response = spatial_norm / (spatial_norm.mean(dim=-1, keepdim=True) +
                                   self.eps)
        return self.gamma * (x * response) + self.beta + x


class Block(nn.Module):
    """ConvNeXt residual block, (N, C, H, W) -> (N, C, H, W).

    7x7 depthwise conv, LayerNorm, Linear C->4C, GELU, [GRN], Linear 4C->C,
    [layer scale ``gamma``], stochastic depth, residual add.

    Args:
        dim: channels C.
        drop_path: probability of dropping the residual branch in training.
        layer_scale_init_value: initial value of the per-channel ``gamma``;
            0 means no layer scale (no ``gamma`` parameter).
        use_grn: add GRN after the GELU (ConvNeXt V2).
        with_cp: recompute the block in backward (gradient checkpointing)
            to save memory while training.
    """

    def __init__(self,
                 dim: int,
                 drop_path: float = 0.0,
                 layer_scale_init_value: float = V1_LAYER_SCALE_INIT,
                 use_grn: bool = False,
                 with_cp: bool = False) -> None:
        super().__init__()
        self.dwconv = nn.Conv2d(dim, dim, kernel_size=7, padding=3, groups=dim)
        self.norm = nn.LayerNorm(dim, eps=1e-6)
        self.pwconv1 = nn.Linear(dim, 4 * dim)
        self.act = nn.GELU()
        self.grn = GRN(4 * dim) if use_grn else None
        self.pwconv2 = nn.Linear(4 * dim, dim)
        self.layer_scale_init_value = layer_scale_init_value
        self.gamma = (nn.Parameter(torch.full((dim, ), layer_scale_init_value))
                      if layer_scale_init_value > 0 else None)
        self.drop_path = DropPath(
            drop_path) if drop_path > 0 else nn.Identity()
        self.with_cp = with_cp

    def _depthwise(self, x: torch.Tensor) -> torch.Tensor:
        # eager training on CPU only: eval, export, the fast path and
        # torch.compile (which fuses the conv itself; the tap matrix's cache
        # would break its graph) keep the conv
        if (self.training and x.shape[2] * x.shape[3] <= SMALL_MAP_PIXELS
                and x.device.type == 'cpu' and torch.is_grad_enabled()
                and type(self.dwconv) is nn.Conv2d
                and not torch.compiler.is_compiling()):
            return small_map_depthwise_conv(x, self.dwconv)
        return self.dwconv(x)

    def _residual(self, x: torch.Tensor) -> torch.Tensor:
        x = self._depthwise(x).permute(0, 2, 3, 1)
        x = self.act(self.pwconv1(self.norm(x)))
        if self.grn is not None:
            x = self.grn(x)
        x = self.pwconv2(x)
        if self.gamma is not None:
            x = self.gamma * x
        return self.drop_path(x.permute(0, 3, 1, 2))

    def _forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self._residual(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Run the block on ``x`` (N, C, H, W)."""
        if self.with_cp and self.training and torch.is_grad_enabled():
            return cp.checkpoint(self._forward, x, use_reentrant=False)
        return self._forward(x)


@MODELS.register_module()
class ConvNeXt(BaseModule):
    """ConvNeXt V1/V2 backbone returning one feature map per chosen stage.

    Input (N, in_channels, H, W); output a tuple with, for each ``i`` in
    ``out_indices``, a map (N, dims[i], H / 2**(i+2), W / 2**(i+2)) (strides
    4, 8, 16, 32), each normalised by its own channels-first LayerNorm
    ``norm{i}`` (eps 1e-6). With ``stem_stride=2`` the first map is at
    stride 2 and the others stay at 8, 16, 32.

    Args:
        arch: a name in :data:`arch_settings` (atto ... huge). Ignored when
            ``depths`` and ``dims`` are given (which must then agree with it
            if it is also given). mmpretrain's ``dict(depths=[...],
            channels=[...])`` is read as ``depths`` and ``dims``.
        in_channels: channels of the input image (alias ``in_chans``, the
            name of the official configs).
        depths: blocks per stage, 4 ints.
        dims: channels per stage, 4 ints.
        drop_path_rate: stochastic depth of the last block; it rises
            linearly from 0 over all blocks.
        layer_scale_init_value: initial layer scale ``gamma``; 0 disables it.
            ``None`` means the official choice: 1e-6 for V1, and no layer
            scale for V2 (``use_grn=True``), whose official blocks have none.
        use_grn: ConvNeXt V2 blocks (Global Response Normalisation).
        out_indices: stages whose outputs are returned, in 0..3. Stages
            after the last one are not run.
        frozen_stages: as in mmseg's backbones: -1 freezes nothing, 0 the stem
            (``downsample_layers.0``), k >= 1 the stem and stages 0..k-1 with
            their downsampling layers and output norms. Frozen parts get no
            gradients and stay in eval mode through :meth:`train`.
        with_cp: gradient checkpointing per block while training.
        stem_stride: 4 (the official stem: 4x4 patches, then 2x2 between
            stages), or 2 or 1: stem patches of that size, and the first
            downsampling layer takes the rest of the way to stride 8, so
            stage 0 runs at a finer stride (for small inputs; official
            checkpoints fit stride 4 only).
        init_cfg: ``dict(type='Pretrained', checkpoint=PATH_OR_URL,
            prefix=None)`` loads weights of any supported checkpoint family
            through
            :func:`convseg.models.checkpoint_loading.load_backbone_weights`;
            ``None`` uses the official initialisation (truncated normal
            std 0.02 for convs and linears, zero biases); other configs go to
            mmengine's initialisers.
        in_chans: alias of ``in_channels``.
        pretrained: checkpoint path or URL, shorthand for
            ``init_cfg=dict(type='Pretrained', checkpoint=pretrained)``; this
            is what mmseg's ``EncoderDecoder(pretrained=...)`` (the official
            ``--options model.pretrained=URL``) passes to its backbone.
        gap_before_final_norm: mmpretrain's option; only False (feature
            maps, what segmentation uses) is accepted.
    """

    arch_settings = arch_settings

    def __init__(self,
                 arch: str | dict | None = None,
                 in_channels: int | None = None,
                 depths: Sequence[int] | None = None,
                 dims: Sequence[int] | None = None,
                 drop_path_rate: float = 0.0,
                 layer_scale_init_value: float | None = None,
                 use_grn: bool = False,
                 out_indices: Sequence[int] = (0, 1, 2, 3),
                 frozen_stages: int = -1,
                 with_cp: bool = False,
                 stem_stride: int = 4,
                 init_cfg: dict | None = None,
                 in_chans: int | None = None,
                 pretrained: str | None = None,
                 gap_before_final_norm: bool = False) -> None:
        if pretrained is not None:
            if init_cfg is not None:
                raise ValueError(
                    f'pretrained={pretrained!r} and init_cfg={init_cfg!r} '
                    'both say how to initialise the backbone; pass only one.')
            init_cfg = dict(type='Pretrained', checkpoint=pretrained)
        if gap_before_final_norm:
            raise ValueError(
                'gap_before_final_norm=True (mmpretrain\'s pooled '
                'classification output) does not apply to a segmentation '
                'backbone: convseg\'s ConvNeXt returns the normalised feature '
                'maps of out_indices. Leave gap_before_final_norm out or set '
                'it to False.')
        super().__init__(init_cfg=init_cfg)
        if isinstance(arch, dict):
            arch, depths, dims = None, *mmpretrain_arch(arch, depths, dims)
        self.depths, self.dims = self._resolve_arch(arch, depths, dims)
        in_channels = self._resolve_in_channels(in_channels, in_chans)
        if not 0.0 <= drop_path_rate < 1.0:
            raise ValueError(
                f'drop_path_rate must be in [0, 1), got {drop_path_rate}.')
        if layer_scale_init_value is None:
            layer_scale_init_value = 0.0 if use_grn else V1_LAYER_SCALE_INIT
        if layer_scale_init_value < 0:
            raise ValueError('layer_scale_init_value must be >= 0 (0 disables '
                             f'layer scale), got {layer_scale_init_value}.')
        self.out_indices = self._check_out_indices(out_indices)
        if frozen_stages not in range(-1, 5):
            raise ValueError(
                'frozen_stages must be an int in -1..4, got '
                f'{frozen_stages!r}.')
        self.frozen_stages = frozen_stages
        self.layer_scale_init_value = layer_scale_init_value
        self.use_grn = use_grn
        self.with_cp = with_cp
        if stem_stride not in (1, 2, 4):
            raise ValueError(
                f'stem_stride must be 4 (official), 2 or 1, got '
                f'{stem_stride!r}.')
        self.stem_stride = stem_stride

        dims = self.dims
        self.downsample_layers = nn.ModuleList([
            nn.Sequential(
                nn.Conv2d(in_channels, dims[0], kernel_size=stem_stride,
                          stride=stem_stride),
                LayerNorm2d(dims[0], eps=1e-6))
        ])
        for i in range(1, 4):
            step = 8 // stem_stride if i == 1 else 2
            self.downsample_layers.append(
                nn.Sequential(
                    LayerNorm2d(dims[i - 1], eps=1e-6),
                    nn.Conv2d(dims[i - 1], dims[i], kernel_size=step,
                              stride=step)))

        rates = torch.linspace(0,
                               drop_path_rate,
                               sum(self.depths),
                               device='cpu').tolist()
        self.stages = nn.ModuleList()
        for i, depth in enumerate(self.depths):
            first = sum(self.depths[:i])
            self.stages.append(
                nn.Sequential(*[
                    Block(dims[i], rates[first + j], layer_scale_init_value,
                          use_grn, with_cp) for j in range(depth)
                ]))

        for i in self.out_indices:
            self.add_module(f'norm{i}', LayerNorm2d(dims[i], eps=1e-6))

        self.apply(self._init_module)
        self._freeze_stages()

    # ------------------------------------------------------------ arguments
    @staticmethod
    def _resolve_arch(
        arch: str | None, depths: Sequence[int] | None,
        dims: Sequence[int] | None
    ) -> tuple[tuple[int, ...], tuple[int, ...]]:
        if depths is None and dims is None:
            return arch_dims('tiny' if arch is None else arch)
        if depths is None or dims is None:
            raise ValueError(
                'depths and dims must be given together (or neither, to take '
                f'them from arch); got depths={depths!r}, dims={dims!r}.')
        for name, value in (('depths', depths), ('dims', dims)):
            if (len(value) != 4
                    or not all(isinstance(v, int) and v > 0 for v in value)):
                raise ValueError(
                    f'{name} must be 4 positive ints, got {value!r}.')
        depths, dims = tuple(depths), tuple(dims)
        if arch is not None and arch_dims(arch) != (depths, dims):
            raise ValueError(
                f'arch {arch!r} has depths {arch_dims(arch)[0]} and dims '
                f'{arch_dims(arch)[1]}, which disagree with the given depths '
                f'{depths} and dims {dims}; pass only one of them.')
        return depths, dims

    @staticmethod
    def _resolve_in_channels(in_channels: int | None,
                             in_chans: int | None) -> int:
        if (in_channels is not None and in_chans is not None
                and in_channels != in_chans):
            raise ValueError(
                f'in_channels={in_channels} and its alias in_chans={in_chans} '
                'disagree; pass only one of them.')
        value = next((v for v in (in_channels, in_chans) if v is not None), 3)
        if not isinstance(value, int) or value <= 0:
            raise ValueError(
                f'in_channels must be a positive int, got {value!r}.')
        return value

    @staticmethod
    def _check_out_indices(out_indices: Sequence[int]) -> tuple[int, ...]:
        indices = tuple(out_indices)
        if (not indices or len(set(indices)) != len(indices) or
                not all(isinstance(i, int) and 0 <= i <= 3 for i in indices)):
            raise ValueError('out_indices must be distinct stage indices in '
                             f'0..3, got {out_indices!r}.')
        return tuple(sorted(indices))

    # ------------------------------------------------------------- weights
    @staticmethod
    def _init_module(module: nn.Module) -> None:
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            trunc_normal_(module.weight, std=0.02)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.LayerNorm):
            nn.init.ones_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, GRN):
            nn.init.zeros_(module.gamma)
            nn.init.zeros_(module.beta)
        elif isinstance(module, Block) and module.gamma is not None:
            nn.init.constant_(module.gamma, module.layer_scale_init_value)

    def init_weights(self) -> None:
        """Initialise as ``init_cfg`` says (see the class docstring)."""
        cfg = self.init_cfg
        if isinstance(cfg, dict) and cfg.get('type') == 'Pretrained':
            self._official_init()
            load_backbone_weights(self,
                                  cfg['checkpoint'],
                                  prefix=cfg.get('prefix'))
            self._record_init(f'loaded from {cfg["checkpoint"]}')
            self._is_init = True
        elif cfg is None:
            self._official_init()
            self._is_init = True
        else:
            super().init_weights()

    def _official_init(self) -> None:
        self.apply(self._init_module)
        self._record_init('ConvNeXt init: trunc_normal std 0.02, zero bias')

    def _record_init(self, info: str) -> None:
        # mmengine's parent init_weights logs, per parameter, who set it
        if hasattr(self, '_params_init_info'):
            update_init_info(self, init_info=info)

    # ------------------------------------------------------------ training
    def _frozen_modules(self) -> list[nn.Module]:
        modules: list[nn.Module] = []
        if self.frozen_stages >= 0:
            modules.append(self.downsample_layers[0])
        for i in range(self.frozen_stages):
            if i > 0:
                modules.append(self.downsample_layers[i])
            modules.append(self.stages[i])
            if i in self.out_indices:
                modules.append(getattr(self, f'norm{i}'))
        return modules

    def _freeze_stages(self) -> None:
        for module in self._frozen_modules():
            module.eval()
            for param in module.parameters():
                param.requires_grad = False

    def train(self, mode: bool = True) -> ConvNeXt:
        """Set the training mode; frozen stages stay in eval mode."""
        super().train(mode)
        self._freeze_stages()
        return self

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Return the normalised maps of ``out_indices`` for x (N, C, H, W).

        Map ``i`` has shape (N, dims[i], H // 2**(i+2), W // 2**(i+2)).
        """
        outs = []
        for i in range(self.out_indices[-1] + 1):
            x = self.stages[i](self.downsample_layers[i](x))
            if i in self.out_indices:
                outs.append(getattr(self, f'norm{i}')(x))
        return tuple(outs)

    # --------------------------------------------------------- layer decay
    def min_num_layers(self, decay_type: str = 'stage_wise') -> int:
        """Smallest ``num_layers`` for which :meth:`get_layer_id` is valid.

        4 for ``stage_wise``; ``4 + (depths[2] - 1) // 3`` for ``layer_wise``
        (6 for tiny, 12 for small and larger).
        """
        self._check_decay_type(decay_type)
        if decay_type == 'stage_wise':
            return 4
        return 4 + (self.depths[2] - 1) // 3

    def get_layer_id(self,
                     param_name: str,
                     num_layers: int,
                     decay_type: str = 'stage_wise') -> int:
        """Layer id of a backbone parameter for layer-wise LR decay.

        Called by :class:`convseg.engine.LayerDecayOptimWrapperConstructor`.
        (mmpretrain's backbones answer ``get_layer_depth(param_name,
        prefix)`` instead, with ids and their count from the backbone alone;
        the official ConvNeXt rule needs ``num_layers`` and ``decay_type``,
        hence a name of its own.)

        ``param_name`` is relative to the backbone, e.g.
        ``stages.2.4.dwconv.weight``.
        The ids are the official ones, with N = ``num_layers``:

        * ``stage_wise``: ``downsample_layers.*`` 0, ``stages.s.*`` s + 1,
          ``norm{i}.*`` N + 1.
        * ``layer_wise``: ``downsample_layers.{0,1,2,3}`` 0, 2, 3, N;
          ``stages.0`` 1, ``stages.1`` 2, ``stages.2.b`` 3 + b // 3,
          ``stages.3`` N; ``norm{i}.*`` N + 1.
        """
        minimum = self.min_num_layers(decay_type)
        if num_layers < minimum:
            raise ValueError(
                f'num_layers={num_layers} is too small for decay_type '
                f'{decay_type!r} with depths {list(self.depths)}: it must be '
                f'at least {minimum}.')
        parts = param_name.split('.')
        if parts[0] in ('downsample_layers', 'stages') and len(parts) > 2:
            stage = int(parts[1])
            if decay_type == 'stage_wise':
                return 0 if parts[0] == 'downsample_layers' else stage + 1
            if stage == 3:
                return num_layers
            if parts[0] == 'downsample_layers':
                return (0, 2, 3)[stage]
            return (1, 2, 3 + int(parts[2]) // 3)[stage]
        if parts[0] in (f'norm{i}' for i in self.out_indices):
            return num_layers + 1
        raise ValueError(
            f'{param_name!r} is not a parameter name of this ConvNeXt '
            '(expected downsample_layers.*, stages.* or norm{i}.*, relative '
            'to the backbone).')

    @staticmethod
    def _check_decay_type(decay_type: str) -> None:
        if decay_type not in DECAY_TYPES:
            raise ValueError(
                f'Unknown decay_type {decay_type!r}; expected one of '
                f'{", ".join(repr(t) for t in DECAY_TYPES)}.')
