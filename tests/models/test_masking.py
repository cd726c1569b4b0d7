"""Mask generators and block-wise masks."""
import pytest
import torch

from common.masking import (
    RandomMasking,
    TubeMasking,
    block_wise_masks,
    check_mask,
    random_mask,
    tube_mask,
    upsample_mask,
    visible_indices,
)


@pytest.mark.parametrize("num_tokens,ratio,masked", [(196, 0.75, 147), (196, 0.9, 177), (10, 0.0, 0), (49, 0.5, 25)])
def test_random_mask_keeps_int_of_visible_fraction(num_tokens, ratio, masked):
    mask = random_mask(4, num_tokens, ratio)
    assert mask.shape == (4, num_tokens)
    assert set(mask.unique().tolist()) <= {0.0, 1.0}
    assert (mask.sum(1) == masked).all()
    if 0 < masked < num_tokens:
        assert not torch.equal(mask[0], mask[1])


def test_tube_mask_is_identical_over_time_with_exact_count():
    mask = tube_mask(3, (8, 14, 14), 0.9).reshape(3, 8, 196)
    assert (mask == mask[:, :1]).all()
    assert (mask.sum(-1) == int(0.9 * 196)).all()


def test_generators_use_their_default_ratio_and_override():
    assert RandomMasking(0.75)(2, (4, 4)).sum(1).tolist() == [12, 12]
    assert RandomMasking(0.75)(2, (4, 4), ratio=0.5).sum(1).tolist() == [8, 8]
    assert TubeMasking()(1, (2, 10, 10)).sum().item() == 2 * 90
    with pytest.raises(ValueError, match="t, h, w"):
        TubeMasking()(1, (4, 4))


@pytest.mark.parametrize("ratio", [0.0, 0.3, 0.5, 0.75, 0.9, 0.99])
@pytest.mark.parametrize("grid", [(7, 7), (2, 14, 14), (8, 5, 3)])
def test_generators_tell_their_visible_count_without_drawing(grid, ratio):
    """``num_visible`` is what every drawn mask keeps (the compiled forward relies on it)."""
    generators = [RandomMasking(0.6)] + ([TubeMasking(0.6)] if len(grid) == 3 else [])
    for generator in generators:
        mask = generator(3, grid, ratio=ratio)
        assert ((mask == 0).sum(1) == generator.num_visible(grid, ratio)).all(), generator
        assert ((generator(2, grid) == 0).sum(1) == generator.num_visible(grid)).all()  # default ratio


@pytest.mark.parametrize("ratio", [-0.1, 1.0, 1.5])
def test_ratio_outside_unit_interval_is_refused(ratio):
    with pytest.raises(ValueError, match="mask ratio"):
        RandomMasking(ratio)


def test_upsample_mask_is_exact_blockwise():
    mask = random_mask(2, 12, 0.5)
    up = upsample_mask(mask, (3, 4), (2, 4))
    assert up.shape == (2, 6, 16)
    for i in range(6):
        for j in range(16):
            assert torch.equal(up[:, i, j], mask.reshape(2, 3, 4)[:, i // 2, j // 4])


def test_block_wise_masks_video():
    mask = tube_mask(2, (2, 3, 3), 0.5)
    m1, m2 = block_wise_masks(mask, (2, 3, 3), [(1, 4, 4), (1, 2, 2)])
    assert m1.shape == (2, 2, 12, 12) and m2.shape == (2, 2, 6, 6)
    assert torch.equal(m1, upsample_mask(m2.flatten(1), (2, 6, 6), (1, 2, 2)))
    assert m1.mean() == mask.mean() == m2.mean()


def test_visible_indices_and_restore():
    mask = torch.tensor([[0, 1, 1, 0], [1, 0, 0, 1]]).float()
    ids_keep, ids_restore = visible_indices(mask)
    assert ids_keep.tolist() == [[0, 3], [1, 2]]
    tokens = torch.arange(8.0).reshape(2, 4, 1)
    shuffled = torch.gather(tokens, 1, torch.argsort(mask, dim=1, stable=True)[..., None])
    assert torch.equal(torch.gather(shuffled, 1, ids_restore[..., None]), tokens)


def test_visible_indices_with_a_known_count_equals_the_counted_one():
    mask = tube_mask(3, (2, 4, 4), 0.75)
    expected = visible_indices(mask)
    given = visible_indices(mask, num_visible=8)
    assert all(torch.equal(a, b) for a, b in zip(given, expected))


def test_visible_indices_refuses_uneven_rows():
    with pytest.raises(ValueError, match="same number of visible"):
        visible_indices(torch.tensor([[0.0, 1.0], [0.0, 0.0]]))


def test_check_mask():
    assert check_mask(torch.ones(2, 3, dtype=torch.bool), 2, 3).dtype == torch.float32
    with pytest.raises(ValueError, match="shape"):
        check_mask(torch.ones(2, 4), 2, 3)
    with pytest.raises(ValueError, match="0 \\(visible\\) or 1"):
        check_mask(torch.full((2, 3), 0.5), 2, 3)
