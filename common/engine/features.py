"""Encoder features of files: one embedding per file (clip mode) or per sliding window of a
long video (window mode, for temporal action localization).

Clip mode reads files with the test job's dataset and loader (all test views of a video from
one decode) and averages the views' embeddings -> ``DIR/features.npy`` (N x C) and
``DIR/index.csv`` (row -> path). Window mode reads each video once through the modality's
``sliding_windows`` -> ``DIR/<relative path>.npy`` (num_windows x C) and
``DIR/<relative path>.json`` (window start times in seconds, frame numbers, fps). ``pool="none"``
keeps the token grid (T', H', W', C) instead of the pooled vector. Files are sharded over
``torchrun`` ranks; a file whose features are not finite is reported as failed, not written.

``DIR/manifest.json`` (``common.manifest``) says what made the folder: model, checkpoint sha256,
mode, pool, window stride, preprocessing, inputs, code version. A rerun with the same ones
resumes: finished outputs are kept, failed files are tried again (and stay in the summary until
they succeed); other ones are refused unless ``overwrite``. Every file is written atomically
(temp name + rename); clip mode's ``features.npy``, ``index.csv`` and ``errors.json`` form one
result set that the manifest, saved last, names with their sha256, so a set cut between two
files by a kill is computed again rather than taken as done (``load_clip_features`` reads a
set only whole).
"""
from __future__ import annotations

import csv
import io
import json
import logging
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from torch import nn

from common.data import batch_inputs
from common.data.failures import SampleError
from common.engine.distributed import DistInfo, all_gather_objects, barrier, run_on_main
from common.engine.evaluation import in_chunks
from common.engine.inference import LoadedModel, files_loader, local_dist, model_about, model_settings
from common.engine.progress import logged_progress
from common.errors import UserError
from common.files import atomic_write, atomic_write_json, atomic_write_text, json_text
from common.manifest import MANIFEST_FILE, Manifest, OutputError, OutputFolder, files_match
from common.modality import INDEX_KEY

logger = logging.getLogger(__name__)

POOLS = ("mean", "none")
FEATURES_FILE = "features.npy"
INDEX_FILE = "index.csv"
ERRORS_FILE = "errors.json"
CLIP_FILES = (FEATURES_FILE, INDEX_FILE, ERRORS_FILE)  # one result set, written in this order
NON_FINITE = "the model gave non-finite features (NaN or inf)"


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
            path = str(batch["path"][i])
            error = error or ("" if np.isfinite(features[i]).all() else f"{path}: {NON_FINITE}")
            local.append((int(batch[INDEX_KEY][i]), path, None if error else features[i], error))
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
    DecodeError) for a file that cannot be read or whose features are not finite."""
    if loaded.modality.sliding_windows is None:
        raise UserError(f"the {loaded.modality.name} modality has no time axis: use clip mode")
    windows = loaded.modality.sliding_windows(path, loaded.cfg, window_frames=loaded.cfg.DATA.NUM_FRAMES,
                                              window_stride=window_stride, batch_size=batch_size)
    parts = [embed(loaded.model, batch.to(loaded.device), pool).float().cpu().numpy() for batch in windows.batches()]
    if not all(np.isfinite(part).all() for part in parts):
        raise SampleError(path, NON_FINITE)
    if not np.isfinite(windows.fps):
        raise SampleError(path, f"its frame rate ({windows.fps}) is not finite: window times cannot be given")
    return WindowFeatures(features=np.concatenate(parts), start_frames=list(windows.start_frames),
                          start_seconds=list(windows.start_seconds), fps=windows.fps, num_frames=windows.num_frames)


def atomic_save_npy(path: Path, array: np.ndarray) -> None:
    """``np.save`` through the engine's one atomic writer: a reader sees all or nothing."""
    atomic_write(path, lambda f: np.save(f, array))


def window_output_names(relative: str) -> Tuple[str, str]:
    """``<relative>.npy`` (features) and ``<relative>.json`` (window times), relative to the folder."""
    return f"{relative}.npy", f"{relative}.json"


def window_output_paths(output_dir: Path, relative: str) -> Tuple[Path, Path]:
    """``DIR/<relative>.npy`` (features) and ``DIR/<relative>.json`` (window times)."""
    features, times = window_output_names(relative)
    return Path(output_dir) / features, Path(output_dir) / times


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
    atomic_write_json(times_path, record)
    atomic_save_npy(features_path, result.features)
    return features_path


def write_clip_features(output_dir: Path, result: ClipFeatures) -> List[str]:
    """``features.npy`` (N, ...), ``index.csv`` (row, path) and ``errors.json`` (unreadable files),
    each atomically; returns their names (commit them with the folder's manifest)."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(["row", "path"])
    writer.writerows(enumerate(result.paths))
    atomic_save_npy(Path(output_dir) / FEATURES_FILE, result.features)
    atomic_write_text(Path(output_dir) / INDEX_FILE, buffer.getvalue())
    atomic_write_json(Path(output_dir) / ERRORS_FILE, result.errors, indent=1)
    return list(CLIP_FILES)


def read_clip_features(output_dir: Path) -> ClipFeatures:
    """The clip-mode files of ``output_dir`` as they are (see ``load_clip_features`` to read a
    committed set only)."""
    output_dir = Path(output_dir)
    with (output_dir / INDEX_FILE).open(newline="") as f:
        paths = [row["path"] for row in csv.DictReader(f)]
    return ClipFeatures(paths=paths, features=np.load(output_dir / FEATURES_FILE),
                        errors=json.loads((output_dir / ERRORS_FILE).read_text()))


def load_clip_features(output_dir: Path) -> ClipFeatures:
    """The clip-mode result set of ``output_dir``, read only when its files are the ones its
    ``manifest.json`` committed (``OutputError`` otherwise: a run is writing it, or was killed
    while writing it)."""
    manifest = Path(output_dir) / MANIFEST_FILE
    files = Manifest.read(manifest).files if manifest.is_file() else {}
    if set(files) != set(CLIP_FILES) or not files_match(Path(output_dir), files):
        raise OutputError(f"{output_dir} holds no complete clip-feature set (its manifest.json does not name "
                          f"{', '.join(CLIP_FILES)} as they are): rerun tools/extract_features.py on it")
    return read_clip_features(output_dir)


@dataclass
class ExtractionSummary:
    """What an extraction did: files ``written``, ``skipped`` (already done), ``failed`` (path -> reason)."""

    written: List[str] = field(default_factory=list)
    skipped: List[str] = field(default_factory=list)
    failed: Dict[str, str] = field(default_factory=dict)


def features_manifest(loaded: LoadedModel, files: Sequence[Tuple[str, str]], outputs: Dict[str, str],
                      **options: Any) -> Manifest:
    """The manifest of a feature folder: the model's settings and ``options`` (mode, pool, ...),
    the inputs (absolute paths, in order) and the ``outputs`` the run may write."""
    return Manifest(tool="extract_features", settings={**model_settings(loaded), **options},
                    inputs=[os.path.abspath(path) for path, _ in files], outputs=outputs, about=model_about(loaded))


def extract_windows_to_folder(loaded: LoadedModel, files: Sequence[Tuple[str, str]], out: OutputFolder, *,
                              window_stride: int, pool: str = "mean", batch_size: int = 8, overwrite: bool = False,
                              dist: Optional[DistInfo] = None) -> ExtractionSummary:
    """Window features of ``files`` ((path, relative path) pairs) into the folder ``out`` (held by
    the main rank). After the manifest check (module docstring), rank r of W takes files r,
    r + W, ... of the list, skips those already complete, and goes on past a bad file; the summary
    (gathered over ranks) lists all of them and is committed in the manifest."""
    dist = dist or local_dist(loaded)
    outputs = {name: os.path.abspath(path) for path, relative in files for name in window_output_names(relative)}
    manifest = features_manifest(loaded, files, outputs, mode="window", pool=pool, window_stride=window_stride)
    run_on_main(lambda: out.start(manifest, overwrite=overwrite), dist)
    summary = ExtractionSummary()
    mine = list(files)[dist.rank::dist.world_size]
    for path, relative in logged_progress(mine, "window features", unit="videos"):
        if window_outputs_done(out.folder, relative):
            summary.skipped.append(path)
            continue
        try:
            result = extract_window_features(loaded, path, window_stride=window_stride, pool=pool,
                                             batch_size=batch_size)
        except SampleError as error:
            summary.failed[path] = str(error)
            logger.warning("skipped %s", error)
            continue
        write_window_features(out.folder, relative, result, window_frames=loaded.cfg.DATA.NUM_FRAMES,
                              window_stride=window_stride, sampling_rate=loaded.cfg.DATA.SAMPLING_RATE)
        summary.written.append(path)
    summary = _gathered(summary)
    if dist.is_main:
        out.commit([], summary_record(summary))
    return summary


def extract_clips_to_folder(loaded: LoadedModel, paths: Sequence[str], out: OutputFolder, *, pool: str = "mean",
                            overwrite: bool = False, dist: Optional[DistInfo] = None) -> ExtractionSummary:
    """Clip features of ``paths`` into the folder ``out`` (held by the main rank): after the
    manifest check (module docstring), the files not in the committed set (new, or failed
    before) are computed, merged with the set in input order, and written as a new set that the
    manifest commits; the main rank writes."""
    dist = dist or local_dist(loaded)
    paths = [str(p) for p in paths]
    manifest = features_manifest(loaded, [(p, "") for p in paths], {name: "" for name in CLIP_FILES},
                                 mode="clip", pool=pool)
    earlier: List[ClipFeatures] = []

    def plan() -> List[str]:
        if out.start(manifest, overwrite=overwrite):
            if out.committed_files_intact():
                earlier.append(read_clip_features(out.folder))
            elif out.manifest.files:
                logger.warning("%s: the last result set was cut between its files by a killed run: computing it "
                               "again", out.folder)
        done = set(earlier[0].paths) if earlier else set()
        return [p for p in paths if p not in done]

    todo = run_on_main(plan, dist)
    tried = set(todo)
    skipped = [p for p in paths if p not in tried]
    if not todo:
        return ExtractionSummary(skipped=skipped)
    result = extract_clip_features(loaded, todo, pool=pool, dist=dist)
    if dist.is_main:
        merged = merge_clip_features(paths, [*earlier, result])
        out.commit(write_clip_features(out.folder, merged), summary_record(
            ExtractionSummary(written=result.paths, skipped=skipped, failed=result.errors)))
    barrier()
    return ExtractionSummary(written=list(result.paths), skipped=skipped, failed=dict(result.errors))


def merge_clip_features(paths: Sequence[str], parts: Sequence[ClipFeatures]) -> ClipFeatures:
    """One set of ``paths`` (in this order) from ``parts``: a later part's row or error wins."""
    rows: Dict[str, np.ndarray] = {}
    errors: Dict[str, str] = {}
    for part in parts:
        for path, row in zip(part.paths, part.features):
            rows[path] = row
            errors.pop(path, None)
        for path, error in part.errors.items():
            errors[path] = error
            rows.pop(path, None)
    good = [p for p in paths if p in rows]
    width = next((part.features.shape[1:] for part in parts if len(part.features)), (0,))
    features = np.stack([rows[p] for p in good]) if good else np.zeros((0, *width), np.float32)
    return ClipFeatures(paths=good, features=features, errors={p: errors[p] for p in paths if p in errors})


def _gathered(summary: ExtractionSummary) -> ExtractionSummary:
    parts = all_gather_objects(summary)
    return ExtractionSummary(written=[p for s in parts for p in s.written],
                             skipped=[p for s in parts for p in s.skipped],
                             failed={k: v for s in parts for k, v in s.failed.items()})


def summary_record(summary: ExtractionSummary) -> Dict[str, Any]:
    """Counts and failed files of an extraction, for the tool's last line and the manifest."""
    return {"written": len(summary.written), "skipped": len(summary.skipped), "failed": len(summary.failed),
            "failed_files": summary.failed}


def summary_line(summary: ExtractionSummary) -> str:
    """``summary_record`` as strict JSON (the tool's last line)."""
    return json_text(summary_record(summary))
