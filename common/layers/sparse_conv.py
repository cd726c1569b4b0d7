"""The depthwise conv of the conv blocks evaluated on visible blocks only.

Sparse layout: with block-wise masking every visible stage-3 token owns a whole block of
positions on the finer grids, so a stage's visible positions are kept as rows of a table
``(M, *block, C)`` with M = N * L_visible (one entry per visible token, raster order) and
everything masked is implicitly zero. The depthwise conv's output at the visible positions
only reads a window ``block + 2 * (kernel // 2)`` around each visible block; windows are
built with one row gather (``index_select``) from the table plus a zero row, driven by a
small integer index computed once per mask and stage (``window_rows``).

Gradients are computed by hand (``_VisibleDepthwise``): the input gradient is the same
windowed conv of the output gradient with the flipped kernel (the adjoint of "zero-extend,
convolve, restrict to visible" has the same form), and the weight gradient is one more
depthwise conv with the visible blocks folded into the channels (``_weight_grad``). Only
forward depthwise kernels run: no scatter-adds and none of the CPU backends' slow
depthwise backward kernels (measured: several times the forward).
"""
from __future__ import annotations

import math
from typing import Callable, Optional, Sequence, Tuple

import torch
import torch.nn.functional as F
from torch import nn


def window_rows(
    coords: Sequence[torch.Tensor],
    grid: Sequence[int],
    block: Sequence[int],
    kernel: Sequence[int],
) -> torch.Tensor:
    """Row index of every position of every visible block's window.

    ``coords``: per grid dim, the (N, L_visible) coordinates of the visible tokens on the
    token grid ``grid``; ``block``: positions per token on the stage grid (stage grid =
    grid * block); ``kernel``: the odd depthwise kernel. Rows refer to the flat table
    ``(N * L_visible * prod(block), C)`` in (n, token, *block) order; the extra row
    ``N * L_visible * prod(block)`` stands for zeros (masked or outside the grid).
    Returns (N * L_visible, *(block + kernel - 1)) int64.
    """
    n, num_visible = coords[0].shape
    ndim = len(grid)
    device = coords[0].device
    zero_row = n * num_visible * math.prod(block)
    rows = torch.full((n, *grid, *block), zero_row, dtype=torch.long, device=device)
    batch = torch.arange(n, device=device)[:, None]
    rows[(batch, *coords)] = torch.arange(zero_row, device=device).view(n, num_visible, *block)
    # (n, *grid, *block) -> (n, grid0, block0, grid1, block1, ...) -> (n, *stage_grid)
    interleaved = [d for i in range(ndim) for d in (1 + i, 1 + ndim + i)]
    stage_grid = [g * b for g, b in zip(grid, block)]
    rows = rows.permute(0, *interleaved).reshape(n, *stage_grid)
    halo = [k // 2 for k in kernel]
    pad = [p for h in reversed(halo) for p in (h, h)]
    rows = F.pad(rows, pad, value=zero_row)
    for dim, (b, k) in enumerate(zip(block, kernel)):
        rows = rows.unfold(1 + dim, b + k - 1, b)  # windows of every block, step = block
    return rows[(batch, *coords)].flatten(0, 1)


def gather_windows(x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """Rows of ``x`` (M, *block, C) flattened to (M * prod(block), C), plus a zero row at the
    end, picked by ``rows`` (any shape) -> (*rows.shape, C)."""
    table = x.reshape(-1, x.shape[-1])
    table = torch.cat([table, table.new_zeros(1, table.shape[1])])
    return table.index_select(0, rows.flatten()).view(*rows.shape, table.shape[1])


def _conv(ndim: int) -> Callable[..., torch.Tensor]:
    """``F.conv2d`` or ``F.conv3d``."""
    return F.conv2d if ndim == 2 else F.conv3d


def _conv_windows(windows: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor]) -> torch.Tensor:
    """Unpadded depthwise conv on channels-last windows (M, *window, C) -> (M, *block, C)."""
    out = _conv(windows.dim() - 2)(windows.movedim(-1, 1), weight, bias, groups=weight.shape[0])
    return out.movedim(1, -1)


def _weight_grad(windows: torch.Tensor, grad: torch.Tensor) -> torch.Tensor:
    """d loss / d depthwise weight, summed in float32 over the visible blocks.

    ``windows``: (*window, M, C), window-major; ``grad``: (M, *block, C). Every (block,
    channel) pair is one channel of a single depthwise conv whose kernel is that block's
    output gradient: (1, M * C, *window) conv (M * C, 1, *block) -> (1, M * C, *kernel),
    then summed over M. Returns (C, 1, *kernel).
    """
    *window, m, c = windows.shape
    ndim = len(window)
    inputs = windows.reshape(1, *window, m * c).movedim(-1, 1)
    kernels = grad.movedim(-1, 1).reshape(m * c, 1, *grad.shape[1:-1])
    taps = _conv(ndim)(inputs, kernels, groups=m * c)
    kernel = taps.shape[2:]
    if taps.is_contiguous():
        return taps.view(m, c, 1, *kernel).sum(0, dtype=torch.float32)
    # Channels-last output (the CPU's oneDNN kernel): memory is (*kernel, M, C), so sum over M
    # there; summing the (M, C, ...) view strides across M and measured 20-30x slower.
    per_tap = taps.movedim(1, -1).reshape(*kernel, m, c)
    return per_tap.sum(-2, dtype=torch.float32).movedim(-1, 0).unsqueeze(1).contiguous()


def _compute_dtype(x: torch.Tensor) -> torch.dtype:
    """The dtype a conv would run in here: the autocast dtype when autocast is on."""
    device = x.device.type
    if torch.is_autocast_enabled(device):
        return torch.get_autocast_dtype(device)
    return x.dtype


class _VisibleDepthwise(torch.autograd.Function):
    """Depthwise conv of zero-extended visible blocks, output at the visible blocks."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: Optional[torch.Tensor],
                rows: torch.Tensor) -> torch.Tensor:
        dtype = _compute_dtype(x)
        ctx.save_for_backward(x, weight, rows)
        ctx.dtypes = (x.dtype, weight.dtype, None if bias is None else bias.dtype, dtype)
        with torch.autocast(x.device.type, enabled=False):
            windows = gather_windows(x.to(dtype), rows)
            b = None if bias is None else bias.to(dtype)
            return _conv_windows(windows, weight.to(dtype), b)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> Tuple[Optional[torch.Tensor], ...]:
        x, weight, rows = ctx.saved_tensors
        x_dtype, w_dtype, b_dtype, dtype = ctx.dtypes
        grad_x = grad_w = grad_b = None
        with torch.autocast(grad.device.type, enabled=False):
            grad = grad.to(dtype).contiguous()
            if ctx.needs_input_grad[0]:
                flipped = weight.to(dtype).flip(list(range(2, weight.dim())))
                grad_x = _conv_windows(gather_windows(grad, rows), flipped, None).to(x_dtype)
            if ctx.needs_input_grad[1]:
                windows = gather_windows(x.to(dtype), rows.movedim(0, -1))
                grad_w = _weight_grad(windows, grad).to(w_dtype)
            if b_dtype is not None and ctx.needs_input_grad[2]:
                grad_b = torch.sum(grad, dim=tuple(range(grad.dim() - 1)), dtype=torch.float32).to(b_dtype)
        return grad_x, grad_w, grad_b, None


def visible_depthwise(conv: nn.Module, x: torch.Tensor, rows: torch.Tensor) -> torch.Tensor:
    """A padded depthwise ``ConvNd`` at the visible blocks, masked positions read as zeros.

    ``x``: (M, *block, C) visible blocks (see module doc); ``rows``: ``window_rows`` of the
    same visible tokens. Returns (M, *block, C), equal to the dense conv of the zero-extended
    grid at those blocks.
    """
    return _VisibleDepthwise.apply(x, conv.weight, conv.bias, rows)
