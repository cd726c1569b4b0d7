"""What the demo prints: progress lines on the console by time, not by iteration (log.txt keeps
every line), and a bad override refused in one line before any data is generated. The short demo
run of test_demo.py checks the progress of every stage and the paths of the last lines."""
from __future__ import annotations

import logging
import re

import pytest

from common.engine import demo
from common.engine.progress import PROGRESS, setup_logging, show_on_console_only
from tests.demo.conftest import tool_main

DEMO_LOGGER = "common.engine.demo"


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


def test_a_bad_override_is_one_line_before_any_data_is_generated(tmp_path, capsys, monkeypatch):
    generated = []
    monkeypatch.setattr(demo, "ensure_synthetic_dataset", lambda cfg: generated.append(cfg))
    with pytest.raises(SystemExit) as stop:
        tool_main("demo")(["--output-dir", str(tmp_path / "demo"), "--seed", "-1"])
    err = capsys.readouterr().err.splitlines()
    assert stop.value.code == 2 and len(err) == 1 and "RNG_SEED = -1" in err[0], err
    assert generated == [] and not (tmp_path / "demo").exists()
