"""Where tools/prepare_videos.py finds its sources: a plain folder of videos without split lists (class
folders give labels, a flat folder gives unlabeled lists for pretraining), and the seeded val / test
splits it can hold out so that finetuning has them."""
import json
from pathlib import Path
from typing import Dict, List

import pytest

from common.data import build_dataset
from common.data.lists import NO_LABEL, read_list
from common.errors import UserError
from tests.data.media import write_clip
from videoconvmae.data.prepare import prepare_videos

CLASSES = {"chats é": 3, "dogs": 4}


@pytest.fixture(scope="module")
def class_folders(tmp_path_factory) -> Path:
    """``my vids/<class>/*.mp4``, no split lists or split folders, plus a note and a hidden file."""
    root = tmp_path_factory.mktemp("sources") / "my vids"
    number = 0
    for name, count in CLASSES.items():
        for k in range(count):
            write_clip(root / name / f"clip {k}.mp4", frames=8, seed=number)
            number += 1
    (root / "README.txt").write_text("my holiday clips")
    (root / "dogs" / "._clip 0.mp4").write_bytes(b"AppleDouble")
    return root


def _prepare(src: Path, dst: Path, **kwargs):
    return prepare_videos(str(src), str(dst), short_side=32, workers=1, progress=False, **kwargs)


def _splits(dst: Path) -> Dict[str, List]:
    """{split: [(path relative to dst, label)]} of the lists prepare wrote."""
    return {split: [(str(Path(e.path).relative_to(dst)), e.label) for e in read_list(dst / f"{split}.csv",
                                                                                    require_labels=False)]
            for split in ("train", "val", "test") if (dst / f"{split}.csv").exists()}


def test_class_folders_without_splits_give_labels_and_seeded_stratified_splits(class_folders, tmp_path):
    dst = tmp_path / "prepared"
    prepared = _prepare(class_folders, dst, val_share=0.25, test_share=0.25, split_seed=0)
    assert prepared.count("converted") == 7 and prepared.count("failed") == 0
    assert json.loads((dst / "classids.json").read_text(encoding="utf-8")) == {"chats é": 0, "dogs": 1}
    splits = _splits(dst)
    per_class = {split: sorted(label for _, label in rows) for split, rows in splits.items()}
    # round(share x count) per class, at least one when the share is set, and one left to train
    assert per_class == {"train": [0, 1, 1], "val": [0, 1], "test": [0, 1]}
    every = [path for rows in splits.values() for path, _ in rows]
    assert len(every) == len(set(every)) == 7  # each video in exactly one split
    for split, rows in splits.items():
        for path, label in rows:
            assert (dst / path).is_file() and label == (0 if "chats" in path else 1)

    again = tmp_path / "again"
    _prepare(class_folders, again, val_share=0.25, test_share=0.25, split_seed=0)
    assert _splits(again) == splits  # the same seed gives the same split
    others = []
    for seed in range(1, 6):
        other = tmp_path / f"seed{seed}"
        _prepare(class_folders, other, val_share=0.25, test_share=0.25, split_seed=seed)
        others.append(_splits(other))
    assert any(o != splits for o in others)


def test_a_prepared_folder_without_val_says_how_to_make_one(class_folders, tmp_path, make_cfg):
    dst = tmp_path / "prepared"
    _prepare(class_folders, dst)
    assert sorted(_splits(dst)) == ["train"] and len(_splits(dst)["train"]) == 7
    with pytest.raises(UserError) as error:
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(dst), NUM_CLASSES=2), "val")
    message = str(error.value)
    assert f"no val split in DATA.PATH_TO_DATA_DIR {dst}" in message and "\n" not in message
    assert "python tools/prepare_videos.py SOURCE DST --val-share 0.1" in message


def test_a_flat_folder_gives_an_unlabeled_list_for_pretraining(tmp_path, make_cfg):
    src = tmp_path / "flat"
    for k in range(3):
        write_clip(src / f"v{k}.webm", frames=8, seed=k)
    dst = src / "prepared"  # inside the source: never read back as a source
    for _ in range(2):
        prepared = _prepare(src, dst, val_share=0.34)
        assert len(prepared.outcomes) == 3
    assert not (dst / "classids.json").exists()
    splits = _splits(dst)
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 2, "val": 1}
    assert {label for rows in splits.values() for _, label in rows} == {NO_LABEL}
    dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(dst), NUM_FRAMES=4), "pretrain")
    assert len(dataset) == 2 and dataset[0][0]["label"] == NO_LABEL and dataset[0][0]["decode_failures"] == 0


def test_class_folders_taken_as_unlabeled_on_request(class_folders, tmp_path):
    dst = tmp_path / "prepared"
    _prepare(class_folders, dst, unlabeled=True)
    assert {label for _, label in _splits(dst)["train"]} == {NO_LABEL} and not (dst / "classids.json").exists()


def test_shares_are_refused_where_the_source_has_the_split(tmp_path):
    src = tmp_path / "src"
    write_clip(src / "a.mp4", frames=8)
    (src / "train.csv").write_text("a.mp4 0\n")
    (src / "val.csv").write_text("a.mp4 0\n")
    with pytest.raises(UserError, match=r"already has a val split; leave out --val-share"):
        _prepare(src, tmp_path / "dst", val_share=0.2)
    for shares in ({"val_share": 1.0}, {"val_share": 0.6, "test_share": 0.5}, {"test_share": -0.1}):
        with pytest.raises(UserError, match="share"):
            _prepare(src, tmp_path / "dst", **shares)
    assert not (tmp_path / "dst").exists()
