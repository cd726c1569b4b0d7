"""The class count of a run from its data: ``MODEL.NUM_CLASSES`` 0 means "the count the data names".

The data names its classes through what defines its labels (class folders, SSV2's labels json:
the dataset's registered class source), else through ``DATA.CLASS_NAMES_FILE`` or
``DATA.PATH_TO_DATA_DIR/classids.json`` (PySlowFast's file, which ``tools/prepare_videos.py`` writes
from class folders or the official Kinetics CSVs). Finetuning, linear probing and testing take the
count from there when the config leaves it at 0, and stop before any work, with one line naming both
counts and the override that fixes it, when a config sets another count or a label is beyond it.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Iterable, Optional, Tuple

from fvcore.common.config import CfgNode

from common.errors import DataNotFoundError, UserError
from common.modality import discover_modalities

from .class_names import CLASS_IDS_FILE, class_ids_file, read_class_ids
from .registry import get_class_source
from .sources import SPLITS, split_class_names

LABELLED_JOBS = ("finetune", "linprobe", "test")  # the jobs whose model has one output per class


class ClassCountError(UserError, ValueError):
    """A class count that does not fit the data."""


@dataclass(frozen=True)
class DataClasses:
    """How many classes the data names, and what names them (a file, or the class folders of a split)."""

    count: int
    source: str


def folder_classes(cfg: CfgNode) -> Optional[DataClasses]:
    """The classes of ``DATA.PATH_TO_DATA_DIR``'s ``<split>/<class>/`` folders as the datasets number
    them (``common.data.sources.split_class_names``), or None when it has no split folder."""
    data_dir = cfg.DATA.PATH_TO_DATA_DIR
    splits = [split for split in SPLITS if os.path.isdir(os.path.join(data_dir, split))]
    if not splits:
        return None
    names, source = split_class_names(data_dir, splits[0], names_file=cfg.DATA.CLASS_NAMES_FILE)
    return DataClasses(len(names), source)


def classes_of_data(cfg: CfgNode) -> Optional[DataClasses]:
    """The classes ``cfg``'s data names, or None when it names none (e.g. bare "path label" lists)."""
    discover_modalities()  # the modalities register their datasets and class sources
    specific = get_class_source(cfg.DATA.DATASET.lower())
    found = specific(cfg) if specific is not None else None
    if found is not None:
        return found
    path = class_ids_file(cfg.DATA.CLASS_NAMES_FILE, cfg.DATA.PATH_TO_DATA_DIR)
    return DataClasses(len(read_class_ids(path)), path) if path else None


def resolve_num_classes(cfg: CfgNode, job: str) -> Tuple[CfgNode, str]:
    """``cfg`` with ``MODEL.NUM_CLASSES`` taken from the data when it is 0 (jobs with a classifier),
    and a line saying where the count comes from ("" for other jobs). ``ClassCountError`` when the
    config sets a count the data contradicts, or leaves it to data that names no classes."""
    if job not in LABELLED_JOBS:
        return cfg, ""
    found = classes_of_data(cfg)
    count = cfg.MODEL.NUM_CLASSES
    if found is None:
        if count:
            return cfg, f"MODEL.NUM_CLASSES {count} (from the config; the data names no classes)"
        data_dir = cfg.DATA.PATH_TO_DATA_DIR
        if not os.path.exists(data_dir):
            raise DataNotFoundError(f"DATA.PATH_TO_DATA_DIR {data_dir or repr(data_dir)} does not exist")
        raise ClassCountError(f"MODEL.NUM_CLASSES is 0 (the count from the data) but DATA.PATH_TO_DATA_DIR {data_dir} "
                              f"names no classes (no {CLASS_IDS_FILE}, SSV2 labels json or class folders): set "
                              f"MODEL.NUM_CLASSES to the number of classes, or write "
                              f"{os.path.join(data_dir, CLASS_IDS_FILE)} ({{\"class name\": id, ...}})")
    if count and count != found.count:
        raise ClassCountError(f"{found.source}: {found.count} classes, but MODEL.NUM_CLASSES is {count}: set "
                              f"MODEL.NUM_CLASSES {found.count} (or 0 to take the count from the data)")
    if count:
        return cfg, f"MODEL.NUM_CLASSES {count} (as in {found.source})"
    resolved = cfg.clone()
    resolved.defrost()
    resolved.MODEL.NUM_CLASSES = found.count
    resolved.freeze()
    return resolved, f"MODEL.NUM_CLASSES {found.count} (from {found.source})"


def check_labels(labelled: Iterable[Tuple[int, str]], cfg: CfgNode) -> None:
    """``ClassCountError`` at start-up for a label (``(label, where)`` pairs) beyond
    ``MODEL.NUM_CLASSES``, naming where it is, both counts and the override; nothing is checked
    while the count is 0 (not resolved: pretraining needs no labels)."""
    count = cfg.MODEL.NUM_CLASSES
    if not count:
        return
    items = list(labelled)
    beyond = [(label, where) for label, where in items if label >= count]
    if not beyond:
        return
    label, where = beyond[0]
    needed = max(label for label, _ in items) + 1
    found = classes_of_data(cfg)
    origin = f"from {found.source}" if found is not None and found.count == count else "from the config"
    raise ClassCountError(f"{where}: label {label} needs at least {label + 1} classes, MODEL.NUM_CLASSES is {count} "
                          f"({origin}): set MODEL.NUM_CLASSES {needed} if the data has {needed} classes, or fix the "
                          f"label ({len(beyond)} labels beyond the count)")
