"""Reconstruction pictures of a pretraining checkpoint on a video or image file, the training
curve of a run and the comparison of finetuning runs: what ``tools/visualize.py`` and the demo
write.

The checkpoint's own resolved config (stored under ``cfg`` by the training loop) rebuilds the
model and gives the clip geometry; a config can be passed instead for other checkpoints.
"""
from __future__ import annotations

import logging
from pathlib import Path
from typing import List, Mapping, Optional, Sequence, Tuple, Union

import torch
from fvcore.common.config import CfgNode
from torch import nn

from common.checkpoint import CheckpointError, model_state_dict, safe_load
from common.config import config_from_yaml
from common.engine.builders import build_model
from common.modality import modality_of_config
from common.visualization import (plot_finetune_comparison, plot_training_curve, reconstruction_panels,
                                  save_reconstruction_gif, save_reconstruction_png)

logger = logging.getLogger(__name__)

DECODER_KEY = "decoder_pred.weight"  # only pretraining (masked autoencoder) weights have it


def config_of_checkpoint(checkpoint: dict, path: Path) -> CfgNode:
    """The resolved config a training checkpoint stores under ``cfg`` (YAML text), frozen."""
    if not checkpoint.get("cfg"):
        raise CheckpointError(f"{path} stores no config: pass the run's config (--cfg)")
    return config_from_yaml(checkpoint["cfg"], f"the config stored in {path}")


def load_pretraining_model(path: Path, cfg: Optional[CfgNode] = None) -> Tuple[nn.Module, CfgNode]:
    """The masked autoencoder of pretraining checkpoint ``path`` in eval mode, and its config
    (``cfg`` if given, else the one stored in the checkpoint)."""
    checkpoint = safe_load(path)
    weights = model_state_dict(checkpoint)
    if DECODER_KEY not in weights:
        raise CheckpointError(f"{path} is not a pretraining (masked autoencoder) checkpoint: no {DECODER_KEY}")
    cfg = cfg if cfg is not None else config_of_checkpoint(checkpoint, path)
    model = build_model(cfg, pretraining=True, crop_size=cfg.DATA.TRAIN_CROP_SIZE)
    model.load_state_dict(weights)
    return model.eval(), cfg


def write_reconstruction(checkpoint: Path, media: Union[Path, Sequence[Path]], output_dir: Path, *,
                         name: str = "reconstruction", cfg: Optional[CfgNode] = None, seed: int = 0,
                         captions: Optional[Sequence[str]] = None) -> List[Path]:
    """Reconstruct ``media`` (files of the model's modality; one path or several) with
    pretraining ``checkpoint`` under random masks drawn from ``seed``; writes
    ``output_dir/name.png`` (per input, top to bottom: ``captions[i]`` if given, e.g.
    "clip 1: class 'right'", frame numbers, then labelled rows: original, masked input,
    reconstruction, reconstruction pasted into the visible input; one column per frame) and,
    for videos, ``name.gif``. Returns the written paths."""
    files = [Path(media)] if isinstance(media, (str, Path)) else [Path(m) for m in media]
    model, cfg = load_pretraining_model(Path(checkpoint), cfg)
    modality = modality_of_config(cfg)
    for path in files:
        if not modality.reads(path):
            raise ValueError(f"{path}: the checkpoint's model ({cfg.MODEL.NAME}) reads {modality.name} files "
                             f"({', '.join(modality.file_suffixes)})")
    x = torch.cat([modality.load_input(path, cfg, cfg.DATA.TRAIN_CROP_SIZE) for path in files])
    with torch.random.fork_rng():
        torch.manual_seed(seed)
        panels = reconstruction_panels(model, x, mean=cfg.DATA.MEAN, std=cfg.DATA.STD)
    output_dir = Path(output_dir)
    paths = [save_reconstruction_png(panels, output_dir / f"{name}.png", captions)]
    if x.ndim == 5:  # inputs with a time axis also get an animation
        paths.append(save_reconstruction_gif(panels, output_dir / f"{name}.gif"))
    logger.info("reconstruction of %s written to %s", ", ".join(map(str, files)), ", ".join(map(str, paths)))
    return paths


def write_training_curve(log_path: Path, png_path: Path, keys: Sequence[str] = ("train_loss",),
                         title: Optional[str] = None) -> Path:
    """Plot ``keys`` of a run's JSON-lines log (``OUTPUT_DIR/log.jsonl``) against the epoch."""
    path = plot_training_curve(Path(log_path), Path(png_path), keys, title)
    logger.info("training curve of %s written to %s", log_path, path)
    return path


def write_finetune_comparison(logs: Mapping[str, Path], png_path: Path) -> Path:
    """Plot the validation top-1 per epoch of finetuning runs (label -> ``OUTPUT_DIR/log.jsonl``),
    e.g. ``{"pretrained": ..., "scratch": ...}``, on one axis."""
    path = plot_finetune_comparison({label: Path(log) for label, log in logs.items()}, Path(png_path))
    logger.info("finetuning comparison of %s written to %s", ", ".join(logs), path)
    return path
