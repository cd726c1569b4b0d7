import json

import pytest

from common.errors import UserError
from videoconvmae.data.annotations import (
    AnnotationError,
    LabeledVideo,
    read_folder_per_class,
    read_path_label_list,
    read_ssv2_json,
    strip_template,
)


def test_list_paths_join_prefix_or_list_folder(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text("a.mp4 1\n\nsub/b.mp4 0\n/abs/c.mp4 2\n")
    assert read_path_label_list(str(listing)) == [
        LabeledVideo(str(tmp_path / "a.mp4"), 1),
        LabeledVideo(str(tmp_path / "sub/b.mp4"), 0),
        LabeledVideo("/abs/c.mp4", 2),
    ]
    assert read_path_label_list(str(listing), prefix="/data")[0] == LabeledVideo("/data/a.mp4", 1)


def test_malformed_line_error_names_file_and_line(tmp_path):
    listing = tmp_path / "val.csv"
    listing.write_text("a.mp4 1\nb.mp4 2\nc.mp4 two\n")
    with pytest.raises(UserError, match=r"val\.csv, line 3: .*'two'"):
        read_path_label_list(str(listing))
    listing.write_text("\n")
    with pytest.raises(UserError, match="lists no files"):
        read_path_label_list(str(listing))


def test_folder_per_class_labels_follow_sorted_folder_names(tmp_path):
    for name in ["b_walk/1.mp4", "a_run/2.webm", "a_run/notes.txt", "c_jump/x/3.mkv"]:
        (tmp_path / name).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / name).write_bytes(b"not decoded here")
    videos = read_folder_per_class(str(tmp_path))
    assert [(v.path[len(str(tmp_path)) + 1 :], v.label) for v in videos] == [("a_run/2.webm", 0), ("b_walk/1.mp4", 1), ("c_jump/x/3.mkv", 2)]


def test_ssv2_json_labels_through_the_bracket_stripped_template(tmp_path):
    labels = tmp_path / "labels.json"
    labels.write_text(json.dumps({"Putting something on something": "1", "Pushing something": "0"}))
    split = tmp_path / "train.json"
    split.write_text(json.dumps([{"id": "42", "template": "Putting [something] on [something]"}, {"id": "7", "template": "Pushing [something]"}]))
    assert read_ssv2_json(str(labels), str(split), video_dir="/v") == [LabeledVideo("/v/42.webm", 1), LabeledVideo("/v/7.webm", 0)]
    split.write_text(json.dumps([{"id": "1", "template": "Juggling [something]"}]))
    with pytest.raises(AnnotationError, match=r"train\.json, entry 0"):
        read_ssv2_json(str(labels), str(split), video_dir="/v")


def test_strip_template():
    assert strip_template("Moving [part] of [something]") == "Moving part of something"


def test_utf8_byte_order_mark_is_not_part_of_the_first_path(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_bytes("\ufeffa.mp4 1\nb.mp4 0\n".encode("utf-8"))
    assert [v.path for v in read_path_label_list(str(listing))] == [str(tmp_path / "a.mp4"), str(tmp_path / "b.mp4")]
    labels, split = tmp_path / "labels.json", tmp_path / "validation.json"
    labels.write_bytes(("\ufeff" + json.dumps({"Moving something": "0"})).encode("utf-8"))
    split.write_bytes(("\ufeff" + json.dumps([{"id": "7", "template": "Moving [something]"}])).encode("utf-8"))
    assert read_ssv2_json(str(labels), str(split), video_dir="/v") == [LabeledVideo("/v/7.webm", 0)]


def test_label_beyond_the_classes_names_the_list_file_and_line(tmp_path):
    from common.config import load_config
    from common.data.class_count import check_labels
    listing = tmp_path / "train.csv"
    listing.write_text("a.mp4 1\n\nb.mp4 3\nc.mp4 4\n")
    videos = read_path_label_list(str(listing))
    cfg = load_config(None, ["MODEL.NUM_CLASSES", "3", "DATA.PATH_TO_DATA_DIR", str(tmp_path)])
    with pytest.raises(UserError) as error:
        check_labels(((v.label, v.source) for v in videos), cfg)
    assert str(error.value) == (f"{listing}, line 3: label 3 needs at least 4 classes, MODEL.NUM_CLASSES is 3 (from "
                                f"the config): set MODEL.NUM_CLASSES 5 if the data has 5 classes, or fix the label "
                                f"(2 labels beyond the count)")
    check_labels(((v.label, v.source) for v in videos), load_config(None, ["MODEL.NUM_CLASSES", "5"]))
    check_labels(((v.label, v.source) for v in videos), load_config(None, []))  # 0: not resolved, nothing to check
