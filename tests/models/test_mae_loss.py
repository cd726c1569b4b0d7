"""The whole pretraining model against computations written out here: the loss on the masked
patches only (patchify, norm-pix targets, MSE), and a decoder that puts every token back at its
position before adding the position embedding."""
import math

import pytest
import torch

from tests.models.tiny import IMAGE_SIZE, VIDEO, tiny_image_mae, tiny_video_mae

IMAGE_INPUT = (2, 3, *IMAGE_SIZE)
VIDEO_INPUT = (2, 3, VIDEO["num_frames"], VIDEO["img_size"], VIDEO["img_size"])
# Patch (tube) size of the tiny models: 16x16 pixels, 2 frames x 16x16 for videos.
CASES = {"image": (tiny_image_mae, IMAGE_INPUT, (16, 16)), "video": (tiny_video_mae, VIDEO_INPUT, (2, 16, 16))}
EPS = 1e-6  # documented in the model: var + eps under the root for images, std + eps for videos


def _patches(x, patch):
    """(N, C, *size) -> (N, L, prod(patch) * C): patches in raster order, values (*patch, c)."""
    n, c, *size = x.shape
    grid = [s // p for s, p in zip(size, patch)]
    split = [v for g, p in zip(grid, patch) for v in (g, p)]  # g1, p1, g2, p2, ...
    d = len(patch)
    order = [0, *range(2, 2 + 2 * d, 2), *range(3, 3 + 2 * d, 2), 1]  # N, grid..., patch..., C
    return x.reshape(n, c, *split).permute(order).reshape(n, math.prod(grid), math.prod(patch) * c)


def _norm_pix_targets(patches, channels, video):
    """Images: each patch by the mean and unbiased variance of all its values (MAE). Videos:
    each tube per channel, by that channel's mean and unbiased std over the tube's pixels."""
    if not video:
        mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
        return (patches - mean) / torch.sqrt(var + EPS)
    pixels = patches.reshape(*patches.shape[:2], -1, channels)  # (N, L, pixels of the tube, C)
    mean, std = pixels.mean(2, keepdim=True), pixels.std(2, keepdim=True)
    return ((pixels - mean) / (std + EPS)).reshape(patches.shape)


def _expected_loss(x, pred, mask, patch, norm_pix, video):
    target = _patches(x, patch)
    if norm_pix:
        target = _norm_pix_targets(target, x.shape[1], video)
    per_patch = ((pred - target) ** 2).mean(-1)
    return (per_patch * mask).sum() / mask.sum()


def _given_mask(n, num_tokens, num_masked, seed=3):
    """(N, L) with ``num_masked`` ones per row at seeded random positions."""
    gen = torch.Generator().manual_seed(seed)
    mask = torch.zeros(n, num_tokens)
    for row in mask:
        row[torch.randperm(num_tokens, generator=gen)[:num_masked]] = 1.0
    return mask


def _model_input_mask(kind, **kw):
    build, shape, patch = CASES[kind]
    model = build(**kw).eval()
    assert model.patch_size == patch
    num_tokens = math.prod(model.grid)
    return model, torch.randn(shape), _given_mask(shape[0], num_tokens, num_tokens * 3 // 4), patch


@pytest.mark.parametrize("norm_pix", [True, False])
@pytest.mark.parametrize("kind", ["image", "video"])
def test_loss_is_mse_on_masked_patches_written_out(kind, norm_pix):
    model, x, mask, patch = _model_input_mask(kind, norm_pix_loss=norm_pix)
    with torch.no_grad():
        loss, pred, mask_out = model(x, mask=mask)
    assert torch.equal(mask_out, mask)
    expected = _expected_loss(x, pred, mask, patch, norm_pix, kind == "video")
    torch.testing.assert_close(loss, expected, rtol=1e-5, atol=1e-6)
    # The loss on the visible patches is another number: the test tells the two apart.
    visible = _expected_loss(x, pred, 1.0 - mask, patch, norm_pix, kind == "video")
    assert not torch.allclose(visible, expected, rtol=1e-3)


def _decoder_written_out(model, latent, mask):
    """MAE decoder: encoder tokens back at their visible positions, mask tokens elsewhere,
    then the position embedding, blocks, norm and pixel head."""
    x = model.decoder_embed(latent)
    n, num_tokens = mask.shape
    full = model.mask_token.expand(n, num_tokens, -1).clone()
    for i in range(n):
        full[i, mask[i] == 0] = x[i]  # visible tokens in raster order
    full = full + model.decoder_pos_embed
    for block in model.decoder_blocks:
        full = block(full)
    return model.decoder_pred(model.decoder_norm(full))


@pytest.mark.parametrize("kind", ["image", "video"])
def test_pred_puts_tokens_back_at_their_positions(kind):
    model, x, mask, _ = _model_input_mask(kind)
    with torch.no_grad():
        _, pred, _ = model(x, mask=mask)
        latent, _ = model.forward_encoder(x, mask)
        expected = _decoder_written_out(model, latent, mask)
    torch.testing.assert_close(pred, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("kind", ["image", "video"])
def test_pred_at_masked_positions_depends_on_decoder_pos_embed(kind):
    model, x, mask, _ = _model_input_mask(kind)
    with torch.no_grad():
        _, pred, _ = model(x, mask=mask)
        model.decoder_pos_embed.copy_(model.decoder_pos_embed.roll(1, dims=1))  # permute the rows
        _, shifted, _ = model(x, mask=mask)
    change = (pred - shifted).abs().amax(-1)  # (N, L)
    assert bool((change[mask == 1] > 1e-3).all()), change
