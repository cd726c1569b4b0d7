"""Mistakes in SSV2's json annotations (wrong types, missing keys, a template the labels file does not
have, broken json, a missing split file) are one line naming the file, never a traceback."""
import json

import pytest

from common.data import build_dataset
from common.errors import UserError
from videoconvmae.data.annotations import read_ssv2_json

LABELS = {"Pushing something": "0", "Moving something up": "1"}
ENTRY = {"id": "11", "template": "Moving [something] up"}


@pytest.mark.parametrize("labels, entries, names, says", [
    (["Pushing something"], [ENTRY], "labels", "expected a json object"),
    ({"Pushing something": "zero", "Moving something up": "1"}, [ENTRY], "labels", "'zero'"),
    ({"Pushing something": "0", "Moving something up": "5"}, [ENTRY], "labels", "class ids must be 0..1"),
    (LABELS, {"id": "11"}, "split", "expected a json list"),
    (LABELS, ["11"], "split", "entry 0: expected a json object"),
    (LABELS, [ENTRY, {"template": "Pushing [something]"}], "split", "entry 1: no 'id'"),
    (LABELS, [{"id": "11"}], "split", "entry 0: no 'template'"),
    (LABELS, [{"id": "11", "template": 3}], "split", "entry 0: 'template' is 3, expected a string"),
    (LABELS, [{"id": ["11"], "template": "Pushing [something]"}], "split", "entry 0: 'id' is ['11']"),
    (LABELS, [{"id": "11", "template": "Juggling [something]"}], "split",
     "entry 0: template 'Juggling something' is not in"),
])
def test_a_json_mistake_is_one_line_naming_the_file(tmp_path, labels, entries, names, says):
    files = {"labels": tmp_path / "labels.json", "split": tmp_path / "train.json"}
    files["labels"].write_text(json.dumps(labels))
    files["split"].write_text(json.dumps(entries))
    with pytest.raises(UserError) as error:
        read_ssv2_json(str(files["labels"]), str(files["split"]), video_dir="/v")
    message = str(error.value)
    assert "\n" not in message and str(files[names]) in message and says in message, message


def test_broken_json_and_missing_files_through_the_dataset_builder(tmp_path, make_cfg):
    cfg = make_cfg(DATASET="ssv2", PATH_TO_DATA_DIR=str(tmp_path))
    labels = tmp_path / "something-something-v2-labels.json"
    labels.write_text(json.dumps(LABELS))
    with pytest.raises(UserError, match="no SSV2 train split in .*looked for something-something-v2-train.json"):
        build_dataset(cfg, "finetune")
    (tmp_path / "something-something-v2-train.json").write_text('[{"id": "11", "template": ')
    with pytest.raises(UserError, match=r"something-something-v2-train\.json: not valid json"):
        build_dataset(cfg, "finetune")
    labels.write_text("{")
    with pytest.raises(UserError, match=r"something-something-v2-labels\.json: not valid json"):
        build_dataset(cfg, "finetune")
