"""Where a dataset's files are, for any modality: folders searched recursively, class folders, list
files, and the one-line account of what was found and what was skipped, and why.

A *plain folder* is any folder of files (any depth, any sub-folder names) without split lists or
split folders; pretraining reads all of it, labels are not needed. A *split layout* has
``train``/``val``/``test`` lists (``<split>.csv``) or folders (``<split>/<class>/...``).
Hidden files and folders (a name starting with ".": ``.git``, macOS ``._clip.mp4`` copies, editor
caches) are never data.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Iterable, List, Optional, Sequence, Tuple

from common.errors import DataNotFoundError, UserError

from .class_names import CLASS_IDS_FILE, class_ids_file, read_class_names
from .lists import NO_LABEL, ListEntry, read_list

SPLITS = ("train", "val", "test")
MAX_NAMED_SKIPS = 10  # skipped files named in the summary line; the rest are counted


@dataclass
class FileScan:
    """The files of ``kind`` found under ``root`` (sorted) and the ``skipped`` paths (relative to
    ``root``) with the reason for each."""

    root: str
    kind: str
    suffixes: Tuple[str, ...]
    files: List[str] = field(default_factory=list)
    skipped: List[Tuple[str, str]] = field(default_factory=list)

    def skipped_text(self) -> str:
        """``skipped N: a.txt (not a video file: .txt), ...`` or ``nothing skipped``."""
        if not self.skipped:
            return "nothing skipped"
        named = ", ".join(f"{path} ({reason})" for path, reason in sorted(self.skipped)[:MAX_NAMED_SKIPS])
        more = len(self.skipped) - MAX_NAMED_SKIPS
        return f"skipped {len(self.skipped)}: {named}" + (f" and {more} more" if more > 0 else "")

    def summary(self) -> str:
        """One line: how many files were found where, how they were searched, what was skipped and why."""
        return (f"{len(self.files)} {self.kind}s found under {self.root} (searched recursively for "
                f"{', '.join(self.suffixes)}); {self.skipped_text()}")


def is_hidden(name: str) -> bool:
    return name.startswith(".")


def scan_folder(root: str, suffixes: Sequence[str], *, kind: str, exclude: Iterable[str] = ()) -> FileScan:
    """Every file under ``root`` (recursively, links followed once) whose lower-case suffix is in
    ``suffixes``; the others are skipped with a reason: hidden, not a ``kind`` file, empty, a broken
    link, an unreadable or excluded folder."""
    scan = FileScan(root=root, kind=kind, suffixes=tuple(suffixes))
    wanted = {s.lower() for s in suffixes}
    excluded = {os.path.realpath(p) for p in exclude}
    seen = set()

    def skip(path: str, reason: str) -> None:
        scan.skipped.append((os.path.relpath(path, root), reason))

    def unreadable(error: OSError) -> None:
        skip(error.filename, f"cannot read the folder: {error.strerror}")

    for folder, dirs, files in os.walk(root, onerror=unreadable, followlinks=True):
        real = os.path.realpath(folder)
        if real in seen:
            skip(folder, "a link to a folder searched already")
            dirs[:] = []
            continue
        seen.add(real)
        for name in sorted(dirs):
            path = os.path.join(folder, name)
            if is_hidden(name) or os.path.realpath(path) in excluded:
                dirs.remove(name)
                skip(path, "hidden folder" if is_hidden(name) else "the output folder")
        for name in files:
            path = os.path.join(folder, name)
            reason = _file_problem(path, name, wanted, kind)
            if reason:
                skip(path, reason)
            else:
                scan.files.append(path)
    scan.files.sort()
    return scan


def _file_problem(path: str, name: str, wanted: set, kind: str) -> str:
    """Why ``path`` is not a data file ("" when it is one)."""
    suffix = os.path.splitext(name)[1].lower()
    if is_hidden(name):
        return "hidden"
    if suffix not in wanted:
        return f"not {'an' if kind[0] in 'aeiou' else 'a'} {kind} file: {suffix or 'no extension'}"
    if not os.path.exists(path):
        return "broken link"
    if os.path.getsize(path) == 0:
        return "empty file"
    return ""


def is_split_layout(folder: str) -> bool:
    """True when ``folder`` has a split list (``train.csv``, ...) or a split folder (``train/``, ...)."""
    return any(os.path.isfile(os.path.join(folder, f"{s}.csv")) or os.path.isdir(os.path.join(folder, s))
               for s in SPLITS)


def missing_split(data_dir: str, split: str, advice: str, *, lists: bool = True) -> DataNotFoundError:
    """The error of a split a job needs and ``data_dir`` does not have (``lists``: a ``<split>.csv``
    would do too), with how to make one."""
    looked_for = f"neither {split}.csv nor {split}/<class>/ folders" if lists else f"no {split}/<class>/ folders"
    return DataNotFoundError(f"no {split} split in DATA.PATH_TO_DATA_DIR {data_dir}: {looked_for}; {advice}")


def pretraining_files(data_path: str, *, suffixes: Sequence[str], kind: str, prefix: str = "",
                      separator: str = "") -> Tuple[List[ListEntry], str]:
    """The files pretraining reads from ``data_path`` (labels optional) and a one-line summary:
    a list file itself, else ``train.csv``, else every ``kind`` file under ``train/``, else (a plain
    folder, no split lists or folders) every ``kind`` file under ``data_path``."""
    list_file = data_path if os.path.isfile(data_path) else os.path.join(data_path, "train.csv")
    if os.path.isfile(list_file):
        entries = read_list(list_file, require_labels=False, root=prefix, separator=separator)
        unlabeled = sum(e.label == NO_LABEL for e in entries)
        return entries, (f"{len(entries)} {kind}s listed in {list_file}"
                         + (f" ({unlabeled} without labels)" if unlabeled else ""))
    if not os.path.isdir(data_path):
        raise DataNotFoundError(f"no {kind}s: DATA.PATH_TO_DATA_DIR {data_path} is neither a folder nor a list file")
    train = os.path.join(data_path, "train")
    if is_split_layout(data_path) and not os.path.isdir(train):
        raise missing_split(data_path, "train", "pretraining reads the train split of a folder with splits")
    scan = scan_folder(train if os.path.isdir(train) else data_path, suffixes, kind=kind)
    if not scan.files:
        raise DataNotFoundError(f"no {kind}s under {scan.root} (searched recursively for {', '.join(scan.suffixes)}); "
                                f"{scan.skipped_text()}")
    return [ListEntry(path, NO_LABEL, path) for path in scan.files], scan.summary()


def class_folder_names(root: str) -> List[str]:
    """The class folder names of ``root``: its sub-folders that are not hidden, sorted (class id =
    position, as torchvision's ImageFolder and PySlowFast number them)."""
    return sorted(e.name for e in os.scandir(root) if e.is_dir() and not is_hidden(e.name))


def split_class_names(data_dir: str, split: str, *, names_file: str = "") -> Tuple[List[str], str]:
    """The class order of the ``data_dir/<split>/<class>/`` folders, the same for every split, and
    what gives it: ``names_file`` (``DATA.CLASS_NAMES_FILE``) or ``data_dir/classids.json`` (names by
    id), else the class folders of ``train/`` (sorted). ``UserError`` when there is neither: a
    split's own folders would number the classes otherwise than the model was trained on."""
    path = class_ids_file(names_file, data_dir)
    if path:
        return read_class_names(path), path
    train = os.path.join(data_dir, "train")
    if os.path.isdir(train):
        return class_folder_names(train), f"the class folders of {train}"
    raise UserError(f"{os.path.join(data_dir, split)}: class folders but no {train}/ and no "
                    f"{os.path.join(data_dir, CLASS_IDS_FILE)} to number them as the model's classes: write that "
                    f"file ({{\"class name\": id, ...}}) or set DATA.CLASS_NAMES_FILE")


def class_folder_files(root: str, *, suffixes: Sequence[str], kind: str, classes: Optional[Sequence[str]] = None,
                       classes_from: str = "") -> Tuple[List[ListEntry], str]:
    """The ``kind`` files under ``root/<class>/`` (any depth), labelled by the position of their
    class in ``classes`` (default: the class folders of ``root``; ``classes_from`` says what gives
    them), and a one-line summary. A class folder not in ``classes`` is a ``UserError`` (its labels
    would mean other classes); files directly in ``root`` are skipped."""
    own = class_folder_names(root)
    classes = list(own if classes is None else classes)
    unknown = [name for name in own if name not in classes]
    if unknown:
        raise UserError(f"{os.path.join(root, unknown[0])}: class folder {unknown[0]!r} is not one of the "
                        f"{len(classes)} classes of {classes_from or 'the train split'} ({_names(classes)}); "
                        f"rename or move it")
    entries: List[ListEntry] = []
    skipped: List[Tuple[str, str]] = [(e.name, "not in a class folder") for e in os.scandir(root)
                                      if e.is_file() and not is_hidden(e.name)]
    for name in own:
        scan = scan_folder(os.path.join(root, name), suffixes, kind=kind)
        label = classes.index(name)
        entries += [ListEntry(path, label, path) for path in scan.files]
        skipped += [(os.path.join(name, path), reason) for path, reason in scan.skipped]
    account = FileScan(root=root, kind=kind, suffixes=tuple(suffixes), skipped=skipped)
    if not entries:  # e.g. ImageNet's val as shipped: 50000 images directly in val/, no class folders
        raise DataNotFoundError(f"no {kind}s in the class folders of {root} ({_names(own) or 'none'}); "
                                f"{account.skipped_text()}")
    return entries, f"{len(entries)} {kind}s in {len(own)} class folders of {root}; {account.skipped_text()}"


def _names(names: Sequence[str], shown: int = 5) -> str:
    return ", ".join(names[:shown]) + (", ..." if len(names) > shown else "")


def with_summary(dataset, summary: str):
    """``dataset`` carrying ``source_summary`` (what the run logs about its data); returns it."""
    dataset.source_summary = summary
    return dataset
