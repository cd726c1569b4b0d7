"""The four jobs — pretrain, finetune, linprobe, test — for images and videos alike.

``run_job(job, cfg)`` is what the tools and the submitit launcher call. Training jobs differ
only in their ``JobSpec`` (dataset mode, model family, loss, evaluation); the loop is shared.
"""
from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any, Dict, Optional

import torch
from fvcore.common.config import CfgNode
from timm.loss import SoftTargetCrossEntropy
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import Dataset

from common.checkpoint import model_state_dict, safe_load
from common.config import RESOLVED_CONFIG_NAME, TEST_CONFIG_NAME, save_config
from common.data import batch_inputs, build_dataset, build_mixup
from common.data.class_count import resolve_num_classes
from common.engine.builders import (attach_probe_head, build_eval_loader, build_model, build_train_loader,
                                    clips_per_step, train_sampler, with_classifier_weights)
from common.engine.compilation import compile_model
from common.engine.config_checks import check_dataset_sizes, validate_config
from common.engine.checkpoint_budget import (CheckpointPlan, check_disk_space, checkpoint_plan, epoch_outputs,
                                             save_epoch_checkpoints, write_epoch_copies)
from common.engine.checkpointing import (LAST_CHECKPOINT, CheckpointSaveError, Position, find_resume_checkpoint,
                                         gather_training_state, load_initial_weights, load_resume_state,
                                         missing_epoch_record, resume_training_state, saved_epoch_sums)
from common.engine.distributed import DistInfo, barrier, init_distributed
from common.engine.evaluation import (PREDICTIONS_FILE, RESULTS_FILE, evaluate_accuracy, gather_results,
                                       predict_videos, write_test_outputs)
from common.engine.inference import class_names_of_config
from common.engine.output_dir import claim_output_dir, overwrite_previous_run
from common.engine.precision import resolve_precision
from common.engine.preemption import PreemptionHandler
from common.engine.progress import JSON_LOG_FILE, LOG_FILE, MetricsWriter, setup_logging
from common.engine.rewind import NonFiniteTrip, RewindState, apply_precision, rewind
from common.engine.rng import make_deterministic, seed_everything
from common.engine.trainer import LossFn, StepConfig, TrainState, check_finite_weights, train_one_epoch
from common.errors import DataNotFoundError
from common.files import read_json_lines
from common.modality import modality_of_config
from common.optim import CosineSchedule, build_optimizer, scaled_lr

logger = logging.getLogger(__name__)

JOBS = ("pretrain", "finetune", "linprobe", "test")


@dataclass(frozen=True)
class JobSpec:
    """What distinguishes the training jobs."""

    train_mode: str  # dataset mode of common.data.build_dataset
    pretraining: bool  # masked autoencoder (True) or classifier
    linear_probe: bool = False
    evaluates: bool = False


TRAINING_JOBS = {
    "pretrain": JobSpec(train_mode="pretrain", pretraining=True),
    "finetune": JobSpec(train_mode="finetune", pretraining=False, evaluates=True),
    "linprobe": JobSpec(train_mode="finetune", pretraining=False, linear_probe=True, evaluates=True),
}


def run_job(job: str, cfg: CfgNode) -> Dict[str, Any]:
    """Run ``job`` (one of ``JOBS``) with the frozen ``cfg``; returns its final metrics."""
    if job not in JOBS:
        raise ValueError(f"job must be one of {JOBS}, got {job!r}")
    dist = init_distributed(cfg.DIST.BACKEND)
    validate_config(cfg, job=job, world_size=dist.world_size)
    cfg, class_count = resolve_num_classes(cfg, job)  # MODEL.NUM_CLASSES 0: the count the data names
    datasets = build_job_datasets(cfg, job)  # a missing dataset stops here, before OUTPUT_DIR is touched
    check_dataset_sizes(cfg, job, datasets, dist.world_size)
    setup_logging(cfg.OUTPUT_DIR, is_main=dist.is_main)
    log_data(datasets, class_count)
    with claim_output_dir(cfg, job=job, is_main=dist.is_main):
        barrier()  # the other ranks look for a checkpoint only after the main rank's decision
        seed_everything(cfg.RNG_SEED + dist.rank)
        if cfg.DETERMINISTIC:
            make_deterministic()
        if job == "test":
            metrics = run_test(cfg, dist, datasets["test"])
        else:
            metrics = run_training(cfg, dist, TRAINING_JOBS[job], datasets)
        logger.info("%s", run_summary(cfg, job))
        return metrics


def run_summary(cfg: CfgNode, job: str) -> str:
    """The last line of a run: where its results are."""
    out = cfg.OUTPUT_DIR
    if job == "test":
        return f"test done: {os.path.join(out, RESULTS_FILE)}, {os.path.join(out, PREDICTIONS_FILE)}"
    return (f"{job} done: checkpoint {os.path.join(out, LAST_CHECKPOINT)}, logs {os.path.join(out, LOG_FILE)} and "
            f"{os.path.join(out, JSON_LOG_FILE)}")


def build_job_datasets(cfg: CfgNode, job: str) -> Dict[str, Dataset]:
    """The datasets ``job`` reads, by dataset mode: ``test``, or the training mode and ``val``."""
    if job == "test":
        modes = ["test"]
    else:
        spec = TRAINING_JOBS[job]
        modes = [spec.train_mode] + (["val"] if spec.evaluates else [])
    return {mode: build_dataset(cfg, mode) for mode in modes}


def log_data(datasets: Dict[str, Dataset], class_count: str) -> None:
    """Say what each dataset found (and skipped, and why) and where the class count comes from."""
    for mode, dataset in datasets.items():
        logger.info("%s data: %s", mode, getattr(dataset, "source_summary", f"{len(dataset)} items"))
    if class_count:
        logger.info("%s", class_count)


def save_resolved_config(cfg: CfgNode, dist: DistInfo, name: str) -> None:
    """Write ``OUTPUT_DIR/name`` once the run has passed every check (model, weights, data built),
    so a run that fails them leaves the previous run's config as it was."""
    if dist.is_main:
        logger.info("config saved to %s", save_config(cfg, cfg.OUTPUT_DIR, name))


def prepare_model(cfg: CfgNode, spec: JobSpec, *, load_start_weights: bool = True) -> nn.Module:
    """The job's model with its starting weights (``TRAIN.CHECKPOINT_FILE_PATH``, unless
    ``load_start_weights`` is False: a resumed run), probe head attached."""
    model = build_model(cfg, pretraining=spec.pretraining, crop_size=cfg.DATA.TRAIN_CROP_SIZE)
    if cfg.TRAIN.CHECKPOINT_FILE_PATH and load_start_weights:
        load_initial_weights(model, cfg.TRAIN.CHECKPOINT_FILE_PATH, into_classifier=not spec.pretraining)
    return attach_probe_head(model) if spec.linear_probe else model


def build_loss_fn(cfg: CfgNode, spec: JobSpec, device: torch.device) -> LossFn:
    """Pretraining: the model's reconstruction loss. Classification: (soft-target) cross-entropy,
    with mixup/cutmix when ``MIXUP.ENABLE`` (finetuning only)."""
    if spec.pretraining:
        def reconstruction_loss(model: nn.Module, batch: Dict[str, Any]) -> torch.Tensor:
            return model(batch_inputs(batch, device))[0]
        return reconstruction_loss
    mixup = None if spec.linear_probe else build_mixup(cfg)
    criterion = SoftTargetCrossEntropy() if mixup else nn.CrossEntropyLoss(label_smoothing=cfg.AUG.LABEL_SMOOTHING)

    def classification_loss(model: nn.Module, batch: Dict[str, Any]) -> torch.Tensor:
        inputs = batch_inputs(batch, device)
        targets = batch["label"].to(device, non_blocking=True)
        if mixup is not None:
            inputs, targets = mixup(inputs, targets)
        return criterion(model(inputs), targets)
    return classification_loss


def run_training(cfg: CfgNode, dist: DistInfo, spec: JobSpec, datasets: Dict[str, Dataset]) -> Dict[str, Any]:
    """Train (resuming from ``OUTPUT_DIR/checkpoint-last.pth`` if present); returns the last epoch's log."""
    resume = load_resume_state(cfg.OUTPUT_DIR) if cfg.TRAIN.AUTO_RESUME and not cfg.OVERWRITE else None
    model = prepare_model(cfg, spec, load_start_weights=resume is None).to(dist.device)
    precision = resolve_precision(cfg.TRAIN.PRECISION, dist.device)
    loader = build_train_loader(cfg, datasets[spec.train_mode], dist)
    val_loader = build_eval_loader(cfg, datasets["val"], dist) if spec.evaluates else None
    steps = len(loader) // cfg.TRAIN.ACCUM_ITER
    if steps == 0:
        raise ValueError(f"the {spec.train_mode} dataset gives no full step of TRAIN.BATCH_SIZE "
                         f"{cfg.TRAIN.BATCH_SIZE} x TRAIN.ACCUM_ITER {cfg.TRAIN.ACCUM_ITER}")
    lr = scaled_lr(cfg.SOLVER.BASE_LR, clips_per_step(cfg))
    optimizer = build_optimizer(model, method=cfg.SOLVER.OPTIMIZING_METHOD, lr=lr,
                                weight_decay=cfg.SOLVER.WEIGHT_DECAY, layer_decay=cfg.SOLVER.LAYER_DECAY,
                                betas=cfg.SOLVER.BETAS, momentum=cfg.SOLVER.MOMENTUM, fused=cfg.SOLVER.FUSED)
    state = TrainState(model=model, optimizer=optimizer, scaler=precision.grad_scaler())
    if resume:
        path, saved = resume
        state.position = resume_training_state(path, model=model, optimizer=optimizer, scaler=state.scaler,
                                               rank=dist.rank, state=saved)
        state.epoch_sums = saved_epoch_sums(saved, dist.rank)
        state.rewinds = RewindState.of_checkpoint(saved)
        restore_epoch_outputs(cfg, saved, dist)
    if state.position.epoch >= cfg.SOLVER.MAX_EPOCH:
        return finished_run_record(cfg)
    compile_model(model, cfg.TRAIN.COMPILE, backend=cfg.TRAIN.COMPILE_BACKEND)  # in place, before DDP wraps it
    if dist.world_size > 1:
        state.model = DistributedDataParallel(model, device_ids=[dist.device.index] if dist.device.type == "cuda" else None)
    conf = StepConfig(
        loss_fn=build_loss_fn(cfg, spec, dist.device),
        schedule=CosineSchedule(base_lr=lr, min_lr=cfg.SOLVER.MIN_LR,
                                warmup_iters=round(cfg.SOLVER.WARMUP_EPOCHS * steps),
                                total_iters=cfg.SOLVER.MAX_EPOCH * steps),
        precision=precision, dist=dist, accum_iter=cfg.TRAIN.ACCUM_ITER, clip_grad=cfg.SOLVER.CLIP_GRAD,
        max_nonfinite_steps=cfg.TRAIN.MAX_NONFINITE_STEPS, log_period=cfg.LOG.PERIOD,
        max_epoch=cfg.SOLVER.MAX_EPOCH, output_dir=cfg.OUTPUT_DIR, cfg_yaml=cfg.dump(),
    )
    logger.info("%s: %d steps/epoch of %d samples, lr %.3e, precision %s, %d rank(s)", cfg.MODEL.NAME, steps,
                clips_per_step(cfg), lr, precision.dtype or "fp32", dist.world_size)
    plan = checkpoint_plan(cfg, model, optimizer)
    check_disk_space(cfg.OUTPUT_DIR, plan, state.position, dist, overwrite=cfg.OVERWRITE)
    if dist.is_main:
        overwrite_previous_run(cfg)  # only now: a run that failed before this point deleted nothing
    save_resolved_config(cfg, dist, RESOLVED_CONFIG_NAME)
    return _epochs(cfg, state, conf, loader, val_loader, steps, plan)


def restore_epoch_outputs(cfg: CfgNode, saved: Dict[str, Any], dist: DistInfo) -> None:
    """Write what the last save of a run that was stopped half-way through did not (the checkpoint
    it resumes from holds it all): the periodic and weights-only copies, the ``log.jsonl`` record."""
    if not dist.is_main:
        return
    for path in write_epoch_copies(cfg.OUTPUT_DIR, saved, cfg.TRAIN.KEEP_CHECKPOINTS, only_missing=True):
        logger.warning("%s was missing: rebuilt from the checkpoint the run resumes from", path)
    record = missing_epoch_record(cfg.OUTPUT_DIR, saved)
    if record is not None:
        _append_record(MetricsWriter(cfg.OUTPUT_DIR, tensorboard=False), record)
        logger.warning("epoch %d's record was missing from %s: rebuilt from the checkpoint", record["epoch"],
                       JSON_LOG_FILE)


def finished_run_record(cfg: CfgNode) -> Dict[str, Any]:
    """A run that is already complete: say so, and return its last epoch's record."""
    log_path = os.path.join(cfg.OUTPUT_DIR, JSON_LOG_FILE)
    records = [r for r in read_json_lines(log_path) if "train_loss" in r] if os.path.isfile(log_path) else []
    logger.info("nothing to do: %s finished at epoch %d; its results are in %s (%s, %s)", cfg.OUTPUT_DIR,
                cfg.SOLVER.MAX_EPOCH, cfg.OUTPUT_DIR, LAST_CHECKPOINT, JSON_LOG_FILE)
    return {**(records[-1] if records else {}), "already_finished": True}


def format_record(record: Dict[str, Any], max_epoch: int) -> str:
    """One epoch's record for a person: ``epoch 3/10: train_loss 0.4321, lr 0.0001234, ...``
    (4 significant digits)."""
    values = ", ".join(f"{key} {value:.4g}" if isinstance(value, float) else f"{key} {value}"
                       for key, value in record.items() if key != "epoch")
    return f"epoch {record['epoch']}/{max_epoch}: {values}"


def _epochs(cfg: CfgNode, state: TrainState, conf: StepConfig, loader, val_loader, steps: int,
            plan: CheckpointPlan) -> Dict[str, Any]:
    """Train the remaining epochs; a divergence rewinds (``common.engine.rewind``) or stops the run."""
    writer = MetricsWriter(cfg.OUTPUT_DIR, tensorboard=cfg.LOG.TENSORBOARD) if conf.dist.is_main else None
    preemption = PreemptionHandler().install()
    record: Dict[str, Any] = {}
    conf = apply_precision(state, conf)  # what rewinds before a requeue turned off stays off
    try:
        while state.position.epoch < cfg.SOLVER.MAX_EPOCH:
            try:
                record = _epoch(cfg, state, conf, loader, val_loader, steps, plan, preemption, writer)
            except NonFiniteTrip as trip:
                conf = rewind(state, conf, trip, max_rewinds=cfg.TRAIN.MAX_REWINDS,
                              micro_batch=_micro_batch(cfg, loader), writer=writer)
    finally:
        preemption.uninstall()
        if writer is not None:
            writer.close()
    barrier()
    return record


def _epoch(cfg: CfgNode, state: TrainState, conf: StepConfig, loader, val_loader, steps: int, plan: CheckpointPlan,
           preemption: PreemptionHandler, writer: Optional[MetricsWriter]) -> Dict[str, Any]:
    """Train the epoch ``state.position.epoch`` (from where it stands), validate, save its
    checkpoints, then append its record to ``log.jsonl`` (the checkpoint holds it too)."""
    epoch = state.position.epoch
    train_sampler(loader).set_epoch(epoch, start=state.position.epoch_iteration * _micro_batch(cfg, loader),
                                    redraws=state.rewinds.redraws_for(epoch))
    record = {"epoch": epoch + 1, **train_one_epoch(state, iter(loader), steps=steps, conf=conf, preemption=preemption)}
    check_finite_weights(state, conf, f"at the end of epoch {epoch + 1}")
    state.position = Position(epoch + 1, state.position.iteration, 0)
    last = epoch + 1 == cfg.SOLVER.MAX_EPOCH
    if val_loader is not None and ((epoch + 1) % cfg.TRAIN.EVAL_PERIOD == 0 or last):
        record.update({f"val_{k}": v for k, v in _validate(cfg, state, conf, val_loader).items()})
    outputs = epoch_outputs(plan, epoch + 1, record)
    saved = gather_training_state(model=state.unwrapped, optimizer=state.optimizer, scaler=state.scaler,
                                  position=state.position, cfg_yaml=conf.cfg_yaml, dist=conf.dist,
                                  extra={"rewinds": state.rewinds.to_checkpoint(), "epoch_outputs": outputs})
    if saved is not None:
        save_epoch_checkpoints(cfg.OUTPUT_DIR, saved, plan.keep)
    if writer is not None:
        _append_record(writer, record)
    logger.info("%s", format_record(record, cfg.SOLVER.MAX_EPOCH))
    return record


def _micro_batch(cfg: CfgNode, loader) -> int:
    """Samples a rank loads per optimizer step."""
    return loader.batch_sampler.batch_size * cfg.TRAIN.ACCUM_ITER


def _append_record(writer: MetricsWriter, record: Dict[str, Any]) -> None:
    """``writer.write(record)``; a failed write stops the run in one line (the checkpoint keeps the record)."""
    try:
        writer.write(record, step=record["epoch"])
    except OSError as err:
        raise CheckpointSaveError(f"could not append epoch {record['epoch']}'s record to {writer.path}: "
                                  f"{err.strerror or err} [errno {err.errno}]; the checkpoint holds it and the next "
                                  "start writes it; free space or fix the permissions, then rerun") from None


def _validate(cfg: CfgNode, state: TrainState, conf: StepConfig, val_loader) -> Dict[str, float]:
    return evaluate_accuracy(state.unwrapped, val_loader, inputs_of=batch_inputs, device=conf.dist.device,
                             input_ndim=modality_of_config(cfg).input_ndim, precision=conf.precision,
                             clips_per_forward=cfg.TEST.CLIPS_PER_FORWARD)


def resolve_test_checkpoint(cfg: CfgNode) -> str:
    """``TEST.CHECKPOINT_FILE_PATH``, else ``OUTPUT_DIR/checkpoint-last.pth``."""
    path: Optional[str] = cfg.TEST.CHECKPOINT_FILE_PATH or find_resume_checkpoint(cfg.OUTPUT_DIR)
    if not path:
        raise DataNotFoundError(f"no TEST.CHECKPOINT_FILE_PATH and no checkpoint in OUTPUT_DIR {cfg.OUTPUT_DIR}")
    return path


def run_test(cfg: CfgNode, dist: DistInfo, dataset: Dataset) -> Dict[str, Any]:
    """Multi-view test of a classifier checkpoint; writes predictions.csv and test_results.json."""
    path = resolve_test_checkpoint(cfg)
    weights = model_state_dict(safe_load(path))
    model = with_classifier_weights(build_model(cfg, pretraining=False, crop_size=cfg.DATA.TEST_CROP_SIZE), weights)
    compile_model(model.to(dist.device), cfg.TRAIN.COMPILE, backend=cfg.TRAIN.COMPILE_BACKEND)
    loader = build_eval_loader(cfg, dataset, dist)
    save_resolved_config(cfg, dist, TEST_CONFIG_NAME)
    local = predict_videos(model, loader, inputs_of=batch_inputs, device=dist.device,
                           input_ndim=modality_of_config(cfg).input_ndim,
                           precision=resolve_precision(cfg.TRAIN.PRECISION, dist.device),
                           clips_per_forward=cfg.TEST.CLIPS_PER_FORWARD)
    results = gather_results(local)
    summary: Dict[str, Any] = {}
    if dist.is_main:
        os.makedirs(cfg.OUTPUT_DIR, exist_ok=True)
        summary = write_test_outputs(results, cfg.OUTPUT_DIR, class_names_of_config(cfg))
        logger.info("test of %s: %s", path, summary)
    barrier()
    return summary
