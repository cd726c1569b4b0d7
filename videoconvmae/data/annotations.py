"""Video annotations -> ``LabeledVideo`` lists: "path label" list files (``common.data.lists``),
folder-per-class trees, plain folders, and Something-Something-v2 json files."""
import json
import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional, Sequence, Tuple

from common.data.class_names import ClassNamesError, read_class_ids
from common.data.lists import NO_LABEL, read_list
from common.data.sources import class_folder_files
from common.errors import DataNotFoundError, UserError

# Every container the decoders read (decord, and PyAV for the rest: .ts/.mts/.m2ts/.ogv), lower case.
VIDEO_EXTENSIONS = (".mp4", ".m4v", ".mov", ".qt", ".mkv", ".webm", ".avi", ".divx", ".mpg", ".mpeg", ".vob",
                    ".flv", ".f4v", ".wmv", ".asf", ".3gp", ".3g2", ".ts", ".mts", ".m2ts", ".ogv", ".mxf")


@dataclass(frozen=True)
class LabeledVideo:
    """One video file and its class index (``NO_LABEL`` when unlabeled); ``source`` says where it is
    listed ("FILE, line N")."""

    path: str
    label: int = NO_LABEL
    source: str = field(default="", compare=False)


class AnnotationError(UserError, ValueError):
    """An annotation file that cannot be used; the message names the file (and line)."""


def read_path_label_list(list_file: str, *, prefix: str = "", separator: str = "",
                         require_labels: bool = True) -> List[LabeledVideo]:
    """The videos of a list file (``common.data.lists.read_list``): relative paths joined to
    ``prefix``, or to the list's folder when ``prefix`` is empty."""
    entries = read_list(list_file, require_labels=require_labels, root=prefix, separator=separator)
    return [LabeledVideo(e.path, e.label, e.where) for e in entries]


def read_folder_per_class(root: str, extensions: Tuple[str, ...] = VIDEO_EXTENSIONS,
                          classes: Optional[Sequence[str]] = None) -> List[LabeledVideo]:
    """Videos under ``root/<class>/``; labels are the positions of their class folder in ``classes``
    (default: the sorted class folder names of ``root``)."""
    return read_class_folders(root, extensions, classes)[0]


def read_class_folders(root: str, extensions: Tuple[str, ...] = VIDEO_EXTENSIONS,
                       classes: Optional[Sequence[str]] = None, classes_from: str = "") -> Tuple[List[LabeledVideo], str]:
    """``read_folder_per_class`` and its one-line summary (found, skipped and why); ``classes_from``
    says what gives ``classes`` (``common.data.sources.class_folder_files``)."""
    entries, summary = class_folder_files(root, suffixes=extensions, kind="video", classes=classes,
                                          classes_from=classes_from)
    return [LabeledVideo(e.path, e.label, e.where) for e in entries], summary


def strip_template(template: str) -> str:
    """SSV2 template as used in the labels file: "Putting [something] on [x]" -> "Putting something on x"."""
    return template.replace("[", "").replace("]", "")


def _read_json(path: str) -> Any:
    """The json of ``path``; AnnotationError naming the file when it cannot be read or parsed."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            return json.load(f)
    except FileNotFoundError:
        raise DataNotFoundError(f"{path} does not exist") from None
    except OSError as error:
        raise AnnotationError(f"{path}: cannot read it ({error.strerror})") from None
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise AnnotationError(f"{path}: not valid json ({error})") from None


def _ssv2_entry(entry: Any, number: int, split_file: str, label_of: Dict[str, int], labels_file: str) -> Tuple[str, int]:
    """``(video id, label)`` of one split-file entry; AnnotationError naming the file and entry."""
    where = f"{split_file}, entry {number}"
    if not isinstance(entry, dict):
        raise AnnotationError(f"{where}: expected a json object with 'id' and 'template', got {entry!r:.80}")
    for key in ("id", "template"):
        if key not in entry:
            raise AnnotationError(f"{where}: no {key!r} (expected an object with 'id' and 'template'), got {entry!r:.80}")
    video_id, template = entry["id"], entry["template"]
    if not isinstance(template, str):
        raise AnnotationError(f"{where}: 'template' is {template!r}, expected a string")
    if isinstance(video_id, bool) or not isinstance(video_id, (str, int)):
        raise AnnotationError(f"{where}: 'id' is {video_id!r}, expected a string or an integer")
    label = label_of.get(strip_template(template))
    if label is None:
        raise AnnotationError(f"{where}: template {strip_template(template)!r} is not in {labels_file}")
    return str(video_id), label


def ssv2_video_names(video_id: str, extension: str) -> Tuple[str, str]:
    """The file names an SSV2 video may have: as shipped (``<id>.webm``) and as
    ``tools/prepare_videos.py`` names its copy (``<id>.webm.mp4``)."""
    return f"{video_id}{extension}", f"{video_id}{extension}.mp4"


def read_ssv2_json(labels_file: str, split_file: str, *, video_dir: str, extension: str = ".webm") -> List[LabeledVideo]:
    """SSV2 videos ``video_dir/<id><extension>`` labelled through their template; where only
    ``prepare_videos``' copy ``<id><extension>.mp4`` is in ``video_dir``, that copy.

    ``labels_file`` maps template (without brackets) -> class id (string or int, 0..N-1);
    ``split_file`` is a list of ``{"id": ..., "template": ...}``. A mistake in either (wrong types,
    a missing key, a template the labels file lacks, broken json) is an AnnotationError naming the
    file (and entry)."""
    try:
        label_of = read_class_ids(labels_file)
    except ClassNamesError as error:
        raise AnnotationError(str(error)) from None
    entries = _read_json(split_file)
    if not isinstance(entries, list):
        raise AnnotationError(f"{split_file}: expected a json list of {{\"id\", \"template\"}} objects, "
                              f"got a {type(entries).__name__}")
    present = set(os.listdir(video_dir)) if os.path.isdir(video_dir) else set()  # one listing, not a stat per video
    videos = []
    for number, entry in enumerate(entries):
        video_id, label = _ssv2_entry(entry, number, split_file, label_of, labels_file)
        shipped, prepared = ssv2_video_names(video_id, extension)
        name = prepared if shipped not in present and prepared in present else shipped
        videos.append(LabeledVideo(os.path.join(video_dir, name), label, f"{split_file}, entry {number}"))
    if not videos:
        raise AnnotationError(f"{split_file}: no videos listed")
    return videos
