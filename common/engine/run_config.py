"""The config of a job from the command line: a recipe and overrides, except that a test of a
finished training run starts from what the run remembers.

``tools/test.py [--cfg RECIPE] OUTPUT_DIR RUN [KEY VALUE ...]`` where ``RUN/config.yaml`` exists (a
training run's resolved config: model, classes, data) tests that run as it was trained: its config,
with the command line's overrides on top. A recipe given beside it is only compared: when it (or an
override) asks for another model or class count than the run has, the job stops with one line
(a model built from the recipe would not fit the run's checkpoint); its other keys that differ from
the run (data, views, ...) are listed in a warning and not used. The run's ``config.yaml`` is
kept; the test writes ``test_config.yaml``.
"""
from __future__ import annotations

import logging
import os
from typing import Any, Dict, List, Optional, Sequence, Tuple

from fvcore.common.config import CfgNode

from common.config import (RESOLVED_CONFIG_NAME, ConfigError, coerce_value, config_from_yaml, current_keys,
                           flatten_config, get_cfg, load_config, merge_checked, parse_overrides, plain_value,
                           read_config_file)

logger = logging.getLogger(__name__)

# What a classifier checkpoint's shapes depend on: a test must build exactly the run's model.
MODEL_KEYS = ("MODEL.NAME", "MODEL.EMBED_DIM", "MODEL.DEPTH", "MODEL.MLP_RATIO", "MODEL.NUM_HEADS", "MODEL.GLOBAL_POOL")
CLASS_KEY = "MODEL.NUM_CLASSES"


def job_config(job: str, cfg_file: Optional[str], overrides: Sequence[str]) -> CfgNode:
    """The frozen config of ``job``: ``load_config(cfg_file, overrides)``, or for a test of a
    training run folder, that run's config with ``overrides`` on top (see the module doc)."""
    if job == "test":
        run_dir = requested_output_dir(cfg_file, overrides)
        if os.path.isfile(os.path.join(run_dir, RESOLVED_CONFIG_NAME)):
            return run_test_config(run_dir, cfg_file, overrides)
    return load_config(cfg_file, overrides)


def requested_output_dir(cfg_file: Optional[str], overrides: Sequence[str]) -> str:
    """``OUTPUT_DIR`` as the command line (else the recipe, else the default) sets it."""
    values = {**_recipe_values(cfg_file), **_override_values(overrides)}
    return str(values.get("OUTPUT_DIR", get_cfg().OUTPUT_DIR))


def run_test_config(run_dir: str, cfg_file: Optional[str], overrides: Sequence[str]) -> CfgNode:
    """``run_dir``'s config with ``overrides`` on top; ``ConfigError`` (one line) when the recipe or
    an override contradicts the run on the model or the class count."""
    saved = os.path.join(run_dir, RESOLVED_CONFIG_NAME)
    try:
        with open(saved, encoding="utf-8") as f:
            run = config_from_yaml(f.read(), saved)
    except (OSError, UnicodeDecodeError) as err:
        raise ConfigError(f"{saved}: cannot read the run's config ({err})") from None
    recipe, command_line = _recipe_values(cfg_file), _override_values(overrides)
    origin = {key: "command line" if key in command_line else "recipe" for key in {**recipe, **command_line}}
    conflicts = contradictions(run, {**recipe, **command_line}, origin)
    if conflicts:
        sources = {origin[key] for key, _ in conflicts}
        who = " and ".join([name for name, source in ((cfg_file, "recipe"), ("the command line", "command line"))
                            if source in sources])
        raise ConfigError(f"{who} contradicts the run in {run_dir} on the model or the classes "
                          f"({'; '.join(text for _, text in conflicts)}): its config.yaml already holds the run's "
                          f"settings, leave out --cfg (and those overrides) to test the run as it was trained, or "
                          f"choose another OUTPUT_DIR for another model")
    ignored = ignored_recipe_keys(run, recipe, command_line)
    if ignored:
        logger.warning("%s sets %s otherwise than the run in %s; the test uses the run's config (give a key on the "
                       "command line to change it)", cfg_file, "; ".join(ignored), run_dir)
    cfg = run.clone()
    cfg.defrost()
    merge_checked(cfg, command_line, source="command line")
    cfg.freeze()
    return cfg


def ignored_recipe_keys(run: CfgNode, recipe: Dict[str, Any], command_line: Dict[str, Any]) -> List[str]:
    """``KEY: run A, recipe B`` for each key the recipe sets to another value than the run has, that
    the test does not take from it (the run's config wins; the command line's overrides do not)."""
    keys = [key for key in recipe if key not in command_line and key not in (*MODEL_KEYS, CLASS_KEY)]
    return [f"{key}: run {have!r}, recipe {wanted!r}" for key, have, wanted in differing_values(run, recipe, keys)]


def contradictions(run: CfgNode, values: Dict[str, Any], origin: Dict[str, str]) -> List[Tuple[str, str]]:
    """``(KEY, "KEY: run A, ORIGIN B")`` for each model key, and the class count unless 0 (= from the
    data), where ``values`` ask for something else than ``run`` has (``origin``: where each value is from)."""
    return [(key, f"{key}: run {have!r}, {origin[key]} {wanted!r}")
            for key, have, wanted in differing_values(run, values, (*MODEL_KEYS, CLASS_KEY))
            if not (key == CLASS_KEY and wanted == 0)]


def differing_values(run: CfgNode, values: Dict[str, Any], keys: Sequence[str]) -> List[Tuple[str, Any, Any]]:
    """``(KEY, run's value, asked value)`` for each config key of ``keys`` that ``values`` sets, read
    as the key's type, to another value than ``run`` has (lists and tuples alike)."""
    defaults, have = dict(flatten_config(get_cfg())), dict(flatten_config(run))
    found = []
    for key in keys:
        if key in values and key in defaults:
            wanted = plain_value(coerce_value(key, values[key], defaults[key]))
            if wanted != plain_value(have[key]):
                found.append((key, plain_value(have[key]), wanted))
    return found


def _recipe_values(cfg_file: Optional[str]) -> Dict[str, Any]:
    """The keys a recipe file (with its ``_BASE_`` chain) sets itself, under today's names."""
    return current_keys(dict(flatten_config(read_config_file(cfg_file)))) if cfg_file else {}


def _override_values(overrides: Sequence[str]) -> Dict[str, Any]:
    return current_keys(parse_overrides(overrides))
