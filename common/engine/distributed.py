"""torch.distributed set-up from ``torchrun`` / submitit environment variables, and collectives.

Launch with ``torchrun`` (or submitit, which exports the same variables): ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``. Without them the job runs as a
single process and every collective here is the identity.
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, Callable, List, TypeVar

import torch
import torch.distributed as dist

from common.errors import UserError

T = TypeVar("T")


@dataclass(frozen=True)
class DistInfo:
    """Where this process sits: its rank, the world size and its device."""

    rank: int
    world_size: int
    local_rank: int
    device: torch.device

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(backend: str = "auto") -> DistInfo:
    """Join the process group described by the environment (if any) and pick the device.

    ``backend="auto"`` uses nccl when CUDA is available and gloo otherwise.
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    use_cuda = torch.cuda.is_available()
    device = torch.device("cuda", local_rank) if use_cuda else torch.device("cpu")
    if use_cuda:
        torch.cuda.set_device(device)
    if world_size > 1 and not dist.is_initialized():
        if backend == "auto":
            backend = "nccl" if use_cuda else "gloo"
        dist.init_process_group(backend=backend, rank=rank, world_size=world_size)
    return DistInfo(rank=rank, world_size=world_size, local_rank=local_rank, device=device)


def shutdown_distributed() -> None:
    """Leave the process group if this process joined one."""
    if dist.is_initialized():
        dist.destroy_process_group()


def world_size() -> int:
    """Number of ranks (1 without a process group)."""
    return dist.get_world_size() if dist.is_initialized() else 1


def barrier() -> None:
    """Wait for all ranks."""
    if dist.is_initialized():
        dist.barrier()


def all_gather_objects(obj: Any) -> List[Any]:
    """Every rank's ``obj``, in rank order (picklable objects of any size)."""
    if not dist.is_initialized():
        return [obj]
    gathered: List[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(gathered, obj)
    return gathered


def run_on_main(work: Callable[[], T], info: DistInfo) -> T:
    """``work()`` on the main rank only; every rank gets its result (picklable), or raises the error
    it raised (as a ``UserError`` with its message where it was one), so no rank waits for a main
    rank that gave up."""
    outcome = ("ok", None)
    if info.is_main:
        try:
            outcome = ("ok", work())
        except Exception as err:
            all_gather_objects(("user" if isinstance(err, UserError) else "error", str(err)))
            raise
    kind, value = all_gather_objects(outcome)[0]
    if kind == "ok":
        return value
    raise (UserError if kind == "user" else RuntimeError)(value)


def all_reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """Element-wise float64 sum over ranks (``values`` on this rank's device; a new tensor)."""
    total = values.detach().to(torch.float64, copy=True)
    if dist.is_initialized():
        dist.all_reduce(total)
    return total


def any_rank(flags: List[bool], device: torch.device) -> List[bool]:
    """For each flag: true if it is true on at least one rank (one collective for all)."""
    values = torch.tensor([float(f) for f in flags], device=device)
    if dist.is_initialized():
        dist.all_reduce(values, op=dist.ReduceOp.MAX)
    return [bool(v) for v in values.tolist()]
