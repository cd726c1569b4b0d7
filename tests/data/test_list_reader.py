"""One list reader (``common.data.lists``) for the training lists and the tools' ``--list``: the csv
module's quoting as Python's csv writer and spreadsheets write it, a byte order mark, CRLF, space or
comma separation, paths with spaces, commas and non-ASCII letters, path-only lines where labels are
optional; every malformed line named by file, line number and what was expected."""
import csv
import io

import pytest

from common.data.lists import NO_LABEL, ListFileError, format_list_line, read_list
from common.engine.inference import read_input_list
from common.errors import UserError
from videoconvmae.data.annotations import read_path_label_list

ROWS = [("vids/clip, take 3.mp4", 1), ("vids/straße à la plage.mp4", 0), ("vids/plain.mp4", 2),
        ('vids/say "hi".mp4', 1), ("vids/two  spaces.webm", 3)]


def write_as_a_spreadsheet(path, rows, *, bom=True, lineterminator="\r\n"):
    """What Excel's "CSV UTF-8" and Python's csv writer produce: quoted fields where needed, CRLF, a BOM."""
    buffer = io.StringIO()
    csv.writer(buffer, lineterminator=lineterminator).writerows(rows)
    path.write_bytes((("\ufeff" if bom else "") + buffer.getvalue()).encode("utf-8"))


def test_a_list_written_by_the_csv_module_reads_back_exactly(tmp_path):
    listing = tmp_path / "train.csv"
    write_as_a_spreadsheet(listing, ROWS)
    videos = read_path_label_list(str(listing))
    assert [(v.path, v.label) for v in videos] == [(str(tmp_path / path), label) for path, label in ROWS]
    assert videos[1].source == f"{listing}, line 2"


def test_the_feature_tools_list_reads_the_same_paths_as_training(tmp_path):
    listing = tmp_path / "inputs.csv"
    write_as_a_spreadsheet(listing, ROWS)
    assert read_input_list(listing) == [str(tmp_path / path) for path, _ in ROWS]
    write_as_a_spreadsheet(listing, [(path,) for path, _ in ROWS], bom=False, lineterminator="\n")
    assert read_input_list(listing) == [str(tmp_path / path) for path, _ in ROWS]


@pytest.mark.parametrize("line, expected", [
    ("a/b.mp4 3", ("a/b.mp4", 3)),
    ("a/b.mp4,3", ("a/b.mp4", 3)),
    ("a/b.mp4, 3", ("a/b.mp4", 3)),
    ("  a/b.mp4\t0  ", ("a/b.mp4", 0)),
    ("my clip.mp4 12", ("my clip.mp4", 12)),
    ('"my clip.mp4" 12', ("my clip.mp4", 12)),
    ('"vids/clip, take 3.mp4",1', ("vids/clip, take 3.mp4", 1)),
    ('a.mp4,"3"', ("a.mp4", 3)),
    ("vids/été/Ωmega.mp4,4", ("vids/été/Ωmega.mp4", 4)),
    ("it's mine.mp4 2", ("it's mine.mp4", 2)),
])
def test_every_usual_form_of_a_labelled_line(tmp_path, line, expected):
    listing = tmp_path / "train.csv"
    listing.write_text(f"{line}\n", encoding="utf-8")
    [entry] = read_list(listing, require_labels=True, root="/data")
    assert (entry.path, entry.label) == (f"/data/{expected[0]}", expected[1])


@pytest.mark.parametrize("line, expected", [
    ("a/b.mp4", "a/b.mp4"),
    ("my clip.mp4", "my clip.mp4"),
    ("vids/clip, take 3.mp4", "vids/clip, take 3.mp4"),
    ('"vids/clip, take 3.mp4"', "vids/clip, take 3.mp4"),
])
def test_path_only_lines_where_labels_are_optional(tmp_path, line, expected):
    listing = tmp_path / "clips.txt"
    listing.write_text(f"{line}\nlabelled.mp4 5\n", encoding="utf-8")
    entries = read_list(listing, require_labels=False)
    assert [(e.path, e.label) for e in entries] == [(str(tmp_path / expected), NO_LABEL),
                                                    (str(tmp_path / "labelled.mp4"), 5)]


def test_separator_key_and_absolute_paths(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text("x y.mp4;7\n/abs/z.mp4;1\n", encoding="utf-8")
    entries = read_list(listing, require_labels=True, separator=";")
    assert [(e.path, e.label) for e in entries] == [(str(tmp_path / "x y.mp4"), 7), ("/abs/z.mp4", 1)]


@pytest.mark.parametrize("path, label", ROWS + [("plain.mp4", NO_LABEL), ("a b, c.mp4", NO_LABEL)])
def test_written_lines_read_back(tmp_path, path, label):
    listing = tmp_path / "train.csv"
    listing.write_text(format_list_line(path, label) + format_list_line("next.mp4", 0), encoding="utf-8")
    entries = read_list(listing, require_labels=label != NO_LABEL)
    assert [(e.path, e.label) for e in entries] == [(str(tmp_path / path), label), (str(tmp_path / "next.mp4"), 0)]


@pytest.mark.parametrize("line, reason", [
    ("only_a_path.mp4", "no label"),
    ("a.mp4 cat", "'cat' is not a class id"),
    ("a.mp4,-1", "'-1' is not a class id"),
    ("a.mp4 3.0", "'3.0' is not a class id"),
    ('"a.mp4",1,2', "3 fields"),
    (",3", "no path"),
    ('"a.mp4",cat', "'cat' is not a class id"),
])
def test_a_malformed_line_is_one_line_naming_file_line_and_what_was_expected(tmp_path, line, reason):
    listing = tmp_path / "val.csv"
    listing.write_text(f"good.mp4 0\r\n\r\n{line}\r\n", encoding="utf-8")
    with pytest.raises(ListFileError) as error:
        read_list(listing, require_labels=True)
    message = str(error.value)
    assert isinstance(error.value, UserError) and "\n" not in message
    assert message.startswith(f"{listing}, line 3: ") and reason in message and "expected" in message


def test_unreadable_lists_are_one_line(tmp_path):
    latin = tmp_path / "latin1.csv"
    latin.write_bytes("caf\xe9.mp4 1\n".encode("latin-1"))
    with pytest.raises(ListFileError, match=r"latin1\.csv: not UTF-8 text .*line 1"):
        read_list(latin, require_labels=True)
    with pytest.raises(UserError, match="no_such.csv"):
        read_list(tmp_path / "no_such.csv", require_labels=True)
    (tmp_path / "empty.csv").write_text("\n \n", encoding="utf-8")
    with pytest.raises(ListFileError, match=r"empty\.csv: lists no files"):
        read_list(tmp_path / "empty.csv", require_labels=False)


@pytest.mark.parametrize("header", ["path,label", "Path, Label", "video label", '"video_path","class_id"', "path"])
def test_a_header_line_of_column_names_is_skipped(tmp_path, header):
    listing = tmp_path / "train.csv"
    write_as_a_spreadsheet(listing, [next(csv.reader([header], skipinitialspace=True)), *ROWS[:2]])
    require_labels = header != "path"  # a one-column header heads a path-only list
    if not require_labels:
        write_as_a_spreadsheet(listing, [["path"], *[(path,) for path, _ in ROWS[:2]]])
    entries = read_list(listing, require_labels=require_labels)
    assert [e.path for e in entries] == [str(tmp_path / path) for path, _ in ROWS[:2]]
    assert entries[0].where == f"{listing}, line 2"


def test_only_a_first_line_can_be_a_header_and_a_file_named_like_one_is_read(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text("a.mp4 0\npath,label\n")
    with pytest.raises(ListFileError, match=r"line 2: 'label' is not a class id"):
        read_list(listing, require_labels=True)
    listing.write_text("path,label\n")
    with pytest.raises(ListFileError, match="lists no files"):
        read_list(listing, require_labels=True)
    listing.write_text("path.mp4 0\n")  # a field with an extension is a file, not a column name
    assert [e.path for e in read_list(listing, require_labels=True)] == [str(tmp_path / "path.mp4")]


def test_a_tab_inside_a_quoted_path_is_kept_and_a_tab_outside_separates(tmp_path):
    listing = tmp_path / "train.csv"
    listing.write_text('"a\tb c.mp4"\t3\n')
    [entry] = read_list(listing, require_labels=True)
    assert (entry.path, entry.label) == (str(tmp_path / "a\tb c.mp4"), 3)
