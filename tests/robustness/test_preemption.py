"""Preemption: SIGTERM / SIGUSR1 to a real ``tools/pretrain.py`` run checkpoint it and exit 0, and
the rerun resumes; sent to the whole process group (data workers included, as Slurm does) the
same; Ctrl-C checkpoints and exits, a second one stops at once; under submitit's local executor
the timeout signal requeues the job, which resumes and finishes with the weights of an
uninterrupted run."""
import os
import signal
import subprocess

import pytest
import submitit

from common.checkpoint import safe_load
from common.engine.jobs import run_job
from common.engine.preemption import DEFAULT_SIGNALS, INTERRUPTED_EXIT_CODE, PreemptionHandler, ignore_in_workers
from tests.engine.toy_data import real_cfg, real_overrides
from tests.robustness.helpers import (RECIPE, STEPS_PER_EPOCH, WAIT_S, PausedFirstAttempt, log_has, output_lines,
                                      pretrain_args, same_weights, start_tool, temp_files, wait_for)


def _progress_after(run, text: str):
    """A condition: ``log.txt`` has a progress line after the first line containing ``text``."""
    def holds() -> bool:
        log = (run / "log.txt").read_text() if (run / "log.txt").is_file() else ""
        return text in log and " it " in log.split(text, 1)[1]
    return holds


def _signal_and_wait(tmp_path, args, sig: signal.Signals, ready, name: str) -> dict:
    """Start the run, send ``sig`` once ``ready()`` holds, wait for the exit; returns the checkpoint."""
    out = tmp_path / f"{name}.out"
    proc = start_tool(args, out)
    try:
        wait_for(ready, f"{name}: training under way", proc)
    finally:
        proc.send_signal(sig)
        proc.wait(timeout=WAIT_S)
    assert proc.returncode == 0, out.read_text()[-3000:]
    run = tmp_path / "run"
    state = safe_load(run / "checkpoint-last.pth")
    assert log_has(run, f"received {sig.name}")()
    assert log_has(run, f"preempted: checkpoint saved at iteration {state['iteration']}")()
    assert state["iteration"] == state["epoch"] * STEPS_PER_EPOCH + state["epoch_iteration"]
    return state


@pytest.mark.slow
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGUSR1])
def test_signal_checkpoints_exits_cleanly_and_the_rerun_resumes(tmp_path, video_data, sig):
    run = tmp_path / "run"
    args = pretrain_args(run, video_data, "SOLVER.MAX_EPOCH", "50")  # the signal always lands mid-run
    first = _signal_and_wait(tmp_path, args, sig, _progress_after(run, "epoch 2/50 it 1/3"), "first")
    assert first["iteration"] > STEPS_PER_EPOCH
    if sig != signal.SIGTERM:
        return  # the rerun is the same for every signal: shown once
    second = _signal_and_wait(tmp_path, args, sig, _progress_after(run, "resumed from"), "second")
    assert log_has(run, f"at epoch {first['epoch']}, iteration {first['iteration']}")()
    assert second["iteration"] > first["iteration"]


@pytest.mark.slow
def test_submitit_timeout_signal_requeues_and_resumes(tmp_path, video_data):
    """Local executor, timeout path: its signal (USR2) comes 35 s after a task starts (60 s limit,
    25 s notice: the task must have imported torch and the engine and installed its handler by
    then, which took up to 30 s on the shared 2-core machine under load). The first attempt waits
    for it after one step, checkpoints and is requeued; the requeued plain ``JobRunner`` resumes
    (is requeued again if slow) and finishes."""
    overrides = real_overrides(tmp_path / "run", video_data, "SOLVER.MAX_EPOCH", "2")
    executor = submitit.LocalExecutor(folder=str(tmp_path / "submitit"))
    executor.update_parameters(timeout_min=1.0, signal_delay_s=25, tasks_per_node=1, cpus_per_task=1)
    job = executor.submit(PausedFirstAttempt("pretrain", str(RECIPE), overrides))
    assert job.result()["epoch"] == 2
    run = tmp_path / "run"
    assert log_has(run, "preempted: checkpoint saved at iteration 1")()
    assert log_has(run, "resumed from")()
    run_job("pretrain", real_cfg("video_pretrain", tmp_path / "reference", video_data, "SOLVER.MAX_EPOCH", "2"))
    done, expected = (safe_load(d / "checkpoint-last.pth") for d in (run, tmp_path / "reference"))
    assert done["iteration"] == expected["iteration"] == 2 * STEPS_PER_EPOCH
    assert same_weights(done["model"], expected["model"])


def _signal_group_while_held(tmp_path, args, sig: signal.Signals, step: int, name: str) -> subprocess.Popen:
    """Run with 2 data workers in its own process group, held after optimizer step ``step``;
    send ``sig`` to the whole group (the run and its workers, as Slurm and Ctrl-C do), let the
    run go on once it logged the signal, and wait for its exit."""
    marker, run = tmp_path / f"{name}.held", tmp_path / "run"
    proc = start_tool(args, tmp_path / f"{name}.out", pause_at=f"hold:{step}", marker=marker, own_group=True)
    try:
        wait_for(marker.is_file, f"{name}: the hold after step {step}", proc)
        os.killpg(proc.pid, sig)
        wait_for(log_has(run, "Ctrl-C" if sig == signal.SIGINT else f"received {sig.name}"), "the signal logged", proc)
        marker.unlink()
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return proc


@pytest.mark.slow
def test_group_signals_with_data_workers_checkpoint_and_the_rerun_resumes_there(tmp_path, video_data):
    """SIGTERM to the process group of a run with 2 data workers (Slurm): checkpoint, exit 0. The
    rerun resumes at the saved iteration; Ctrl-C to its group: checkpoint, exit 130."""
    run = tmp_path / "run"
    args = pretrain_args(run, video_data, "SOLVER.MAX_EPOCH", "2", "DATA_LOADER.NUM_WORKERS", "2")
    step = STEPS_PER_EPOCH + 1
    proc = _signal_group_while_held(tmp_path, args, signal.SIGTERM, step, "sigterm")
    assert proc.returncode == 0, (tmp_path / "sigterm.out").read_text()[-3000:]
    state = safe_load(run / "checkpoint-last.pth")
    assert (state["epoch"], state["iteration"], state["epoch_iteration"]) == (1, step, 1)

    proc = _signal_group_while_held(tmp_path, args, signal.SIGINT, 1, "ctrl-c")  # held after its first step
    assert proc.returncode == INTERRUPTED_EXIT_CODE == 130, (tmp_path / "ctrl-c.out").read_text()[-3000:]
    assert log_has(run, f"resumed from {run / 'checkpoint-last.pth'} at epoch 1, iteration {step}")()
    state = safe_load(run / "checkpoint-last.pth")
    assert (state["epoch"], state["iteration"], state["epoch_iteration"]) == (1, step + 1, 2)
    assert log_has(run, f"preempted: checkpoint saved at iteration {step + 1}")()


def test_a_second_ctrl_c_stops_at_once():
    handler = PreemptionHandler().install()
    try:
        os.kill(os.getpid(), signal.SIGINT)
        assert handler.requested and handler.received == signal.SIGINT
        with pytest.raises(KeyboardInterrupt):
            os.kill(os.getpid(), signal.SIGINT)
    finally:
        handler.uninstall()
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@pytest.mark.slow
def test_a_second_ctrl_c_during_the_preemption_save_exits_130_with_one_line(tmp_path, video_data):
    """The first Ctrl-C lands after a step of epoch 2, the second while ``torch.save`` is writing
    the preemption checkpoint: the run stops at once, exit 130, one line, no traceback, and
    ``checkpoint-last.pth`` is still epoch 1's, with no temp file left."""
    run, out = tmp_path / "run", tmp_path / "ctrl-c.out"
    held, writing = tmp_path / "held", tmp_path / "writing"
    args = pretrain_args(run, video_data, "SOLVER.MAX_EPOCH", "2")
    proc = start_tool(args, out, pause_at=[f"hold:{STEPS_PER_EPOCH + 1}", "write:checkpoint-last.pth:2"],
                      marker=[held, writing], own_group=True)
    try:
        wait_for(held.is_file, "the hold after the first step of epoch 2", proc)
        previous = (run / "checkpoint-last.pth").read_bytes()
        os.killpg(proc.pid, signal.SIGINT)
        wait_for(log_has(run, "Ctrl-C: checkpointing"), "the first Ctrl-C logged", proc)
        held.unlink()
        wait_for(writing.is_file, "the preemption save under way", proc)
        os.killpg(proc.pid, signal.SIGINT)
        proc.wait(timeout=WAIT_S)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = out.read_text()
    assert proc.returncode == INTERRUPTED_EXIT_CODE, text[-3000:]
    assert "Traceback" not in text and output_lines(out)[-1] == "interrupted: stopped at once (Ctrl-C)"
    assert log_has(run, "second Ctrl-C: stopping at once, without a checkpoint")()
    assert (run / "checkpoint-last.pth").read_bytes() == previous and temp_files(run) == []


def test_data_workers_ignore_the_signals_meant_for_the_main_process():
    saved = {sig: signal.getsignal(sig) for sig in DEFAULT_SIGNALS}
    try:
        ignore_in_workers(0)
        assert {signal.getsignal(sig) for sig in DEFAULT_SIGNALS} == {signal.SIG_IGN}
        assert set(DEFAULT_SIGNALS) == {signal.SIGTERM, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT}
    finally:
        for sig, handler in saved.items():
            signal.signal(sig, handler)
