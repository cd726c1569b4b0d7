"""common/data/class_names.py: PySlowFast classids.json write / read / id -> name."""
import json
import re

import pytest

from common.data.class_names import (
    ClassNamesError,
    class_ids_for,
    class_names_by_id,
    read_class_ids,
    read_class_names,
    write_class_ids,
)


def test_ids_follow_sorted_names_and_duplicates_count_once():
    assert class_ids_for(["zumba", "abseiling", "bowling", "abseiling"]) == {"abseiling": 0, "bowling": 1, "zumba": 2}


def test_write_then_read_round_trips_in_pyslowfast_format(tmp_path):
    path = tmp_path / "classids.json"
    write_class_ids(str(path), {"b": 1, "a": 0, "c d": 2})
    assert json.loads(path.read_text()) == {"a": 0, "b": 1, "c d": 2}
    assert list(json.loads(path.read_text())) == ["a", "b", "c d"]  # ordered by id
    assert read_class_ids(str(path)) == {"a": 0, "b": 1, "c d": 2}
    assert read_class_names(str(path)) == ["a", "b", "c d"]


def test_names_by_id_inverts_the_mapping():
    assert class_names_by_id({"x": 2, "y": 0, "z": 1}) == ["y", "z", "x"]


@pytest.mark.parametrize(
    "content, expected",
    [
        ({"a": 0, "b": 2}, "missing [1]"),
        ({"a": 0, "b": 0}, "repeated [0]"),
        ({"a": "first"}, "class 'a' has id 'first', expected an integer"),  # digit strings (SSV2's labels json) are read as ids
        (["a", "b"], "expected a json object"),
    ],
)
def test_bad_files_are_refused_naming_the_file(tmp_path, content, expected):
    path = tmp_path / "classids.json"
    path.write_text(json.dumps(content))
    with pytest.raises(ClassNamesError, match=re.escape(expected)) as error:
        read_class_ids(str(path))
    assert str(path) in str(error.value)


def test_invalid_json_names_the_file(tmp_path):
    path = tmp_path / "classids.json"
    path.write_text("{not json")
    with pytest.raises(ClassNamesError, match="not valid json"):
        read_class_ids(str(path))


def test_writing_bad_ids_is_refused_and_writes_nothing(tmp_path):
    path = tmp_path / "classids.json"
    with pytest.raises(ClassNamesError, match=re.escape(str(path))):
        write_class_ids(str(path), {"a": 1})
    assert not path.exists()


def test_ssv2_labels_json_with_string_ids_reads_as_class_names(tmp_path):
    path = tmp_path / "something-something-v2-labels.json"
    path.write_text('{"Pushing something": "1", "Holding something": "0"}')
    assert read_class_names(str(path)) == ["Holding something", "Pushing something"]
