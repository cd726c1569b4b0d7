"""What a newcomer sees: readable epoch lines, a steady ETA, a finished run that says so, one-line
errors with exit status 2 and nothing written, the renamed and removed config keys."""
from __future__ import annotations

import logging
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from common import config as config_module
from common.config import ConfigError, config_from_yaml, get_cfg, load_config
from common.engine.jobs import format_record, run_job
from common.engine.progress import EpochMeter, SmoothedStepTime
from tests.engine.toy_data import DEMO, register_toy_dataset, toy_cfg

REPO = Path(__file__).resolve().parents[2]


def test_epoch_record_is_one_line_with_four_significant_digits():
    line = format_record({"epoch": 3, "train_loss": 0.123456, "lr": 1.23456e-4, "val_top1": 87.5,
                          "decode_failures": 0}, max_epoch=10)
    assert line == "epoch 3/10: train_loss 0.1235, lr 0.0001235, val_top1 87.5, decode_failures 0"


def test_eta_rate_is_an_exponential_average_carried_across_epochs():
    rate = SmoothedStepTime(weight=0.1)
    first = EpochMeter(steps_total=10, eta_rate=rate)
    first.update(loss=1.0, lr=0.1, data_time=9.0, compute_time=1.0, samples=8)  # a slow start-up step
    for _ in range(3):
        first.update(loss=1.0, lr=0.1, data_time=0.0, compute_time=1.0, samples=8)
    expected = 10.0
    for _ in range(3):
        expected = 0.9 * expected + 0.1 * 1.0
    assert rate.seconds == pytest.approx(expected)
    second = EpochMeter(steps_total=10, eta_rate=rate)  # the next epoch starts from the run's rate
    second.update(loss=1.0, lr=0.1, data_time=0.0, compute_time=1.0, samples=8)
    expected = 0.9 * expected + 0.1
    remaining_steps = 10 - 1 + 10  # this epoch's rest and one more epoch (epoch 2 of 3)
    line = second.progress_line(epoch=1, max_epoch=3, step=1)
    minutes, seconds = divmod(int(remaining_steps * expected), 60)
    assert f"eta 0:{minutes:02d}:{seconds:02d}" in line


def test_a_finished_run_started_again_says_so(tmp_path, caplog):
    register_toy_dataset()
    cfg = toy_cfg("video_pretrain", tmp_path / "run", "SOLVER.MAX_EPOCH", "1")
    first = run_job("pretrain", cfg)
    with caplog.at_level(logging.INFO):
        again = run_job("pretrain", cfg)
    assert again == {**first, "already_finished": True}
    assert f"nothing to do: {cfg.OUTPUT_DIR} finished at epoch 1" in caplog.text
    assert f"pretrain done: checkpoint {cfg.OUTPUT_DIR}/checkpoint-last.pth" in caplog.text


def _tool(tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, str(REPO / "tools" / "finetune.py"), *args], cwd=tmp_path,
                          capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("args, message", [
    (["SOLVER.MAX_EPOC", "3"], "unknown config key 'SOLVER.MAX_EPOC'"),
    (["SOLVER.BASE_LR", "-1.0"], "SOLVER.BASE_LR = -1.0: expected > 0"),
    (["DATA.PATH_TO_DATA_DIR", "no_such_folder"], "DATA.PATH_TO_DATA_DIR no_such_folder does not exist"),
])
def test_start_up_errors_are_one_message_exit_2_and_write_nothing(tmp_path, args, message):
    out = tmp_path / "run"
    result = _tool(tmp_path, "--cfg", str(DEMO / "video_finetune.yaml"), "OUTPUT_DIR", str(out),
                   "TRAIN.CHECKPOINT_FILE_PATH", "", *args)
    assert result.returncode == 2, result.stderr
    assert message in result.stderr and "Traceback" not in result.stderr + result.stdout
    assert not out.exists()


def test_model_num_classes_is_the_key_and_data_num_classes_warns_once(tmp_path, caplog, monkeypatch):
    monkeypatch.setattr(config_module, "_warned_keys", set())
    assert load_config(str(DEMO / "video_finetune.yaml")).MODEL.NUM_CLASSES == 0  # the count from the data
    old = tmp_path / "old.yaml"
    old.write_text("DATA:\n  NUM_CLASSES: 7\nTRAIN:\n  ENABLE: True\n")
    with caplog.at_level(logging.WARNING):
        cfg = load_config(str(old), ["DATA.NUM_CLASSES", "9"])
    assert cfg.MODEL.NUM_CLASSES == 9 and "NUM_CLASSES" not in cfg.DATA and "ENABLE" not in cfg.TRAIN
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert warnings == [f"config key DATA.NUM_CLASSES (from {old}) is deprecated: use MODEL.NUM_CLASSES",
                        f"config key TRAIN.ENABLE (from {old}) is deprecated: nothing reads it; it is ignored"]


def test_every_shipped_config_uses_model_num_classes():
    for path in sorted((REPO / "configs").rglob("*.yaml")):
        raw = yaml.safe_load(path.read_text())
        assert "NUM_CLASSES" not in raw.get("DATA", {}), path
        assert load_config(str(path)).MODEL.NUM_CLASSES >= 0  # 0: the count the data names


def test_a_checkpoint_config_of_an_older_run_still_loads():
    old = get_cfg().dump().replace("  NUM_CLASSES: 0\n", "", 1) + "TRAIN:\n  ENABLE: true\n"
    cfg = config_from_yaml(old.replace("DATA:\n", "DATA:\n  NUM_CLASSES: 5\n", 1), "checkpoint cfg")
    assert cfg.MODEL.NUM_CLASSES == 5
    with pytest.raises(ConfigError, match="expected a mapping"):
        config_from_yaml("- a list\n", "checkpoint cfg")
