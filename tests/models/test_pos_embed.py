"""Sin-cos position embeddings and their resizing."""
import math

import pytest
import torch

from common.pos_embed import (
    infer_source_grid,
    resize_pos_embed,
    sincos_1d,
    sincos_2d,
    sincos_3d,
    sincos_pos_embed,
)


def test_sincos_1d_values():
    emb = sincos_1d(4, torch.tensor([0.0, 1.0]))
    assert torch.allclose(emb[0], torch.tensor([0.0, 0.0, 1.0, 1.0], dtype=emb.dtype))
    # omega = [1, 1/100]
    assert torch.allclose(emb[1], torch.tensor([math.sin(1), math.sin(0.01), math.cos(1), math.cos(0.01)], dtype=emb.dtype))


def test_sincos_2d_first_half_encodes_columns():
    emb = sincos_2d(8, (3, 5)).reshape(3, 5, 8)
    # same column -> same first half; same row -> same second half (MAE convention)
    assert torch.equal(emb[0, 2, :4], emb[2, 2, :4])
    assert torch.equal(emb[1, 0, 4:], emb[1, 4, 4:])
    assert not torch.equal(emb[0, 0, :4], emb[0, 1, :4])


def test_sincos_3d_is_separable():
    emb = sincos_3d(16, (2, 3, 4)).reshape(2, 3, 4, 16)
    assert torch.equal(emb[0, 1, 2, :4], emb[0, 0, 0, :4])  # t part constant within a frame
    assert not torch.equal(emb[0, 0, 0, :4], emb[1, 0, 0, :4])
    assert torch.equal(emb[0, 1, 2, 4:], emb[1, 1, 2, 4:])  # (h, w) part constant over time
    assert torch.equal(emb[0, :, :, 4:].reshape(12, 12), sincos_2d(12, (3, 4)))


def test_sincos_rejects_bad_dims():
    with pytest.raises(ValueError):
        sincos_2d(6, (2, 2))
    with pytest.raises(ValueError):
        sincos_3d(12, (2, 2, 2))
    with pytest.raises(ValueError):
        sincos_pos_embed(8, (2,))


def test_resize_pos_embed_identity_and_shape():
    pos = sincos_pos_embed(16, (2, 4, 4))
    assert resize_pos_embed(pos, (2, 4, 4), (2, 4, 4)) is pos
    out = resize_pos_embed(pos, (2, 4, 4), (4, 6, 6))
    assert out.shape == (1, 4 * 6 * 6, 16)
    pos2 = sincos_pos_embed(16, (4, 4))
    assert resize_pos_embed(pos2, (4, 4), (8, 2)).shape == (1, 16, 16)
    with pytest.raises(ValueError, match="positions"):
        resize_pos_embed(pos2, (3, 3), (4, 4))


def test_resize_pos_embed_keeps_constant_embedding():
    pos = torch.ones(1, 9, 4)
    torch.testing.assert_close(resize_pos_embed(pos, (3, 3), (5, 5)), torch.ones(1, 25, 4))


def test_infer_source_grid():
    assert infer_source_grid(196, (14, 14)) == (14, 14)
    assert infer_source_grid(196, (16, 16)) == (14, 14)
    assert infer_source_grid(8 * 196, (8, 16, 16)) == (8, 14, 14)
    assert infer_source_grid(4 * 196, (8, 14, 14)) == (4, 14, 14)
    with pytest.raises(ValueError, match="source_grid"):
        infer_source_grid(7 * 11, (2, 14, 14))
