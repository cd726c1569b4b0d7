"""View averaging, top-k, multi-view results and their files."""
import csv
import json

import torch
from torch import nn

from common.engine.evaluation import (VideoResult, evaluate_accuracy, gather_results, predict_videos, summarize,
                                      topk_correct, view_averaged_scores, write_test_outputs)
from common.engine.precision import resolve_precision

FP32 = resolve_precision("fp32", torch.device("cpu"))


class _MeanClassifier(nn.Module):
    """logits = the per-sample mean of the input times a fixed vector (deterministic)."""

    def forward(self, x):
        return x.flatten(1).mean(1, keepdim=True) * torch.arange(6.0)


def test_view_averaged_scores_mean_of_softmax():
    model = _MeanClassifier()
    views = torch.randn(2, 3, 1, 4, 4)  # (N, V, C, H, W)
    scores = view_averaged_scores(model, views, input_ndim=4, precision=FP32)
    expected = torch.stack([model(views[:, v]).softmax(-1) for v in range(3)], 1).mean(1)
    assert torch.allclose(scores, expected)
    single = view_averaged_scores(model, views[:, 0], input_ndim=4, precision=FP32)
    assert torch.allclose(single, model(views[:, 0]).softmax(-1))


def test_topk_correct():
    scores = torch.tensor([[0.1, 0.9, 0.0], [0.5, 0.2, 0.3]])
    assert topk_correct(scores, torch.tensor([1, 2]), ks=(1, 2)) == [1, 2]


def _batch(indices, error=""):
    return {"image": torch.randn(len(indices), 2, 1, 4, 4), "label": torch.tensor([i % 6 for i in indices]),
            "index": torch.tensor(indices), "path": [f"v{i}" for i in indices],
            "error": [error if i == indices[0] else "" for i in indices]}


def test_predict_videos_and_summary(tmp_path):
    batches = [_batch([0, 1]), _batch([2], error="broken")]
    results = predict_videos(_MeanClassifier(), batches, inputs_of=lambda b, device: b["image"], device=torch.device("cpu"),
                             input_ndim=4, precision=FP32)
    assert [r.index for r in results] == [0, 1, 2]
    assert results[0].num_views == 2 and len(results[0].top5) == 5
    assert results[2].prediction == -1 and results[2].error == "broken" and results[2].top5 == []
    summary = write_test_outputs(gather_results(results), str(tmp_path))
    assert summary["num_videos"] == 3 and summary["num_failed"] == 1
    assert json.loads((tmp_path / "test_results.json").read_text()) == summary
    rows = list(csv.DictReader((tmp_path / "predictions.csv").open()))
    assert [r["path"] for r in rows] == ["v0", "v1", "v2"] and rows[2]["error"] == "broken"
    assert set(rows[0]) == {"path", "label", "prediction", "top5", "num_views", "error"}


def test_summarize_counts_failures_as_wrong():
    results = [VideoResult(0, "a", 1, 1, [1, 2], 3, ""), VideoResult(1, "b", 2, 0, [0, 2], 3, ""),
               VideoResult(2, "c", 0, -1, [], 0, "unreadable")]
    assert summarize(results) == {"top1": 100 / 3, "top5": 200 / 3, "num_videos": 3, "num_failed": 1}


def test_evaluate_accuracy_counts_samples():
    batch = {"image": torch.randn(4, 1, 4, 4), "label": torch.tensor([5, 5, 0, 0])}
    out = evaluate_accuracy(_MeanClassifier(), [batch], inputs_of=lambda b, device: b["image"], device=torch.device("cpu"),
                            input_ndim=4, precision=FP32)
    assert out["num_samples"] == 4 and 0 <= out["top1"] <= out["top5"] <= 100
