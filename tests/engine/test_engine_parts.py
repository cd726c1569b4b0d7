"""Precision selection, preemption handler, distributed helpers (single process), progress meter, files."""
import json
import os
import signal

import pytest
import torch

from common.engine.distributed import (DistInfo, all_gather_objects, all_reduce_sum, any_rank, barrier,
                                       init_distributed, world_size)
from common.files import atomic_write_text
from common.engine.precision import resolve_precision
from common.engine.preemption import PreemptionHandler
from common.engine.progress import EpochMeter, MetricsWriter, setup_logging

CPU = torch.device("cpu")


def test_resolve_precision_on_cpu():
    assert resolve_precision("auto", CPU).dtype is None
    bf16 = resolve_precision("bf16", CPU)
    assert bf16.dtype == torch.bfloat16 and not bf16.needs_scaler and bf16.grad_scaler() is None
    with bf16.autocast():
        assert (torch.ones(2, 2) @ torch.ones(2, 2)).dtype == torch.bfloat16
    with pytest.raises(ValueError, match="CUDA"):
        resolve_precision("fp16", CPU)
    with pytest.raises(ValueError, match="TRAIN.PRECISION"):
        resolve_precision("fp8", CPU)


def test_single_process_distributed_helpers(monkeypatch):
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    info = init_distributed()
    assert info == DistInfo(rank=0, world_size=1, local_rank=0, device=info.device) and info.is_main
    assert world_size() == 1 and all_gather_objects({"a": 1}) == [{"a": 1}]
    assert all_reduce_sum(torch.tensor([1.0, 2.0])).tolist() == [1.0, 2.0]
    assert any_rank([True, False], CPU) == [True, False]
    barrier()


def test_preemption_handler_records_and_chains_previous():
    calls = []
    previous = signal.signal(signal.SIGUSR1, lambda s, f: calls.append(s))
    try:
        handler = PreemptionHandler([signal.SIGUSR1]).install()
        assert not handler.requested
        os.kill(os.getpid(), signal.SIGUSR1)
        assert handler.requested and calls == []
        with pytest.raises(SystemExit):
            handler.finish()
        assert calls == [signal.SIGUSR1]  # handed on to the handler installed before
    finally:
        signal.signal(signal.SIGUSR1, previous)


def test_epoch_meter_line_and_summary():
    meter = EpochMeter(steps_total=4)
    meter.update(loss=2.0, lr=0.1, data_time=0.1, compute_time=0.9, samples=8)
    meter.update(loss=1.0, lr=0.2, data_time=0.1, compute_time=0.9, samples=8)
    line = meter.progress_line(epoch=0, max_epoch=3, step=2)
    for part in ("epoch 1/3", "it 2/4", "eta 0:00:10", "loss 1.0000 (1.5000)", "lr 2.000e-01",
                 "data 0.100s", "compute 0.900s", "(10.0% wait)", "8.0 samples/s"):
        assert part in line
    summary = meter.summary()
    assert summary["train_loss"] == 1.5 and summary["data_wait_fraction"] == pytest.approx(0.1)


def test_metrics_writer_appends_json_lines(tmp_path):
    writer = MetricsWriter(str(tmp_path), tensorboard=True)
    writer.write({"epoch": 1, "loss": 0.5}, step=1)
    writer.write({"epoch": 2, "loss": 0.4}, step=2)
    writer.close()
    lines = (tmp_path / "log.jsonl").read_text().splitlines()
    assert [json.loads(line)["epoch"] for line in lines] == [1, 2]
    assert (tmp_path / "tensorboard").is_dir()


def test_setup_logging_writes_log_file(tmp_path):
    import logging
    setup_logging(str(tmp_path), is_main=True)
    logging.getLogger("x").info("hello")
    assert "hello" in (tmp_path / "log.txt").read_text()


def test_atomic_write_text_replaces(tmp_path):
    path = tmp_path / "a.txt"
    atomic_write_text(str(path), "one")
    atomic_write_text(str(path), "two")
    assert path.read_text() == "two" and os.listdir(tmp_path) == ["a.txt"]
