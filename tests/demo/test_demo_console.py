"""What the demo prints: a progress line with an ETA every few seconds in every stage (by time,
not by iteration: log.txt keeps every line), last lines whose paths all exist, and a bad override
refused in one line before any data is generated."""
from __future__ import annotations

import logging
import re
from datetime import datetime
from pathlib import Path

import pytest

from common.engine import demo
from common.engine.progress import PROGRESS, setup_logging, show_on_console_only
from tests.demo.conftest import tool_main
from tests.demo.test_demo import SHORT
from videoconvmae.data.synthetic import make_synthetic_video_dataset
from videoconvmae.modality import SYNTHETIC_RECIPE

DEMO_LOGGER = "common.engine.demo"
PERIOD_S = 0.3  # the test's --progress-every: steps of the tiny model take about that long
STAGE_START = re.compile(r"demo \[(\d)/(\d)\] .* -> ")
TIMESTAMP = re.compile(r"^\[(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3}) ")


def _progress_record(logger: logging.Logger, second: int) -> logging.LogRecord:
    record = logger.makeRecord(logger.name, logging.INFO, __file__, 0, "it %d eta 0:00:%02d", (second, 20 - second),
                               None, extra=PROGRESS)
    record.created = 1000.0 + second
    return record


def test_the_demo_console_shows_progress_by_time_not_by_iteration(capsys):
    setup_logging(None, is_main=True)
    show_on_console_only([DEMO_LOGGER], progress_every_s=5.0)
    try:
        trainer = logging.getLogger("common.engine.trainer")
        for second in range(21):  # a progress line every second (every LOG.PERIOD steps, say)
            trainer.handle(_progress_record(trainer, second))
        trainer.info("epoch 1/1: train_loss 0.5000")  # not a progress line: the log files only
        logging.getLogger(DEMO_LOGGER).info("demo [1/5] pretrain done in 21 s")
        logging.getLogger("common.engine.jobs").warning("a warning always shows")
        trainer.handle(_progress_record(trainer, 21))  # the first after a stage line: at once
    finally:
        show_on_console_only([])
    out = capsys.readouterr().out
    assert re.findall(r"it (\d+) eta", out) == ["0", "5", "10", "15", "20", "21"]
    assert "train_loss" not in out and "demo [1/5] pretrain done" in out and "a warning always shows" in out


def _seconds(line: str) -> float:
    return datetime.strptime(TIMESTAMP.match(line).group(1), "%Y-%m-%d %H:%M:%S,%f").timestamp()


@pytest.mark.slow
def test_every_stage_shows_progress_with_an_eta_and_the_last_lines_give_existing_paths(tmp_path, capsys):
    out = tmp_path / "demo"
    make_synthetic_video_dataset(str(out / "data"), formats=("kinetics",),
                                 **{**SYNTHETIC_RECIPE, "clips_per_class": (2, 1, 1)})
    # 8 training clips in batches of 2: 4 steps per epoch, each logged (LOG.PERIOD 1) in log.txt.
    tool_main("demo")(["--output-dir", str(out), "--progress-every", str(PERIOD_S), *SHORT,
                       "TRAIN.BATCH_SIZE", "2", "LOG.PERIOD", "1"])
    console = capsys.readouterr().out.splitlines()

    starts = [i for i, line in enumerate(console) if STAGE_START.search(line)]
    assert [STAGE_START.search(console[i]).group(1) for i in starts] == ["1", "2", "3", "4", "5"]
    for start, end in zip(starts, starts[1:] + [len(console)]):
        assert any(" eta " in line for line in console[start + 1:end]), f"no progress after {console[start]}"
    progress = [line for line in console if " eta " in line]
    assert all(b - a >= PERIOD_S - 0.001 for a, b in zip(map(_seconds, progress), map(_seconds, progress[1:])))
    logged = [line for line in (out / "log.txt").read_text().splitlines() if " eta " in line]
    assert len(logged) >= len(progress) and len(logged) >= 3 * 4  # every step of the 3 one-epoch training stages

    last = {line.split(": ", 1)[0]: line.split(": ", 1)[1].split(", ") for line in console
            if line.startswith(("results: ", "pictures: ", "logs: "))}
    assert set(last) == {"results", "pictures", "logs"}, console[-5:]
    for paths in last.values():
        for path in paths:
            assert Path(path).exists(), path
    assert str(out / "reconstruction.png") in last["pictures"] and str(out / "log.txt") in last["logs"]


def test_a_bad_override_is_one_line_before_any_data_is_generated(tmp_path, capsys, monkeypatch):
    generated = []
    monkeypatch.setattr(demo, "ensure_synthetic_dataset", lambda cfg: generated.append(cfg))
    with pytest.raises(SystemExit) as stop:
        tool_main("demo")(["--output-dir", str(tmp_path / "demo"), "--seed", "-1"])
    err = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "RNG_SEED = -1" in err[0], err
    assert generated == [] and not (tmp_path / "demo").exists()
