import json
import logging
import os
import threading

import pytest
import torch
from torch.utils.data import DataLoader

from common.data import batch_inputs, build_dataset
from common.errors import UserError
from videoconvmae.data import MultiViewVideoDataset, VideoClipDataset
from videoconvmae.data.annotations import LabeledVideo
from videoconvmae.data.decoders import build_decoder
from videoconvmae.data.frame_sampling import build_clip_chooser
from videoconvmae.data.transforms import MultiViewTransform, PretrainVideoTransform

MEAN, STD = [0.45] * 3, [0.225] * 3


def _kinetics_cfg(make_cfg, video_data, **overrides):
    cfg = make_cfg(PATH_TO_DATA_DIR=str(video_data["kinetics"]), **overrides)
    cfg.TEST.NUM_ENSEMBLE_VIEWS, cfg.TEST.NUM_SPATIAL_CROPS = 2, 3
    return cfg


@pytest.mark.parametrize("backend", ["decord", "pyav"])
def test_pretrain_loader_batches_with_repeated_sampling(make_cfg, video_data, backend):
    cfg = _kinetics_cfg(make_cfg, video_data, REPEATED_SAMPLING=2, DECODING_BACKEND=backend)
    dataset = build_dataset(cfg, "pretrain")
    assert isinstance(dataset, VideoClipDataset) and len(dataset) == 8
    loader = DataLoader(dataset, batch_size=3, collate_fn=dataset.collate_fn, num_workers=1, shuffle=True)
    batches = list(loader)
    video = batch_inputs(batches[0])
    assert video.shape == (6, 3, 8, 32, 32) and video.dtype == torch.float32
    assert -2.2 < video.min() and video.max() < 2.7  # ImageNet-normalised [0, 1] pixels
    assert batches[0]["aug_index"].tolist() == [0, 1] * 3
    assert torch.equal(batches[0]["index"][::2], batches[0]["index"][1::2])
    assert sorted(torch.cat([b["index"][::2] for b in batches]).tolist()) == list(range(8))
    assert sum(int(b["decode_failures"].sum()) for b in batches) == 0


def test_finetune_val_and_test_modes(make_cfg, video_data):
    cfg = _kinetics_cfg(make_cfg, video_data)
    finetune = build_dataset(cfg, "finetune")[0]
    assert len(finetune) == 1 and finetune[0]["video"].shape == (3, 8, 32, 32)
    val = build_dataset(cfg, "val")
    first, again = val[0][0], val[0][0]
    assert torch.equal(first["video"], again["video"])  # one deterministic centre view
    assert first["label"] == 0 and first["path"].endswith(".mp4")
    test = build_dataset(cfg, "test")
    assert isinstance(test, MultiViewVideoDataset) and len(test) == 4
    batch = test.collate_fn([test[0], test[3]])
    assert batch["video"].shape == (2, 6, 3, 8, 32, 32) and batch["error"] == ["", ""]
    assert batch["temporal_index"][0].tolist() == [0, 0, 0, 1, 1, 1]
    assert batch["spatial_index"][0].tolist() == [0, 1, 2, 0, 1, 2]
    assert batch["label"].tolist() == [0, 3]


def test_multi_view_views_come_from_clips_spread_over_the_whole_video(make_cfg, video_data):
    cfg = _kinetics_cfg(make_cfg, video_data)
    test = build_dataset(cfg, "test")
    item = test[1]
    assert item["video"].dtype == torch.uint8  # normalised by the consumer
    decoded = build_decoder("pyav").decode(item["path"], lambda n: [torch.arange(n)])
    expected = MultiViewTransform(crop_size=32, num_crops=3, mean=cfg.DATA.MEAN, std=cfg.DATA.STD)(
        decoded.frames, [torch.arange(0, 16, 2), torch.arange(40 - 16, 40, 2)]  # first and last clip
    )
    assert torch.allclose(batch_inputs(test.collate_fn([item]))[0], expected, atol=1e-5)


def test_ssv2_json_dataset_segment_sampling_never_flips(make_cfg, video_data):
    cfg = make_cfg(DATASET="ssv2", PATH_TO_DATA_DIR=str(video_data["ssv2"]), SAMPLING_MODE="segment")
    train = build_dataset(cfg, "pretrain")
    assert len(train) == 8 and train.transform.flip is False
    assert sorted(v.label for v in train.videos) == [0, 0, 1, 1, 2, 2, 3, 3]
    assert train[5][0]["video"].shape == (3, 8, 32, 32) and train[5][0]["path"].endswith(".webm")
    assert len(build_dataset(cfg, "test")) == len(build_dataset(cfg, "val")) == 4


def test_folder_per_class_layout_when_there_is_no_list(make_cfg, video_data, tmp_path):
    """Without train/, a split's class folders are numbered by classids.json (or DATA.CLASS_NAMES_FILE),
    never by their own names: another split's folders would number them otherwise."""
    os.symlink(video_data["kinetics"] / "val", tmp_path / "val")
    with pytest.raises(UserError, match=r"val: class folders but no .*train/ and no .*classids\.json") as error:
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "val")
    assert "\n" not in str(error.value)
    names = sorted(os.listdir(tmp_path / "val"))
    (tmp_path / "classids.json").write_text(json.dumps({name: 3 - i for i, name in enumerate(names)}))
    dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "val")
    assert [v.label for v in dataset.videos] == [3, 2, 1, 0]
    other = tmp_path / "names.json"  # DATA.CLASS_NAMES_FILE wins over the folder's classids.json
    other.write_text(json.dumps({name: (i + 1) % 4 for i, name in enumerate(names)}))
    dataset = build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path), CLASS_NAMES_FILE=str(other)), "val")
    assert [v.label for v in dataset.videos] == [1, 2, 3, 0]
    with pytest.raises(FileNotFoundError, match="train"):
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "pretrain")


def test_train_folders_number_the_other_splits_unless_classids_json_does(make_cfg, video_data, tmp_path):
    for split in ("train", "val"):
        os.symlink(video_data["kinetics"] / split, tmp_path / split)
    assert [v.label for v in build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "val").videos] == [0, 1, 2, 3]
    names = sorted(os.listdir(tmp_path / "train"))
    (tmp_path / "classids.json").write_text(json.dumps({name: 3 - i for i, name in enumerate(names)}))
    for mode, labels in (("val", [3, 2, 1, 0]), ("finetune", [3, 3, 2, 2, 1, 1, 0, 0])):
        assert [v.label for v in build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), mode).videos] == labels


def test_malformed_list_and_bad_labels_fail_at_start_up(make_cfg, tmp_path):
    (tmp_path / "train.csv").write_text("a.mp4 0\nb.mp4\n")
    with pytest.raises(UserError, match=r"train\.csv, line 2: no label"):
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "finetune")
    assert len(build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "pretrain")) == 2  # labels not needed
    (tmp_path / "train.csv").write_text("a.mp4 0\nb.mp4 4\n")
    with pytest.raises(UserError, match=r"train\.csv, line 2: label 4 needs at least 5 classes, MODEL.NUM_CLASSES is 4"):
        build_dataset(make_cfg(PATH_TO_DATA_DIR=str(tmp_path)), "finetune")


def _clip_dataset(videos, **kwargs):
    return VideoClipDataset(
        videos=videos,
        decoder=build_decoder("decord", timeout_s=kwargs.pop("timeout_s", 10.0)),
        choose_clip=build_clip_chooser(mode="stride", training=True, num_frames=4, stride=2, num_clips=1),
        transform=PretrainVideoTransform(crop_size=16, mean=MEAN, std=STD),
        **kwargs,
    )


def test_every_bad_file_kind_is_replaced_logged_once_and_counted(bad_videos, caplog, monkeypatch):
    monkeypatch.setattr("random.randrange", lambda n: 0)  # substitute: the good video
    kinds = ["unreadable", "empty", "truncated", "audio_only", "missing"]
    videos = [LabeledVideo(str(bad_videos["good"]), 1)] + [LabeledVideo(str(bad_videos[k]), 0) for k in kinds]
    dataset = _clip_dataset(videos)
    with caplog.at_level(logging.WARNING, logger="common.data.failures"):
        for _ in range(2):  # second epoch: files known bad are skipped, counted, not re-logged
            batch = dataset.collate_fn(dataset.__getitems__(list(range(len(videos)))))
            assert batch["index"].tolist() == [0] * 6 and batch["label"].tolist() == [1] * 6
            assert batch["decode_failures"].tolist() == [0, 1, 1, 1, 1, 1]
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 5
    for kind, reason in zip(kinds, ["pyav: ", "pyav: ", "no video frames", "no video stream", "file not found"]):
        (message,) = [m for m in messages if str(bad_videos[kind]) in m]
        assert reason in message


def test_a_hanging_file_is_replaced_after_the_timeout(bad_videos, tmp_path, caplog):
    fifo = tmp_path / "hangs.mp4"
    os.mkfifo(fifo)
    dataset = _clip_dataset([LabeledVideo(str(fifo), 0), LabeledVideo(str(bad_videos["good"]), 1)], timeout_s=0.3, max_retries=50)
    try:
        with caplog.at_level(logging.WARNING):
            (sample,) = dataset[0]
        assert sample["index"] == 1 and sample["decode_failures"] >= 1
        assert "timed out" in caplog.text and str(fifo) in caplog.text
    finally:
        threading.Thread(target=lambda: open(fifo, "wb").close(), daemon=True).start()


def test_training_gives_up_when_nothing_decodes(bad_videos):
    dataset = _clip_dataset([LabeledVideo(str(bad_videos["empty"]), 0)], max_retries=2)
    with pytest.raises(RuntimeError, match="3 files in a row"):
        dataset[0]


def test_multi_view_reports_bad_videos_instead_of_dropping_them(bad_videos):
    dataset = MultiViewVideoDataset(
        videos=[LabeledVideo(str(bad_videos["audio_only"]), 2), LabeledVideo(str(bad_videos["good"]), 1)],
        decoder=build_decoder("decord"),
        choose_clips=build_clip_chooser(mode="stride", training=False, num_frames=4, stride=2, num_clips=2),
        transform=MultiViewTransform(crop_size=16, num_crops=3, mean=MEAN, std=STD),
        num_clips=2,
        num_frames=4,
    )
    batch = dataset.collate_fn(dataset.__getitems__([0, 1]))
    assert batch["video"].shape == (2, 6, 3, 4, 16, 16) and batch["label"].tolist() == [2, 1]
    assert batch["error"][0].startswith(str(bad_videos["audio_only"])) and "no video stream" in batch["error"][0]
    assert batch["error"][1] == "" and not batch["video"][0].any() and batch["video"][1].any()
