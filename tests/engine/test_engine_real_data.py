"""The jobs on generated media files (mp4 videos, jpg images) through the real data pipeline."""
import csv
import json

import pytest
import torch

from common.checkpoint import safe_load
from common.engine.jobs import run_job
from tests.engine.toy_data import real_cfg


def test_video_jobs_on_generated_mp4(tmp_path, video_data):
    record = run_job("pretrain", real_cfg("video_pretrain", tmp_path / "pre", video_data,
                                          "DATA_LOADER.NUM_WORKERS", "1"))
    assert record["decode_failures"] == 0 and record["train_loss"] == record["train_loss"]
    start = ("TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "pre" / "checkpoint-last.pth"))
    assert run_job("finetune", real_cfg("video_finetune", tmp_path / "ft", video_data, *start))["val_num_samples"] == 3
    assert run_job("linprobe", real_cfg("video_linprobe", tmp_path / "lp", video_data, *start))["val_num_samples"] == 3
    summary = run_job("test", real_cfg("video_finetune", tmp_path / "ft", video_data))
    assert summary["num_videos"] == 3 and summary["num_failed"] == 0
    rows = list(csv.DictReader((tmp_path / "ft" / "predictions.csv").open()))
    assert [int(r["num_views"]) for r in rows] == [6, 6, 6]  # 2 temporal x 3 spatial views
    assert json.loads((tmp_path / "ft" / "test_results.json").read_text()) == summary


def test_image_jobs_on_generated_jpg(tmp_path, image_data):
    run_job("pretrain", real_cfg("image_pretrain", tmp_path / "pre", image_data))
    assert safe_load(tmp_path / "pre" / "checkpoint-last.pth")["iteration"] == 3
    start = ("TRAIN.CHECKPOINT_FILE_PATH", str(tmp_path / "pre" / "checkpoint-last.pth"))
    assert run_job("finetune", real_cfg("image_finetune", tmp_path / "ft", image_data, *start))["val_num_samples"] == 3
    assert run_job("linprobe", real_cfg("image_linprobe", tmp_path / "lp", image_data, *start))["val_num_samples"] == 3
    summary = run_job("test", real_cfg("image_finetune", tmp_path / "ft", image_data))
    assert summary["num_videos"] == 3 and summary["num_failed"] == 0


def test_missing_dataset_fails_with_path(tmp_path):
    with pytest.raises(Exception, match="nowhere"):
        run_job("pretrain", real_cfg("video_pretrain", tmp_path, tmp_path / "nowhere"))


def test_augmentations_do_not_depend_on_worker_count(tmp_path, video_data):
    """Per-sample seeding: 0 or 2 loader workers give the same pretraining run, bit for bit."""
    for workers in ("0", "2"):
        run_job("pretrain", real_cfg("video_pretrain", tmp_path / workers, video_data,
                                     "DATA_LOADER.NUM_WORKERS", workers))
    a, b = (safe_load(tmp_path / w / "checkpoint-last.pth")["model"] for w in ("0", "2"))
    assert all(torch.equal(a[k], b[k]) for k in a)
