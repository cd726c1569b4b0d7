"""SIGKILL at several points of a real ``tools/pretrain.py`` run, restart, and compare with an
uninterrupted run: resume from the last complete checkpoint, no corrupt or half-written file
taken for a checkpoint, the same losses and the same final weights."""
import signal

import pytest

from tests.robustness.helpers import (STEPS_PER_EPOCH, epoch_losses, load_all_checkpoints, log_has, pretrain_args,
                                      run_tool, same_weights, start_tool, temp_files, wait_for)


def _kill_when_paused(tmp_path, args, pause_at: str, name: str) -> None:
    """Run with a pause at ``pause_at``, SIGKILL the run once it is paused there."""
    marker = tmp_path / f"{name}.paused"
    proc = start_tool(args, tmp_path / f"{name}.out", pause_at=pause_at, marker=marker)
    try:
        wait_for(marker.is_file, f"the pause at {pause_at}", proc)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL


@pytest.mark.slow
def test_sigkill_mid_epoch_and_while_saving_then_resume_matches_uninterrupted_run(tmp_path, video_data):
    reference, run = tmp_path / "reference", tmp_path / "run"
    assert run_tool(pretrain_args(reference, video_data), tmp_path / "reference.out") == 0

    # 1. Killed mid-epoch 2 (one step into it): only epoch 1's checkpoint exists.
    _kill_when_paused(tmp_path, pretrain_args(run, video_data), f"step:{STEPS_PER_EPOCH + 1}", "kill1")
    saved = load_all_checkpoints(run)
    assert list(saved) == ["checkpoint-last.pth"]
    assert (saved["checkpoint-last.pth"]["epoch"], saved["checkpoint-last.pth"]["iteration"]) == (1, STEPS_PER_EPOCH)

    # 2. Restarted, killed inside its first checkpoint write (end of epoch 2): the data is in a
    # temp file, checkpoint-last.pth is still epoch 1's and loads.
    _kill_when_paused(tmp_path, pretrain_args(run, video_data), "save:1", "kill2")
    assert log_has(run, f"resumed from {run / 'checkpoint-last.pth'} at epoch 1, iteration {STEPS_PER_EPOCH}")()
    assert len(temp_files(run)) == 1
    saved = load_all_checkpoints(run)
    assert list(saved) == ["checkpoint-last.pth"] and saved["checkpoint-last.pth"]["epoch"] == 1

    # 3. Restarted again: resumes from epoch 1 (not from the temp file, which it removes) and finishes.
    assert run_tool(pretrain_args(run, video_data), tmp_path / "final.out") == 0
    assert log_has(run, "left half-written by a run that was killed")()
    assert temp_files(run) == []
    assert epoch_losses(run) == epoch_losses(reference) and sorted(epoch_losses(run)) == [1, 2, 3]
    done, expected = load_all_checkpoints(run), load_all_checkpoints(reference)
    assert sorted(done) == sorted(expected) == ["checkpoint-3.pth", "checkpoint-last.pth"]
    assert done["checkpoint-last.pth"]["iteration"] == 3 * STEPS_PER_EPOCH
    assert same_weights(done["checkpoint-last.pth"]["model"], expected["checkpoint-last.pth"]["model"])
    assert same_weights(done["checkpoint-last.pth"]["optimizer"]["state"][0],
                        expected["checkpoint-last.pth"]["optimizer"]["state"][0])
