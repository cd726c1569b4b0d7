"""The learning rate the optimizer actually applies, read from its param groups at every step of a
real training job, against the schedule written out here: linear warm-up from 0 over
WARMUP_EPOCHS x steps-per-epoch optimizer steps (epochs, not steps, not micro-batches), then a
half-cosine down to MIN_LR at the end of the last epoch."""
import math

import pytest
from torch.optim.optimizer import register_optimizer_step_pre_hook

from common.engine.jobs import run_job
from tests.engine.toy_data import toy_cfg

TRAIN_ITEMS = 16  # the toy dataset's training split


@pytest.fixture
def applied_lrs():
    """Every optimizer step's lr, one list of its param groups' lrs per step."""
    steps = []
    handle = register_optimizer_step_pre_hook(
        lambda optimizer, args, kwargs: steps.append([group["lr"] for group in optimizer.param_groups]))
    yield steps
    handle.remove()


def expected_lr(k: int, *, peak: float, min_lr: float, warmup_steps: float, total_steps: int) -> float:
    if k < warmup_steps:
        return peak * k / warmup_steps
    progress = (k - warmup_steps) / (total_steps - warmup_steps)
    return min_lr + (peak - min_lr) * (1 + math.cos(math.pi * progress)) / 2


def test_lr_applied_at_every_step_follows_warmup_over_epochs_then_cosine(tmp_path, applied_lrs):
    batch, accum, epochs, warmup_epochs, base_lr, min_lr = 2, 2, 3, 1.5, 0.064, 1e-5
    run_job("pretrain", toy_cfg("video_pretrain", tmp_path, "TRAIN.BATCH_SIZE", str(batch),
                                "TRAIN.ACCUM_ITER", str(accum), "SOLVER.MAX_EPOCH", str(epochs),
                                "SOLVER.WARMUP_EPOCHS", str(warmup_epochs), "SOLVER.BASE_LR", str(base_lr),
                                "SOLVER.MIN_LR", str(min_lr), "SOLVER.LAYER_DECAY", "1.0"))
    steps_per_epoch = TRAIN_ITEMS // batch // accum  # optimizer steps: 8 micro-batches -> 4 steps
    peak = base_lr * batch * accum / 256  # the linear scaling rule, per 256 samples of a step
    expected = [expected_lr(k, peak=peak, min_lr=min_lr, warmup_steps=warmup_epochs * steps_per_epoch,
                            total_steps=epochs * steps_per_epoch) for k in range(epochs * steps_per_epoch)]
    assert len(applied_lrs) == epochs * steps_per_epoch == 12
    assert all(len(set(groups)) == 1 for groups in applied_lrs)  # LAYER_DECAY 1: every group alike
    assert [groups[0] for groups in applied_lrs] == pytest.approx(expected, rel=1e-12, abs=0)
    # Warm-up spans 1.5 epochs = 6 steps: still rising at step 5, the peak at step 6.
    assert applied_lrs[5][0] == pytest.approx(peak * 5 / 6) and applied_lrs[6][0] == pytest.approx(peak)
