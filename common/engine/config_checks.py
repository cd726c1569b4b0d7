"""Start-up checks of a resolved config: impossible values and combinations, before any work.

``load_config`` already refuses unknown keys and wrong types. ``validate_config`` refuses what is
well-typed but cannot run (a crop not divisible by the model's stride, a mask ratio of 1, a
batch that does not split across the ranks, a model whose heads do not divide its width, fp16 on
a CPU, an OUTPUT_DIR nobody can write, ...), before anything is written. Every problem is reported
in one ``ConfigError`` of one line naming each key, its value and what was expected.
``check_dataset_sizes`` does the same for what needs the built datasets (a batch larger than the data).
"""
from __future__ import annotations

import os
import tempfile
from typing import Callable, Dict, List, Optional, Sequence, Sized, Tuple

import torch
from fvcore.common.config import CfgNode
from torch import nn

from common.config import ConfigError, plain_value
from common.data import registered_datasets
from common.engine.builders import build_model, clips_per_step
from common.engine.checkpointing import find_resume_checkpoint
from common.engine.compilation import COMPILE_MODES, INDUCTOR, compile_backends
from common.engine.precision import PRECISIONS, resolve_precision
from common.modality import discover_modalities, modality_of_config, modality_of_dataset
from common.models import list_models
from common.optim import scaled_lr

OPTIMIZERS = ("adamw", "lars", "sgd")
SAMPLING_MODES = ("stride", "segment")
DECODING_BACKENDS = ("decord", "pyav")
PRETRAIN_CROPS = ("multiscale", "random_resized")
DIST_BACKENDS = ("auto", "nccl", "gloo", "mpi", "ucc")  # torch.distributed's, and auto
INTERPOLATIONS = ("bicubic", "bilinear", "nearest", "box", "hamming", "lanczos", "random")  # timm's names
RAND_AUGMENT_MAX_MAGNITUDE = 10  # timm's and PyTorchVideo's top level
SEED_LIMIT = 2 ** 32  # numpy seeds each rank with RNG_SEED + rank, below this
ARCHITECTURE_KEYS = ("EMBED_DIM", "DEPTH", "MLP_RATIO", "NUM_HEADS", "DECODER_EMBED_DIM", "DECODER_DEPTH",
                     "DECODER_NUM_HEADS")  # MODEL.*: 0 / [] keeps the preset's value

Check = Callable[[CfgNode, str, int], List[str]]


def validate_config(cfg: CfgNode, *, job: str, world_size: int = 1, checks: Optional[Sequence[Check]] = None) -> None:
    """Raise ``ConfigError`` listing every impossible setting of ``cfg`` for ``job`` on
    ``world_size`` ranks; returns quietly when the config can run. ``checks``: a part of ``CHECKS``
    (default all)."""
    problems: List[str] = []
    for check in CHECKS if checks is None else checks:
        problems += check(cfg, job, world_size)
    if problems:
        raise ConfigError("invalid config: " + "; ".join(problems))


def world_size_from_env() -> int:
    """The number of ranks torchrun / Slurm will start (``WORLD_SIZE``, 1 without it)."""
    return int(os.environ.get("WORLD_SIZE", "1"))


def _describe(key: str, value: object, expected: str) -> str:
    return f"{key} = {plain_value(value)!r}: expected {expected}"



def _choice(key: str, value: str, choices: Sequence[str]) -> List[str]:
    return [] if value in choices else [_describe(key, value, f"one of {list(choices)}")]


def _at_least(key: str, value: float, low: float) -> List[str]:
    return [] if value >= low else [_describe(key, value, f">= {low}")]


def _within(key: str, value: float, low: float, high: float, *, high_open: bool = False,
            low_open: bool = False) -> List[str]:
    """``value`` in the interval from ``low`` to ``high`` (closed unless told)."""
    above_low = value > low if low_open else value >= low
    below_high = value < high if high_open else value <= high
    if above_low and below_high:
        return []
    return [_describe(key, value, f"a value in {'(' if low_open else '['}{low}, {high}{')' if high_open else ']'}")]


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _numbers(key: str, values: Sequence, *, length: Optional[int] = None, what: str = "numbers",
             integers: bool = False) -> List[str]:
    """A list of ``length`` numbers (integers when told); any length >= 1 without ``length``."""
    kind = "integers" if integers else "numbers"
    right_type = all(isinstance(v, int) and not isinstance(v, bool) if integers else _is_number(v) for v in values)
    right_length = len(values) == length if length is not None else len(values) >= 1
    if right_type and right_length:
        return []
    count = f"{length} " if length is not None else ""
    return [_describe(key, values, f"{count}{kind}: {what}")]


def _fraction_range(key: str, values: Sequence, *, high: Optional[float] = 1.0) -> List[str]:
    """A ``[low, high]`` range: two numbers, ``0 < low <= high`` (``<= 1`` for a fraction)."""
    bound = f" <= {high}" if high is not None else ""
    expected = f"[low, high] with 0 < low <= high{bound}"
    problems = _numbers(key, values, length=2, what=expected)
    if problems:
        return problems
    low, top = values
    if not 0 < low <= top or (high is not None and top > high):
        return [_describe(key, values, expected)]
    return []


def check_model(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """A registered ``MODEL.NAME``; crop sizes and frames that fit the model's stride; then the
    architecture (``check_architecture``)."""
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
    return problems or check_architecture(cfg, job)


def check_architecture(cfg: CfgNode, job: str) -> List[str]:
    """The ``MODEL`` size overrides: one positive value per stage, heads that divide the widths,
    MLPs of at least one channel; then the model itself, built on the meta device (no memory, no
    weights): whatever its constructor refuses, the channels ``DATA.MEAN``/``DATA.STD`` must
    describe, and (pretraining) a mask ratio that masks and keeps at least one position."""
    problems = _architecture_ranges(cfg.MODEL)
    if problems:
        return problems
    problems = _architecture_arithmetic(cfg.MODEL, pretraining=job == "pretrain")
    if problems:
        return problems
    model, problems = _model_on_meta_device(cfg, job)
    if model is None:
        return problems
    problems += _channel_lists(cfg, channels=getattr(model, "in_chans", 3))
    if job == "pretrain" and 0 < cfg.MAE.MASK_RATIO < 1:  # outside: check_masking says so
        problems += _masked_positions(cfg, model)
    return problems


def _architecture_ranges(model: CfgNode) -> List[str]:
    problems = []
    stage_lists = (("EMBED_DIM", True, "one width >= 1 per stage"), ("DEPTH", True, "one block count >= 1 per stage"),
                   ("MLP_RATIO", False, "one ratio > 0 per stage"))
    for leaf, integers, what in stage_lists:
        values = model[leaf]
        if not values:
            continue  # the preset's
        problem = _numbers(f"MODEL.{leaf}", values, length=3, what=f"{what} (or [] for the preset's)",
                           integers=integers)
        if not problem and not all(v >= 1 if integers else v > 0 for v in values):
            problem = [_describe(f"MODEL.{leaf}", values, f"{what} (or [] for the preset's)")]
        problems += problem
    for leaf in ("NUM_HEADS", "DECODER_EMBED_DIM", "DECODER_DEPTH", "DECODER_NUM_HEADS"):
        if model[leaf] < 0:
            problems.append(_describe(f"MODEL.{leaf}", model[leaf], ">= 1 (or 0 for the preset's)"))
    problems += _within("MODEL.DROP_PATH_RATE", model.DROP_PATH_RATE, 0.0, 1.0, high_open=True)
    return problems


def _architecture_arithmetic(model: CfgNode, *, pretraining: bool) -> List[str]:
    """Divisibility and MLP sizes between keys the config sets (the preset's values are checked
    by building the model)."""
    problems = []
    widths = list(model.EMBED_DIM)
    if widths and model.NUM_HEADS and widths[2] % model.NUM_HEADS:
        problems.append(_describe("MODEL.NUM_HEADS", model.NUM_HEADS,
                                  f"a divisor of the stage-3 width MODEL.EMBED_DIM[2] = {widths[2]}"))
    if widths and model.MLP_RATIO and any(int(w * r) < 1 for w, r in zip(widths, model.MLP_RATIO)):
        problems.append(_describe("MODEL.MLP_RATIO", model.MLP_RATIO,
                                  f"ratios that give every MLP at least one channel (widths {widths})"))
    decoder_width, decoder_heads = model.DECODER_EMBED_DIM, model.DECODER_NUM_HEADS
    if pretraining and decoder_width and decoder_heads and decoder_width % decoder_heads:
        problems.append(_describe("MODEL.DECODER_NUM_HEADS", decoder_heads,
                                  f"a divisor of the decoder width MODEL.DECODER_EMBED_DIM = {decoder_width}"))
    return problems


def _model_on_meta_device(cfg: CfgNode, job: str) -> Tuple[Optional[nn.Module], List[str]]:
    """The job's model built on the meta device, or None and the constructor's refusal (naming the
    config's architecture keys). The global RNG is left as it was."""
    crop = cfg.DATA.TEST_CROP_SIZE if job == "test" else cfg.DATA.TRAIN_CROP_SIZE
    try:
        with torch.random.fork_rng(devices=[]), torch.device("meta"):
            return build_model(cfg, pretraining=job == "pretrain", crop_size=crop), []
    except (ValueError, TypeError, RuntimeError, AssertionError) as err:
        sizes = ", ".join(f"MODEL.{leaf} {plain_value(cfg.MODEL[leaf])}" for leaf in ARCHITECTURE_KEYS if cfg.MODEL[leaf])
        return None, [_describe("MODEL.NAME", cfg.MODEL.NAME, f"a model that can be built with {sizes or 'its preset'} "
                                                             f"(the model says: {err})")]


def _channel_lists(cfg: CfgNode, *, channels: int) -> List[str]:
    """``DATA.MEAN`` and ``DATA.STD``: one value per input channel of the model."""
    return [_describe(f"DATA.{leaf}", cfg.DATA[leaf], f"one value per input channel of {cfg.MODEL.NAME} ({channels})")
            for leaf in ("MEAN", "STD") if len(cfg.DATA[leaf]) != channels]


def _masked_positions(cfg: CfgNode, model: nn.Module) -> List[str]:
    """A mask drawn by the model itself (a copy of the RNG) has masked and visible positions."""
    with torch.random.fork_rng(devices=[]):
        mask = model.random_masking(1, device=torch.device("cpu"))
    masked, total = int(mask.sum()), mask.numel()
    if 0 < masked < total:
        return []
    grid = "x".join(map(str, model.mask_grid))
    return [_describe("MAE.MASK_RATIO", cfg.MAE.MASK_RATIO, f"a ratio that masks some and keeps some of the {total} "
                                                             f"positions of this model's {grid} mask grid (it masks {masked})")]


def check_masking(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Pretraining: ``0 < MAE.MASK_RATIO < 1`` (at 0 nothing is masked: the loss is 0 and nothing is learnt)."""
    ratio = cfg.MAE.MASK_RATIO
    if job == "pretrain" and not 0.0 < ratio < 1.0:
        return [_describe("MAE.MASK_RATIO", ratio, "a fraction in (0, 1): some patches masked, some visible")]
    return []


def check_batches(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Global batch sizes that split evenly over the ranks (and, with mixup, into pairs); positive step counts."""
    problems = []
    batch = cfg.TRAIN.BATCH_SIZE
    if job != "test" and (batch < world_size or batch % world_size):
        problems.append(_describe("TRAIN.BATCH_SIZE", batch,
                                  f"a positive multiple of the {world_size} rank(s) (it is the global batch)"))
    elif job == "finetune" and cfg.MIXUP.ENABLE and (batch // world_size * cfg.DATA.REPEATED_SAMPLING) % 2:
        problems.append(_describe("TRAIN.BATCH_SIZE", batch, f"an even number of clips per rank with MIXUP.ENABLE "
                                                              f"(mixup pairs them; {world_size} rank(s))"))
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
    peak = scaled_lr(solver.BASE_LR, clips_per_step(cfg))
    if solver.BASE_LR > 0 and solver.MIN_LR > peak:
        problems.append(_describe("SOLVER.MIN_LR", solver.MIN_LR, f"at most the peak lr {peak:.4g} (SOLVER.BASE_LR x "
                                                                 f"samples per step / 256), or the decay would rise"))
    if _numbers("SOLVER.BETAS", solver.BETAS, length=2) or not all(0 <= b < 1 for b in solver.BETAS):
        problems.append(_describe("SOLVER.BETAS", list(solver.BETAS), "two values in [0, 1)"))
    problems += _within("SOLVER.MOMENTUM", solver.MOMENTUM, 0.0, 1.0, high_open=True)
    if not 0 < solver.LAYER_DECAY <= 1:
        problems.append(_describe("SOLVER.LAYER_DECAY", solver.LAYER_DECAY, "in (0, 1]"))
    problems += _at_least("SOLVER.WEIGHT_DECAY", solver.WEIGHT_DECAY, 0.0)
    problems += _at_least("SOLVER.CLIP_GRAD", solver.CLIP_GRAD, 0.0)
    problems += _choice("SOLVER.OPTIMIZING_METHOD", solver.OPTIMIZING_METHOD, OPTIMIZERS)
    for key in ("TRAIN.CHECKPOINT_PERIOD", "TRAIN.EVAL_PERIOD", "LOG.PERIOD"):
        section, leaf = key.split(".")
        problems += _at_least(key, cfg[section][leaf], 1)
    problems += _at_least("TRAIN.MAX_NONFINITE_STEPS", cfg.TRAIN.MAX_NONFINITE_STEPS, 0)
    for key in ("TRAIN.KEEP_CHECKPOINTS", "TRAIN.WEIGHTS_PERIOD", "TRAIN.MAX_REWINDS"):  # 0: all / none / no rewind
        problems += _at_least(key, cfg.TRAIN[key.split(".")[1]], 0)
    return problems


def check_choices(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Keys that take one of a few names."""
    return (_choice("TRAIN.PRECISION", cfg.TRAIN.PRECISION, PRECISIONS)
            + _choice("DATA.SAMPLING_MODE", cfg.DATA.SAMPLING_MODE, SAMPLING_MODES)
            + _choice("DATA.DECODING_BACKEND", cfg.DATA.DECODING_BACKEND, DECODING_BACKENDS)
            + _choice("DATA.PRETRAIN_CROP", cfg.DATA.PRETRAIN_CROP, PRETRAIN_CROPS)
            + _choice("DIST.BACKEND", cfg.DIST.BACKEND, DIST_BACKENDS)
            + _choice("AUG.INTERPOLATION", cfg.AUG.INTERPOLATION, INTERPOLATIONS))


def check_run(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """A seed every rank can use; a precision this machine runs (fp16 needs CUDA)."""
    problems = []
    if not 0 <= cfg.RNG_SEED <= SEED_LIMIT - world_size:
        problems.append(_describe("RNG_SEED", cfg.RNG_SEED, f"an integer in [0, 2**32 - {world_size}] (rank r seeds "
                                                            f"with RNG_SEED + r)"))
    if cfg.TRAIN.PRECISION in PRECISIONS:
        device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        try:
            resolve_precision(cfg.TRAIN.PRECISION, device)
        except ValueError as err:
            problems.append(_describe("TRAIN.PRECISION", cfg.TRAIN.PRECISION, f"a precision this machine runs ({err})"))
    return problems


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
    """Dataset name, class count, sampling and decoding, normalisation statistics, the test views."""
    data = cfg.DATA
    problems = _dataset_name(cfg)
    if not cfg.MODEL.NUM_CLASSES >= 0:
        problems.append(_describe("MODEL.NUM_CLASSES", cfg.MODEL.NUM_CLASSES,
                                  "a number of classes, or 0 to take it from the data"))
    problems += _at_least("DATA.SAMPLING_RATE", data.SAMPLING_RATE, 1)
    problems += _at_least("DATA.DECODE_THREADS", data.DECODE_THREADS, 0)  # 0: the decoder's choice
    problems += _at_least("DATA.DECODE_TIMEOUT", data.DECODE_TIMEOUT, 0.0)  # 0: no bound
    problems += _at_least("DATA.MAX_BAD_FILE_RETRIES", data.MAX_BAD_FILE_RETRIES, 0)
    problems += _at_least("TEST.NUM_ENSEMBLE_VIEWS", cfg.TEST.NUM_ENSEMBLE_VIEWS, 1)
    problems += _at_least("TEST.NUM_SPATIAL_CROPS", cfg.TEST.NUM_SPATIAL_CROPS, 1)
    problems += _numbers("DATA.MEAN", data.MEAN, what="one value per input channel")
    problems += _numbers("DATA.STD", data.STD, what="one value > 0 per input channel")
    if not problems and len(data.MEAN) != len(data.STD):
        problems.append(_describe("DATA.MEAN", list(data.MEAN),
                                  f"one value per input channel, as many as DATA.STD {list(data.STD)}"))
    if all(_is_number(s) for s in data.STD) and any(s <= 0 for s in data.STD):
        problems.append(_describe("DATA.STD", list(data.STD), "positive values"))
    if data.CLASS_NAMES_FILE and not os.path.isfile(data.CLASS_NAMES_FILE):
        problems.append(_describe("DATA.CLASS_NAMES_FILE", data.CLASS_NAMES_FILE, "an existing json file (or empty)"))
    return problems


def _dataset_name(cfg: CfgNode) -> List[str]:
    """A registered ``DATA.DATASET`` (any case); one that a modality registers must be the model's."""
    discover_modalities()
    name = cfg.DATA.DATASET.lower()
    if name not in registered_datasets():
        return [_describe("DATA.DATASET", cfg.DATA.DATASET, f"one of {registered_datasets()}")]
    try:
        data_modality, model_modality = modality_of_dataset(name).name, modality_of_config(cfg).name
    except KeyError:  # registered by other code, for any modality; or MODEL.NAME is wrong (reported there)
        return []
    if data_modality != model_modality:
        return [_describe("DATA.DATASET", cfg.DATA.DATASET, f"a {model_modality} dataset for {cfg.MODEL.NAME} "
                                                            f"(it is a {data_modality} dataset)")]
    return []


def check_augmentation(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """Crop scales and aspect ranges, RandAugment, random erasing, label smoothing, mixup."""
    data, aug, mixup = cfg.DATA, cfg.AUG, cfg.MIXUP
    problems = _fraction_range("DATA.PRETRAIN_JITTER_SCALES_RELATIVE", data.PRETRAIN_JITTER_SCALES_RELATIVE)
    problems += _fraction_range("DATA.TRAIN_JITTER_SCALES_RELATIVE", data.TRAIN_JITTER_SCALES_RELATIVE)
    problems += _fraction_range("DATA.TRAIN_JITTER_ASPECT_RELATIVE", data.TRAIN_JITTER_ASPECT_RELATIVE, high=None)
    scales, sides = data.MULTISCALE_CROP_SCALES, "crop sides in (0, 1], relative to the short side"
    if _numbers("DATA.MULTISCALE_CROP_SCALES", scales) or not all(0 < s <= 1 for s in scales):
        problems.append(_describe("DATA.MULTISCALE_CROP_SCALES", scales, sides))
    problems += _at_least("DATA.MULTISCALE_MAX_DISTORT", data.MULTISCALE_MAX_DISTORT, 0)
    problems += _within("DATA.IMAGE_TEST_CROP_PCT", data.IMAGE_TEST_CROP_PCT, 0.0, 1.0, low_open=True)
    problems += _within("AUG.RAND_AUGMENT_MAGNITUDE", aug.RAND_AUGMENT_MAGNITUDE, 0, RAND_AUGMENT_MAX_MAGNITUDE)
    problems += _at_least("AUG.RAND_AUGMENT_NUM_OPS", aug.RAND_AUGMENT_NUM_OPS, 0)
    problems += _at_least("AUG.RAND_AUGMENT_MSTD", aug.RAND_AUGMENT_MSTD, 0.0)
    problems += _within("AUG.RE_PROB", aug.RE_PROB, 0.0, 1.0)
    problems += _within("AUG.LABEL_SMOOTHING", aug.LABEL_SMOOTHING, 0.0, 1.0, high_open=True)
    problems += _at_least("MIXUP.ALPHA", mixup.ALPHA, 0.0)
    problems += _at_least("MIXUP.CUTMIX_ALPHA", mixup.CUTMIX_ALPHA, 0.0)
    problems += _within("MIXUP.PROB", mixup.PROB, 0.0, 1.0)
    problems += _within("MIXUP.SWITCH_PROB", mixup.SWITCH_PROB, 0.0, 1.0)
    problems += _within("MIXUP.LABEL_SMOOTH_VALUE", mixup.LABEL_SMOOTH_VALUE, 0.0, 1.0, high_open=True)
    if job == "finetune" and mixup.ENABLE and mixup.ALPHA == 0 and mixup.CUTMIX_ALPHA == 0:
        problems.append(_describe("MIXUP.ALPHA", mixup.ALPHA, "> 0, or MIXUP.CUTMIX_ALPHA > 0, with MIXUP.ENABLE "
                                                             "(or MIXUP.ENABLE False)"))
    return problems


def check_files(cfg: CfgNode, job: str, world_size: int) -> List[str]:
    """A run needs an ``OUTPUT_DIR`` it can write; the checkpoint it starts from must exist (the
    start weights are not needed by a run that will resume from ``OUTPUT_DIR``)."""
    problem = _output_dir_problem(cfg.OUTPUT_DIR)
    if problem:
        return [_describe("OUTPUT_DIR", cfg.OUTPUT_DIR, problem)]
    if job == "test":
        key, path = "TEST.CHECKPOINT_FILE_PATH", cfg.TEST.CHECKPOINT_FILE_PATH
        if not path and not find_resume_checkpoint(cfg.OUTPUT_DIR):
            return [_describe(key, path, "a checkpoint file, or an OUTPUT_DIR holding a training run's checkpoints")]
    elif cfg.TRAIN.AUTO_RESUME and not cfg.OVERWRITE and find_resume_checkpoint(cfg.OUTPUT_DIR):
        return []
    else:
        key, path = "TRAIN.CHECKPOINT_FILE_PATH", cfg.TRAIN.CHECKPOINT_FILE_PATH
    if path and not os.path.isfile(path):
        return [_describe(key, path, "an existing checkpoint file (or empty)")]
    return []


def _output_dir_problem(output_dir: str) -> str:
    """What keeps the run from writing ``output_dir`` ('' when nothing does)."""
    if not output_dir:
        return "a folder for the run"
    if os.path.exists(output_dir) and not os.path.isdir(output_dir):
        return "a folder for the run (this path is an existing file)"
    existing = os.path.abspath(output_dir)
    while not os.path.lexists(existing):
        existing = os.path.dirname(existing)
    if not os.path.isdir(existing):
        return f"a folder for the run ({existing} is not a folder)"
    if not writable_folder(existing):
        return f"a folder this process can write ({existing} is not writable)"
    return ""


def writable_folder(folder: str) -> bool:
    """True when this process can create entries in ``folder``: permissions, and a real try (an
    empty folder, removed at once) for what they do not tell (root, read-only mounts, /sys)."""
    if not os.access(folder, os.W_OK | os.X_OK):
        return False
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".convmae-write-check-", dir=folder))
    except OSError:
        return False
    return True


def check_dataset_sizes(cfg: CfgNode, job: str, datasets: Dict[str, Sized], world_size: int) -> None:
    """``ConfigError`` (one line) when the training data gives no optimizer step: every rank takes
    ``len // world_size`` samples, in full batches of ``TRAIN.BATCH_SIZE / world_size``, and
    ``TRAIN.ACCUM_ITER`` batches make a step."""
    for mode in ("pretrain", "finetune"):
        if mode not in datasets or job == "test":
            continue
        samples = len(datasets[mode])
        batches = samples // world_size // max(cfg.TRAIN.BATCH_SIZE // world_size, 1)
        if batches < cfg.TRAIN.ACCUM_ITER:
            raise ConfigError(
                f"invalid config: TRAIN.BATCH_SIZE = {cfg.TRAIN.BATCH_SIZE} x TRAIN.ACCUM_ITER = "
                f"{cfg.TRAIN.ACCUM_ITER}: expected at most the {samples} samples of the {mode} data per optimizer "
                f"step ({world_size} rank(s)); lower them or add data")


CHECKS: Tuple[Check, ...] = (check_model, check_masking, check_batches, check_schedule, check_choices, check_compile, check_run,
                             check_data, check_augmentation, check_files)
