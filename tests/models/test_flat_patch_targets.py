"""Norm-pix targets of flat (zero-variance) patches and tubes: finite and equal to the documented
formula, evaluated here in float64 (images: ``(t - mean) / sqrt(var + 1e-6)`` over all values of
the patch; videos: per tube and per channel, ``(t - mean) / (std + 1e-6)``, DESIGN.md §3). A flat
patch is common in real data (letterbox bars, black frames, overexposed sky): its target must be
0, not the float32 rounding error of its mean blown up by the tiny denominator."""
import pytest
import torch

from common.models.reconstruction import patchify, reconstruction_targets
from tests.models.test_mae_loss import CASES, _model_input_mask

EPS = 1e-6
# Values a flat region takes after the usual normalisation: black, white and grey pixels under the
# ImageNet mean/std, and a few plain numbers.
FLAT_VALUES = [(0 - 0.485) / 0.229, (1 - 0.456) / 0.224, (0.5 - 0.406) / 0.225, 0.1, 1.3, -1.7, 2.64, 1e3]


def documented_targets(x: torch.Tensor, patch, video: bool) -> torch.Tensor:
    """The documented formula in float64, on the patches of ``x`` (N, C, *size)."""
    patches = patchify(x.double(), patch)
    if not video:
        mean, var = patches.mean(-1, keepdim=True), patches.var(-1, keepdim=True)
        return (patches - mean) / torch.sqrt(var + EPS)
    pixels = patches.reshape(*patches.shape[:2], -1, x.shape[1])  # (N, L, pixels of the tube, C)
    mean, std = pixels.mean(2, keepdim=True), pixels.std(2, keepdim=True)
    return ((pixels - mean) / (std + EPS)).reshape(patches.shape)


def flat_and_textured_input(shape, value: float) -> torch.Tensor:
    """(N, C, *size): the first patch (tube) of every sample flat at ``value`` in every channel
    (channel c at ``value + c``: flat per channel, not across channels), the rest random."""
    x = torch.randn(shape, generator=torch.Generator().manual_seed(3))
    for c in range(shape[1]):
        x[:, c, ..., :16, :16] = value + c  # video: every frame of the first tubes
    return x


@pytest.mark.parametrize("kind", ["image", "video"])
@pytest.mark.parametrize("value", FLAT_VALUES)
def test_target_of_a_flat_patch_is_finite_and_the_documented_formula(kind, value):
    _, shape, patch = CASES[kind]
    x = flat_and_textured_input(shape, value)
    if kind == "image":  # an image patch is flat only when all its values are equal
        x[:, :, :16, :16] = value
    targets = reconstruction_targets(x, patch, norm_pix=True)
    expected = documented_targets(x, patch, video=kind == "video")
    assert torch.isfinite(targets).all()
    assert float(expected[:, 0].abs().max()) == 0.0  # the formula's value for a flat patch (tube)
    torch.testing.assert_close(targets[:, 0].double(), expected[:, 0], rtol=0, atol=1e-5)
    torch.testing.assert_close(targets.double(), expected, rtol=1e-4, atol=1e-4)  # the textured ones too


@pytest.mark.parametrize("kind", ["image", "video"])
def test_model_loss_on_an_all_flat_input_is_finite_and_its_targets_zero(kind):
    """The whole model on a constant input: every target is 0, so the loss is the mean square of
    the masked predictions, a finite number."""
    model, _, mask, patch = _model_input_mask(kind, norm_pix_loss=True)
    x = torch.full(CASES[kind][1], (0 - 0.485) / 0.229)
    with torch.no_grad():
        loss, pred, _ = model(x, mask=mask)
    assert torch.isfinite(loss)
    assert float(reconstruction_targets(x, patch, norm_pix=True).abs().max()) < 1e-5
    expected = ((pred.double() ** 2).mean(-1) * mask).sum() / mask.sum()
    torch.testing.assert_close(loss.double(), expected, rtol=1e-5, atol=1e-6)
