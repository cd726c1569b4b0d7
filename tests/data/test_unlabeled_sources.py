"""Pretraining without labels (issue 24, point 1): a plain folder of videos (searched recursively, every
extension the decoders read), a list of paths without labels, or a list file as the data path; the
same for a folder of images. The dataset says how many files it found and which it skipped and why."""
import logging
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from common.config import load_config
from common.data import build_dataset
from common.engine.jobs import run_job
from common.errors import UserError
from tests.data.media import CONTAINERS, write_clip
from tests.engine.toy_data import DEMO, TINY_MODEL
from videoconvmae.data.annotations import VIDEO_EXTENSIONS

NO_LABEL = -1  # the label of a file listed or found without one


@pytest.fixture(scope="module")
def plain_folder(tmp_path_factory) -> Path:
    """Videos in nested folders with the things real folders hold besides: notes, a macOS
    AppleDouble file, a hidden folder, an empty file."""
    root = tmp_path_factory.mktemp("my videos é")
    for number, name in enumerate(["beach.mp4", "trip/day 1.webm", "trip/deep/night.MKV"]):
        write_clip(root / name, seed=number)
    (root / "notes.txt").write_text("not a video")
    (root / "trip" / "._day 1.webm").write_bytes(b"\0\5\26\7 AppleDouble")
    write_clip(root / ".cache" / "thumb.mp4")
    (root / "broken.mp4").write_bytes(b"")
    return root


VIDEOS = ["beach.mp4", "trip/day 1.webm", "trip/deep/night.MKV"]


def test_pretraining_reads_a_plain_folder_of_videos_recursively(make_cfg, plain_folder):
    dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(plain_folder)), "pretrain")
    assert sorted(v.path for v in dataset.videos) == [str(plain_folder / name) for name in sorted(VIDEOS)]
    assert all(v.label == NO_LABEL for v in dataset.videos)
    assert dataset[0][0]["video"].shape == (3, 8, 32, 32) and dataset[0][0]["decode_failures"] == 0
    summary = dataset.source_summary
    assert summary.startswith(f"3 videos found under {plain_folder} (searched recursively for .mp4, ")
    for skipped in ("notes.txt (not a video file: .txt)", "._day 1.webm (hidden)", ".cache (hidden folder)",
                    "broken.mp4 (empty file)"):
        assert skipped in summary, summary
    assert "skipped 4:" in summary


def test_every_extension_the_decoders_read_is_found_and_decodes(make_cfg, tmp_path):
    assert set(CONTAINERS) == set(VIDEO_EXTENSIONS)
    for number, extension in enumerate(sorted(CONTAINERS)):
        write_clip(tmp_path / f"clip{number}{extension}", seed=number)
    dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "pretrain")
    assert len(dataset) == len(CONTAINERS)
    assert [dataset[i][0]["decode_failures"] for i in range(len(dataset))] == [0] * len(CONTAINERS)


def test_pretraining_reads_a_list_of_paths_without_labels(make_cfg, plain_folder, tmp_path):
    (tmp_path / "train.csv").write_text("".join(f'"{plain_folder / name}"\n' for name in VIDEOS) + "\n",
                                        encoding="utf-8")
    dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "pretrain")
    assert [(v.path, v.label) for v in dataset.videos] == [(str(plain_folder / n), NO_LABEL) for n in VIDEOS]
    assert dataset.source_summary == f"3 videos listed in {tmp_path / 'train.csv'} (3 without labels)"
    with pytest.raises(UserError, match=r"train\.csv, line 1: no label .*pretraining reads path-only lines"):
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "finetune")


def test_a_list_file_is_a_data_path_for_pretraining(make_cfg, plain_folder):
    listing = plain_folder / "my clips.txt"
    listing.write_text("beach.mp4\ntrip/day 1.webm 3\n", encoding="utf-8")
    try:
        dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(listing)), "pretrain")
        assert [(v.path, v.label) for v in dataset.videos] == [(str(plain_folder / "beach.mp4"), NO_LABEL),
                                                                (str(plain_folder / "trip/day 1.webm"), 3)]
    finally:
        listing.unlink()


def test_a_split_dataset_without_train_is_not_taken_for_a_plain_folder(make_cfg, plain_folder, tmp_path):
    (tmp_path / "val.csv").write_text(f"{plain_folder / 'beach.mp4'} 0\n")
    with pytest.raises(UserError, match="no train split"):
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "pretrain")  # never the val videos
    with pytest.raises(UserError, match="no videos"):
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path / "nothing_here")), "pretrain")


def test_finetuning_a_plain_folder_says_how_to_make_splits(make_cfg, plain_folder):
    with pytest.raises(UserError, match=r"no train split in .*tools/prepare_videos\.py"):
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(plain_folder)), "finetune")


def _write_images(root: Path, names):
    for number, name in enumerate(names):
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(np.full((20, 24, 3), 40 * number, dtype=np.uint8)).save(root / name)


def test_image_pretraining_reads_a_plain_folder_of_images(make_cfg, tmp_path):
    _write_images(tmp_path, ["a.jpg", "holiday/b.PNG", "holiday/2020/c.jpeg"])
    (tmp_path / "holiday" / "captions.json").write_text("{}")
    dataset = build_dataset(make_cfg(DATASET="imagenet", PATH_TO_DATA_DIR=str(tmp_path)), "pretrain")
    assert len(dataset) == 3 and {s["label"] for i in range(3) for s in dataset[i]} == {NO_LABEL}
    assert dataset[2][0]["image"].shape == (3, 32, 32)
    assert dataset.source_summary.startswith(f"3 images found under {tmp_path} (searched recursively for ")
    assert "holiday/captions.json (not an image file: .json)" in dataset.source_summary
    with pytest.raises(UserError, match="no train split"):
        build_dataset(make_cfg(DATASET="imagenet", PATH_TO_DATA_DIR=str(tmp_path)), "finetune")


def test_a_pretraining_run_on_a_plain_folder_logs_what_it_found(plain_folder, tmp_path, caplog):
    cfg = load_config(str(DEMO / "video_pretrain.yaml"), [
        "DATA.PATH_TO_DATA_DIR", str(plain_folder), "OUTPUT_DIR", str(tmp_path / "run"), "SOLVER.MAX_EPOCH", "1",
        *TINY_MODEL, "DATA.NUM_FRAMES", "4", "DATA.TRAIN_CROP_SIZE", "32", "TRAIN.BATCH_SIZE", "2",
        "DATA_LOADER.NUM_WORKERS", "0", "LOG.TENSORBOARD", "False"])
    with caplog.at_level(logging.INFO):
        record = run_job("pretrain", cfg)
    assert record["epoch"] == 1 and np.isfinite(record["train_loss"])
    log = (tmp_path / "run" / "log.txt").read_text()
    assert f"pretrain data: 3 videos found under {plain_folder}" in log and "skipped 4:" in log
