"""Winograd's minimal filtering F(m x m, 3 x 3) for 3x3 convs of NHWC maps.

A 3x3 conv (stride 1, zero padding 1) costs 9 multiplications per output and
input channel; F(4x4, 3x3) costs 2.25. The input is cut into overlapping
n x n tiles (n = m + 2) at stride m, the tiles are transformed by one GEMM,
multiplied with the transformed filters as n*n independent GEMMs over all
tiles of the batch, and transformed back by one GEMM. The matrices are built
exactly (in fractions) by the Toom-Cook construction.
"""
from __future__ import annotations

import math
from fractions import Fraction
from typing import Callable, Sequence

import torch

#: output tile m of F(m x m, 3 x 3) and its m + 1 finite interpolation
#: points (infinity is the last): relative errors near 1e-5 in float32.
WINOGRAD_TILE = 4
WINOGRAD_POINTS = (0, 1, -1, 2, -2)

#: computes ``bmm(v, filters)`` for v (n*n, tiles, Ci) and filters
#: (n*n, Ci, Co); see :mod:`convseg.fast.kernels` for the choices.
BatchedGemm = Callable[[torch.Tensor, torch.Tensor], torch.Tensor]


def _poly_from_roots(roots: Sequence[Fraction]) -> list[Fraction]:
    """Coefficients, lowest power first, of prod (x - root)."""
    coeffs = [Fraction(1)]
    for root in roots:
        shifted = [Fraction(0)] + coeffs
        coeffs = [s - root * c for s, c in zip(shifted, coeffs + [0])]
    return coeffs


def toom_cook_matrices(m: int,
                       points: Sequence[int]) -> tuple[torch.Tensor, ...]:
    """Exact Winograd F(m, 3) matrices (A^T, G, B^T) as float64 tensors.

    For the 1-D correlation ``y[k] = sum_j g[j] d[k + j]`` of a tile ``d``
    of n = m + 2 inputs, ``y = A^T ((G g) * (B^T d))``; A^T is (m, n), G is
    (n, 3), B^T is (n, n). ``points`` are the n - 1 finite interpolation
    points of the Toom-Cook construction, infinity being the last.
    """
    n = m + 2
    pts = [Fraction(p) for p in points]
    if len(pts) != n - 1 or len(set(pts)) != len(pts):
        raise ValueError(f'F({m}, 3) needs {n - 1} distinct points, got '
                         f'{list(points)}')
    a_t = [[p**k for p in pts] + [Fraction(int(k == m - 1))] for k in range(m)]
    g = []
    b_t = []
    for i, p in enumerate(pts):
        others = pts[:i] + pts[i + 1:]
        scale = math.prod((p - q for q in others), start=Fraction(1))
        g.append([p**j / scale for j in range(3)])
        b_t.append(_poly_from_roots(others) + [Fraction(0)])
    g.append([Fraction(0), Fraction(0), Fraction(1)])
    b_t.append(_poly_from_roots(pts))

    def tensor(rows: list[list[Fraction]]) -> torch.Tensor:
        return torch.tensor([[float(v) for v in row] for row in rows],
                            dtype=torch.float64)

    return tensor(a_t), tensor(g), tensor(b_t)


_TRANSFORMS: dict[tuple, tuple[torch.Tensor, torch.Tensor]] = {}


def _winograd_transforms(dtype: torch.dtype,
                         device: torch.device) -> tuple[torch.Tensor, ...]:
    """(B^T kron B^T (n*n, n*n), A^T kron A^T (m*m, n*n)) of F(m x m, 3x3)."""
    key = (dtype, str(device))
    if key not in _TRANSFORMS:
        a_t, _, b_t = toom_cook_matrices(WINOGRAD_TILE, WINOGRAD_POINTS)
        _TRANSFORMS[key] = (torch.kron(b_t, b_t).to(device, dtype),
                            torch.kron(a_t, a_t).to(device, dtype))
    return _TRANSFORMS[key]


def winograd_filters(weight: torch.Tensor) -> torch.Tensor:
    """Transformed 3x3 filters: (Co, Ci, 3, 3) -> (n*n, Ci, Co), n = m + 2."""
    _, g, _ = toom_cook_matrices(WINOGRAD_TILE, WINOGRAD_POINTS)
    g = g.to(weight.device)
    u = torch.einsum('ai,ocij,bj->abco', g, weight.detach().double(), g)
    n = WINOGRAD_TILE + 2
    return u.reshape(n * n, weight.shape[1],
                     weight.shape[0]).to(weight.dtype).contiguous()


def winograd_conv3x3(x: torch.Tensor,
                     filters: torch.Tensor,
                     bias: torch.Tensor | None = None,
                     gemm: BatchedGemm = torch.bmm) -> torch.Tensor:
    """3x3 conv (stride 1, zero padding 1) of NHWC maps by Winograd.

    ``x`` (N, H, W, Ci) contiguous, ``filters`` from
    :func:`winograd_filters` (n*n, Ci, Co) or as ``gemm`` wants them;
    returns (N, H, W, Co), plus ``bias`` (Co,) if given. ``gemm`` runs the
    n*n products of transformed tiles and filters.
    """
    m, n = WINOGRAD_TILE, WINOGRAD_TILE + 2
    b_kron, a_kron = _winograd_transforms(x.dtype, x.device)
    batch, height, width, in_ch = x.shape
    rows, cols = -(-height // m), -(-width // m)
    # zero padding: 1 before, up to a whole number of tiles after
    xp = x.new_empty(batch, rows * m + 2, cols * m + 2, in_ch)
    xp[:, 0] = 0
    xp[:, height + 1:] = 0
    xp[:, :, 0] = 0
    xp[:, :, width + 1:] = 0
    xp[:, 1:height + 1, 1:width + 1] = x
    s_n, s_h, s_w, _ = xp.stride()
    tiles = xp.as_strided((n, n, batch, rows, cols, in_ch),
                          (s_h, s_w, s_n, m * s_h, m * s_w, 1))
    tiles = tiles.contiguous().view(n * n, -1)
    v = torch.mm(b_kron, tiles).view(n * n, -1, in_ch)
    prod = gemm(v, filters)
    out_ch = prod.shape[-1]
    y = torch.mm(a_kron, prod.reshape(n * n, -1))
    y = y.view(m, m, batch, rows, cols, out_ch).permute(2, 3, 0, 4, 1, 5)
    out = x.new_empty(batch, rows * m, cols * m, out_ch)
    out6 = out.view(batch, rows, m, cols, m, out_ch)
    if bias is None:
        out6.copy_(y)
    else:
        torch.add(y, bias, out=out6)
    if rows * m != height or cols * m != width:
        out = out[:, :height, :width].contiguous()
    return out
