"""The one-command demo: VideoConvMAE learns, and pretraining beats training from scratch.

On the synthetic motion dataset (class = direction in which a textured square slides over a
textured background, so one frame cannot tell the class), the demo pretrains a tiny
VideoConvMAE, finetunes it, finetunes the same network from random initialisation with the
same budget, and runs the multi-view test on both. It writes ``demo_results.json``, the
reconstruction of a held-out clip (PNG grid and GIF) and the pretraining curve.

Every stage is an ordinary engine job (``run_job``) with the recipes ``configs/demo/demo_*.yaml``
in its own folder under the output directory, so each can be rerun or inspected with the tools.
"""
from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

from fvcore.common.config import CfgNode

from common.config import load_config
from common.engine.checkpointing import LAST_CHECKPOINT
from common.files import atomic_write_text
from common.engine.jobs import run_job
from common.engine.progress import JSON_LOG_FILE
from common.engine.reconstruct import write_reconstruction, write_training_curve
from common.visualization import read_json_lines
from videoconvmae.data.annotations import read_path_label_list
from videoconvmae.data.synthetic import make_synthetic_video_dataset

logger = logging.getLogger(__name__)

CONFIG_DIR = Path(__file__).resolve().parents[1] / "configs" / "demo"
PRETRAIN_CONFIG = CONFIG_DIR / "demo_pretrain.yaml"
FINETUNE_CONFIG = CONFIG_DIR / "demo_finetune.yaml"
RESULTS_FILE = "demo_results.json"
DATASET_SEED = 0  # the data never changes with --seed; only training does
NUM_STAGES = 5


@dataclass(frozen=True)
class DemoPlan:
    """What the demo runs. ``overrides`` are ``KEY VALUE`` config pairs applied to every stage
    (after the demo recipes), e.g. ``SOLVER.MAX_EPOCH 1`` for a quick check."""

    output_dir: Path
    data_dir: Path
    seed: int = 0
    clips_per_class: Tuple[int, int, int] = (48, 8, 16)  # train, val, test
    video_size: Tuple[int, int] = (80, 112)  # height, width of the generated clips
    background: str = "smooth"  # these three: see videoconvmae.data.synthetic.render_motion_clip
    square: str = "plain"
    square_size: float = 0.4
    overrides: Tuple[str, ...] = ()


def ensure_dataset(plan: DemoPlan, num_classes: int) -> Path:
    """The Kinetics-format motion dataset under ``plan.data_dir``, generated unless complete."""
    folder = plan.data_dir / "kinetics"
    if (folder / "test.csv").is_file():  # written last
        logger.info("using the synthetic motion dataset in %s", folder)
        return folder
    logger.info("generating the synthetic motion dataset in %s", folder)
    height, width = plan.video_size
    make_synthetic_video_dataset(str(plan.data_dir), num_classes=num_classes, clips_per_class=plan.clips_per_class,
                                 height=height, width=width, seed=DATASET_SEED, formats=("kinetics",), progress=True,
                                 background=plan.background, square=plan.square, square_size=plan.square_size)
    return folder


def stage_config(plan: DemoPlan, recipe: Path, stage: str, data_dir: Path, extra: Sequence[str] = ()) -> CfgNode:
    """The frozen config of one stage: ``recipe``, the demo's paths and seed, ``extra``, then ``plan.overrides``."""
    paths = ["OUTPUT_DIR", str(plan.output_dir / stage), "DATA.PATH_TO_DATA_DIR", str(data_dir),
             "RNG_SEED", str(plan.seed)]
    return load_config(str(recipe), [*paths, *extra, *plan.overrides])


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


def held_out_videos(data_dir: Path) -> List[Path]:
    """The first video of each class in the test split (never seen in training), by class."""
    first: Dict[int, Path] = {}
    for video in read_path_label_list(str(data_dir / "test.csv"), prefix="", separator=""):
        first.setdefault(video.label, Path(video.path))
    return [first[label] for label in sorted(first)]


def write_pictures(pretrain_dir: Path, data_dir: Path, output_dir: Path, seed: int) -> List[Path]:
    """Reconstructions (PNG grid + GIF) of one held-out clip per class and the pretraining curve,
    in ``output_dir``."""
    paths = write_reconstruction(pretrain_dir / LAST_CHECKPOINT, held_out_videos(data_dir), output_dir,
                                 name="reconstruction", seed=seed)
    paths.append(write_training_curve(pretrain_dir / JSON_LOG_FILE, output_dir / "pretrain_curve.png"))
    return paths


def run_demo(plan: DemoPlan) -> Dict[str, Any]:
    """Run the five stages and write the pictures and ``demo_results.json``; returns the results."""
    start = time.perf_counter()
    pretrain_cfg = stage_config(plan, PRETRAIN_CONFIG, "pretrain", plan.data_dir / "kinetics")
    data_dir = ensure_dataset(plan, pretrain_cfg.DATA.NUM_CLASSES)
    _, pretrain_seconds = _run_stage(1, "pretrain VideoConvMAE", "pretrain", pretrain_cfg)
    pretrain_dir = Path(pretrain_cfg.OUTPUT_DIR)
    inits = {"pretrained": str(pretrain_dir / LAST_CHECKPOINT), "scratch": ""}
    tests: Dict[str, Dict[str, Any]] = {}
    seconds = {"pretrain": pretrain_seconds}
    for k, (name, init) in enumerate(inits.items()):
        cfg = stage_config(plan, FINETUNE_CONFIG, f"finetune_{name}", data_dir, ["TRAIN.CHECKPOINT_FILE_PATH", init])
        _, seconds[f"finetune_{name}"] = _run_stage(2 + 2 * k, f"finetune ({name} init)", "finetune", cfg)
        tests[name], seconds[f"test_{name}"] = _run_stage(3 + 2 * k, f"multi-view test ({name} init)", "test", cfg)
    pictures = write_pictures(pretrain_dir, data_dir, plan.output_dir, plan.seed)
    results = summarize(plan, pretrain_cfg, tests, first_and_last_loss(pretrain_dir / JSON_LOG_FILE))
    results.update(seconds=time.perf_counter() - start, stage_seconds=seconds, files=[p.name for p in pictures])
    atomic_write_text(str(plan.output_dir / RESULTS_FILE), json.dumps(results, indent=2) + "\n")
    return results


def summarize(plan: DemoPlan, pretrain_cfg: CfgNode, tests: Dict[str, Dict[str, Any]],
              losses: Tuple[float, float]) -> Dict[str, Any]:
    """The demo's verdict (without timings): losses, both top-1s, the margin, the settings."""
    finetune_cfg = stage_config(plan, FINETUNE_CONFIG, "finetune_pretrained", Path(pretrain_cfg.DATA.PATH_TO_DATA_DIR))
    return {
        "pretrain_loss_first": losses[0],
        "pretrain_loss_last": losses[1],
        "pretrained_top1": tests["pretrained"]["top1"],
        "scratch_top1": tests["scratch"]["top1"],
        "margin": tests["pretrained"]["top1"] - tests["scratch"]["top1"],
        "chance_top1": 100.0 / pretrain_cfg.DATA.NUM_CLASSES,
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
         f"{results['pretrain_loss_first']:.3f} -> {results['pretrain_loss_last']:.3f}"),
        ("top-1, finetuned from pretraining", f"{results['pretrained_top1']:.1f} %"),
        ("top-1, trained from scratch", f"{results['scratch_top1']:.1f} %"),
        ("margin", f"{results['margin']:+.1f} points (chance {results['chance_top1']:.0f} %)"),
        ("wall time", f"{minutes} min {seconds:02d} s"),
    ]
    title = (f"VideoConvMAE demo: seed {results['seed']}, {results['num_test_videos']} held-out videos x "
             f"{results['views_per_video']} views, {results['finetune_epochs']} finetuning epochs each")
    width = max(len(label) for label, _ in rows)
    return "\n".join([title] + [f"  {label:<{width}}  {value}" for label, value in rows])
