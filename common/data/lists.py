"""List files: the one reader (and writer) of "path label" / "path" lists, for training lists of any
modality and the tools' ``--list`` inputs.

A line is a path and, where the list has one, a label (a non-negative integer class id), separated by
a comma or by whitespace: the separator is ``separator`` when given, else a comma if the line has one
outside double quotes, else whitespace. Fields may be quoted as the csv module writes them
(``"vids/clip, take 3.mp4",1``, a quote doubled inside a quoted field), which is what Python's csv
writer and spreadsheets produce; an unquoted path may contain the separator, since the label is the
last field. A byte order mark, CRLF or CR line ends and blank lines are accepted. Relative paths are
joined to ``root`` (the list's folder when empty). Path-only lines are read where labels are optional
(pretraining, ``--list``); their label is ``NO_LABEL``. A first line of column names only (``path,label``,
``video label``: the header a spreadsheet export keeps) is skipped, not read as a file.
"""
from __future__ import annotations

import codecs
import csv
import logging
import os
import re
from dataclasses import dataclass, field
from typing import List, Tuple, Union

from common.errors import DataNotFoundError, UserError

logger = logging.getLogger(__name__)

NO_LABEL = -1  # the label of a path listed (or found) without one
EXPECTED = "expected 'path label' or 'path,label' (label: a class id 0, 1, ...; quote a path with the separator in it)"
_QUOTED = re.compile(r'"(?:[^"]|"")*"?')
_CLASS_ID = re.compile(r"\d+", re.ASCII)
_NEEDS_QUOTES = re.compile(r'[\s,"]')
HEADER_NAMES = frozenset({"path", "paths", "file", "filename", "file_name", "filepath", "file_path", "video",
                          "videos", "video_path", "video_id", "image", "image_path", "label", "labels", "class",
                          "class_id", "classid", "label_id", "target"})

PathLike = Union[str, os.PathLike]


class ListFileError(UserError, ValueError):
    """A list file that cannot be used; the message names the file (and the line) and what was expected."""


@dataclass(frozen=True)
class ListEntry:
    """One listed file: its ``path`` (joined to the root), ``label`` (``NO_LABEL`` when the line has
    none) and ``where`` it is listed ("FILE, line N")."""

    path: str
    label: int = NO_LABEL
    where: str = field(default="", compare=False)


def _fields(text: str, separator: str) -> Tuple[List[str], bool]:
    """The fields of a stripped line, and whether they were read with the csv module's quoting.

    Unquoted lines split at the last separator only, so a path may contain the separator."""
    delimiter = separator or ("," if "," in _QUOTED.sub("", text) else " ")
    if '"' not in text:
        parts = text.rsplit(delimiter, 1) if delimiter != " " else text.rsplit(None, 1)
        return [p.strip() for p in parts], False
    line = _tabs_to_spaces_outside_quotes(text) if delimiter == " " else text
    fields = [p.strip() for p in next(csv.reader([line], delimiter=delimiter, skipinitialspace=True, strict=False))]
    while len(fields) > 1 and not fields[-1]:  # a separator at the end of the line
        fields.pop()
    return fields, True


def _tabs_to_spaces_outside_quotes(text: str) -> str:
    """``text`` with its tabs outside double quotes made spaces (the csv module splits at one
    character); a tab inside a quoted path is part of the path."""
    pieces, end = [], 0
    for quoted in _QUOTED.finditer(text):
        pieces += [text[end:quoted.start()].replace("\t", " "), quoted.group()]
        end = quoted.end()
    return "".join(pieces) + text[end:].replace("\t", " ")


def is_header_line(line: str, *, separator: str = "") -> bool:
    """Whether ``line`` names columns (every field one of ``HEADER_NAMES``, any case) rather than a file."""
    fields, _ = _fields(line.strip(), separator)
    return all(name.strip().lower() in HEADER_NAMES for name in fields)


def parse_list_line(line: str, *, separator: str = "", require_label: bool = True) -> Tuple[str, int]:
    """``(path, label)`` of one line (``NO_LABEL`` for a path-only line where labels are optional);
    ValueError saying what is wrong."""
    text = line.strip()
    fields, quoted = _fields(text, separator)
    if len(fields) > 2:
        raise ValueError(f"{len(fields)} fields ({EXPECTED})")
    path, label = fields[0], fields[1] if len(fields) == 2 else None
    if label is not None and not _CLASS_ID.fullmatch(label):
        if require_label or quoted:
            raise ValueError(f"{label!r} is not a class id ({EXPECTED})")
        path, label = text, None  # a path with the separator in it and no label
    if not path:
        raise ValueError(f"no path ({EXPECTED})")
    if label is None:
        if require_label:
            raise ValueError(f"no label ({EXPECTED}; finetuning, validation and testing need labels, "
                             f"pretraining reads path-only lines)")
        return path, NO_LABEL
    return path, int(label)


def read_list(list_file: PathLike, *, require_labels: bool, root: str = "", separator: str = "") -> List[ListEntry]:
    """The entries of ``list_file`` (see the module doc); relative paths are joined to ``root``, or to
    the list's folder when ``root`` is empty. ``ListFileError`` names the file and line of a malformed
    line, a list that is not UTF-8 text or lists nothing; ``DataNotFoundError`` a missing list."""
    list_file = os.fspath(list_file)
    folder = root or os.path.dirname(os.path.abspath(list_file))
    entries = []
    for number, line in enumerate(_lines(list_file), start=1):
        if not line.strip():
            continue
        if not entries and is_header_line(line, separator=separator):
            logger.info("%s, line %d: column names %r, skipped", list_file, number, line.strip())
            continue
        try:
            path, label = parse_list_line(line, separator=separator, require_label=require_labels)
        except ValueError as error:
            raise ListFileError(f"{list_file}, line {number}: {error}: got {line.strip()!r}") from None
        entries.append(ListEntry(os.path.join(folder, path), label, f"{list_file}, line {number}"))
    if not entries:
        raise ListFileError(f"{list_file}: lists no files")
    return entries


def _lines(list_file: str) -> List[str]:
    """The lines of ``list_file`` (UTF-8, a byte order mark dropped, any line end)."""
    try:
        with open(list_file, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise DataNotFoundError(f"list file {list_file} does not exist") from None
    except IsADirectoryError:
        raise ListFileError(f"{list_file} is a folder, not a list file") from None
    except OSError as error:
        raise ListFileError(f"{list_file}: cannot read the list ({error.strerror})") from None
    data = data[len(codecs.BOM_UTF8):] if data.startswith(codecs.BOM_UTF8) else data
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as error:
        line = data[:error.start].count(b"\n") + 1
        raise ListFileError(f"{list_file}: not UTF-8 text (byte {data[error.start]:#x} on line {line}); "
                            f"save the list as UTF-8") from None
    return text.replace("\r\n", "\n").replace("\r", "\n").split("\n")


def format_list_line(path: str, label: int = NO_LABEL) -> str:
    """One line of a list, as ``read_list`` reads it back: ``path label``, or ``path`` for
    ``NO_LABEL``; a path with whitespace, a comma or a quote is quoted as the csv module quotes."""
    field_text = f'"{path.replace(chr(34), 2 * chr(34))}"' if _NEEDS_QUOTES.search(path) else path
    return f"{field_text}\n" if label == NO_LABEL else f"{field_text} {label}\n"
