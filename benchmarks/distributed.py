"""DistributedDataParallel set-up under ``torchrun``: this process's rank, the process group, sums over ranks.

``torchrun`` sets ``RANK``, ``WORLD_SIZE`` and ``LOCAL_RANK``; without them a process is rank 0 of 1,
nothing here starts a group, and :func:`all_sum` and :func:`barrier` do nothing.
"""
from __future__ import annotations

import os
from typing import Tuple

import torch
from torch import Tensor

__all__ = ["dist_info", "init_process_group", "close_process_group", "all_sum", "barrier"]


def dist_info() -> Tuple[int, int, int]:
    """``(rank, world_size, local_rank)`` from torchrun's environment (``(0, 1, 0)`` when alone)."""
    return (int(os.environ.get("RANK", 0)), int(os.environ.get("WORLD_SIZE", 1)),
            int(os.environ.get("LOCAL_RANK", 0)))


def init_process_group(device: torch.device) -> Tuple[int, int, bool]:
    """``(rank, world_size, started)``; ``started``: this call created the process group (nccl on CUDA, else gloo)."""
    rank, world, _ = dist_info()
    started = False
    if world > 1:
        import torch.distributed as dist

        if not dist.is_initialized():
            dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
            started = True
    return rank, world, started


def close_process_group(wait: bool) -> None:
    """Shut down the process group :func:`init_process_group` started, after every rank is done when ``wait``.

    A rank that exits with the group still open can abort while gloo's threads shut down
    ("terminate called without an active exception"), failing the whole torchrun job.
    """
    import torch.distributed as dist

    if wait:
        dist.barrier()
    dist.destroy_process_group()


def all_sum(t: Tensor, world: int) -> Tensor:
    """``t`` summed over the ``world`` ranks, in place (``t`` itself when alone)."""
    if world > 1:
        import torch.distributed as dist

        dist.all_reduce(t, op=dist.ReduceOp.SUM)
    return t


def barrier(world: int) -> None:
    """Wait until every one of the ``world`` ranks is here (nothing when alone)."""
    if world > 1:
        import torch.distributed as dist

        dist.barrier()
