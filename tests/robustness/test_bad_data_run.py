"""A real pretraining run over mp4s of which 10% are bad (garbage, empty, truncated, audio-only,
missing) completes; the JSON log and the progress lines count the substituted files."""
import json
import shutil

import pytest

from common.engine.jobs import run_job
from tests.data.conftest import write_audio_only
from tests.engine.toy_data import real_cfg

BAD_KINDS = ("garbage", "empty", "truncated", "audio_only", "missing")
GOOD_ENTRIES = 45  # + 5 bad: 10% of 50


def _write_bad_file(kind: str, path, good_clip) -> None:
    """A damaged ``path`` of ``kind`` (``missing``: no file at all)."""
    if kind == "garbage":
        path.write_bytes(b"not a video\n" * 100)
    elif kind == "empty":
        path.write_bytes(b"")
    elif kind == "truncated":
        path.write_bytes(good_clip.read_bytes()[:300])
    elif kind == "audio_only":
        write_audio_only(path)


def _dataset_with_bad_files(video_data, root):
    """A copy of ``video_data`` whose train list has 45 good and 5 bad entries (one per kind)."""
    shutil.copytree(video_data, root)
    good = [line for line in (root / "train.csv").read_text().splitlines() if line.strip()]
    first_clip = root / good[0].split()[0]
    bad = []
    for kind in BAD_KINDS:
        path = root / "train" / f"{kind}.mp4"
        _write_bad_file(kind, path, first_clip)
        bad.append(f"train/{kind}.mp4 0")
    entries = [good[i % len(good)] for i in range(GOOD_ENTRIES)] + bad
    (root / "train.csv").write_text("\n".join(entries) + "\n")
    return root


@pytest.mark.slow
def test_pretraining_over_ten_percent_bad_files_completes_and_counts_them(tmp_path, video_data):
    data = _dataset_with_bad_files(video_data, tmp_path / "data")
    record = run_job("pretrain", real_cfg("video_pretrain", tmp_path / "run", data, "TRAIN.BATCH_SIZE", "10",
                                          "LOG.PERIOD", "1"))
    assert record["epoch"] == 1 and record["decode_failures"] >= len(BAD_KINDS)
    logged = json.loads((tmp_path / "run" / "log.jsonl").read_text().splitlines()[-1])
    assert logged["decode_failures"] == record["decode_failures"]
    assert f"bad files {record['decode_failures']}" in (tmp_path / "run" / "log.txt").read_text()
