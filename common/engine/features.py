"""Encoder features of files: one embedding per file (clip mode) or per sliding window of a
long video (window mode, for temporal action localization).

Clip mode reads files with the test job's dataset and loader (all test views of a video from
one decode) and averages the views' embeddings -> ``DIR/features.npy`` (N x C) and
``DIR/index.csv`` (row -> path). Window mode reads each video once through the modality's
``sliding_windows`` -> ``DIR/<relative path>.npy`` (num_windows x C) and
``DIR/<relative path>.json`` (window start times in seconds, frame numbers, fps). ``pool="none"``
keeps the token grid (T', H', W', C) instead of the pooled vector. Outputs are written
atomically (temp name + rename in the same folder), so a finished output is complete and a
rerun skips it; files are sharded over ``torchrun`` ranks.
"""
from __future__ import annotations

import csv
import io
import json
import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from common.data import batch_inputs
from common.data.failures import SampleError
from common.engine.distributed import DistInfo, all_gather_objects, barrier
from common.engine.evaluation import in_chunks
from common.engine.inference import LoadedModel, files_loader, local_dist
from common.engine.progress import logged_progress
from common.errors import UserError
from common.files import atomic_write, atomic_write_text
from common.modality import INDEX_KEY

logger = logging.getLogger(__name__)

POOLS = ("mean", "none")
FEATURES_FILE = "features.npy"
INDEX_FILE = "index.csv"


@torch.no_grad()
def encoder_tokens(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The encoder's stage-3 tokens (N, L, C3) of unmasked inputs (N, C, *input_size), for a
    classifier or a pretraining model alike (its decoder is not used)."""
    _, _, tokens = model.forward_conv_stages(x)
    return model.forward_stage3(tokens + model.pos_embed)


@torch.no_grad()
def embed(model: nn.Module, x: torch.Tensor, pool: str = "mean") -> torch.Tensor:
    """Features of inputs (N, C, *input_size): ``pool="mean"`` -> (N, C3), the classifier's
    pooled features (``forward_head(forward_features(x), pre_logits=True)``: ``fc_norm`` of the mean
    token with global pooling, else
    the mean of the ``norm``-ed tokens, as for a pretraining encoder); ``pool="none"`` -> the
    normalised token grid (N, *grid, C3)."""
    if pool not in POOLS:
        raise ValueError(f"pool must be one of {POOLS}, got {pool!r}")
    tokens = encoder_tokens(model, x)
    fc_norm = getattr(model, "use_fc_norm", False)  # a classifier built with global pooling
    if pool == "mean":
        return model.fc_norm(tokens.mean(dim=1)) if fc_norm else model.norm(tokens).mean(dim=1)
    normed = model.fc_norm(tokens) if fc_norm else model.norm(tokens)
    return normed.reshape(x.shape[0], *model.grid, normed.shape[-1])


@dataclass
class ClipFeatures:
    """Clip-mode result: ``features`` (N, ...) float32 for ``paths`` (readable files, input
    order) and ``errors`` (path -> reason) of the files that could not be read."""

    paths: List[str]
    features: np.ndarray
    errors: Dict[str, str] = field(default_factory=dict)


@torch.no_grad()
def extract_clip_features(loaded: LoadedModel, paths: Sequence[str], *, pool: str = "mean",
                          dist: Optional[DistInfo] = None) -> ClipFeatures:
    """One embedding per file, averaged over the test views (``TEST.NUM_ENSEMBLE_VIEWS`` x
    ``TEST.NUM_SPATIAL_CROPS`` for videos); every rank gets all files' features. At most
    ``TEST.CLIPS_PER_FORWARD`` views go through the encoder at once, as in the test job."""
    dist = dist or local_dist(loaded)
    ndim = loaded.modality.input_ndim
    per_forward = loaded.cfg.TEST.CLIPS_PER_FORWARD
    local: List[Tuple[int, str, Optional[np.ndarray], str]] = []
    for batch in logged_progress(files_loader(loaded, paths, dist), "clip features"):
        inputs = batch_inputs(batch, loaded.device)
        views = inputs.shape[1] if inputs.ndim == ndim + 1 else 1
        flat = inputs.flatten(0, 1) if inputs.ndim == ndim + 1 else inputs
        features = torch.cat([embed(loaded.model, chunk, pool).float() for chunk in in_chunks(flat, per_forward)])
        features = features.view(inputs.shape[0], views, *features.shape[1:]).mean(dim=1).cpu().numpy()
        for i, error in enumerate(batch["error"]):
            local.append((int(batch[INDEX_KEY][i]), str(batch["path"][i]), None if error else features[i], error))
    rows = sorted((row for part in all_gather_objects(local) for row in part), key=lambda row: row[0])
    good = [row for row in rows if not row[3]]
    shape = good[0][2].shape if good else (0,)
    stacked = np.stack([row[2] for row in good]) if good else np.zeros((0, *shape), np.float32)
    return ClipFeatures(paths=[row[1] for row in good], features=stacked,
                        errors={row[1]: row[3] for row in rows if row[3]})


@dataclass
class WindowFeatures:
    """Window-mode result of one video: ``features`` (num_windows, ...) float32, the windows'
    ``start_frames`` (source frame numbers) and ``start_seconds``, and the video's ``fps`` and
    ``num_frames``."""

    features: np.ndarray
    start_frames: List[int]
    start_seconds: List[float]
    fps: float
    num_frames: int


@torch.no_grad()
def extract_window_features(loaded: LoadedModel, path: str, *, window_stride: int, pool: str = "mean",
                            batch_size: int = 8) -> WindowFeatures:
    """Features of every window of ``DATA.NUM_FRAMES`` frames (``DATA.SAMPLING_RATE`` source
    frames apart), ``window_stride`` sampled frames apart, over the whole video at ``path``
    (centre view at ``DATA.TEST_CROP_SIZE``); each frame is decoded once. Load the run with
    ``overrides={"DATA.NUM_FRAMES": T}`` for windows of T frames. Raises SampleError (e.g.
    DecodeError) for a file that cannot be read."""
    if loaded.modality.sliding_windows is None:
        raise UserError(f"the {loaded.modality.name} modality has no time axis: use clip mode")
    windows = loaded.modality.sliding_windows(path, loaded.cfg, window_frames=loaded.cfg.DATA.NUM_FRAMES,
                                              window_stride=window_stride, batch_size=batch_size)
    parts = [embed(loaded.model, batch.to(loaded.device), pool).float().cpu().numpy() for batch in windows.batches()]
    return WindowFeatures(features=np.concatenate(parts), start_frames=list(windows.start_frames),
                          start_seconds=list(windows.start_seconds), fps=windows.fps, num_frames=windows.num_frames)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through the engine's one atomic writer: a reader sees all or nothing."""
    atomic_write(path, lambda f: np.save(f, array))


def window_output_paths(output_dir: Path, relative: str) -> Tuple[Path, Path]:
    """``DIR/<relative>.npy`` (features) and ``DIR/<relative>.json`` (window times)."""
    base = Path(output_dir) / relative
    return base.with_name(base.name + ".npy"), base.with_name(base.name + ".json")


def window_outputs_done(output_dir: Path, relative: str) -> bool:
    """True when both outputs of a video exist (each is written atomically, the .npy last)."""
    return all(p.is_file() for p in window_output_paths(output_dir, relative))


def write_window_features(output_dir: Path, relative: str, result: WindowFeatures, *, window_frames: int,
                          window_stride: int, sampling_rate: int) -> Path:
    """Writes the window times json, then the features .npy; returns the .npy path."""
    features_path, times_path = window_output_paths(output_dir, relative)
    times_path.parent.mkdir(parents=True, exist_ok=True)
    record = {"start_seconds": result.start_seconds, "start_frames": result.start_frames, "fps": result.fps,
              "num_frames": result.num_frames, "window_frames": window_frames, "window_stride": window_stride,
              "sampling_rate": sampling_rate, "shape": list(result.features.shape)}
    atomic_write_text(str(times_path), json.dumps(record) + "\n")
    atomic_save_npy(features_path, result.features)
    return features_path


def clip_outputs_done(output_dir: Path, paths: Sequence[str]) -> bool:
    """True when ``DIR/features.npy`` and ``DIR/index.csv`` exist for exactly these inputs."""
    index = Path(output_dir) / INDEX_FILE
    if not (index.is_file() and (Path(output_dir) / FEATURES_FILE).is_file()):
        return False
    with index.open(newline="") as f:
        listed = {row["path"] for row in csv.DictReader(f)} | _listed_errors(output_dir)
    return listed == {str(p) for p in paths}


def _listed_errors(output_dir: Path) -> set:
    errors = Path(output_dir) / "errors.json"
    return set(json.loads(errors.read_text())) if errors.is_file() else set()


def write_clip_features(output_dir: Path, result: ClipFeatures) -> None:
    """``features.npy`` (N, ...), ``index.csv`` (row, path) and ``errors.json`` (unreadable files)."""
    output_dir = Path(output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "path"])
    writer.writerows(enumerate(result.paths))
    atomic_write_text(str(output_dir / "errors.json"), json.dumps(result.errors, indent=1) + "\n")
    atomic_save_npy(output_dir / FEATURES_FILE, result.features)
    atomic_write_text(str(output_dir / INDEX_FILE), buffer.getvalue())


@dataclass
class ExtractionSummary:
    """What an extraction did: files ``written``, ``skipped`` (already done), ``failed`` (path -> reason)."""

    written: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)


def extract_windows_to_folder(loaded: LoadedModel, files: Sequence[Tuple[str, str]], output_dir: Path, *,
                              window_stride: int, pool: str = "mean", batch_size: int = 8,
                              dist: Optional[DistInfo] = None) -> ExtractionSummary:
    """Window features of ``files`` ((path, relative path) pairs) into ``output_dir``. Rank r of W
    takes files r, r + W, ... of the list, skips those already complete, and goes on past a
    bad file; the summary (gathered over ranks) lists all of them."""
    dist = dist or local_dist(loaded)
    summary = ExtractionSummary()
    mine = list(files)[dist.rank::dist.world_size]
    for path, relative in logged_progress(mine, "window features", unit="videos"):
        if window_outputs_done(output_dir, relative):
            summary.skipped.append(path)
            continue
        try:
            result = extract_window_features(loaded, path, window_stride=window_stride, pool=pool,
                                             batch_size=batch_size)
        except SampleError as error:
            summary.failed[path] = str(error)
            logger.warning("skipped %s", error)
            continue
        write_window_features(output_dir, relative, result, window_frames=loaded.cfg.DATA.NUM_FRAMES,
                              window_stride=window_stride, sampling_rate=loaded.cfg.DATA.SAMPLING_RATE)
        summary.written.append(path)
    return _gathered(summary)


def extract_clips_to_folder(loaded: LoadedModel, paths: Sequence[str], output_dir: Path, *, pool: str = "mean",
                            dist: Optional[DistInfo] = None) -> ExtractionSummary:
    """Clip features of ``paths`` into ``output_dir`` (``features.npy``, ``index.csv``), unless
    they are there already for the same inputs; the main rank writes."""
    dist = dist or local_dist(loaded)
    if clip_outputs_done(output_dir, paths):
        return ExtractionSummary(skipped=[str(p) for p in paths])
    result = extract_clip_features(loaded, paths, pool=pool, dist=dist)
    if dist.is_main:
        write_clip_features(output_dir, result)
    barrier()
    return ExtractionSummary(written=list(result.paths), failed=dict(result.errors))


def _gathered(summary: ExtractionSummary) -> ExtractionSummary:
    parts = all_gather_objects(summary)
    return ExtractionSummary(written=[p for s in parts for p in s.written],
                             skipped=[p for s in parts for p in s.skipped],
                             failed={k: v for s in parts for k, v in s.failed.items()})


def summary_record(summary: ExtractionSummary) -> Dict[str, Any]:
    """Counts and failed files of an extraction, for the tool's last line."""
    return {"written": len(summary.written), "skipped": len(summary.skipped), "failed": len(summary.failed),
            "failed_files": summary.failed}
