"""Evaluation: view-averaged class scores, top-k accuracy, multi-view test results.

An input batch is ``(N, C, *grid)`` (one view) or ``(N, V, C, *grid)`` (V views per video);
the score of a sample is the mean of its views' softmax scores. Evaluation shards carry no
padding (``ShardSampler``), so gathering every rank's records counts each video once.
"""
from __future__ import annotations

import csv
import io
import json
import os
from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Optional, Sequence, Tuple

import torch
from torch import nn

from common.data.collate import NORMALIZATION_KEY
from common.engine.distributed import all_gather_objects, all_reduce_sum
from common.files import atomic_write_text
from common.engine.precision import Precision
from common.engine.progress import logged_progress
from common.modality import INDEX_KEY, LABEL_KEY

TOPK = 5
PREDICTIONS_FILE = "predictions.csv"
RESULTS_FILE = "test_results.json"


@dataclass(frozen=True)
class VideoResult:
    """One video's test outcome (``top5`` empty and ``prediction`` -1 if it could not be read)."""

    index: int
    path: str
    label: int
    prediction: int
    top5: List[int]
    num_views: int
    error: str


@torch.no_grad()
def view_averaged_scores(model: nn.Module, inputs: torch.Tensor, *, input_ndim: int,
                         precision: Precision, clips_per_forward: int = 0) -> torch.Tensor:
    """Softmax scores ``(N, K)`` (float32) averaged over views; ``input_ndim`` = dims of one view
    with its batch dim (4 for images, 5 for videos). The views go through the model at most
    ``clips_per_forward`` at a time (0: all at once); each view's scores are the same either way."""
    has_views = inputs.ndim == input_ndim + 1
    views = inputs.shape[1] if has_views else 1
    flat = inputs.flatten(0, 1) if has_views else inputs
    with precision.autocast():
        logits = torch.cat([model(chunk).float() for chunk in in_chunks(flat, clips_per_forward)])
    scores = logits.softmax(dim=-1)
    return scores.view(inputs.shape[0], views, -1).mean(dim=1)


def in_chunks(inputs: torch.Tensor, size: int) -> Sequence[torch.Tensor]:
    """``inputs`` split along dim 0 into pieces of at most ``size`` (0: one piece)."""
    return inputs.split(size) if size > 0 else (inputs,)


def batch_scores(model: nn.Module, batch: Dict[str, Any], *, inputs_of, device: torch.device, input_ndim: int,
                 precision: Precision, clips_per_forward: int = 0) -> Tuple[torch.Tensor, int]:
    """View-averaged scores ``(N, K)`` of a loader batch and its number of views. With
    ``clips_per_forward`` > 0 the batch's inputs are made (moved, normalised to float) and
    forwarded a few videos at a time, so memory grows with ``clips_per_forward`` (or one
    video's views, if more), not with the batch size."""
    total = len(batch[LABEL_KEY])
    start, videos, views, parts = 0, total if clips_per_forward <= 0 else 1, 1, []
    while start < total:
        inputs = inputs_of(_videos(batch, start, start + videos, total), device)
        views = inputs.shape[1] if inputs.ndim == input_ndim + 1 else 1
        parts.append(view_averaged_scores(model, inputs, input_ndim=input_ndim, precision=precision,
                                          clips_per_forward=clips_per_forward))
        start += videos
        videos = max(1, clips_per_forward // views) if clips_per_forward > 0 else total
    return torch.cat(parts), views


def _videos(batch: Dict[str, Any], start: int, stop: int, total: int) -> Dict[str, Any]:
    """Items ``start:stop`` of a collated batch of ``total`` items (per-batch entries such as the
    normalisation kept whole)."""
    if (start, stop) == (0, total):
        return batch
    return {key: value[start:stop] if key != NORMALIZATION_KEY and _per_item(value, total) else value
            for key, value in batch.items()}


def _per_item(value: Any, total: int) -> bool:
    if isinstance(value, torch.Tensor):
        return value.dim() > 0 and len(value) == total
    return isinstance(value, (list, tuple)) and len(value) == total


def topk_correct(scores: torch.Tensor, labels: torch.Tensor, ks: Sequence[int] = (1, TOPK)) -> List[int]:
    """Number of samples whose label is among the top-k scores, for each k."""
    top = scores.topk(min(max(ks), scores.shape[1]), dim=1).indices
    hits = top == labels.view(-1, 1)
    return [int(hits[:, :k].any(dim=1).sum()) for k in ks]


@torch.no_grad()
def evaluate_accuracy(model: nn.Module, batches: Iterable[Dict[str, Any]], *, inputs_of, device: torch.device,
                      input_ndim: int, precision: Precision, clips_per_forward: int = 0) -> Dict[str, float]:
    """Top-1/top-5 (in %) and sample count over all ranks (``clips_per_forward``: see ``batch_scores``)."""
    model.eval()
    counts = torch.zeros(3, dtype=torch.float64, device=device)
    for batch in logged_progress(batches, "validation"):
        labels = batch[LABEL_KEY].to(device)
        scores, _ = batch_scores(model, batch, inputs_of=inputs_of, device=device, input_ndim=input_ndim,
                                 precision=precision, clips_per_forward=clips_per_forward)
        top1, top5 = topk_correct(scores, labels)
        counts += torch.tensor([top1, top5, len(labels)], dtype=torch.float64, device=device)
    top1, top5, total = all_reduce_sum(counts).tolist()
    return {"top1": 100.0 * top1 / max(total, 1), "top5": 100.0 * top5 / max(total, 1), "num_samples": int(total)}


@torch.no_grad()
def predict_videos(model: nn.Module, batches: Iterable[Dict[str, Any]], *, inputs_of, device: torch.device,
                   input_ndim: int, precision: Precision, clips_per_forward: int = 0) -> List[VideoResult]:
    """This rank's ``VideoResult`` per video of a multi-view test loader (``clips_per_forward``:
    see ``batch_scores``)."""
    model.eval()
    results: List[VideoResult] = []
    for batch in logged_progress(batches, "multi-view test"):
        scores, views = batch_scores(model, batch, inputs_of=inputs_of, device=device, input_ndim=input_ndim,
                                     precision=precision, clips_per_forward=clips_per_forward)
        results.extend(_video_results(batch, scores.cpu(), views))
    return results


def _video_results(batch: Dict[str, Any], scores: torch.Tensor, num_views: int) -> List[VideoResult]:
    """Results of one batch: every item carries ``index``; multi-view video items also ``error``."""
    top = scores.topk(min(TOPK, scores.shape[1]), dim=1).indices.tolist()
    errors = batch.get("error") or [""] * len(top)
    indices_of_items = batch[INDEX_KEY]
    out = []
    for i, (indices, error) in enumerate(zip(top, errors)):
        out.append(VideoResult(
            index=int(indices_of_items[i]),
            path=str(batch["path"][i]),
            label=int(batch[LABEL_KEY][i]),
            prediction=-1 if error else indices[0],
            top5=[] if error else indices,
            num_views=0 if error else num_views,
            error=error,
        ))
    return out


def gather_results(local: List[VideoResult]) -> List[VideoResult]:
    """All ranks' results, sorted by video index (every video once: shards do not overlap)."""
    merged = [r for part in all_gather_objects(local) for r in part]
    return sorted(merged, key=lambda r: r.index)


def summarize(results: List[VideoResult]) -> Dict[str, Any]:
    """``top1``/``top5`` in % over all videos (unreadable ones count as wrong), counts."""
    total = len(results)
    top1 = sum(r.prediction == r.label for r in results)
    top5 = sum(r.label in r.top5 for r in results)
    return {
        "top1": 100.0 * top1 / max(total, 1),
        "top5": 100.0 * top5 / max(total, 1),
        "num_videos": total,
        "num_failed": sum(bool(r.error) for r in results),
    }


def write_test_outputs(results: List[VideoResult], output_dir: str,
                       class_names: Optional[Sequence[str]] = None) -> Dict[str, Any]:
    """Write ``predictions.csv`` and ``test_results.json`` (temp file + rename); returns the summary.
    With ``class_names`` (index = class id) the csv gains a ``name`` column: the prediction's name."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    named = class_names is not None
    writer.writerow(["path", "label", "prediction"] + ["name"] * named + ["top5", "num_views", "error"])
    for r in results:
        name = [class_names[r.prediction] if r.prediction >= 0 else ""] if named else []
        writer.writerow([r.path, r.label, r.prediction, *name, " ".join(map(str, r.top5)), r.num_views, r.error])
    summary = summarize(results)
    atomic_write_text(os.path.join(output_dir, PREDICTIONS_FILE), buffer.getvalue())
    atomic_write_text(os.path.join(output_dir, RESULTS_FILE), json.dumps(summary, indent=2) + "\n")
    return summary
