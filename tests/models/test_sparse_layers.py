"""The visible-only depthwise conv and conv block against the dense masked formulation."""
import math

import pytest
import torch
from torch import nn

from common.layers import ConvBlock, conv_nd, gather_windows, to_blocks, visible_depthwise, window_rows
from common.masking import upsample_mask, visible_indices

CASES = [  # (token grid, block per token, depthwise kernel)
    ((3, 4), (4, 4), (5, 5)),
    ((3, 4), (2, 2), (5, 5)),  # halo as wide as the block
    ((3, 4), (1, 1), (7, 7)),  # halo wider than the block
    ((2, 3, 3), (1, 2, 2), (3, 5, 5)),
]


def _visible_layout(grid, block, ratio, n=2):
    """A random block-wise mask and its visible tokens' coordinates and visibility map."""
    num_tokens = math.prod(grid)
    keep = max(1, round(num_tokens * (1 - ratio)))
    mask = torch.ones(n, num_tokens)
    for row in mask:
        row[torch.randperm(num_tokens)[:keep]] = 0
    ids_keep, _ = visible_indices(mask)
    coords = torch.unravel_index(ids_keep, grid)
    visible = 1.0 - upsample_mask(mask, grid, block)
    return coords, visible[..., None]


def _to_visible_blocks(x, coords, block):
    """Dense channels-last grid (N, *grid, C) -> visible blocks (N * L_visible, *block, C)."""
    batch = torch.arange(x.shape[0])[:, None]
    return to_blocks(x, block)[(batch, *coords)].flatten(0, 1)


@pytest.mark.parametrize("grid,block,kernel", CASES)
@pytest.mark.parametrize("ratio", [0.0, 0.5, 0.9])
def test_visible_depthwise_equals_dense_masked_conv(grid, block, kernel, ratio):
    ndim, channels = len(grid), 6
    conv = conv_nd(ndim)(channels, channels, kernel, padding=[k // 2 for k in kernel], groups=channels)
    coords, visible = _visible_layout(grid, block, ratio)
    x = torch.randn(2, *[g * b for g, b in zip(grid, block)], channels, requires_grad=True)
    dense = conv((x * visible).movedim(-1, 1)).movedim(1, -1)
    ref = _to_visible_blocks(dense, coords, block)
    head = torch.randn_like(ref)
    ref_grads = torch.autograd.grad((ref * head).sum(), (x, conv.weight, conv.bias))

    rows = window_rows(coords, grid, block, kernel)
    xv = _to_visible_blocks(x, coords, block).detach().requires_grad_()
    out = visible_depthwise(conv, xv, rows)
    grads = torch.autograd.grad((out * head).sum(), (xv, conv.weight, conv.bias))

    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[0], _to_visible_blocks(ref_grads[0], coords, block), rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(grads[1], ref_grads[1], rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(grads[2], ref_grads[2], rtol=1e-4, atol=1e-4)


def test_window_rows_point_at_visible_rows_and_zero_row():
    coords, _ = _visible_layout((3, 4), (2, 2), 0.5)
    rows = window_rows(coords, (3, 4), (2, 2), (3, 3))
    num_rows = coords[0].numel() * 4
    assert rows.shape == (coords[0].numel(), 4, 4)
    assert int(rows.min()) >= 0 and int(rows.max()) == num_rows  # the zero row is used at the border
    # the centre of each window is the block itself, rows in (token, *block) order
    centre = rows[:, 1:3, 1:3].reshape(-1)
    torch.testing.assert_close(centre, torch.arange(num_rows))
    windows = gather_windows(torch.arange(num_rows, dtype=torch.float)[:, None].view(-1, 2, 2, 1), rows)
    torch.testing.assert_close(windows[..., 0], torch.where(rows == num_rows, 0, rows).float())


@pytest.mark.parametrize("ndim", [2, 3])
def test_conv_block_forward_visible_equals_masked_forward(ndim):
    grid, block = ((3, 4), (2, 2)) if ndim == 2 else ((2, 3, 3), (1, 2, 2))
    kernel = 5 if ndim == 2 else (3, 5, 5)
    blk = ConvBlock(8, ndim=ndim, mlp_ratio=2, kernel_size=kernel)
    for p in blk.parameters():
        nn.init.normal_(p, std=0.3)
    coords, visible = _visible_layout(grid, block, 0.5)
    x = torch.randn(2, *[g * b for g, b in zip(grid, block)], 8)
    ref = _to_visible_blocks(blk(x, visible), coords, block)
    xv = _to_visible_blocks(x, coords, block).unflatten(0, (2, -1))
    rows = window_rows(coords, grid, block, blk.kernel_size)
    out = blk.forward_visible(xv, rows).flatten(0, 1)
    torch.testing.assert_close(out, ref, rtol=1e-4, atol=1e-5)


def test_visible_depthwise_under_bf16_autocast():
    grid, block, kernel = (3, 4), (4, 4), (5, 5)
    conv = nn.Conv2d(8, 8, kernel, padding=2, groups=8)
    coords, visible = _visible_layout(grid, block, 0.5)
    x = torch.randn(2, 12, 16, 8)
    xv = _to_visible_blocks(x, coords, block).requires_grad_()
    rows = window_rows(coords, grid, block, kernel)
    ref = visible_depthwise(conv, xv, rows)
    with torch.autocast("cpu", dtype=torch.bfloat16):
        out = visible_depthwise(conv, xv, rows)
    assert out.dtype == torch.bfloat16
    out.float().sum().backward()
    assert xv.grad.dtype == torch.float32 and conv.weight.grad.dtype == torch.float32
    torch.testing.assert_close(out.float(), ref, rtol=2e-2, atol=2e-2)


def _weight_grad_by_sums(windows, grad):
    """d/dw of sum(conv(windows, w) * grad), written out: for each tap offset, the products of
    the window values at that offset with the output gradient, summed over blocks and positions."""
    *window, m, c = windows.shape
    block = grad.shape[1:-1]
    kernel = [w - b + 1 for w, b in zip(window, block)]
    taps = torch.zeros(c, 1, *kernel, dtype=torch.float64)
    for offset in torch.cartesian_prod(*[torch.arange(k) for k in kernel]).view(-1, len(kernel)).tolist():
        part = windows[tuple(slice(o, o + b) for o, b in zip(offset, block))]  # (*block, M, C)
        taps[(slice(None), 0, *offset)] = (part.movedim(-2, 0).double() * grad.double()).sum(
            dim=tuple(range(len(block) + 1)))
    return taps


@pytest.mark.parametrize("layout", ["contiguous", "channels_last"])
@pytest.mark.parametrize("block,kernel", [((4, 4), (5, 5)), ((1, 2, 2), (3, 5, 5))])
def test_weight_grad_is_the_sum_over_blocks_whatever_layout_the_conv_returns(monkeypatch, layout, block, kernel):
    """The CPU's conv returns this channels-last; other backends may not: both are summed right."""
    from common.layers import sparse_conv

    m, c = 5, 3
    windows = torch.randn(*[b + k - 1 for b, k in zip(block, kernel)], m, c)
    grad = torch.randn(m, *block, c)
    conv = sparse_conv._conv(len(block))
    memory_format = {2: torch.channels_last, 3: torch.channels_last_3d}[len(block)]

    def conv_in_layout(*args, **kwargs):
        out = conv(*args, **kwargs)
        return out.contiguous() if layout == "contiguous" else out.contiguous(memory_format=memory_format)

    monkeypatch.setattr(sparse_conv, "_conv", lambda ndim: conv_in_layout)
    result = sparse_conv._weight_grad(windows, grad)
    assert result.shape == (c, 1, *kernel) and result.is_contiguous()
    torch.testing.assert_close(result.double(), _weight_grad_by_sums(windows, grad), rtol=1e-5, atol=1e-5)
