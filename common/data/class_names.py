"""Class names <-> class ids in PySlowFast's ``classids.json`` format: one json object
``{"class name": id, ...}`` with ids 0..N-1.

``class_ids_for`` numbers names in sorted order, as PySlowFast's Kinetics preparation does.
"""
from __future__ import annotations

import json
import os
from typing import Dict, Iterable, List, Optional

from common.errors import UserError
from common.files import atomic_write_text

CLASS_IDS_FILE = "classids.json"  # PySlowFast's name, in the data folder


class ClassNamesError(UserError, ValueError):
    """A class-id file that cannot be used; the message names the file and the problem."""


def class_ids_for(names: Iterable[str]) -> Dict[str, int]:
    """``{name: id}`` with ids 0..N-1 in sorted name order (duplicates counted once)."""
    return {name: index for index, name in enumerate(sorted(set(names)))}


def check_class_ids(class_ids: Dict[str, int], source: str) -> None:
    """Raises ClassNamesError naming ``source`` unless the ids are the integers 0..N-1, each once."""
    bad = [(name, index) for name, index in class_ids.items() if not isinstance(index, int) or isinstance(index, bool)]
    if bad:
        raise ClassNamesError(f"{source}: class {bad[0][0]!r} has id {bad[0][1]!r}, expected an integer")
    ids = sorted(class_ids.values())
    if ids != list(range(len(ids))):
        missing = sorted(set(range(len(ids))) - set(ids))
        repeated = sorted({i for i in ids if ids.count(i) > 1})
        raise ClassNamesError(
            f"{source}: class ids must be 0..{len(ids) - 1}, each once; missing {missing[:5]}, repeated {repeated[:5]}, "
            f"out of range {[i for i in ids if not 0 <= i < len(ids)][:5]}"
        )


def write_class_ids(path: str, class_ids: Dict[str, int]) -> None:
    """Writes ``{name: id}`` to ``path`` (atomically), ordered by id; ids checked first."""
    check_class_ids(class_ids, path)
    ordered = dict(sorted(class_ids.items(), key=lambda item: item[1]))
    atomic_write_text(path, json.dumps(ordered, indent=1, ensure_ascii=False) + "\n")


def read_class_ids(path: str) -> Dict[str, int]:
    """``{name: id}`` from ``path``: PySlowFast's ``classids.json``, or SSV2's labels json (the same
    form with ids as strings); ClassNamesError naming the file when it cannot be read or is not a
    json object of name -> id with ids 0..N-1."""
    try:
        with open(path, encoding="utf-8-sig") as f:
            class_ids = json.load(f)
    except OSError as error:
        raise ClassNamesError(f"{path}: cannot read class names ({error.strerror})") from None
    except json.JSONDecodeError as error:
        raise ClassNamesError(f"{path}: not valid json ({error})") from None
    if not isinstance(class_ids, dict):
        raise ClassNamesError(f"{path}: expected a json object {{\"class name\": id}}, got {type(class_ids).__name__}")
    class_ids = {name: int(i) if isinstance(i, str) and i.isdigit() else i for name, i in class_ids.items()}
    check_class_ids(class_ids, path)
    return class_ids


def class_ids_file(names_file: str, data_dir: str) -> Optional[str]:
    """``names_file`` (``DATA.CLASS_NAMES_FILE``) when given, else ``data_dir/classids.json`` if it exists."""
    if names_file:
        return names_file
    default = os.path.join(data_dir, CLASS_IDS_FILE)
    return default if data_dir and os.path.isfile(default) else None


def class_names_by_id(class_ids: Dict[str, int]) -> List[str]:
    """The names as a list indexed by id (``names[id] == name``); ids must be 0..N-1."""
    check_class_ids(class_ids, "class ids")
    names = [""] * len(class_ids)
    for name, index in class_ids.items():
        names[index] = name
    return names


def read_class_names(path: str) -> List[str]:
    """The class names of ``path`` indexed by id."""
    return class_names_by_id(read_class_ids(path))
