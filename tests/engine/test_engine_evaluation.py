"""View averaging, top-k, multi-view results and their files."""
import csv
import json

import pytest
import torch
from torch import nn

from common.engine.builders import build_model
from common.engine.evaluation import (VideoResult, batch_scores, evaluate_accuracy, gather_results, predict_videos,
                                      summarize, topk_correct, view_averaged_scores, write_test_outputs)
from common.engine.precision import resolve_precision
from tests.engine.toy_data import toy_cfg

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


# Four videos of two views with known class probabilities (6 classes); rows sum to 1, so the
# model's logits log(p) have softmax p. Averaged over the views (by hand):
#   video 0, label 0: [.455, .31, .09, .0625, .0475, .035] -> class 0 first: top-1 and top-5 hit.
#     (The mean of the log-probabilities would rank class 1 first, and view 2 alone says 1.)
#   video 1, label 3: [.325, .275, .175, .09, .08, .055]   -> class 3 fourth: top-5 hit only.
#   video 2, label 5: [.29, .255, .2, .145, .07, .04]      -> class 5 last: no hit.
#   video 3, label 1: [.08, .40, .23, .12, .10, .07]       -> class 1 first: both hit.
VIEW_PROBS = torch.tensor([
    [[0.90, 0.02, 0.03, 0.025, 0.015, 0.01], [0.01, 0.60, 0.15, 0.10, 0.08, 0.06]],
    [[0.35, 0.25, 0.15, 0.10, 0.09, 0.06], [0.30, 0.30, 0.20, 0.08, 0.07, 0.05]],
    [[0.30, 0.25, 0.20, 0.15, 0.06, 0.04], [0.28, 0.26, 0.20, 0.14, 0.08, 0.04]],
    [[0.10, 0.20, 0.35, 0.15, 0.12, 0.08], [0.06, 0.60, 0.11, 0.09, 0.08, 0.06]],
], dtype=torch.float64)
LABELS = [0, 3, 5, 1]
TOP1, TOP5 = 50.0, 75.0  # videos 0 and 3; videos 0, 1 and 3
INDEX_KEY = "index"  # the sample key of a multi-view item's position in its dataset


class _LookupClassifier(nn.Module):
    """Each input is filled with the number ``video * views + view``; logits are that view's log(p)."""

    def forward(self, x):
        code = x.flatten(1)[:, 0].long()
        return VIEW_PROBS.flatten(0, 1)[code].log().float()


def _view_batches(input_ndim, error_video=None):
    """Batches of videos (0, 1) and (2, 3): every view a constant tensor of its code."""
    views = VIEW_PROBS.shape[1]
    batches = []
    for videos in ([0, 1], [2, 3]):
        codes = torch.tensor([[v * views + k for k in range(views)] for v in videos], dtype=torch.float32)
        inputs = codes.view(len(videos), views, *[1] * (input_ndim - 1)).expand(-1, -1, 3, *[2] * (input_ndim - 2))
        batches.append({"x": inputs, "label": torch.tensor([LABELS[v] for v in videos]),
                        INDEX_KEY: torch.tensor(videos), "path": [f"v{v}.mp4" for v in videos],
                        "error": ["unreadable" if v == error_video else "" for v in videos]})
    return batches


def test_toy_view_probabilities_give_the_stated_ranks():
    mean = VIEW_PROBS.mean(1)
    ranks = [int((mean[v] > mean[v, label]).sum()) for v, label in enumerate(LABELS)]  # 0 = first
    assert ranks == [0, 3, 5, 0]
    assert VIEW_PROBS.log().mean(1)[0].argmax() == 1  # logit averaging would miss video 0
    torch.testing.assert_close(VIEW_PROBS.sum(-1), torch.ones(4, 2, dtype=torch.float64))


@pytest.mark.parametrize("input_ndim", [4, 5])
def test_evaluate_accuracy_exact_top1_top5(input_ndim):
    out = evaluate_accuracy(_LookupClassifier(), _view_batches(input_ndim), inputs_of=lambda b, device: b["x"],
                            device=torch.device("cpu"), input_ndim=input_ndim, precision=FP32)
    assert out == {"top1": TOP1, "top5": TOP5, "num_samples": 4}


@pytest.mark.parametrize("input_ndim", [4, 5])
def test_multi_view_test_exact_top1_top5(input_ndim, tmp_path):
    results = predict_videos(_LookupClassifier(), _view_batches(input_ndim), inputs_of=lambda b, device: b["x"],
                             device=torch.device("cpu"), input_ndim=input_ndim, precision=FP32)
    assert [(r.index, r.prediction, r.top5, r.num_views) for r in results] == [
        (0, 0, [0, 1, 2, 3, 4], 2), (1, 0, [0, 1, 2, 3, 4], 2), (2, 0, [0, 1, 2, 3, 4], 2), (3, 1, [1, 2, 3, 4, 0], 2)]
    summary = write_test_outputs(gather_results(results), str(tmp_path))
    assert summary == {"top1": TOP1, "top5": TOP5, "num_videos": 4, "num_failed": 0}
    # An unreadable video counts as wrong: video 3 was a top-1 and top-5 hit.
    failed = predict_videos(_LookupClassifier(), _view_batches(input_ndim, error_video=3),
                            inputs_of=lambda b, device: b["x"], device=torch.device("cpu"), input_ndim=input_ndim,
                            precision=FP32)
    assert summarize(failed) == {"top1": 25.0, "top5": 50.0, "num_videos": 4, "num_failed": 1}


def _recording_model(tmp_path):
    """The toy video classifier, recording the number of clips of every forward."""
    torch.manual_seed(0)
    model = build_model(toy_cfg("video_finetune", tmp_path), pretraining=False, crop_size=32).eval()
    seen = []
    model.register_forward_pre_hook(lambda module, args: seen.append(len(args[0])))
    return model, seen


def _multi_view_batches(videos: torch.Tensor, batch_size: int):
    labels = torch.arange(len(videos)) % 3
    return [{"video": videos[i:i + batch_size], "label": labels[i:i + batch_size],
             INDEX_KEY: torch.arange(i, min(i + batch_size, len(videos))),
             "path": [f"v{j}" for j in range(i, min(i + batch_size, len(videos)))],
             "error": [""] * len(videos[i:i + batch_size])} for i in range(0, len(videos), batch_size)]


def test_multi_view_memory_grows_with_clips_per_forward_not_with_the_batch(tmp_path):
    """8 videos x 3 views. The largest forward and the largest input made at once (moved and
    converted to float) are bounded by ``clips_per_forward``, whatever the batch size; the
    scores equal one big forward's."""
    model, seen = _recording_model(tmp_path)
    videos = torch.randn(8, 3, 3, 4, 32, 32)  # (N, V, C, T, H, W)
    reference = view_averaged_scores(model, videos, input_ndim=5, precision=FP32)
    assert seen == [24]
    made = []

    def inputs_of(batch, device):
        made.append(batch["video"].shape[0] * batch["video"].shape[1])
        return batch["video"]
    for batch_size in (4, 8):
        for clips, largest in ((6, 6), (0, 3 * batch_size)):
            seen.clear()
            made.clear()
            results = predict_videos(model, _multi_view_batches(videos, batch_size), inputs_of=inputs_of,
                                     device=torch.device("cpu"), input_ndim=5, precision=FP32, clips_per_forward=clips)
            assert max(seen) == max(made) == largest and sum(seen) == sum(made) == 24
            assert [r.top5 for r in results] == reference.topk(min(5, reference.shape[1]), dim=1).indices.tolist()
        scores, views = batch_scores(model, _multi_view_batches(videos, batch_size)[0], inputs_of=inputs_of,
                                     device=torch.device("cpu"), input_ndim=5, precision=FP32, clips_per_forward=6)
        assert views == 3 and torch.equal(scores, reference[:batch_size])


def test_test_and_validation_runs_forward_at_most_test_clips_per_forward(tmp_path, monkeypatch):
    import common.engine.jobs as jobs
    sizes = []

    def recording_build_model(*args, **kwargs):
        model = build_model(*args, **kwargs)
        model.register_forward_pre_hook(lambda module, a: None if module.training else sizes.append(len(a[0])))
        return model
    monkeypatch.setattr(jobs, "build_model", recording_build_model)
    jobs.run_job("finetune", toy_cfg("video_finetune", tmp_path / "ft", "SOLVER.MAX_EPOCH", "1",
                                     "TRAIN.CHECKPOINT_FILE_PATH", "", "TEST.CLIPS_PER_FORWARD", "3"))
    assert sizes and max(sizes) == 3  # validation: 6 clips in batches of TEST.BATCH_SIZE 4
    sizes.clear()
    jobs.run_job("test", toy_cfg("video_finetune", tmp_path / "test", "TEST.CLIPS_PER_FORWARD", "4",
                                 "TEST.CHECKPOINT_FILE_PATH", str(tmp_path / "ft" / "checkpoint-last.pth")))
    assert max(sizes) == 4 and sum(sizes) == 7 * 6  # 7 videos x 6 views, TEST.BATCH_SIZE 4 videos (24 clips)
