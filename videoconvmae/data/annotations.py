"""Video annotations -> ``LabeledVideo`` lists: "path label" list files, folder-per-class
trees, and Something-Something-v2 json files."""
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import List, Tuple

from common.errors import UserError

VIDEO_EXTENSIONS = (".mp4", ".webm", ".mkv", ".avi", ".mov", ".m4v")
UTF8_MAYBE_BOM = "utf-8-sig"  # UTF-8, dropping a byte order mark at the start if there is one


@dataclass(frozen=True)
class LabeledVideo:
    """One video file and its class index; ``source`` says where it is listed ("FILE, line N")."""

    path: str
    label: int
    source: str = field(default="", compare=False)


class AnnotationError(UserError, ValueError):
    """An annotation file that cannot be used; the message names the file (and line)."""


def parse_list_line(line: str, separator: str = "") -> Tuple[str, int]:
    """Splits a "path label" line into ``(path, label)``.

    ``separator`` empty: a comma if the line has one, else whitespace. The label is the last
    field, so paths may contain the separator. Raises ValueError saying what is wrong.
    """
    sep = separator or ("," if "," in line else None)
    fields = line.strip().rsplit(sep, 1)
    if len(fields) != 2 or not fields[0].strip():
        raise ValueError("expected 'path label'")
    path, label = fields[0].strip(), fields[1].strip()
    if not label.isdigit():
        raise ValueError(f"label {label!r} is not a non-negative integer")
    return path, int(label)


def read_path_label_list(list_file: str, *, prefix: str = "", separator: str = "") -> List[LabeledVideo]:
    """Reads a "path label" list; relative paths are joined to ``prefix``, or to the list's
    folder when ``prefix`` is empty. Blank lines are skipped.

    A UTF-8 byte order mark (as some editors save CSV files) is dropped. Raises AnnotationError
    naming the file and line number of a malformed line.
    """
    root = prefix or os.path.dirname(os.path.abspath(list_file))
    videos = []
    with open(list_file, encoding=UTF8_MAYBE_BOM) as lines:
        for number, line in enumerate(lines, start=1):
            if not line.strip():
                continue
            try:
                path, label = parse_list_line(line, separator)
            except ValueError as error:
                raise AnnotationError(f"{list_file}, line {number}: {error}: {line.rstrip()!r}") from None
            videos.append(LabeledVideo(os.path.join(root, path), label, f"{list_file}, line {number}"))
    if not videos:
        raise AnnotationError(f"{list_file}: no videos listed")
    return videos


def read_folder_per_class(root: str, extensions: Tuple[str, ...] = VIDEO_EXTENSIONS) -> List[LabeledVideo]:
    """Videos under ``root/<class>/``; labels are the indices of the sorted class folder names."""
    classes = sorted(entry.name for entry in os.scandir(root) if entry.is_dir())
    videos = [
        LabeledVideo(str(path), label)
        for label, name in enumerate(classes)
        for path in sorted(Path(root, name).rglob("*"))
        if path.suffix.lower() in extensions
    ]
    if not videos:
        raise AnnotationError(f"{root}: no videos with extensions {extensions} in class folders")
    return videos


def strip_template(template: str) -> str:
    """SSV2 template as used in the labels file: "Putting [something] on [x]" -> "Putting something on x"."""
    return template.replace("[", "").replace("]", "")


def read_ssv2_json(labels_file: str, split_file: str, *, video_dir: str, extension: str = ".webm") -> List[LabeledVideo]:
    """SSV2 videos ``video_dir/<id><extension>`` labelled through their template.

    ``labels_file`` maps template (without brackets) -> class id (string or int); ``split_file``
    is a list of ``{"id": ..., "template": ...}``. Raises AnnotationError naming the file and
    entry for an entry without id/template or with an unknown template.
    """
    with open(labels_file, encoding=UTF8_MAYBE_BOM) as f:
        label_of = {template: int(index) for template, index in json.load(f).items()}
    with open(split_file, encoding=UTF8_MAYBE_BOM) as f:
        entries = json.load(f)
    videos = []
    for number, entry in enumerate(entries):
        try:
            label = label_of[strip_template(entry["template"])]
            video_id = entry["id"]
        except KeyError as error:
            raise AnnotationError(f"{split_file}, entry {number}: missing or unknown {error}") from None
        videos.append(LabeledVideo(os.path.join(video_dir, f"{video_id}{extension}"), label,
                                   f"{split_file}, entry {number}"))
    if not videos:
        raise AnnotationError(f"{split_file}: no videos listed")
    return videos
