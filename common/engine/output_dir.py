"""Ownership of ``OUTPUT_DIR``: one run at a time, resume only the same run, never overwrite silently.

``claim_output_dir`` (main rank, before anything is written) takes an exclusive ``flock`` on
``OUTPUT_DIR/.run.lock`` for the whole run (released by the kernel when the process dies, so
a killed run leaves no stale lock), removes temp files a killed run left behind, and for
training jobs decides what happens to checkpoints already in the folder:

- none: a fresh run;
- ``OVERWRITE True``: a fresh run; the previous run's checkpoints and metrics are deleted once the
  new run has passed every check (``overwrite_previous_run``), so a run that fails first deletes nothing;
- ``TRAIN.AUTO_RESUME True`` and the saved config agrees on the essential settings: resume;
- otherwise: ``OutputDirError`` naming the folder, the differences and the option to use.

The engine deletes only files it writes itself, by their names: ``checkpoint-last.pth``,
``checkpoint-EPOCH.pth``, ``weights-EPOCH.pth``, ``.periodic-checkpoints.json``, ``log.jsonl``, a test
run's ``predictions.csv``, ``test_results.json`` and ``test_config.yaml``, TensorBoard's
``events.out.tfevents.*`` files and its own temp files (``common.files``). A run never deletes the checkpoint it starts from: with
``TRAIN.CHECKPOINT_FILE_PATH`` inside ``OUTPUT_DIR`` it refuses rather than offer ``OVERWRITE``.
"""
from __future__ import annotations

import logging
import os
from contextlib import ExitStack, contextmanager
from typing import Any, Dict, Iterator, List, Sequence

import yaml
from fvcore.common.config import CfgNode

from common.checkpoint import CheckpointError, safe_load
from common.config import RESOLVED_CONFIG_NAME, TEST_CONFIG_NAME, current_keys, flatten_config, plain_value
from common.engine.checkpoint_budget import RECORD_FILE
from common.engine.checkpointing import LAST_CHECKPOINT, is_engine_checkpoint, resume_candidates
from common.engine.evaluation import PREDICTIONS_FILE, RESULTS_FILE
from common.engine.progress import JSON_LOG_FILE, TENSORBOARD_DIR, TENSORBOARD_PREFIX
from common.errors import UserError
from common.files import LOCK_FILE, LockHeldError, exclusive_lock_or_fail, remove_engine_temp_files

logger = logging.getLogger(__name__)

# A checkpoint only continues a run with the same values of these (MODEL.* and MAE.* in full).
ESSENTIAL_SECTIONS = ("MODEL", "MAE")
ESSENTIAL_KEYS = ("DATA.DATASET", "DATA.NUM_FRAMES", "DATA.TRAIN_CROP_SIZE", "MODEL.NUM_CLASSES",
                  "SOLVER.OPTIMIZING_METHOD")
NON_ESSENTIAL_KEYS = ("MODEL.USE_CHECKPOINT",)  # memory only; changing it keeps the run
# Pretraining reads no class count (the default changed from 400 to 0: older runs resume).
NOT_READ_BY_PRETRAINING = ("MODEL.NUM_CLASSES",)
# A test run in the folder wrote these; OVERWRITE deletes them with the run they tested.
PREVIOUS_TEST_OUTPUTS = (PREDICTIONS_FILE, RESULTS_FILE, TEST_CONFIG_NAME)


class OutputDirError(UserError, RuntimeError):
    """``OUTPUT_DIR`` is in use, belongs to another run, or cannot be written."""


@contextmanager
def claim_output_dir(cfg: CfgNode, *, job: str, is_main: bool) -> Iterator[None]:
    """Hold ``cfg.OUTPUT_DIR`` for the run of ``job`` (main rank only; other ranks pass through)."""
    if not is_main:
        yield
        return
    with _exclusive_lock(cfg.OUTPUT_DIR):
        remove_stale_temp_files(cfg.OUTPUT_DIR)
        if job != "test":
            check_previous_run(cfg, pretraining=job == "pretrain")
        yield


@contextmanager
def _exclusive_lock(output_dir: str) -> Iterator[None]:
    with ExitStack() as held:
        try:
            os.makedirs(output_dir, exist_ok=True)
            held.enter_context(exclusive_lock_or_fail(os.path.join(output_dir, LOCK_FILE)))
        except LockHeldError as err:
            raise OutputDirError(f"OUTPUT_DIR {output_dir} is in use by another run ({err.owner}); wait for it to "
                                 f"finish or choose another OUTPUT_DIR") from err
        except OSError as err:
            where = f" ({err.filename})" if err.filename else ""
            raise OutputDirError(f"cannot write to OUTPUT_DIR {output_dir}{where}: {err.strerror}") from err
        yield


def remove_stale_temp_files(output_dir: str) -> List[str]:
    """Delete the temp files of the engine's atomic writes that a killed run left (never taken for
    checkpoints, and only names ``common.files.temp_path`` makes); returns them."""
    return remove_engine_temp_files(output_dir)


def existing_checkpoints(output_dir: str) -> List[str]:
    """Names of the engine's checkpoints (``checkpoint-last.pth``, ``checkpoint-EPOCH.pth``,
    ``weights-EPOCH.pth``) in ``output_dir``, sorted."""
    return sorted(name for name in os.listdir(output_dir) if is_engine_checkpoint(name))


def check_previous_run(cfg: CfgNode, *, pretraining: bool = False) -> None:
    """Resume, overwrite or refuse, as the module docstring says."""
    output_dir = cfg.OUTPUT_DIR
    names = existing_checkpoints(output_dir)
    if not names:
        return
    start = start_weights_inside(cfg)
    if cfg.OVERWRITE and start:
        raise OutputDirError(f"OVERWRITE True would delete the checkpoints in OUTPUT_DIR {output_dir}, among them "
                             f"{start}, the TRAIN.CHECKPOINT_FILE_PATH this run starts from; choose another "
                             f"OUTPUT_DIR for this run")
    if cfg.OVERWRITE:  # deleted by overwrite_previous_run, once the new run has passed every check
        logger.info("OVERWRITE True: %s in %s will be deleted when this run starts", ", ".join(names), output_dir)
        return
    options = ("resume it with TRAIN.AUTO_RESUME True, start over with OVERWRITE True (deletes them), "
               "or choose another OUTPUT_DIR")
    overwrite = "start over with OVERWRITE True or choose another OUTPUT_DIR"
    replace = "OVERWRITE True to delete them and start over"
    if start:  # following the OVERWRITE advice would delete this run's own starting weights
        options = overwrite = replace = (f"choose another OUTPUT_DIR (TRAIN.CHECKPOINT_FILE_PATH {start} is in this "
                                         f"one, and OVERWRITE True would delete it)")
    if not cfg.TRAIN.AUTO_RESUME:
        raise OutputDirError(f"OUTPUT_DIR {output_dir} already holds checkpoints ({', '.join(names)}) and "
                             f"TRAIN.AUTO_RESUME is False: this run would overwrite them; {options}")
    if LAST_CHECKPOINT not in names:
        raise OutputDirError(f"OUTPUT_DIR {output_dir} holds checkpoints ({', '.join(names)}) but no "
                             f"{LAST_CHECKPOINT} to resume from: a new run would overwrite them; {overwrite}")
    differences = essential_differences(saved_run_config(output_dir), cfg,
                                        ignore=NOT_READ_BY_PRETRAINING if pretraining else ())
    if differences:
        raise OutputDirError(f"OUTPUT_DIR {output_dir} holds the checkpoints of a different run "
                             f"({'; '.join(differences)}); resuming would mix two runs: choose another "
                             f"OUTPUT_DIR, or {replace}")
    logger.info("OUTPUT_DIR %s holds a run with the same settings: resuming it", output_dir)


def start_weights_inside(cfg: CfgNode) -> str:
    """``TRAIN.CHECKPOINT_FILE_PATH`` if it lies inside ``OUTPUT_DIR`` (links resolved), else ''."""
    start = cfg.TRAIN.CHECKPOINT_FILE_PATH
    if not start:
        return ""
    folder, path = os.path.realpath(cfg.OUTPUT_DIR), os.path.realpath(start)
    return start if os.path.commonpath([folder, path]) == folder else ""


def overwrite_previous_run(cfg: CfgNode) -> None:
    """``OVERWRITE True``: delete the previous run's files in ``OUTPUT_DIR`` (see ``remove_previous_run``).
    Called once the new run has built its model, weights and data, right before its first write, so a
    run that fails before that deletes nothing; with ``OVERWRITE True`` no rank resumes."""
    names = existing_checkpoints(cfg.OUTPUT_DIR) if cfg.OVERWRITE else []
    if names:
        remove_previous_run(cfg.OUTPUT_DIR, names)


def remove_previous_run(output_dir: str, checkpoint_names: List[str]) -> None:
    """``OVERWRITE True``: delete the previous run's checkpoints, its record of periodic copies,
    ``log.jsonl``, the results of a test run in the folder and TensorBoard event files (the engine's
    names only: other files, in the folder or in ``tensorboard/``, stay). ``config.yaml`` is rewritten
    by the new run."""
    deleted = [os.path.join(output_dir, name)
               for name in [*checkpoint_names, RECORD_FILE, JSON_LOG_FILE, *PREVIOUS_TEST_OUTPUTS]]
    events = os.path.join(output_dir, TENSORBOARD_DIR)
    if os.path.isdir(events) and not os.path.islink(events):
        deleted += [os.path.join(events, name) for name in os.listdir(events) if name.startswith(TENSORBOARD_PREFIX)]
    for path in deleted:
        if os.path.lexists(path) and not os.path.isdir(path):
            os.remove(path)  # a link is removed, never followed
    logger.warning("OVERWRITE True: deleted %s and the metrics of the previous run in %s",
                   ", ".join(checkpoint_names), output_dir)


def saved_run_config(output_dir: str) -> Dict[str, Any]:
    """The previous run's config: ``config.yaml``, else the ``cfg`` inside the newest checkpoint that loads."""
    path = os.path.join(output_dir, RESOLVED_CONFIG_NAME)
    if os.path.isfile(path):
        with open(path) as f:
            return yaml.safe_load(f.read()) or {}
    for checkpoint in resume_candidates(output_dir):  # the newest that loads
        try:
            return yaml.safe_load(safe_load(checkpoint).get("cfg", "")) or {}
        except CheckpointError:
            continue
    return {}


def essential_differences(saved: Dict[str, Any], cfg: CfgNode, *, ignore: Sequence[str] = ()) -> List[str]:
    """``KEY: saved A, now B`` for every essential setting that differs (but those of ``ignore``)."""
    now = dict(flatten_config(cfg))
    before = current_keys(dict(flatten_config(saved)))
    keys = [k for k in now if k.split(".")[0] in ESSENTIAL_SECTIONS or k in ESSENTIAL_KEYS]
    return [f"{k}: saved {plain_value(before.get(k))!r}, now {plain_value(now[k])!r}"
            for k in keys if k not in (*NON_ESSENTIAL_KEYS, *ignore) and plain_value(before.get(k)) != plain_value(now[k])]

