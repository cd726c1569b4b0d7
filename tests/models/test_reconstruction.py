"""Patch layout and reconstruction loss."""
import torch

from common.models.reconstruction import (
    masked_mse,
    normalize_patches,
    patchify,
    reconstruction_targets,
    unpatchify,
)


def test_image_patchify_uses_mae_pqc_order():
    imgs = torch.randn(2, 3, 32, 48)
    p = 16
    ref = imgs.reshape(2, 3, 2, p, 3, p).permute(0, 2, 4, 3, 5, 1).reshape(2, 6, p * p * 3)
    assert torch.equal(patchify(imgs, (p, p)), ref)


def test_video_patchify_uses_tube_order():
    clips = torch.randn(1, 3, 4, 32, 32)
    out = patchify(clips, (2, 16, 16))
    assert out.shape == (1, 2 * 2 * 2, 2 * 16 * 16 * 3)
    # tube 3 = (t=0, h=1, w=1); value (p0=1, p1=2, p2=5, c=2)
    idx = ((1 * 16 + 2) * 16 + 5) * 3 + 2
    assert out[0, 3, idx] == clips[0, 2, 1, 16 + 2, 16 + 5]


def test_unpatchify_inverts_patchify():
    clips = torch.randn(2, 3, 4, 32, 48)
    assert torch.equal(unpatchify(patchify(clips, (2, 16, 16)), (2, 16, 16), (2, 2, 3)), clips)
    imgs = torch.randn(2, 3, 32, 16)
    assert torch.equal(unpatchify(patchify(imgs, (16, 16)), (16, 16), (2, 1)), imgs)


def test_normalize_patches_image_formula():
    t = torch.randn(2, 5, 12)
    expected = (t - t.mean(-1, keepdim=True)) / (t.var(-1, keepdim=True, unbiased=True) + 1e-6) ** 0.5
    torch.testing.assert_close(normalize_patches(t, 3, per_channel=False), expected)


def test_normalize_patches_per_channel_for_video():
    t = torch.randn(1, 2, 4 * 3)
    out = normalize_patches(t, 3, per_channel=True).reshape(1, 2, 4, 3)
    torch.testing.assert_close(out.mean(dim=2), torch.zeros(1, 2, 3), atol=1e-5, rtol=0)
    torch.testing.assert_close(out.std(dim=2), torch.ones(1, 2, 3), atol=1e-4, rtol=0)


def test_reconstruction_targets_default_per_channel_by_dims():
    clips = torch.randn(1, 3, 2, 16, 16)
    torch.testing.assert_close(
        reconstruction_targets(clips, (2, 16, 16), True),
        normalize_patches(patchify(clips, (2, 16, 16)), 3, per_channel=True),
    )
    assert torch.equal(reconstruction_targets(clips, (2, 16, 16), False), patchify(clips, (2, 16, 16)))


def test_masked_mse_counts_masked_patches_only():
    pred = torch.zeros(1, 4, 2)
    target = torch.tensor([[[1.0, 1.0], [2.0, 2.0], [3.0, 3.0], [0.0, 0.0]]])
    mask = torch.tensor([[1.0, 0.0, 1.0, 0.0]])
    assert masked_mse(pred, target, mask).item() == (1 + 9) / 2
    per_value = torch.zeros(1, 4, 2)
    per_value[0, 1, 0] = 1
    assert masked_mse(pred, target, per_value).item() == 4.0
