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
        prepared = _prepare(src, dst)
        assert len(prepared.outcomes) == 3
    assert not (dst / "classids.json").exists()
    splits = _splits(dst)
    assert {split: len(rows) for split, rows in splits.items()} == {"train": 3}
    assert {label for rows in splits.values() for _, label in rows} == {NO_LABEL}
    dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(dst), NUM_FRAMES=4), "pretrain")
    assert len(dataset) == 3 and dataset[0][0]["label"] == NO_LABEL and dataset[0][0]["decode_failures"] == 0


def test_shares_of_unlabeled_videos_are_refused(class_folders, tmp_path):
    """Held-out val/test lists serve finetuning and testing, which need labels; pretraining reads train
    only: shares of unlabeled videos would take them out of every job."""
    src = tmp_path / "flat"
    for k in range(3):
        write_clip(src / f"v{k}.mp4", frames=8, seed=k)
    for source, options in ((src, {"val_share": 0.34}), (src, {"test_share": 0.34}),
                            (class_folders, {"val_share": 0.2, "unlabeled": True})):
        with pytest.raises(UserError, match=r"train videos of .* have no labels.*leave the shares out") as error:
            _prepare(source, tmp_path / "dst", **options)
        assert "\n" not in str(error.value)
    assert not (tmp_path / "dst").exists()


def test_another_split_rewrites_the_lists_and_converts_nothing_again(class_folders, tmp_path):
    """Output names do not depend on the split: a new share, seed or --unlabeled keeps every output
    and only rewrites the lists; a list of the old split that the new one lacks is removed."""
    dst = tmp_path / "prepared"
    _prepare(class_folders, dst, val_share=0.25, test_share=0.25)
    videos = {path: path.stat().st_mtime_ns for path in dst.rglob("*.mp4")}
    assert len(videos) == 7
    again = _prepare(class_folders, dst, val_share=0.25, split_seed=3)
    assert [o.status for o in again.outcomes] == ["exists"] * 7
    assert {path: path.stat().st_mtime_ns for path in dst.rglob("*.mp4")} == videos
    fresh = tmp_path / "fresh"  # the lists are those of a first run with the new split settings
    _prepare(class_folders, fresh, val_share=0.25, split_seed=3)
    assert _splits(dst) == _splits(fresh)
    assert sorted(_splits(dst)) == ["train", "val"]  # the old test.csv is gone
    manifest = json.loads((dst / "manifest.json").read_text())
    assert manifest["about"]["splits"] == {"val_share": 0.25, "test_share": 0.0, "split_seed": 3, "unlabeled": False}
    assert "val_share" not in manifest["settings"] and manifest["settings"]["short_side"] == 32
    unlabeled = _prepare(class_folders, dst, unlabeled=True)
    assert [o.status for o in unlabeled.outcomes] == ["exists"] * 7
    assert {label for _, label in _splits(dst)["train"]} == {NO_LABEL} and sorted(_splits(dst)) == ["train"]
    assert not (dst / "classids.json").exists()  # it named classes the lists no longer have


def test_split_folders_are_numbered_by_classids_json_or_refused(tmp_path):
    """Every split's class folders get the ids of SRC/classids.json, else of train/'s folders; without
    either, each split would number its own folders (b = 0 in val, a = 0 in test)."""
    src, dst = tmp_path / "src", tmp_path / "dst"
    write_clip(src / "val" / "b" / "x.mp4", frames=4)
    write_clip(src / "test" / "a" / "y.mp4", frames=4, seed=1)
    with pytest.raises(UserError, match=r"class folders but no .*train/ and no .*classids\.json") as error:
        _prepare(src, dst)
    assert "\n" not in str(error.value) and not dst.exists()
    (src / "classids.json").write_text(json.dumps({"b": 0, "a": 1}))
    _prepare(src, dst)
    assert _splits(dst) == {"val": [("val/b/x.mp4", 0)], "test": [("test/a/y.mp4", 1)]}
    assert json.loads((dst / "classids.json").read_text()) == {"b": 0, "a": 1}
    write_clip(src / "train" / "a" / "z.mp4", frames=4, seed=2)  # classids.json still wins over train/'s order
    write_clip(src / "train" / "b" / "w.mp4", frames=4, seed=3)
    _prepare(src, tmp_path / "with_train")
    assert _splits(tmp_path / "with_train")["train"] == [("train/a/z.mp4", 1), ("train/b/w.mp4", 0)]
    (src / "classids.json").unlink()  # train/'s folders number every split
    _prepare(src, tmp_path / "by_train")
    assert _splits(tmp_path / "by_train")["val"] == [("val/b/x.mp4", 1)]


def test_a_plain_folder_s_classes_follow_its_classids_json(tmp_path):
    src = tmp_path / "src"
    write_clip(src / "cats" / "c.mp4", frames=4)
    write_clip(src / "dogs" / "d.mp4", frames=4, seed=1)
    (src / "classids.json").write_text(json.dumps({"dogs": 0, "cats": 1, "birds": 2}))
    _prepare(src, tmp_path / "dst")
    assert _splits(tmp_path / "dst") == {"train": [("cats/c.mp4", 1), ("dogs/d.mp4", 0)]}
    assert json.loads((tmp_path / "dst" / "classids.json").read_text()) == {"dogs": 0, "cats": 1, "birds": 2}
    (src / "classids.json").write_text(json.dumps({"dogs": 0}))
    with pytest.raises(UserError, match=r"class folder 'cats' is not named in .*classids\.json"):
        _prepare(src, tmp_path / "other")


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
