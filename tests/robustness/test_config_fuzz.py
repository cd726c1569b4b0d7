"""Every config key, fuzzed with wrong values: each is one line on stderr, exit 2, and nothing
written, neither in a fresh OUTPUT_DIR (not even created) nor in a finished run's folder with
``OVERWRITE True`` (every file byte-identical: no deleted checkpoint, no new ``.run.lock``,
``log.txt`` or ``config.yaml``).

``WRONG`` is the table of wrong values per key (written out, plus seeded random draws); every key
of ``get_cfg()`` is in it or in ``FREE_KEYS`` with the reason why no well-typed value of it is
wrong (``test_every_key_is_fuzzed``). A new key: add a ``Wrong`` row (or a ``FREE_KEYS`` entry).
On top, every key gets a value of the wrong type. The runs call ``common.engine.cli.main`` (what
``tools/<job>.py`` runs) in-process on the toy dataset; a few run the real tool as a subprocess on
generated mp4s.
"""
from __future__ import annotations

import os
import random
import shutil
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Dict, List, Tuple

import pytest
import torch

from common.config import flatten_config, get_cfg
from common.engine import cli
from common.engine.jobs import run_job
from tests.engine.toy_data import DEMO, real_overrides, register_toy_dataset, toy_cfg, toy_overrides
from tests.robustness.helpers import PRETRAIN_TOOL, REPO, WAIT_S

RNG = random.Random(18)  # the seeded draws: the same values on every run
TOY_WIDTH, TOY_DECODER_WIDTH, TOY_TRAIN_ITEMS = 32, 16, 16  # tests/engine/toy_data.py
RECIPES = {"pretrain": "video_pretrain", "finetune": "video_finetune", "test": "video_finetune"}
NO_START_WEIGHTS = ("TRAIN.CHECKPOINT_FILE_PATH", "")  # the finetune recipe names the demo's pretraining
MIXUP_ON = ("MIXUP.ENABLE", "True")


@dataclass(frozen=True)
class Wrong:
    """Wrong ``values`` of ``key`` (as typed on the command line; ``{file}`` is a path of a regular
    file) for ``job``, with the overrides ``needs`` under which the key matters."""

    key: str
    values: Tuple[str, ...]
    job: str = "pretrain"
    needs: Tuple[str, ...] = ()


def negative_ints(n: int = 1) -> Tuple[str, ...]:
    return tuple(str(-RNG.randint(1, 10 ** 6)) for _ in range(n))


def above(low: float, n: int = 1) -> Tuple[str, ...]:
    return tuple(f"{low + RNG.uniform(0.01, 5.0):.4f}" for _ in range(n))


def below(high: float, n: int = 1) -> Tuple[str, ...]:
    return tuple(f"{high - RNG.uniform(0.01, 5.0):.4f}" for _ in range(n))


def reversed_ranges(high: float = 1.0, n: int = 1) -> Tuple[str, ...]:
    pairs = [sorted(round(RNG.uniform(0.01, high), 3) for _ in range(2)) for _ in range(n)]
    return tuple(f"[{hi + 0.001}, {lo}]" for lo, hi in pairs)


def non_divisors(width: int, n: int = 2) -> Tuple[str, ...]:
    return tuple(str(h) for h in RNG.sample([h for h in range(3, 4 * width) if width % h], n))


WRONG: List[Wrong] = [
    Wrong("OUTPUT_DIR", ("", "{file}", "{file}/run", "/sys/convmae-run")),
    Wrong("RNG_SEED", ("-1", str(2 ** 32), *negative_ints())),
    Wrong("DIST.BACKEND", ("tcp", "NCCL")),
    Wrong("MODEL.NAME", ("videoconvmae_tiny", "vit_base_patch16_224")),
    Wrong("MODEL.NUM_CLASSES", negative_ints(2)),
    Wrong("MODEL.DROP_PATH_RATE", ("1.0", "-0.1", *above(1.0))),
    Wrong("MODEL.EMBED_DIM", ("[16, 24]", "[16, 24, -32]", "[0, 24, 32]", "[16.5, 24, 32]", "[16, 24, 32, 48]")),
    Wrong("MODEL.DEPTH", ("[1, 1, -1]", "[1, 1]", "[0, 1, 2]", "[1, 1, 2, 2]", "[1.5, 1, 2]")),
    Wrong("MODEL.MLP_RATIO", ("[0.0, 0.0, 0.0]", "[2.0, -1.0, 2.0]", "[2.0, 2.0]", "[0.01, 2.0, 2.0]")),
    Wrong("MODEL.NUM_HEADS", ("-2", *non_divisors(TOY_WIDTH))),
    Wrong("MODEL.NUM_HEADS", ("7",), needs=("MODEL.EMBED_DIM", "[]")),  # the preset's width 384
    Wrong("MODEL.DECODER_EMBED_DIM", ("-16", *(str(2 * RNG.randint(1, 50) + 1) for _ in range(2)))),
    Wrong("MODEL.DECODER_DEPTH", negative_ints()),
    Wrong("MODEL.DECODER_NUM_HEADS", ("-2", *non_divisors(TOY_DECODER_WIDTH))),
    # The toy clips give a 2x2x2 grid of tubes: 0.2 masks none of the 4 positions per frame.
    Wrong("MAE.MASK_RATIO", ("1.0", "0.0", "-0.5", "0.2", *above(1.0))),
    Wrong("TRAIN.BATCH_SIZE", ("0", "-8", str(RNG.randint(TOY_TRAIN_ITEMS + 1, 500)))),
    Wrong("TRAIN.BATCH_SIZE", ("5",), job="finetune", needs=(*NO_START_WEIGHTS, *MIXUP_ON)),  # mixup pairs
    Wrong("TRAIN.ACCUM_ITER", ("0", "3")),  # 3: 2 batches of 8 make no step of 3
    Wrong("TRAIN.PRECISION", ("fp8", "FP32", *(() if torch.cuda.is_available() else ("fp16",)))),
    Wrong("TRAIN.CHECKPOINT_FILE_PATH", ("/nonexistent/checkpoint.pth", "{dir}"), job="finetune"),
    Wrong("TRAIN.CHECKPOINT_PERIOD", ("0", *negative_ints())),
    Wrong("TRAIN.EVAL_PERIOD", ("0",)),
    Wrong("TRAIN.REPEATED_AUG", ("0",)),
    Wrong("TRAIN.MAX_NONFINITE_STEPS", negative_ints()),
    Wrong("TRAIN.KEEP_CHECKPOINTS", negative_ints()),
    Wrong("TRAIN.WEIGHTS_PERIOD", negative_ints()),
    Wrong("TRAIN.MAX_REWINDS", negative_ints()),
    Wrong("TRAIN.COMPILE", ("fast", "max_autotune")),
    Wrong("TRAIN.COMPILE_BACKEND", ("no_such_backend",), needs=("TRAIN.COMPILE", "default")),
    Wrong("SOLVER.OPTIMIZING_METHOD", ("adam", "AdamW")),
    Wrong("SOLVER.BASE_LR", ("0.0", *below(0.0))),
    Wrong("SOLVER.MIN_LR", ("-1e-6", "1.0")),  # 1.0: above the peak lr, the "decay" would rise
    Wrong("SOLVER.WARMUP_EPOCHS", below(0.0)),
    Wrong("SOLVER.MAX_EPOCH", ("0", *negative_ints())),
    Wrong("SOLVER.WEIGHT_DECAY", below(0.0)),
    Wrong("SOLVER.BETAS", ("[0.9, 1.5]", "[0.9]", "[-0.1, 0.95]", "[0.9, 0.95, 0.99]", "['a', 'b']")),
    Wrong("SOLVER.MOMENTUM", ("-0.5", "1.0", *above(1.0))),
    Wrong("SOLVER.LAYER_DECAY", ("0.0", *above(1.0))),
    Wrong("SOLVER.CLIP_GRAD", below(0.0)),
    Wrong("TEST.BATCH_SIZE", ("0",), job="test"),
    Wrong("TEST.CHECKPOINT_FILE_PATH", ("/nonexistent/checkpoint.pth", "{dir}"), job="test"),
    Wrong("TEST.CLIPS_PER_FORWARD", negative_ints(), job="test"),
    Wrong("TEST.NUM_ENSEMBLE_VIEWS", ("0", *negative_ints()), job="test"),
    Wrong("TEST.NUM_SPATIAL_CROPS", ("0",), job="test"),
    Wrong("LOG.PERIOD", ("0",)),
    Wrong("DATA.DATASET", ("kinetic", "imagenet")),  # imagenet: images for a video model
    Wrong("DATA.PATH_TO_DATA_DIR", ("/nonexistent/data",), needs=("DATA.DATASET", "kinetics")),
    Wrong("DATA.CLASS_NAMES_FILE", ("/nonexistent/classids.json", "{dir}"), job="test"),
    Wrong("DATA.NUM_FRAMES", ("5", "0", *negative_ints())),
    Wrong("DATA.SAMPLING_RATE", ("0", *negative_ints())),
    Wrong("DATA.SAMPLING_MODE", ("random",)),
    Wrong("DATA.DECODING_BACKEND", ("opencv",)),
    Wrong("DATA.DECODE_THREADS", negative_ints()),
    Wrong("DATA.DECODE_TIMEOUT", below(0.0)),
    Wrong("DATA.REPEATED_SAMPLING", ("0",)),
    Wrong("DATA.MAX_BAD_FILE_RETRIES", ("-1", *negative_ints())),
    Wrong("DATA.TRAIN_CROP_SIZE", ("40", "0", "-32")),
    Wrong("DATA.TEST_CROP_SIZE", ("0", "24")),
    Wrong("DATA.PRETRAIN_CROP", ("center",)),
    Wrong("DATA.MULTISCALE_CROP_SCALES", ("[]", "[1.0, 0.0]", "[1.5, 0.875]", "['a']")),
    Wrong("DATA.MULTISCALE_MAX_DISTORT", negative_ints()),
    Wrong("DATA.PRETRAIN_JITTER_SCALES_RELATIVE",
          ("[]", "[1.0, 0.2]", "[0.0, 1.0]", "[0.2, 1.5]", "[0.2]", *reversed_ranges())),
    Wrong("DATA.TRAIN_JITTER_SCALES_RELATIVE", ("[]", "[0.08, 1.0, 1.0]", *reversed_ranges(n=2)), job="finetune",
          needs=NO_START_WEIGHTS),
    Wrong("DATA.TRAIN_JITTER_ASPECT_RELATIVE", ("[1.3333, 0.75]", "[0.0, 1.0]", "[]", "[-1.0, 1.0]",
                                                *reversed_ranges(high=3.0))),
    Wrong("DATA.MEAN", ("[0.5, 0.5, 0.5, 0.5]", "[0.5, 0.5]", "[]", "['a', 'b', 'c']")),
    Wrong("DATA.MEAN", ("[0.5, 0.5, 0.5, 0.5]",), needs=("DATA.STD", "[0.2, 0.2, 0.2, 0.2]")),  # 4 != 3 channels
    Wrong("DATA.STD", ("[0.0, 0.2, 0.2]", "[-0.2, 0.2, 0.2]", "[0.2]")),
    Wrong("DATA.IMAGE_TEST_CROP_PCT", ("0.0", *above(1.0), *below(0.0))),
    Wrong("AUG.RAND_AUGMENT_MAGNITUDE", ("-1", "11")),
    Wrong("AUG.RAND_AUGMENT_NUM_OPS", negative_ints()),
    Wrong("AUG.RAND_AUGMENT_MSTD", below(0.0)),
    Wrong("AUG.RE_PROB", (*above(1.0), *below(0.0))),
    Wrong("AUG.INTERPOLATION", ("cubic", "")),
    Wrong("AUG.LABEL_SMOOTHING", ("1.0", *above(1.0), *below(0.0))),
    Wrong("MIXUP.ALPHA", below(0.0)),
    Wrong("MIXUP.ALPHA", ("0.0",), job="finetune", needs=(*NO_START_WEIGHTS, *MIXUP_ON, "MIXUP.CUTMIX_ALPHA", "0.0")),
    Wrong("MIXUP.CUTMIX_ALPHA", below(0.0)),
    Wrong("MIXUP.PROB", (*above(1.0), *below(0.0))),
    Wrong("MIXUP.SWITCH_PROB", above(1.0)),
    Wrong("MIXUP.LABEL_SMOOTH_VALUE", ("1.0", *below(0.0))),
    Wrong("DATA_LOADER.NUM_WORKERS", negative_ints()),
]

# Keys no well-typed value of which is wrong: switches, and path parts whose mistakes show as
# missing files (reported by the dataset, as DATA.PATH_TO_DATA_DIR's row shows).
FREE_KEYS: Dict[str, str] = {
    **{key: "a switch" for key in (
        "OVERWRITE", "DETERMINISTIC", "MODEL.GLOBAL_POOL", "MODEL.USE_CHECKPOINT", "MODEL.MULTI_SCALE_DECODER",
        "MODEL.SPARSE_CONV", "MAE.NORM_PIX_LOSS", "TRAIN.AUTO_RESUME", "LOG.TENSORBOARD", "DATA.DECODE_FALLBACK",
        "DATA.RANDOM_FLIP", "AUG.ENABLE", "MIXUP.ENABLE", "DATA_LOADER.PIN_MEMORY", "SOLVER.FUSED")},
    "DATA.PATH_PREFIX": "any folder; a wrong one leaves the listed files missing",
    "DATA.PATH_LABEL_SEPARATOR": "any text; the list reader names a line it cannot split",
}


def _wrong_type(default) -> str:
    """A command-line value of another type than ``default``'s."""
    if isinstance(default, bool):
        return "maybe"
    if isinstance(default, int):
        return "1.5"
    if isinstance(default, (float, list, tuple)):
        return "fast"
    return "[1, 2]"


DEFAULTS = dict(flatten_config(get_cfg()))
RANGE_CASES = [pytest.param(row, value, id=f"{row.job}:{row.key}={value}") for row in WRONG for value in row.values]
TYPE_CASES = [pytest.param(key, _wrong_type(default), id=f"{key}={_wrong_type(default)}")
              for key, default in DEFAULTS.items()]


def test_every_key_is_fuzzed():
    fuzzed = {row.key for row in WRONG}
    missing = sorted(set(DEFAULTS) - fuzzed - set(FREE_KEYS))
    assert not missing, f"add Wrong rows (or FREE_KEYS entries with the reason) for {missing}"
    assert not (fuzzed | set(FREE_KEYS)) - set(DEFAULTS)  # no row of a key that does not exist
    assert len(RANGE_CASES) >= 50


@pytest.fixture(scope="module")
def finished_run(tmp_path_factory) -> Path:
    """A finished 1-epoch toy pretraining run."""
    register_toy_dataset()
    folder = tmp_path_factory.mktemp("finished_run")
    run_job("pretrain", toy_cfg("video_pretrain", folder, "SOLVER.MAX_EPOCH", "1"))
    return folder


def snapshot(folder: Path) -> Dict[str, bytes]:
    """Every file under ``folder`` (relative path -> bytes) and every folder (-> b'<dir>')."""
    return {str(p.relative_to(folder)): (b"<dir>" if p.is_dir() else p.read_bytes()) for p in folder.rglob("*")}


def cli_args(job: str, output_dir: Path, *overrides: str) -> List[str]:
    """``tools/<job>.py`` arguments: the demo recipe on the toy dataset, 1 epoch, ``overrides`` last."""
    return ["--cfg", str(DEMO / f"{RECIPES[job]}.yaml"), *toy_overrides(output_dir, "SOLVER.MAX_EPOCH", "1"),
            *overrides]


def refused_in_one_line(job: str, args: List[str], capsys) -> str:
    """Run ``cli.main(job, args)``; assert exit 2 and one line on stderr; return that line."""
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        cli.main(job, args)
    err = capsys.readouterr().err
    assert stop.value.code == cli.USER_ERROR_EXIT_CODE, err
    lines = err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    return lines[0]


def _placeholders(value: str, tmp_path: Path) -> str:
    a_file = tmp_path / "notes.txt"
    a_file.write_text("not a folder, not a checkpoint")
    return value.format(file=a_file, dir=tmp_path)


def _job_needs(row: Wrong, finished: Path) -> Tuple[str, ...]:
    """Overrides every run of ``row.job`` needs: no start weights for finetuning (the recipe names
    the demo's), an existing checkpoint for a test."""
    if row.job == "finetune":
        return NO_START_WEIGHTS
    if row.job == "test":
        return ("TEST.CHECKPOINT_FILE_PATH", str(finished / "checkpoint-last.pth"))
    return ()


@pytest.mark.parametrize("row, value", RANGE_CASES)
def test_wrong_value_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, finished_run, row, value):
    value = _placeholders(value, tmp_path)
    overrides = (*_job_needs(row, finished_run), *row.needs, row.key, value)

    fresh = tmp_path / "fresh"
    line = refused_in_one_line(row.job, cli_args(row.job, fresh, *overrides), capsys)
    assert row.key in line
    assert not fresh.exists()  # not even created: no .run.lock, log.txt, config.yaml

    existing = tmp_path / "existing"
    shutil.copytree(finished_run, existing)
    before = snapshot(existing)
    refused_in_one_line(row.job, cli_args(row.job, existing, "OVERWRITE", "True", *overrides), capsys)
    assert snapshot(existing) == before  # OVERWRITE True deleted nothing, nothing new


@pytest.mark.parametrize("key, value", TYPE_CASES)
def test_value_of_the_wrong_type_is_one_line_exit_2_and_nothing_written(tmp_path, capsys, key, value):
    fresh = tmp_path / "fresh"
    line = refused_in_one_line("pretrain", cli_args("pretrain", fresh, key, value), capsys)
    assert key in line and not fresh.exists()


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder (the /sys row covers root)")
def test_output_dir_in_a_read_only_folder(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir(mode=0o555)
    line = refused_in_one_line("pretrain", cli_args("pretrain", locked / "run"), capsys)
    assert "OUTPUT_DIR" in line and not (locked / "run").exists()


@pytest.mark.slow
@pytest.mark.parametrize("overrides", [
    ("TRAIN.BATCH_SIZE", "64"),  # the 12 generated training clips give no step
    ("DATA.MEAN", "[0.5, 0.5, 0.5, 0.5]", "DATA.STD", "[0.2, 0.2, 0.2, 0.2]"),
    ("RNG_SEED", "-1"),
], ids=lambda o: o[0])
def test_the_tool_refuses_in_one_line_and_keeps_the_run(tmp_path, finished_run, video_data, overrides):
    """``tools/pretrain.py`` itself, on generated mp4s, pointed with OVERWRITE True at a finished run."""
    run = tmp_path / "run"
    shutil.copytree(finished_run, run)
    before = snapshot(run)
    args = ["--cfg", str(DEMO / "video_pretrain.yaml"), *real_overrides(run, video_data, "OVERWRITE", "True"),
            *overrides]
    done = subprocess.run([sys.executable, str(PRETRAIN_TOOL), *args], cwd=REPO, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}, timeout=WAIT_S)
    assert done.returncode == 2, done.stderr
    assert len(done.stderr.splitlines()) == 1 and overrides[0] in done.stderr, done.stderr
    assert snapshot(run) == before
