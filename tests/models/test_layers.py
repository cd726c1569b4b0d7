"""Layers against straightforward channels-first references (the official formulation)."""
import pytest
import torch
import torch.nn.functional as F
from torch import nn

from common.layers import ConvBlock, PatchEmbed, blockwise_conv, conv_nd, grid_after, strided_conv, to_blocks


def test_to_blocks_cuts_non_overlapping_blocks():
    x = torch.arange(2 * 4 * 6 * 3).reshape(2, 4, 6, 3)
    blocks = to_blocks(x, (2, 3))
    assert blocks.shape == (2, 2, 2, 2, 3, 3)
    assert torch.equal(blocks[1, 1, 0], x[1, 2:4, 0:3])


def test_to_blocks_rejects_indivisible_grid():
    with pytest.raises(ValueError, match="not divisible"):
        to_blocks(torch.zeros(1, 5, 4, 2), (2, 2))


@pytest.mark.parametrize("ndim,kernel", [(2, (4, 4)), (3, (2, 4, 4))])
def test_strided_conv_equals_conv(ndim, kernel):
    conv = conv_nd(ndim)(3, 8, kernel, stride=kernel)
    x = torch.randn(2, 3, *[k * 3 for k in kernel])
    ref = conv(x).movedim(1, -1)
    out = strided_conv(conv, x.movedim(1, -1))
    torch.testing.assert_close(out, ref, rtol=1e-5, atol=1e-5)
    # any subset of blocks gives the same values as the full grid at those blocks
    blocks = to_blocks(x.movedim(1, -1), kernel)
    torch.testing.assert_close(blockwise_conv(conv, blocks[:, 1:2]), ref[:, 1:2], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("ndim", [2, 3])
def test_patch_embed_is_conv_layernorm_gelu(ndim):
    patch = (2,) * ndim
    embed = PatchEmbed(4, 6, patch)
    x = torch.randn(2, 4, *(4,) * ndim)
    ref = embed.proj(x).movedim(1, -1)
    ref = F.gelu(F.layer_norm(ref, (6,), embed.norm.weight, embed.norm.bias, eps=1e-5))
    torch.testing.assert_close(embed(x.movedim(1, -1)), ref, rtol=1e-5, atol=1e-5)


def _reference_cblock(blk: ConvBlock, x: torch.Tensor, mask) -> torch.Tensor:
    """Official CBlock formula on a channels-first tensor."""
    def ln(norm, t):
        return norm(t.movedim(1, -1)).movedim(-1, 1)
    y = blk.conv1(ln(blk.norm1, x))
    if mask is not None:
        y = mask * y
    x = x + blk.conv2(blk.attn(y))
    return x + blk.mlp.fc2(F.gelu(blk.mlp.fc1(ln(blk.norm2, x))))


@pytest.mark.parametrize("ndim,kernel", [(2, 5), (3, (3, 5, 5)), (2, 7)])
@pytest.mark.parametrize("masked", [False, True])
def test_conv_block_matches_official_formula(ndim, kernel, masked):
    blk = ConvBlock(8, ndim=ndim, mlp_ratio=2, kernel_size=kernel)
    for p in blk.parameters():  # non-trivial norms
        nn.init.normal_(p, std=0.3)
    x = torch.randn(2, 8, *(6,) * ndim)
    mask = (torch.rand(2, 1, *(6,) * ndim) > 0.5).float() if masked else None
    ref = _reference_cblock(blk, x, mask)
    out = blk(x.movedim(1, -1), mask.movedim(1, -1) if masked else None)
    torch.testing.assert_close(out.movedim(-1, 1), ref, rtol=1e-4, atol=1e-5)


def test_conv_block_rejects_even_kernel():
    with pytest.raises(ValueError, match="odd"):
        ConvBlock(8, ndim=2, kernel_size=4)


def test_conv_nd_and_grid_after():
    assert conv_nd(2) is nn.Conv2d and conv_nd(3) is nn.Conv3d
    with pytest.raises(ValueError):
        conv_nd(1)
    assert grid_after((16, 224, 224), (2, 4, 4)) == (8, 56, 56)
    with pytest.raises(ValueError, match="not divisible"):
        grid_after((15, 224), (2, 4))
