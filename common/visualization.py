"""Pictures of what the masked autoencoder does: original, masked input, reconstruction,
and reconstruction pasted into the visible input, as a PNG grid and an animated GIF."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Dict, Optional, Sequence

import torch
from PIL import Image

from common.masking import block_wise_masks
from common.models.mae import MaskedAutoencoderConvViT
from common.models.reconstruction import denormalize_patches, patchify, unpatchify

PANELS = ("original", "masked", "reconstruction", "pasted")


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


def samples_grid(panels: Dict[str, torch.Tensor], pad: int = 2, gap: int = 8) -> torch.Tensor:
    """The ``panel_grid`` of every sample, stacked top to bottom with ``gap`` white rows between."""
    grids = [panel_grid(panels, sample, pad) for sample in range(len(panels[PANELS[0]]))]
    white = torch.ones(grids[0].shape[0], gap, grids[0].shape[2])
    return torch.cat([part for grid in grids for part in (white, grid)][1:], dim=1)


def save_reconstruction_png(panels: Dict[str, torch.Tensor], path: Path) -> Path:
    """Write the panel grids of all samples (``samples_grid``) as a PNG."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    _to_image(samples_grid(panels)).save(path)
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


def read_json_lines(path: Path) -> list:
    """Records of a JSON-lines log (one JSON object per line, blank lines skipped)."""
    with open(path) as f:
        return [json.loads(line) for line in f if line.strip()]


def plot_training_curve(log_path: Path, png_path: Path, keys: Sequence[str] = ("train_loss",)) -> Path:
    """Plot the given keys of a JSON-lines log against ``epoch`` (or the record index) as a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    records = read_json_lines(Path(log_path))
    fig, ax = plt.subplots(figsize=(5, 3.2), dpi=100)
    plotted = False
    for key in keys:
        points = [(r.get("epoch", i), r[key]) for i, r in enumerate(records) if key in r]
        if points:
            ax.plot(*zip(*points), marker="o", label=key)
            plotted = True
    if not plotted:
        plt.close(fig)
        raise ValueError(f"{log_path} has none of the keys {list(keys)}")
    ax.set_xlabel("epoch")
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    Path(png_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png_path)
    plt.close(fig)
    return Path(png_path)
