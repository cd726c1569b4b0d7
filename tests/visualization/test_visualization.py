"""Reconstruction pictures and training curves."""
import json

import numpy as np
import pytest
import torch
from PIL import Image

from common.models.reconstruction import denormalize_patches, normalize_patches
from common.files import read_json_lines
from common.visualization import (
    PANELS,
    labelled_sample,
    panel_grid,
    plot_finetune_comparison,
    plot_training_curve,
    reconstruction_panels,
    samples_picture,
    save_reconstruction_gif,
    save_reconstruction_png,
)
from tests.models.tiny import tiny_image_mae, tiny_video_mae

LABELS, LINE = 96, 14  # the layout: label column width, height of a text line (caption, frame numbers)
CURVE_W, CURVE_H = 500, lambda rows: 80 + 240 * rows  # 5 in wide, 0.8 in title + 2.4 in per axis, 100 dpi


def dark(pixels: np.ndarray) -> bool:
    """Whether a region of an RGB picture holds text (any dark pixel)."""
    return bool((pixels.max(axis=-1) < 100).any())


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
    assert png.size == (LABELS + 4 * 32 + 3 * 2, LINE + 4 * 32 + 3 * 2)  # frame numbers above the panels
    gif = Image.open(save_reconstruction_gif(panels, tmp_path / "r.gif"))
    assert gif.n_frames == 4 and gif.size == (4 * 32, 32)
    image_panels = reconstruction_panels(tiny_image_mae(), torch.randn(1, 3, 64, 96))
    assert panel_grid(image_panels).shape == (3, 4 * 64 + 6, 96)
    assert labelled_sample(image_panels).size == (LABELS + 96, 4 * 64 + 6)  # one frame: no frame numbers


def test_labelled_sample_names_rows_numbers_frames_and_shows_the_caption():
    panels = reconstruction_panels(tiny_video_mae(), torch.randn(1, 3, 4, 32, 32))
    picture = np.asarray(labelled_sample(panels, caption="clip 1: class 'right'"))
    top, rows, pad = 2 * LINE, 32, 2
    assert picture.shape == (top + 4 * rows + 3 * pad, LABELS + 4 * 32 + 3 * pad, 3)
    grid = (panel_grid(panels).permute(1, 2, 0) * 255).round().byte().numpy()
    assert np.array_equal(picture[top:, LABELS:], grid)  # the panels, unchanged
    assert dark(picture[:LINE])  # caption line
    for f in range(4):  # a number over every frame column
        assert dark(picture[LINE:top, LABELS + f * (32 + pad): LABELS + f * (32 + pad) + 32])
    for r in range(len(PANELS)):  # a name left of every row, nothing between the rows
        assert dark(picture[top + r * (rows + pad): top + r * (rows + pad) + rows, :LABELS])
    bare = np.asarray(labelled_sample(panels))
    assert bare.shape[0] == picture.shape[0] - LINE and np.array_equal(bare[LINE:], picture[top:])
    other = np.asarray(labelled_sample(panels, caption="clip 2: class 'up'"))
    assert not np.array_equal(other[:LINE], picture[:LINE]) and np.array_equal(other[LINE:], picture[LINE:])


def test_several_samples_stack_top_to_bottom_with_their_captions(tmp_path):
    panels = reconstruction_panels(tiny_video_mae(), torch.randn(3, 3, 4, 32, 32))
    captions = [f"clip {i + 1}: class '{name}'" for i, name in enumerate(("right", "up", "left"))]
    one = (LABELS + 4 * 32 + 3 * 2, 2 * LINE + 4 * 32 + 3 * 2)  # caption + frame numbers + 4 rows of panels
    picture = samples_picture(panels, captions, gap=8)
    assert picture.size == (one[0], 3 * one[1] + 2 * 8)
    second = np.asarray(picture)[one[1] + 8: 2 * one[1] + 8]
    assert np.array_equal(second, np.asarray(labelled_sample(panels, sample=1, caption=captions[1])))
    assert np.all(np.asarray(picture)[one[1]: one[1] + 8] == 255)  # white gap
    png = Image.open(save_reconstruction_png(panels, tmp_path / "r.png", captions))
    assert png.size == picture.size and np.array_equal(np.asarray(png.convert("RGB")), np.asarray(picture))
    assert Image.open(save_reconstruction_png(panels, tmp_path / "bare.png")).size == (one[0], 3 * (one[1] - LINE) + 16)
    with pytest.raises(ValueError, match="2 captions for 3 samples"):
        samples_picture(panels, captions[:2])
    gif = Image.open(save_reconstruction_gif(panels, tmp_path / "r.gif"))
    assert gif.n_frames == 4 and gif.size == (4 * 32, 3 * 32)


def write_log(path, records):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records))
    return path


def test_training_curve_puts_each_scale_on_its_own_axis(tmp_path):
    log = write_log(tmp_path / "run" / "log.jsonl", [
        {"epoch": e, "train_loss": 1 / e, "lr": 1e-3 * e,
         **({"val_top1": 20.0 * e, "val_top5": 50.0 + e} if e > 1 else {})} for e in (1, 2, 3)])
    assert len(read_json_lines(log)) == 3
    cases = {("train_loss",): 1, ("train_loss", "val_top1", "val_top5"): 2, ("train_loss", "lr", "val_top1"): 3}
    for keys, axes in cases.items():  # losses share an axis, accuracies (%) another, any other key its own
        png = Image.open(plot_training_curve(log, tmp_path / f"{len(keys)}.png", keys=keys))
        assert png.format == "PNG" and png.size == (CURVE_W, CURVE_H(axes)), keys
    titled = [np.asarray(Image.open(plot_training_curve(log, tmp_path / f"{t}.png", title=t)).convert("RGB"))
              for t in ("pretraining", "finetuning")]
    assert not np.array_equal(titled[0][:40], titled[1][:40]) and np.array_equal(titled[0][60:], titled[1][60:])
    with pytest.raises(ValueError, match="none of the keys"):
        plot_training_curve(log, tmp_path / "x.png", keys=("val_acc",))


def test_finetune_comparison_plots_val_top1_of_each_run(tmp_path):
    pretrained = write_log(tmp_path / "pretrained.jsonl", [{"epoch": e, "train_loss": 1.0, "val_top1": 30.0 * e}
                                                           for e in (1, 2, 3)])
    scratch = write_log(tmp_path / "scratch.jsonl", [{"epoch": 1, "train_loss": 1.0},  # not validated in epoch 1
                                                     {"epoch": 2, "val_top1": 25.0}, {"epoch": 3, "val_top1": 25.0}])
    png = plot_finetune_comparison({"pretrained": pretrained, "scratch": scratch}, tmp_path / "cmp.png")
    assert png == tmp_path / "cmp.png" and Image.open(png).size == (CURVE_W, CURVE_H(1))
    write_log(scratch, [{"epoch": 2, "val_top1": 75.0}, {"epoch": 3, "val_top1": 25.0}])  # other values: other picture
    other = plot_finetune_comparison({"pretrained": pretrained, "scratch": scratch}, tmp_path / "cmp2.png")
    assert not np.array_equal(np.asarray(Image.open(png)), np.asarray(Image.open(other)))
    unvalidated = write_log(tmp_path / "pretrain.jsonl", [{"epoch": 1, "train_loss": 1.0}])
    with pytest.raises(ValueError, match="pretrain.jsonl .*no 'val_top1'"):
        plot_finetune_comparison({"pretrained": pretrained, "pretraining": unvalidated}, tmp_path / "x.png")
    with pytest.raises(ValueError, match="no finetuning logs"):
        plot_finetune_comparison({}, tmp_path / "x.png")
