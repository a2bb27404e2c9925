"""Multi-process training and evaluation with torch.distributed, as `torchrun` starts them.

`torchrun --nproc_per_node N -m training.train ...` (or `-m forensics evaluate ...`) sets RANK,
WORLD_SIZE and LOCAL_RANK; a plain `python -m ...` sets none of them and everything here
degrades to a single process. Backends: gloo on CPU, nccl on GPU. Only rank 0 writes files.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Distributed:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed(device: torch.device) -> Distributed:
    """Join the process group torchrun describes in the environment (no-op without it)."""
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    if world_size <= 1:
        return Distributed()
    rank, local_rank = int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0"))
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        if device.type == "cuda":
            torch.cuda.set_device(local_rank)
        dist.init_process_group(backend=backend)
    return Distributed(rank=rank, world_size=world_size, local_rank=local_rank)


def shutdown_distributed(setup: Distributed) -> None:
    if setup.enabled and dist.is_initialized():
        dist.destroy_process_group()


def barrier(setup: Distributed) -> None:
    if setup.enabled:
        dist.barrier()


def shard_indices(count: int, setup: Distributed) -> list[int]:
    """This rank's share of `count` items (every item exactly once across ranks, no padding,
    unlike DistributedSampler, so merged metrics equal a single process's)."""
    return list(range(setup.rank, count, setup.world_size))


def gather_arrays(setup: Distributed, *arrays: np.ndarray) -> tuple[np.ndarray, ...]:
    """Concatenate each array across ranks (rank order); unchanged in a single process."""
    if not setup.enabled:
        return arrays
    gathered: list[Sequence[np.ndarray]] = [None] * setup.world_size  # type: ignore[list-item]
    dist.all_gather_object(gathered, [np.asarray(a) for a in arrays])
    return tuple(np.concatenate([part[i] for part in gathered]) for i in range(len(arrays)))


def sum_across(setup: Distributed, *values: float) -> tuple[float, ...]:
    """Sum scalars across ranks (e.g. loss totals and sample counts)."""
    if not setup.enabled:
        return values
    tensor = torch.tensor(values, dtype=torch.float64)
    if dist.get_backend() == "nccl":  # nccl reduces GPU tensors only
        tensor = tensor.cuda()
    dist.all_reduce(tensor)
    return tuple(tensor.tolist())
