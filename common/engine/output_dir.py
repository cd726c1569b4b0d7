"""Ownership of ``OUTPUT_DIR``: one run at a time, resume only the same run, never overwrite silently.

``claim_output_dir`` (main rank, before anything is written) takes an exclusive ``flock`` on
``OUTPUT_DIR/.run.lock`` for the whole run (released by the kernel when the process dies, so
a killed run leaves no stale lock), removes temp files a killed run left behind, and for
training jobs decides what happens to checkpoints already in the folder:

- none: a fresh run;
- ``OVERWRITE True``: the previous run's checkpoints and metrics are deleted, a fresh run;
- ``TRAIN.AUTO_RESUME True`` and the saved config agrees on the essential settings: resume;
- otherwise: ``OutputDirError`` naming the folder, the differences and the option to use.
"""
from __future__ import annotations

import errno
import fcntl
import glob
import logging
import os
import shutil
import socket
from contextlib import contextmanager
from typing import Any, Dict, Iterator, List, Optional

import yaml
from fvcore.common.config import CfgNode

from common.checkpoint import safe_load
from common.config import RESOLVED_CONFIG_NAME, current_keys, flatten_config
from common.engine.checkpointing import LAST_CHECKPOINT
from common.engine.progress import JSON_LOG_FILE
from common.errors import UserError

logger = logging.getLogger(__name__)

LOCK_FILE = ".run.lock"
CHECKPOINT_PATTERN = "checkpoint-*.pth"
TEMP_PATTERNS = (".checkpoint-*.tmp", "*.tmp.[0-9]*")  # common.checkpoint.atomic_save, common.files
RUN_LOGS = (JSON_LOG_FILE, "tensorboard")  # log.txt is kept: it records the overwrite
# A checkpoint only continues a run with the same values of these (MODEL.* and MAE.* in full).
ESSENTIAL_SECTIONS = ("MODEL", "MAE")
ESSENTIAL_KEYS = ("DATA.DATASET", "DATA.NUM_FRAMES", "DATA.TRAIN_CROP_SIZE", "MODEL.NUM_CLASSES",
                  "SOLVER.OPTIMIZING_METHOD")
NON_ESSENTIAL_KEYS = ("MODEL.USE_CHECKPOINT",)  # memory only; changing it keeps the run


class OutputDirError(UserError, RuntimeError):
    """``OUTPUT_DIR`` is in use, belongs to another run, or cannot be written."""


@contextmanager
def claim_output_dir(cfg: CfgNode, *, training: bool, is_main: bool) -> Iterator[None]:
    """Hold ``cfg.OUTPUT_DIR`` for the run (main rank only; other ranks pass through)."""
    if not is_main:
        yield
        return
    with _exclusive_lock(cfg.OUTPUT_DIR):
        remove_stale_temp_files(cfg.OUTPUT_DIR)
        if training:
            check_previous_run(cfg)
        yield


@contextmanager
def _exclusive_lock(output_dir: str) -> Iterator[None]:
    try:
        os.makedirs(output_dir, exist_ok=True)
        fd = os.open(os.path.join(output_dir, LOCK_FILE), os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as err:
        raise OutputDirError(f"cannot write to OUTPUT_DIR {output_dir}: {err.strerror}") from err
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as err:
            if err.errno not in (errno.EAGAIN, errno.EACCES):
                raise
            owner = os.pread(fd, 256, 0).decode(errors="replace").strip() or "unknown"
            raise OutputDirError(f"OUTPUT_DIR {output_dir} is in use by another run ({owner}); wait for it to "
                                 f"finish or choose another OUTPUT_DIR") from err
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)  # releases the lock


def remove_stale_temp_files(output_dir: str) -> List[str]:
    """Delete half-written temp files of a killed run (never taken for checkpoints); returns them."""
    stale = sorted({p for pattern in TEMP_PATTERNS for p in glob.glob(os.path.join(output_dir, pattern))})
    for path in stale:
        os.remove(path)
        logger.warning("removed %s, left half-written by a run that was killed", path)
    return stale


def existing_checkpoints(output_dir: str) -> List[str]:
    """Names of the ``checkpoint-*.pth`` files in ``output_dir``, sorted."""
    return sorted(os.path.basename(p) for p in glob.glob(os.path.join(output_dir, CHECKPOINT_PATTERN)))


def check_previous_run(cfg: CfgNode) -> None:
    """Resume, overwrite or refuse, as the module docstring says."""
    output_dir = cfg.OUTPUT_DIR
    names = existing_checkpoints(output_dir)
    if not names:
        return
    if cfg.OVERWRITE:
        remove_previous_run(output_dir, names)
        return
    options = ("resume it with TRAIN.AUTO_RESUME True, start over with OVERWRITE True (deletes them), "
               "or choose another OUTPUT_DIR")
    if not cfg.TRAIN.AUTO_RESUME:
        raise OutputDirError(f"OUTPUT_DIR {output_dir} already holds checkpoints ({', '.join(names)}) and "
                             f"TRAIN.AUTO_RESUME is False: this run would overwrite them; {options}")
    if LAST_CHECKPOINT not in names:
        raise OutputDirError(f"OUTPUT_DIR {output_dir} holds checkpoints ({', '.join(names)}) but no "
                             f"{LAST_CHECKPOINT} to resume from: a new run would overwrite them; start over "
                             f"with OVERWRITE True or choose another OUTPUT_DIR")
    differences = essential_differences(saved_run_config(output_dir), cfg)
    if differences:
        raise OutputDirError(f"OUTPUT_DIR {output_dir} holds the checkpoints of a different run "
                             f"({'; '.join(differences)}); resuming would mix two runs: choose another "
                             f"OUTPUT_DIR, or OVERWRITE True to delete them and start over")
    logger.info("OUTPUT_DIR %s holds a run with the same settings: resuming it", output_dir)


def remove_previous_run(output_dir: str, checkpoint_names: List[str]) -> None:
    """``OVERWRITE True``: delete the previous run's checkpoints, ``log.jsonl`` and TensorBoard files."""
    for name in checkpoint_names:
        os.remove(os.path.join(output_dir, name))
    for name in RUN_LOGS:
        path = os.path.join(output_dir, name)
        if os.path.isdir(path):
            shutil.rmtree(path)
        elif os.path.exists(path):
            os.remove(path)
    logger.warning("OVERWRITE True: deleted %s and the metrics of the previous run in %s",
                   ", ".join(checkpoint_names), output_dir)


def saved_run_config(output_dir: str) -> Dict[str, Any]:
    """The previous run's config: ``config.yaml``, else the ``cfg`` inside ``checkpoint-last.pth``."""
    path = os.path.join(output_dir, RESOLVED_CONFIG_NAME)
    if os.path.isfile(path):
        with open(path) as f:
            text = f.read()
    else:
        text = safe_load(os.path.join(output_dir, LAST_CHECKPOINT)).get("cfg", "")
    return yaml.safe_load(text) or {}


def essential_differences(saved: Dict[str, Any], cfg: CfgNode) -> List[str]:
    """``KEY: saved A, now B`` for every essential setting that differs."""
    now = dict(flatten_config(cfg))
    before = current_keys(dict(flatten_config(saved)))
    keys = [k for k in now if k.split(".")[0] in ESSENTIAL_SECTIONS or k in ESSENTIAL_KEYS]
    return [f"{k}: saved {_plain(before.get(k))!r}, now {_plain(now[k])!r}"
            for k in keys if k not in NON_ESSENTIAL_KEYS and _plain(before.get(k)) != _plain(now[k])]


def _plain(value: Optional[Any]) -> Any:
    return list(value) if isinstance(value, tuple) else value
