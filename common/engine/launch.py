"""Slurm through submitit: one task per GPU, preemption/timeout -> checkpoint -> requeue -> resume.

Submitit has Slurm send USR2 to every task ahead of the time limit or on preemption. The
training loop's ``PreemptionHandler`` (installed after submitit's own handler) turns
it into a checkpoint at the next step boundary and then hands the signal on to submitit, which
calls ``JobRunner.checkpoint`` and requeues the job; the requeued job resumes from
``OUTPUT_DIR/checkpoint-last.pth``.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Dict, List, Optional

import submitit

from common.engine.jobs import JOBS, run_job
from common.engine.run_config import job_config


@dataclass
class JobRunner:
    """The picklable callable submitit runs on every task: ``run_job(job, job_config(...))``."""

    job: str
    cfg_file: Optional[str]
    overrides: List[str] = field(default_factory=list)

    def __call__(self) -> Dict[str, Any]:
        submitit.helpers.TorchDistributedEnvironment().export(set_cuda_visible_devices=False, overwrite=True)
        return run_job(self.job, job_config(self.job, self.cfg_file, self.overrides))

    def checkpoint(self) -> submitit.helpers.DelayedSubmission:
        """Called by submitit on preemption/timeout: requeue the same job; it auto-resumes. With
        ``OVERWRITE False`` last: a run started with ``OVERWRITE True`` (recipe or command line) must
        resume from the checkpoint it has just saved, not delete it."""
        kept = [item for key, value in zip(self.overrides[0::2], self.overrides[1::2]) if key != "OVERWRITE"
                for item in (key, value)]
        return submitit.helpers.DelayedSubmission(JobRunner(self.job, self.cfg_file, [*kept, "OVERWRITE", "False"]))


def submit(
    job: str,
    cfg_file: Optional[str],
    overrides: List[str],
    *,
    job_dir: str,
    nodes: int = 1,
    gpus_per_node: int = 1,
    partition: str = "",
    timeout_min: int = 4320,
    cpus_per_task: int = 10,
    cluster: Optional[str] = None,
    slurm_extra: Optional[Dict[str, Any]] = None,
) -> submitit.Job:
    """Submit ``job`` with ``OUTPUT_DIR = job_dir`` (unless overridden); ``cluster="local"`` runs
    it on this machine (submitit's local executor) for testing."""
    if job not in JOBS:
        raise ValueError(f"job must be one of {JOBS}, got {job!r}")
    if "OUTPUT_DIR" not in overrides[0::2]:
        overrides = list(overrides) + ["OUTPUT_DIR", job_dir]
    executor = submitit.AutoExecutor(folder=os.path.join(job_dir, "submitit", "%j"), cluster=cluster)
    tasks = max(gpus_per_node, 1)
    params: Dict[str, Any] = dict(nodes=nodes, tasks_per_node=tasks, cpus_per_task=cpus_per_task,
                                  timeout_min=timeout_min, name=f"convmae_{job}")
    if cluster != "local":
        params.update(gpus_per_node=gpus_per_node, slurm_signal_delay_s=120, **(slurm_extra or {}))
        if partition:
            params["slurm_partition"] = partition
    executor.update_parameters(**params)
    return executor.submit(JobRunner(job, cfg_file, list(overrides)))
