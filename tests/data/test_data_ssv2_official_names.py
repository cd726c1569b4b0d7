"""SSV2 annotations as they ship (something-something-v2-{labels,train,validation}.json) and
under the short split names."""
import json
import os
import re

import pytest

from common.config import load_config
from videoconvmae.data.annotations import LabeledVideo
from videoconvmae.data.build import ssv2_videos


def _write_ssv2(root, train_name, validation_name):
    (root / "something-something-v2-labels.json").write_text(json.dumps({"Pushing something": "0", "Moving something up": "1"}))
    (root / train_name).write_text(json.dumps([{"id": "11", "template": "Moving [something] up"}]))
    (root / validation_name).write_text(json.dumps([{"id": "22", "template": "Pushing [something]"}]))


@pytest.mark.parametrize("names", [
    ("something-something-v2-train.json", "something-something-v2-validation.json"),
    ("train.json", "validation.json"),
])
def test_both_spellings_of_the_split_files_are_read(tmp_path, names):
    _write_ssv2(tmp_path, *names)
    root = str(tmp_path)
    cfg = load_config(None, ["DATA.DATASET", "ssv2", "DATA.PATH_TO_DATA_DIR", root])
    assert ssv2_videos(cfg, "finetune")[0] == [LabeledVideo(os.path.join(root, "11.webm"), 1)]
    cfg = load_config(None, ["DATA.DATASET", "ssv2", "DATA.PATH_TO_DATA_DIR", root, "DATA.PATH_PREFIX", "/videos"])
    for mode in ("val", "test"):
        assert ssv2_videos(cfg, mode)[0] == [LabeledVideo("/videos/22.webm", 0)]


def test_a_missing_split_names_every_file_name_looked_for(tmp_path):
    (tmp_path / "something-something-v2-labels.json").write_text("{}")
    message = f"no SSV2 train split in {tmp_path}: looked for something-something-v2-train.json, train.json"
    with pytest.raises(FileNotFoundError, match=re.escape(message)):
        ssv2_videos(load_config(None, ["DATA.PATH_TO_DATA_DIR", str(tmp_path)]), "finetune")


def test_the_copies_prepare_videos_writes_are_found_beside_or_instead_of_the_webm_files(tmp_path):
    from videoconvmae.data.prepare import output_name

    _write_ssv2(tmp_path, "train.json", "validation.json")
    videos = tmp_path / "videos"
    videos.mkdir()
    copy_of_11 = output_name(str(videos / "11.webm"), str(videos), "train")  # the name prepare_videos gives
    assert copy_of_11 == "11.webm.mp4"
    (videos / copy_of_11).write_bytes(b"x")
    (videos / "22.webm").write_bytes(b"x")  # where the shipped file is there, it is read
    (videos / "22.webm.mp4").write_bytes(b"x")
    cfg = load_config(None, ["DATA.DATASET", "ssv2", "DATA.PATH_TO_DATA_DIR", str(tmp_path),
                             "DATA.PATH_PREFIX", str(videos)])
    assert ssv2_videos(cfg, "finetune")[0] == [LabeledVideo(str(videos / "11.webm.mp4"), 1)]
    assert ssv2_videos(cfg, "val")[0] == [LabeledVideo(str(videos / "22.webm"), 0)]
