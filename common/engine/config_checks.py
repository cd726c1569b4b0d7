"""Start-up checks of a resolved config: impossible values and combinations, before any work.

``load_config`` already refuses unknown keys and wrong types. ``validate_config`` refuses what is
well-typed but cannot run (a crop not divisible by the model's stride, a mask ratio of 1, a
batch that does not split across the ranks, ...). Every problem is reported in one
``ConfigError`` naming each key, its value and what was expected.
"""
from __future__ import annotations

import os
from typing import Callable, List, Sequence, Tuple

from fvcore.common.config import CfgNode

from common.config import ConfigError
from common.engine.checkpointing import find_resume_checkpoint
from common.engine.compilation import COMPILE_MODES, INDUCTOR, compile_backends
from common.engine.precision import PRECISIONS
from common.modality import modality_of_config
from common.models import list_models

OPTIMIZERS = ("adamw", "lars", "sgd")
SAMPLING_MODES = ("stride", "segment")
DECODING_BACKENDS = ("decord", "pyav")
PRETRAIN_CROPS = ("multiscale", "random_resized")

Check = Callable[[CfgNode, str, int], List[str]]


def validate_config(cfg: CfgNode, *, job: str, world_size: int = 1) -> None:
    """Raise ``ConfigError`` listing every impossible setting of ``cfg`` for ``job`` on
    ``world_size`` ranks; returns quietly when the config can run."""
    problems: List[str] = []
    for check in CHECKS:
        problems += check(cfg, job, world_size)
    if problems:
        raise ConfigError("invalid config:\n  " + "\n  ".join(problems))


def world_size_from_env() -> int:
    """The number of ranks torchrun / Slurm will start (``WORLD_SIZE``, 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _describe(key: str, value: object, expected: str) -> str:
    return f"{key} = {value!r}: expected {expected}"


def _choice(key: str, value: str, choices: Sequence[str]) -> List[str]:
    return [] if value in choices else [_describe(key, value, f"one of {list(choices)}")]


def _at_least(key: str, value: float, low: float) -> List[str]:
    return [] if value >= low else [_describe(key, value, f">= {low}")]


def check_model(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """A registered ``MODEL.NAME``; crop sizes and frames that fit the model's stride."""
    if cfg.MODEL.NAME not in list_models():
        return [_describe("MODEL.NAME", cfg.MODEL.NAME, "a registered model (see common.models.list_models())")]
    try:
        modality = modality_of_config(cfg)
    except KeyError as err:
        return [_describe("MODEL.NAME", cfg.MODEL.NAME, f"a model of a registered modality ({err.args[0]})")]
    stride = modality.stride()
    problems = []
    for key in ("DATA.TRAIN_CROP_SIZE", "DATA.TEST_CROP_SIZE"):
        size = cfg.DATA[key.split(".")[1]]
        if size <= 0 or size % stride[-1]:
            problems.append(_describe(key, size, f"a positive multiple of the model's spatial stride {stride[-1]}"))
    if len(stride) == 3:
        frames, tubelet = cfg.DATA.NUM_FRAMES, stride[0]
        if frames < tubelet or frames % tubelet:
            problems.append(_describe("DATA.NUM_FRAMES", frames, f"a positive multiple of the tubelet size {tubelet}"))
    return problems


def check_masking(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Pretraining: ``0 < MAE.MASK_RATIO < 1`` (at 0 nothing is masked: the loss is 0 and nothing is learnt)."""
    ratio = cfg.MAE.MASK_RATIO
    if job == "pretrain" and not 0.0 < ratio < 1.0:
        return [_describe("MAE.MASK_RATIO", ratio, "a fraction in (0, 1): some patches masked, some visible")]
    return []


def check_batches(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Global batch sizes that split evenly over the ranks; positive step counts."""
    problems = []
    batch = cfg.TRAIN.BATCH_SIZE
    if job != "test" and (batch < world_size or batch % world_size):
        problems.append(_describe("TRAIN.BATCH_SIZE", batch,
                                  f"a positive multiple of the {world_size} rank(s) (it is the global batch)"))
    problems += _at_least("TEST.BATCH_SIZE", cfg.TEST.BATCH_SIZE, 1)
    problems += _at_least("TEST.CLIPS_PER_FORWARD", cfg.TEST.CLIPS_PER_FORWARD, 0)
    problems += _at_least("TRAIN.ACCUM_ITER", cfg.TRAIN.ACCUM_ITER, 1)
    problems += _at_least("TRAIN.REPEATED_AUG", cfg.TRAIN.REPEATED_AUG, 1)
    problems += _at_least("DATA.REPEATED_SAMPLING", cfg.DATA.REPEATED_SAMPLING, 1)
    problems += _at_least("DATA_LOADER.NUM_WORKERS", cfg.DATA_LOADER.NUM_WORKERS, 0)
    return problems


def check_schedule(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Epochs, periods and learning rates that make sense together."""
    solver = cfg.SOLVER
    problems = _at_least("SOLVER.MAX_EPOCH", solver.MAX_EPOCH, 1)
    problems += _at_least("SOLVER.WARMUP_EPOCHS", solver.WARMUP_EPOCHS, 0.0)
    if solver.BASE_LR <= 0:
        problems.append(_describe("SOLVER.BASE_LR", solver.BASE_LR, "> 0"))
    problems += _at_least("SOLVER.MIN_LR", solver.MIN_LR, 0.0)
    if len(solver.BETAS) != 2 or not all(0 <= b < 1 for b in solver.BETAS):
        problems.append(_describe("SOLVER.BETAS", list(solver.BETAS), "two values in [0, 1)"))
    if not 0 < solver.LAYER_DECAY <= 1:
        problems.append(_describe("SOLVER.LAYER_DECAY", solver.LAYER_DECAY, "in (0, 1]"))
    problems += _at_least("SOLVER.WEIGHT_DECAY", solver.WEIGHT_DECAY, 0.0)
    problems += _at_least("SOLVER.CLIP_GRAD", solver.CLIP_GRAD, 0.0)
    problems += _choice("SOLVER.OPTIMIZING_METHOD", solver.OPTIMIZING_METHOD, OPTIMIZERS)
    for key in ("TRAIN.CHECKPOINT_PERIOD", "TRAIN.EVAL_PERIOD", "LOG.PERIOD"):
        section, leaf = key.split(".")
        problems += _at_least(key, cfg[section][leaf], 1)
    problems += _at_least("TRAIN.MAX_NONFINITE_STEPS", cfg.TRAIN.MAX_NONFINITE_STEPS, 0)
    return problems


def check_choices(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Keys that take one of a few names."""
    return (_choice("TRAIN.PRECISION", cfg.TRAIN.PRECISION, PRECISIONS)
            + _choice("DATA.SAMPLING_MODE", cfg.DATA.SAMPLING_MODE, SAMPLING_MODES)
            + _choice("DATA.DECODING_BACKEND", cfg.DATA.DECODING_BACKEND, DECODING_BACKENDS)
            + _choice("DATA.PRETRAIN_CROP", cfg.DATA.PRETRAIN_CROP, PRETRAIN_CROPS))


def check_compile(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """``TRAIN.COMPILE``: a mode; ``TRAIN.COMPILE_BACKEND``: a backend of this torch that has it."""
    mode, backend = cfg.TRAIN.COMPILE, cfg.TRAIN.COMPILE_BACKEND
    if mode not in COMPILE_MODES or mode == "off":
        return _choice("TRAIN.COMPILE", mode, COMPILE_MODES)
    problems = _choice("TRAIN.COMPILE_BACKEND", backend, compile_backends())
    if mode != "default" and backend != INDUCTOR:
        problems.append(_describe("TRAIN.COMPILE_BACKEND", backend, f"{INDUCTOR} (TRAIN.COMPILE {mode} is an "
                                                                    f"{INDUCTOR} mode)"))
    return problems


def check_data(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Class count, sampling rate, normalisation statistics."""
    problems = _at_least("MODEL.NUM_CLASSES", cfg.MODEL.NUM_CLASSES, 1)
    problems += _at_least("DATA.SAMPLING_RATE", cfg.DATA.SAMPLING_RATE, 1)
    if not cfg.DATA.MEAN or len(cfg.DATA.MEAN) != len(cfg.DATA.STD):
        problems.append(_describe("DATA.MEAN", list(cfg.DATA.MEAN),
                                  f"one value per input channel, as many as DATA.STD {list(cfg.DATA.STD)}"))
    if any(s <= 0 for s in cfg.DATA.STD):
        problems.append(_describe("DATA.STD", list(cfg.DATA.STD), "positive values"))
    return problems


def check_files(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """A run needs an ``OUTPUT_DIR``; the checkpoint it starts from must exist (the start
    weights are not needed by a run that will resume from ``OUTPUT_DIR``)."""
    if not cfg.OUTPUT_DIR:
        return [_describe("OUTPUT_DIR", cfg.OUTPUT_DIR, "a folder for the run")]
    if os.path.exists(cfg.OUTPUT_DIR) and not os.path.isdir(cfg.OUTPUT_DIR):
        return [_describe("OUTPUT_DIR", cfg.OUTPUT_DIR, "a folder for the run (this path is an existing file)")]
    if job == "test":
        key, path = "TEST.CHECKPOINT_FILE_PATH", cfg.TEST.CHECKPOINT_FILE_PATH
    elif cfg.TRAIN.AUTO_RESUME and find_resume_checkpoint(cfg.OUTPUT_DIR):
        return []
    else:
        key, path = "TRAIN.CHECKPOINT_FILE_PATH", cfg.TRAIN.CHECKPOINT_FILE_PATH
    if path and not os.path.isfile(path):
        return [_describe(key, path, "an existing checkpoint file (or empty)")]
    return []


CHECKS: Tuple[Check, ...] = (check_model, check_masking, check_batches, check_schedule, check_choices,
                             check_compile, check_data, check_files)
