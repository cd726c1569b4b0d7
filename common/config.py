"""Configuration: fvcore ``CfgNode`` defaults, YAML files with ``_BASE_``, ``KEY VALUE`` overrides.

Every key a recipe or the command line sets must exist in ``get_cfg()``; an unknown key or a
value of the wrong type raises ``ConfigError`` naming the key (and the closest valid key).
Keys follow PySlowFast where one exists; ConvMAE specifics live under ``MODEL.`` and ``MAE.``.
"""
from __future__ import annotations

import difflib
import logging
import os
from typing import Any, Dict, Iterator, List, Optional, Sequence, Set, Tuple

import yaml
from fvcore.common.config import CfgNode
from yacs.config import CfgNode as YacsCfgNode

from common.data.config import add_data_config
from common.errors import UserError
from common.files import atomic_write_text

logger = logging.getLogger(__name__)

RESOLVED_CONFIG_NAME = "config.yaml"
TEST_CONFIG_NAME = "test_config.yaml"  # a test run in a training run's folder keeps its config.yaml
# Old key -> the key that replaced it: still read, with one warning per process.
DEPRECATED_KEYS = {"DATA.NUM_CLASSES": "MODEL.NUM_CLASSES"}
# Keys that nothing reads any more (PySlowFast's TRAIN.ENABLE / TEST.ENABLE: here the tool is the job).
REMOVED_KEYS = ("TRAIN.ENABLE", "TEST.ENABLE")
# YAML reads off / on / no / yes as booleans: for these text keys a boolean stands for a word.
BOOLEAN_WORDS = {"TRAIN.COMPILE": ("off", "default")}  # (False, True)
_warned_keys: Set[str] = set()
BASE_KEY = "_BASE_"  # a config file's parent config (fvcore's convention)


class ConfigError(UserError, ValueError):
    """A config file or override that does not fit the defaults."""


def get_cfg() -> CfgNode:
    """The default config: every valid key with its type."""
    cfg = CfgNode()
    cfg.OUTPUT_DIR = "./output"
    # True: a training run deletes the checkpoints and logs of another run in OUTPUT_DIR and
    # starts over. False: it resumes a run of the same settings there, or refuses to start.
    cfg.OVERWRITE = False
    cfg.RNG_SEED = 0
    cfg.DETERMINISTIC = False

    cfg.DIST = CfgNode()
    cfg.DIST.BACKEND = "auto"  # auto: nccl with CUDA, gloo otherwise

    cfg.MODEL = CfgNode()
    cfg.MODEL.NAME = "videoconvmae_base_patch16"
    # Classifier outputs (PySlowFast's key; DATA.NUM_CLASSES is its old alias). 0: the count the data
    # names (class folders, classids.json, SSV2's labels json), written resolved to the run's config.yaml.
    cfg.MODEL.NUM_CLASSES = 0
    cfg.MODEL.DROP_PATH_RATE = 0.0
    cfg.MODEL.GLOBAL_POOL = True
    cfg.MODEL.USE_CHECKPOINT = False
    # Pretraining: the decoder also reads the stage-1/2 features (paper §2.2), for images and video.
    cfg.MODEL.MULTI_SCALE_DECODER = True
    # Pretraining: run stages 1-2 on the visible blocks only (same result, faster); False = dense reference.
    cfg.MODEL.SPARSE_CONV = True
    # Architecture overrides for small/demo models; empty / 0 keeps the preset's value.
    cfg.MODEL.EMBED_DIM = []
    cfg.MODEL.DEPTH = []
    cfg.MODEL.MLP_RATIO = []
    cfg.MODEL.NUM_HEADS = 0
    cfg.MODEL.DECODER_EMBED_DIM = 0
    cfg.MODEL.DECODER_DEPTH = 0
    cfg.MODEL.DECODER_NUM_HEADS = 0

    cfg.MAE = CfgNode()
    cfg.MAE.MASK_RATIO = 0.9
    cfg.MAE.NORM_PIX_LOSS = True

    cfg.TRAIN = CfgNode()
    cfg.TRAIN.BATCH_SIZE = 64  # global, across all ranks (PySlowFast)
    cfg.TRAIN.ACCUM_ITER = 1
    cfg.TRAIN.PRECISION = "auto"  # auto | fp32 | bf16 | fp16
    # torch.compile of the model's forward (pretraining: forward + loss) in training and test:
    # off | default | max-autotune (inductor modes); TRAIN.COMPILE_BACKEND: a torch.compile backend.
    cfg.TRAIN.COMPILE = "off"
    cfg.TRAIN.COMPILE_BACKEND = "inductor"
    cfg.TRAIN.CHECKPOINT_FILE_PATH = ""  # weights to start from
    cfg.TRAIN.CHECKPOINT_PERIOD = 1  # epochs between checkpoint-EPOCH.pth files
    cfg.TRAIN.KEEP_CHECKPOINTS = 0  # newest checkpoint-EPOCH.pth kept (older ones this run wrote are deleted); 0: all
    cfg.TRAIN.WEIGHTS_PERIOD = 0  # epochs between weights-EPOCH.pth (weights only, to finetune from); 0: none
    cfg.TRAIN.AUTO_RESUME = True
    cfg.TRAIN.EVAL_PERIOD = 1  # epochs between validations (finetune / linprobe)
    # Repeated augmentation (DeiT): the sampler repeats each index this many times, the copies going
    # to different ranks. Not DATA.REPEATED_SAMPLING (MAE-ST), several clips from one decode.
    cfg.TRAIN.REPEATED_AUG = 1
    cfg.TRAIN.MAX_NONFINITE_STEPS = 10  # steps with a non-finite loss/grad skipped before stopping
    cfg.TRAIN.MAX_REWINDS = 3  # automatic rewinds to the newest finite checkpoint when that limit trips; 0: stop

    cfg.SOLVER = CfgNode()
    cfg.SOLVER.OPTIMIZING_METHOD = "adamw"  # adamw | lars | sgd
    cfg.SOLVER.BASE_LR = 1.5e-4  # per 256 samples of global batch
    cfg.SOLVER.MIN_LR = 0.0
    cfg.SOLVER.WARMUP_EPOCHS = 40.0
    cfg.SOLVER.MAX_EPOCH = 800
    cfg.SOLVER.WEIGHT_DECAY = 0.05
    cfg.SOLVER.BETAS = [0.9, 0.95]
    cfg.SOLVER.MOMENTUM = 0.9
    cfg.SOLVER.LAYER_DECAY = 1.0
    cfg.SOLVER.CLIP_GRAD = 0.0  # max grad norm; 0 disables clipping
    cfg.SOLVER.FUSED = True  # AdamW / SGD as one fused kernel where torch has one for the device

    cfg.TEST = CfgNode()
    cfg.TEST.BATCH_SIZE = 8  # global, in videos (each with all its views)
    cfg.TEST.CHECKPOINT_FILE_PATH = ""
    # Views (clips or image crops) per model forward in multi-view test and validation: bounds
    # memory (64 videos x 15 views would be 960 clips at once) without changing any score. 0: a
    # whole batch at once.
    cfg.TEST.CLIPS_PER_FORWARD = 32

    cfg.LOG = CfgNode()
    cfg.LOG.PERIOD = 10  # iterations between progress lines
    cfg.LOG.TENSORBOARD = True

    add_data_config(cfg)
    return cfg


def load_config(cfg_file: Optional[str] = None, overrides: Sequence[str] = ()) -> CfgNode:
    """Defaults, then ``cfg_file`` (with ``_BASE_``), then ``KEY VALUE`` overrides; frozen."""
    cfg = get_cfg()
    if cfg_file:
        merge_checked(cfg, dict(flatten_config(read_config_file(cfg_file))), source=cfg_file)
    merge_checked(cfg, parse_overrides(overrides), source="command line")
    cfg.freeze()
    return cfg


def parse_overrides(overrides: Sequence[Any]) -> Dict[str, Any]:
    """``[KEY, VALUE, ...]`` -> ``{KEY: value}``; a string value is read as YAML (``1e-4``, ``[1, 2]``,
    ``True``), other values are taken as they are. ``ConfigError`` for an odd list."""
    overrides = list(overrides)
    if len(overrides) % 2:
        raise ConfigError(f"overrides must be KEY VALUE pairs, got an odd list: {overrides}")
    return {k: YacsCfgNode._decode_cfg_value(v) if isinstance(v, str) else v
            for k, v in zip(overrides[0::2], overrides[1::2])}


def read_config_file(path: str, *, referred_by: Sequence[str] = ()) -> Dict[str, Any]:
    """The YAML mapping of ``path`` over those of its ``_BASE_`` chain (a relative ``_BASE_`` is
    relative to the file naming it). ``ConfigError`` names the file for a missing file (and the
    file whose ``_BASE_`` names it), a YAML syntax error, a top level that is not a mapping and
    a ``_BASE_`` cycle."""
    chain = [*referred_by, os.path.abspath(path)]
    if chain[-1] in referred_by:
        raise ConfigError("_BASE_ cycle: " + " -> ".join(chain[chain.index(chain[-1]):]))
    loaded = _read_yaml(path, referred_by[-1] if referred_by else "")
    base = loaded.pop(BASE_KEY, None)
    if base is None:
        return loaded
    if not isinstance(base, str) or not base:
        raise ConfigError(f"{path}: {BASE_KEY} expects the path of another config file, got {base!r}")
    base_path = os.path.join(os.path.dirname(path), os.path.expanduser(base))
    return _merged(read_config_file(base_path, referred_by=chain), loaded)


def _read_yaml(path: str, referrer: str) -> Dict[str, Any]:
    """One YAML file as a dict (empty file: {}), or ``ConfigError`` naming it."""
    named_by = f" (the {BASE_KEY} of {referrer})" if referrer else ""
    try:
        with open(path, encoding="utf-8") as f:
            loaded = yaml.safe_load(f)
    except OSError as err:
        raise ConfigError(f"cannot read config file {path}{named_by}: {err.strerror}") from None
    except yaml.YAMLError as err:
        raise ConfigError(f"{path}{named_by}: not valid YAML: {err}") from None
    if loaded is None:
        return {}
    if not isinstance(loaded, dict):
        raise ConfigError(f"{path}{named_by}: expected a mapping of KEY: value at the top level, got a "
                          f"{type(loaded).__name__}")
    return loaded


def _merged(base: Dict[str, Any], override: Dict[str, Any]) -> Dict[str, Any]:
    """``base`` with ``override`` on top, sections merged key by key."""
    out = dict(base)
    for key, value in override.items():
        both_sections = isinstance(value, dict) and isinstance(out.get(key), dict)
        out[key] = _merged(out[key], value) if both_sections else value
    return out


def merge_checked(cfg: CfgNode, values: Dict[str, Any], *, source: str) -> None:
    """Set dotted ``values`` into ``cfg`` after checking every key and type."""
    valid = dict(flatten_config(cfg))
    for key, value in values.items():
        key = _current_key(key, source)
        if key in REMOVED_KEYS:
            continue
        if key not in valid:
            raise ConfigError(f"unknown config key {key!r} (from {source}){_suggestion(key, valid)}")
        if isinstance(value, bool) and key in BOOLEAN_WORDS:
            value = BOOLEAN_WORDS[key][value]
        node, leaf = _parent(cfg, key)
        node[leaf] = coerce_value(key, value, valid[key])


def coerce_value(key: str, value: Any, default: Any) -> Any:
    """``value`` converted to the type of ``default``; ``ConfigError`` naming ``key`` if impossible."""
    if default is None:
        return value
    if isinstance(default, bool) or isinstance(value, bool):
        if isinstance(value, bool) and isinstance(default, bool):
            return value
    elif isinstance(default, float) and isinstance(value, (int, float)):
        return float(value)
    elif isinstance(default, float) and isinstance(value, str):
        try:
            return float(value)  # YAML reads ``1e-4`` (no dot) as a string
        except ValueError:
            pass
    elif isinstance(default, (list, tuple)) and isinstance(value, (list, tuple)):
        return type(default)(value)
    elif type(value) is type(default):
        return value
    raise ConfigError(
        f"config key {key} expects {type(default).__name__} (default {default!r}), "
        f"got {type(value).__name__} {value!r}"
    )


def config_from_yaml(text: str, source: str) -> CfgNode:
    """A frozen config from resolved YAML ``text`` (a run's ``config.yaml`` or a checkpoint's
    ``cfg``): defaults, then every key of ``text``, checked like a config file (old keys mapped)."""
    cfg = get_cfg()
    try:
        loaded = yaml.safe_load(text) or {}
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark is not None else ""
        raise ConfigError(f"{source}: not valid YAML: {getattr(err, 'problem', None) or err}{where}") from None
    if not isinstance(loaded, dict):
        raise ConfigError(f"{source}: expected a mapping of config keys, got {type(loaded).__name__}")
    merge_checked(cfg, dict(flatten_config(loaded)), source=source)
    cfg.freeze()
    return cfg


def current_keys(values: Dict[str, Any]) -> Dict[str, Any]:
    """Dotted ``values`` under today's key names (deprecated keys renamed, removed keys dropped)."""
    return {DEPRECATED_KEYS.get(k, k): v for k, v in values.items() if k not in REMOVED_KEYS}


def save_config(cfg: CfgNode, output_dir: str, name: str = RESOLVED_CONFIG_NAME) -> str:
    """Write the resolved config to ``output_dir/name`` (temp file + rename)."""
    os.makedirs(output_dir, exist_ok=True)
    path = os.path.join(output_dir, name)
    atomic_write_text(path, cfg.dump())
    return path


def plain_value(value: Any) -> Any:
    """A config value as YAML and JSON read it back (a tuple becomes a list), to compare or show it."""
    return list(value) if isinstance(value, tuple) else value


def flatten_config(node: Dict[str, Any], prefix: str = "") -> Iterator[Tuple[str, Any]]:
    """``(dotted key, value)`` for every leaf of a (nested) config dict."""
    for key, value in node.items():
        if isinstance(value, dict):
            yield from flatten_config(value, f"{prefix}{key}.")
        else:
            yield f"{prefix}{key}", value


def _current_key(key: str, source: str) -> str:
    """``key``, or the key that replaced it (warning once per process and key)."""
    if key not in DEPRECATED_KEYS and key not in REMOVED_KEYS:
        return key
    if key not in _warned_keys:
        _warned_keys.add(key)
        advice = f"use {DEPRECATED_KEYS[key]}" if key in DEPRECATED_KEYS else "nothing reads it; it is ignored"
        logger.warning("config key %s (from %s) is deprecated: %s", key, source, advice)
    return DEPRECATED_KEYS.get(key, key)


def _parent(cfg: CfgNode, key: str) -> Tuple[CfgNode, str]:
    *path, leaf = key.split(".")
    node = cfg
    for part in path:
        node = node[part]
    return node, leaf


def _suggestion(key: str, valid: Dict[str, Any]) -> str:
    close: List[str] = difflib.get_close_matches(key, list(valid), n=1, cutoff=0.5)
    return f"; did you mean {close[0]!r}?" if close else ""
