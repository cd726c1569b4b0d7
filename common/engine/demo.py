"""The one-command demo: a masked autoencoder learns, and pretraining beats training from scratch.

With the default recipes (``configs/demo/video_*.yaml``) on the synthetic motion dataset (class =
the direction in which a square slides, so one frame cannot tell the class), the demo pretrains a
tiny VideoConvMAE, finetunes it, finetunes the same network from random initialisation with the
same budget, and runs the multi-view test on both. It writes ``demo_results.json``, the
reconstructions of one held-out clip per class (PNG grid and GIF), the pretraining curve and the
finetuning comparison curve.

Every stage is an ordinary engine job (``run_job``) in its own folder under the output directory,
so each can be rerun or inspected with the tools; the data comes from the recipe's modality
(``common.modality``). ``python tools/pretrain.py`` with no arguments is stage 1 alone.
"""
from __future__ import annotations

import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import torch
from fvcore.common.config import CfgNode

from common.config import load_config
from common.data import batch_inputs, build_dataset
from common.data.class_count import resolve_num_classes
from common.engine.builders import make_loader
from common.engine.checkpointing import LAST_CHECKPOINT
from common.engine.config_checks import validate_config, world_size_from_env
from common.engine.jobs import run_job
from common.engine.progress import JSON_LOG_FILE, LOG_FILE
from common.engine.reconstruct import write_finetune_comparison, write_reconstruction, write_training_curve
from common.files import atomic_write_text, build_folder_atomically, read_json_lines
from common.modality import modality_of_config, modality_of_dataset

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[2] / "configs" / "demo"
PRETRAIN_CONFIG = CONFIG_DIR / "video_pretrain.yaml"
FINETUNE_CONFIG = CONFIG_DIR / "video_finetune.yaml"
RESULTS_FILE = "demo_results.json"
NUM_STAGES = 5
PROGRESS_EVERY_S = 5.0  # seconds between the console's progress lines (log.txt has them all)
FINETUNE_INITS = ("pretrained", "scratch")  # stage folders finetune_<init>


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs. ``data_dir`` None: the recipe's ``DATA.PATH_TO_DATA_DIR`` relative to
    ``output_dir`` (``OUTPUT/data/kinetics``). ``overrides`` are ``KEY VALUE`` config pairs applied to
    every stage (after the recipes), e.g. ``SOLVER.MAX_EPOCH 1`` for a quick check."""

    output_dir: Path
    data_dir: Optional[Path] = None
    seed: int = 0
    overrides: Tuple[str, ...] = ()
    pretrain_recipe: Path = PRETRAIN_CONFIG
    finetune_recipe: Path = FINETUNE_CONFIG


def ensure_synthetic_dataset(cfg: CfgNode) -> Path:
    """The synthetic dataset of ``DATA.DATASET``'s modality at ``DATA.PATH_TO_DATA_DIR``, written
    there unless that folder exists (``build_folder_atomically``); returns the folder."""
    folder = Path(cfg.DATA.PATH_TO_DATA_DIR)
    if not folder.exists() and int(os.environ.get("RANK", "0")) == 0:  # one writer under torchrun
        logger.info("generating the synthetic dataset in %s", folder)
        make = modality_of_dataset(cfg.DATA.DATASET).make_synthetic_data
        # Built in a temp folder and renamed into place when complete: a run killed while generating
        # never leaves a half dataset for the next run to train on.
        build_folder_atomically(folder, lambda target: make(target, cfg))
    return folder


def data_dir_of(plan: DemoPlan) -> Path:
    """The demo's dataset folder: ``plan.data_dir``, else ``OUTPUT/data/<DATA.DATASET>``."""
    if plan.data_dir is not None:
        return plan.data_dir
    return plan.output_dir / "data" / load_config(str(plan.pretrain_recipe)).DATA.DATASET.lower()


def stage_config(plan: DemoPlan, recipe: Path, stage: str, extra: Sequence[str] = ()) -> CfgNode:
    """The frozen config of one stage: ``recipe``, the demo's paths and seed, ``extra``, then ``plan.overrides``."""
    paths = ["OUTPUT_DIR", str(plan.output_dir / stage), "DATA.PATH_TO_DATA_DIR", str(data_dir_of(plan)),
             "RNG_SEED", str(plan.seed)]
    return load_config(str(recipe), [*paths, *extra, *plan.overrides])


def check_demo_plan(plan: DemoPlan) -> None:
    """``ConfigError`` for a config of the plan that cannot run, before any data is generated or
    anything written: pretraining, and finetuning (from scratch: the pretraining checkpoint does
    not exist yet; the multi-view test reads the same config)."""
    world_size = world_size_from_env()
    validate_config(stage_config(plan, plan.pretrain_recipe, "pretrain"), job="pretrain", world_size=world_size)
    finetune = stage_config(plan, plan.finetune_recipe, "finetune_scratch", ["TRAIN.CHECKPOINT_FILE_PATH", ""])
    validate_config(finetune, job="finetune", world_size=world_size)


def _run_stage(number: int, title: str, job: str, cfg: CfgNode) -> Tuple[Dict[str, Any], float]:
    """``run_job(job, cfg)`` between two progress lines; returns its metrics and seconds."""
    epochs = f", {cfg.SOLVER.MAX_EPOCH} epochs" if job != "test" else ""
    logger.info("demo [%d/%d] %s%s -> %s", number, NUM_STAGES, title, epochs, cfg.OUTPUT_DIR)
    start = time.perf_counter()
    metrics = run_job(job, cfg)
    seconds = time.perf_counter() - start
    logger.info("demo [%d/%d] %s done in %.0f s", number, NUM_STAGES, title, seconds)
    return metrics, seconds


def first_and_last_loss(log_path: Path) -> Tuple[float, float]:
    """``train_loss`` of the first and the last epoch of a run's JSON-lines log."""
    losses = [r["train_loss"] for r in read_json_lines(log_path) if "train_loss" in r]
    if not losses:
        raise ValueError(f"{log_path} has no train_loss records")
    return losses[0], losses[-1]


def mean_predictor_loss(cfg: CfgNode, batches: int = 4) -> float:
    """The pretraining loss of a model that always predicts the mean pixel (per channel): the level
    a masked autoencoder must get below to have learnt anything. With per-patch normalised targets
    (``MAE.NORM_PIX_LOSS``) it is 1; else the per-channel pixel variance of the training inputs
    (estimated on ``batches`` batches of the pretraining data)."""
    if cfg.MAE.NORM_PIX_LOSS:
        return 1.0
    dataset = build_dataset(cfg, "pretrain")
    loader = make_loader(dataset, range(len(dataset)), cfg.TRAIN.BATCH_SIZE, workers=0, drop_last=False)
    inputs = torch.cat([batch_inputs(batch) for _, batch in zip(range(batches), loader)])
    channel_dim = modality_of_config(cfg).channel_dim % inputs.ndim
    per_channel = inputs.transpose(0, channel_dim).flatten(1)
    return float(per_channel.var(dim=1, unbiased=False).mean())


def held_out_files(cfg: CfgNode) -> List[Tuple[Path, int]]:
    """The first file of each class in the test split (never seen in training), by class."""
    first: Dict[int, Path] = {}
    for path, label in build_dataset(cfg, "test").labelled_paths():
        first.setdefault(label, Path(path))
    return [(first[label], label) for label in sorted(first)]


def write_pictures(pretrain_cfg: CfgNode, finetune_dirs: Dict[str, Path], output_dir: Path,
                   seed: int) -> List[Path]:
    """Reconstructions (PNG grid + GIF) of one held-out file per class, the pretraining curve and
    the finetuning comparison, in ``output_dir``."""
    pretrain_dir = Path(pretrain_cfg.OUTPUT_DIR)
    files = held_out_files(pretrain_cfg)
    captions = [f"held-out clip {i + 1}: class {label} ({Path(path).parent.name})" for i, (path, label) in enumerate(files)]
    paths = write_reconstruction(pretrain_dir / LAST_CHECKPOINT, [path for path, _ in files], output_dir,
                                 name="reconstruction", seed=seed, captions=captions)
    paths.append(write_training_curve(pretrain_dir / JSON_LOG_FILE, output_dir / "pretrain_curve.png",
                                      title="demo pretraining"))
    paths.append(write_finetune_comparison({name: folder / JSON_LOG_FILE for name, folder in finetune_dirs.items()},
                                           output_dir / "finetune_curve.png"))
    return paths


def previous_stage_seconds(output_dir: Path) -> Dict[str, float]:
    """The stage timings of an earlier demo run in ``output_dir`` (empty if none)."""
    path = output_dir / RESULTS_FILE
    if not path.is_file():
        return {}
    return dict(json.loads(path.read_text()).get("stage_seconds", {}))


def run_demo(plan: DemoPlan) -> Dict[str, Any]:
    """Run the five stages and write the pictures and ``demo_results.json``; returns the results.

    Every stage's config is checked first (``check_demo_plan``), before any data is generated. A stage
    that had already finished (a rerun) keeps the timing of the run that did the work."""
    check_demo_plan(plan)
    earlier = previous_stage_seconds(plan.output_dir)
    pretrain_cfg = stage_config(plan, plan.pretrain_recipe, "pretrain")
    ensure_synthetic_dataset(pretrain_cfg)
    seconds: Dict[str, float] = {}
    metrics, seconds["pretrain"] = _run_stage(1, f"pretrain {pretrain_cfg.MODEL.NAME}", "pretrain", pretrain_cfg)
    _keep_earlier_timing(seconds, "pretrain", metrics, earlier)
    inits = dict(zip(FINETUNE_INITS, (str(Path(pretrain_cfg.OUTPUT_DIR) / LAST_CHECKPOINT), "")))
    tests: Dict[str, Dict[str, Any]] = {}
    finetune_dirs: Dict[str, Path] = {}
    for k, (name, init) in enumerate(inits.items()):
        cfg = stage_config(plan, plan.finetune_recipe, f"finetune_{name}", ["TRAIN.CHECKPOINT_FILE_PATH", init])
        metrics, seconds[f"finetune_{name}"] = _run_stage(2 + 2 * k, f"finetune ({name} init)", "finetune", cfg)
        _keep_earlier_timing(seconds, f"finetune_{name}", metrics, earlier)
        tests[name], seconds[f"test_{name}"] = _run_stage(3 + 2 * k, f"multi-view test ({name} init)", "test", cfg)
        finetune_dirs[name] = Path(cfg.OUTPUT_DIR)
    logger.info("demo: pictures -> %s", plan.output_dir)
    start = time.perf_counter()
    pictures = write_pictures(pretrain_cfg, finetune_dirs, plan.output_dir, plan.seed)
    seconds["pictures"] = time.perf_counter() - start
    results = summarize(plan, pretrain_cfg, tests, first_and_last_loss(Path(pretrain_cfg.OUTPUT_DIR) / JSON_LOG_FILE))
    results["mean_predictor_loss"] = mean_predictor_loss(pretrain_cfg)
    results.update(seconds=sum(seconds.values()), stage_seconds=seconds, files=[p.name for p in pictures])
    atomic_write_text(str(plan.output_dir / RESULTS_FILE), json.dumps(results, indent=2) + "\n")
    return results


def _keep_earlier_timing(seconds: Dict[str, float], stage: str, metrics: Dict[str, Any],
                         earlier: Dict[str, float]) -> None:
    """A stage that only found its finished run keeps the earlier run's timing."""
    if metrics.get("already_finished") and stage in earlier:
        seconds[stage] = earlier[stage]


def summarize(plan: DemoPlan, pretrain_cfg: CfgNode, tests: Dict[str, Dict[str, Any]],
              losses: Tuple[float, float]) -> Dict[str, Any]:
    """The demo's verdict (without timings): losses, both top-1s, the margin, the settings."""
    finetune_cfg = stage_config(plan, plan.finetune_recipe, "finetune_pretrained")
    return {
        "pretrain_loss_first": losses[0],
        "pretrain_loss_last": losses[1],
        "pretrained_top1": tests["pretrained"]["top1"],
        "scratch_top1": tests["scratch"]["top1"],
        "margin": tests["pretrained"]["top1"] - tests["scratch"]["top1"],
        "chance_top1": 100.0 / resolve_num_classes(finetune_cfg, "finetune")[0].MODEL.NUM_CLASSES,
        "num_test_videos": tests["pretrained"]["num_videos"],
        "views_per_video": finetune_cfg.TEST.NUM_ENSEMBLE_VIEWS * finetune_cfg.TEST.NUM_SPATIAL_CROPS,
        "pretrain_epochs": pretrain_cfg.SOLVER.MAX_EPOCH,
        "finetune_epochs": finetune_cfg.SOLVER.MAX_EPOCH,
        "seed": plan.seed,
    }


def format_table(results: Dict[str, Any]) -> str:
    """The demo's short table, for the terminal."""
    minutes, seconds = divmod(round(results["seconds"]), 60)
    rows = [
        (f"pretraining loss (epoch 1 -> {results['pretrain_epochs']})",
         f"{results['pretrain_loss_first']:.3f} -> {results['pretrain_loss_last']:.3f} "
         f"(mean predictor: {results['mean_predictor_loss']:.3f})"),
        ("top-1, finetuned from pretraining", f"{results['pretrained_top1']:.1f} %"),
        ("top-1, trained from scratch", f"{results['scratch_top1']:.1f} %"),
        ("margin", f"{results['margin']:+.1f} points (chance {results['chance_top1']:.0f} %)"),
        ("wall time", f"{minutes} min {seconds:02d} s"),
    ]
    title = (f"VideoConvMAE demo: seed {results['seed']}, {results['num_test_videos']} held-out videos x "
             f"{results['views_per_video']} views, {results['finetune_epochs']} finetuning epochs each")
    width = max(len(label) for label, _ in rows)
    return "\n".join([title] + [f"  {label:<{width}}  {value}" for label, value in rows])


def result_paths(plan: DemoPlan, results: Dict[str, Any]) -> List[str]:
    """The demo's last lines: ``results: PATH``, ``pictures: PATH, ...``, ``logs: PATH, ...``, every
    path one that exists (the demo's log.txt with every stage, then each stage's)."""
    out = plan.output_dir
    stage_logs = [out / stage / LOG_FILE for stage in ("pretrain", *(f"finetune_{init}" for init in FINETUNE_INITS))]
    return [f"results: {out / RESULTS_FILE}",
            f"pictures: {', '.join(str(out / name) for name in results['files'])}",
            f"logs: {', '.join(str(path) for path in [out / LOG_FILE, *stage_logs])}"]
