"""Pictures of what the masked autoencoder does: original, masked input, reconstruction,
and reconstruction pasted into the visible input, as a labelled PNG grid and an animated GIF;
and the curves of a run's JSON-lines log."""
from __future__ import annotations

from pathlib import Path
from typing import Dict, List, Mapping, Optional, Sequence, Tuple

import torch
from PIL import Image, ImageDraw, ImageFont

from common.files import read_json_lines
from common.masking import block_wise_masks
from common.models.mae import MaskedAutoencoderConvViT
from common.models.reconstruction import denormalize_patches, patchify, unpatchify

PANELS = ("original", "masked", "reconstruction", "pasted")
LABEL_WIDTH = 96  # pixels left of the panels for the row labels
TEXT_HEIGHT = 14  # pixels of one line of text above the panels (caption, frame numbers)
TEXT_COLOUR = (0, 0, 0)
CURVE_WIDTH_IN, CURVE_TITLE_IN, CURVE_ROW_IN, CURVE_DPI = 5.0, 0.8, 2.4, 100  # figure size = width x (title + rows)
ACCURACY_KEYS = ("top1", "top5")  # log keys in percent, plotted on their own axis
VAL_TOP1_KEY = "val_top1"  # what finetuning runs log per validated epoch (common/engine/jobs.py)


def _prediction_in_input_units(pred: torch.Tensor, x: torch.Tensor, model: MaskedAutoencoderConvViT) -> torch.Tensor:
    """Norm-pix predictions are relative to each target patch: undo that with the input's patches."""
    if not model.norm_pix_loss:
        return pred
    return denormalize_patches(pred, patchify(x, model.patch_size), x.shape[1], per_channel=model.ndim == 3)


@torch.no_grad()
def reconstruction_panels(
    model: MaskedAutoencoderConvViT,
    x: torch.Tensor,
    mask: Optional[torch.Tensor] = None,
    mean: Sequence[float] = (0.485, 0.456, 0.406),
    std: Sequence[float] = (0.229, 0.224, 0.225),
) -> Dict[str, torch.Tensor]:
    """Run ``model`` on ``x`` (N, C, [T,] H, W, normalised) and return the four panels in [0, 1].

    Each panel has the shape of ``x``; masked regions of the "masked" panel are grey.
    """
    if model.masking != "block":
        raise ValueError("reconstruction pictures need block-wise masking")
    model.eval()
    _, pred, mask = model(x, mask=mask)
    recon = unpatchify(_prediction_in_input_units(pred.float(), x, model), model.patch_size, model.grid, x.shape[1])
    pixel_mask, = block_wise_masks(mask, model.grid, [model.patch_size])
    pixel_mask = pixel_mask[:, None].to(x.dtype)
    shape = (1, -1) + (1,) * (x.dim() - 2)
    m, s = torch.tensor(mean).reshape(shape), torch.tensor(std).reshape(shape)

    def to_unit(t: torch.Tensor) -> torch.Tensor:
        return (t * s + m).clamp(0, 1)

    original = to_unit(x)
    return {
        "original": original,
        "masked": original * (1 - pixel_mask) + 0.5 * pixel_mask,
        "reconstruction": to_unit(recon),
        "pasted": original * (1 - pixel_mask) + to_unit(recon) * pixel_mask,
    }


def _frames(panel: torch.Tensor) -> torch.Tensor:
    """One sample's panel (C, [T,] H, W) -> (T, C, H, W)."""
    return panel[None] if panel.dim() == 3 else panel.transpose(0, 1)


def _to_image(t: torch.Tensor) -> Image.Image:
    """(C, H, W) in [0, 1] -> PIL RGB image."""
    return Image.fromarray((t.permute(1, 2, 0) * 255).round().byte().numpy())


def panel_grid(panels: Dict[str, torch.Tensor], sample: int = 0, pad: int = 2) -> torch.Tensor:
    """(C, rows * H, T * W) grid for one sample: one row per panel, one column per frame."""
    rows = [_frames(panels[name][sample]) for name in PANELS]
    t, c, h, w = rows[0].shape
    grid = torch.ones(c, len(rows) * (h + pad) - pad, t * (w + pad) - pad)
    for r, frames in enumerate(rows):
        for f in range(t):
            grid[:, r * (h + pad): r * (h + pad) + h, f * (w + pad): f * (w + pad) + w] = frames[f]
    return grid


def _text_lines(num_frames: int, captioned: bool) -> int:
    """Lines of text above one sample's panels: its caption (if any), frame numbers (clips only)."""
    return int(captioned) + int(num_frames > 1)


def labelled_sample(panels: Dict[str, torch.Tensor], sample: int = 0, caption: Optional[str] = None,
                    pad: int = 2) -> Image.Image:
    """``panel_grid`` of one sample as an RGB image with the panel names left of the rows, the
    frame numbers (1-based, clips only) above the columns and ``caption`` above everything.

    Size: (LABEL_WIDTH + grid width, lines * TEXT_HEIGHT + grid height), lines = ``_text_lines``.
    """
    grid = _to_image(panel_grid(panels, sample, pad))
    num_frames, _, height, width = _frames(panels[PANELS[0]][sample]).shape
    top = TEXT_HEIGHT * _text_lines(num_frames, caption is not None)
    canvas = Image.new("RGB", (LABEL_WIDTH + grid.width, top + grid.height), "white")
    canvas.paste(grid, (LABEL_WIDTH, top))
    draw, font = ImageDraw.Draw(canvas), ImageFont.load_default()
    if caption is not None:
        draw.text((0, 0), caption, fill=TEXT_COLOUR, font=font)
    if num_frames > 1:
        y = top - TEXT_HEIGHT
        draw.text((0, y), "frame", fill=TEXT_COLOUR, font=font)
        for f in range(num_frames):
            x = LABEL_WIDTH + f * (width + pad) + (width - draw.textlength(str(f + 1), font=font)) / 2
            draw.text((x, y), str(f + 1), fill=TEXT_COLOUR, font=font)
    for r, name in enumerate(PANELS):
        draw.text((0, top + r * (height + pad) + (height - TEXT_HEIGHT) / 2), name, fill=TEXT_COLOUR, font=font)
    return canvas


def samples_picture(panels: Dict[str, torch.Tensor], captions: Optional[Sequence[str]] = None,
                    pad: int = 2, gap: int = 8) -> Image.Image:
    """The ``labelled_sample`` of every sample (with ``captions[i]`` if given), stacked top to
    bottom with ``gap`` white rows between."""
    num_samples = len(panels[PANELS[0]])
    if captions is not None and len(captions) != num_samples:
        raise ValueError(f"{len(captions)} captions for {num_samples} samples: give one per sample or none")
    parts = [labelled_sample(panels, i, None if captions is None else captions[i], pad) for i in range(num_samples)]
    picture = Image.new("RGB", (parts[0].width, sum(p.height for p in parts) + gap * (num_samples - 1)), "white")
    y = 0
    for part in parts:
        picture.paste(part, (0, y))
        y += part.height + gap
    return picture


def save_reconstruction_png(panels: Dict[str, torch.Tensor], path: Path,
                            captions: Optional[Sequence[str]] = None) -> Path:
    """Write the labelled panel grids of all samples (``samples_picture``) as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples_picture(panels, captions).save(path)
    return path


def save_reconstruction_gif(panels: Dict[str, torch.Tensor], path: Path, frame_ms: int = 150) -> Path:
    """Write an animated GIF, one GIF frame per clip frame: for each sample (top to bottom) its
    four panels side by side."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    samples = range(len(panels[PANELS[0]]))
    columns = [[_frames(panels[name][sample]) for name in PANELS] for sample in samples]
    num_frames = columns[0][0].shape[0]
    frames = [
        _to_image(torch.cat([torch.cat([column[f] for column in row], dim=-1) for row in columns], dim=-2))
        for f in range(num_frames)
    ]
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=frame_ms, loop=0)
    return path


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    return plt


def _axis_label(key: str) -> str:
    """Keys on one y-axis share a label: accuracies in percent, losses, else the key itself."""
    if key.endswith(ACCURACY_KEYS):
        return "accuracy (%)"
    return "loss" if "loss" in key else key


def _points(records: Sequence[dict], key: str) -> List[Tuple[float, float]]:
    """(epoch, value) of every record that has ``key`` (the record index when it has no epoch)."""
    return [(r.get("epoch", i), r[key]) for i, r in enumerate(records) if key in r]


def _new_figure(rows: int, title: str):
    plt = _pyplot()
    fig, axes = plt.subplots(rows, 1, sharex=True, squeeze=False, dpi=CURVE_DPI,
                             figsize=(CURVE_WIDTH_IN, CURVE_TITLE_IN + CURVE_ROW_IN * rows))
    fig.suptitle(title)
    return fig, [row[0] for row in axes]


def _finish(fig, axes, png_path: Path) -> Path:
    from matplotlib.ticker import MaxNLocator

    for ax in axes:
        ax.legend()
        ax.grid(alpha=0.3)
    axes[-1].set_xlabel("epoch")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    fig.tight_layout()
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    _pyplot().close(fig)
    return Path(png_path)


def plot_training_curve(log_path: Path, png_path: Path, keys: Sequence[str] = ("train_loss",),
                        title: Optional[str] = None) -> Path:
    """Plot the given keys of a JSON-lines log against ``epoch`` (or the record index) as a PNG:
    one axis per kind of value (loss, accuracy in %, any other key alone), stacked top to bottom,
    so that series of different scales never share an axis. ``title`` defaults to the run folder."""
    records = read_json_lines(Path(log_path))
    series = {key: _points(records, key) for key in keys}
    series = {key: points for key, points in series.items() if points}
    if not series:
        raise ValueError(f"{log_path} has none of the keys {list(keys)}")
    labels = list(dict.fromkeys(_axis_label(key) for key in series))
    fig, axes = _new_figure(len(labels), title or f"training curve: {Path(log_path).parent.name}")
    for key, points in series.items():
        ax = axes[labels.index(_axis_label(key))]
        ax.plot(*zip(*points), marker="o", label=key)
        ax.set_ylabel(_axis_label(key))
    return _finish(fig, axes, png_path)


def plot_finetune_comparison(logs: Mapping[str, Path], png_path: Path) -> Path:
    """Validation top-1 (%) per epoch of several finetuning runs on one axis, one line per
    ``logs`` entry (label -> the run's ``log.jsonl``), e.g. pretrained vs scratch."""
    if not logs:
        raise ValueError("no finetuning logs to compare")
    series = {label: _points(read_json_lines(Path(path)), VAL_TOP1_KEY) for label, path in logs.items()}
    for label, points in series.items():
        if not points:
            raise ValueError(f"{logs[label]} ({label}) has no '{VAL_TOP1_KEY}' records: was the run validated?")
    fig, (ax,) = _new_figure(1, f"validation top-1: {' vs '.join(logs)}")
    for label, points in series.items():
        ax.plot(*zip(*points), marker="o", label=label)
    ax.set_ylabel("validation top-1 (%)")
    ax.set_ylim(0, 100)
    return _finish(fig, [ax], png_path)
