"""Reconstruction pictures and training curves."""
import json

import pytest
import torch
from PIL import Image

from common.models.reconstruction import denormalize_patches, normalize_patches
from common.visualization import (
    PANELS,
    panel_grid,
    samples_grid,
    plot_training_curve,
    read_json_lines,
    reconstruction_panels,
    save_reconstruction_gif,
    save_reconstruction_png,
)
from tests.models.tiny import tiny_image_mae, tiny_video_mae


@pytest.mark.parametrize("per_channel", [False, True])
def test_denormalize_inverts_normalize(per_channel):
    raw = torch.randn(2, 3, 4 * 3)
    back = denormalize_patches(normalize_patches(raw, 3, per_channel), raw, 3, per_channel)
    torch.testing.assert_close(back, raw, rtol=1e-4, atol=1e-4)


def test_panels_show_visible_input_and_grey_masked_regions():
    model = tiny_video_mae()
    x = torch.randn(1, 3, 4, 32, 32)
    mask = torch.tensor([[1.0, 0.0, 0.0, 0.0] * 2])  # grid (2, 2, 2): top-left masked in both time steps
    panels = reconstruction_panels(model, x, mask=mask)
    assert list(panels) == list(PANELS)
    assert all(p.shape == x.shape and p.min() >= 0 and p.max() <= 1 for p in panels.values())
    masked, original, pasted = panels["masked"], panels["original"], panels["pasted"]
    assert torch.all(masked[..., :16, :16] == 0.5)
    assert torch.equal(masked[..., 16:, :], original[..., 16:, :])
    assert torch.equal(pasted[..., 16:, :], original[..., 16:, :])
    assert torch.equal(pasted[..., :16, :16], panels["reconstruction"][..., :16, :16])


def test_png_and_gif_are_well_formed(tmp_path):
    panels = reconstruction_panels(tiny_video_mae(), torch.randn(1, 3, 4, 32, 32))
    png = Image.open(save_reconstruction_png(panels, tmp_path / "r.png"))
    assert png.size == (4 * 32 + 3 * 2, 4 * 32 + 3 * 2)
    gif = Image.open(save_reconstruction_gif(panels, tmp_path / "r.gif"))
    assert gif.n_frames == 4 and gif.size == (4 * 32, 32)
    image_panels = reconstruction_panels(tiny_image_mae(), torch.randn(1, 3, 64, 96))
    assert panel_grid(image_panels).shape == (3, 4 * 64 + 6, 96)


def test_several_samples_stack_top_to_bottom(tmp_path):
    panels = reconstruction_panels(tiny_video_mae(), torch.randn(3, 3, 4, 32, 32))
    grid = samples_grid(panels, gap=8)
    one = 4 * 32 + 3 * 2
    assert grid.shape == (3, 3 * one + 2 * 8, one)
    assert torch.equal(grid[:, one + 8: 2 * one + 8], panel_grid(panels, sample=1))
    assert torch.all(grid[:, one: one + 8] == 1)
    assert Image.open(save_reconstruction_png(panels, tmp_path / "r.png")).size == (one, 3 * one + 16)
    gif = Image.open(save_reconstruction_gif(panels, tmp_path / "r.gif"))
    assert gif.n_frames == 4 and gif.size == (4 * 32, 3 * 32)


def test_training_curve_png(tmp_path):
    log = tmp_path / "log.jsonl"
    log.write_text("\n".join(json.dumps({"epoch": e, "train_loss": 1 / (e + 1)}) for e in range(3)) + "\n")
    assert len(read_json_lines(log)) == 3
    png = Image.open(plot_training_curve(log, tmp_path / "curve.png"))
    assert png.format == "PNG" and png.size[0] > 100
    with pytest.raises(ValueError, match="none of the keys"):
        plot_training_curve(log, tmp_path / "x.png", keys=("val_acc",))
