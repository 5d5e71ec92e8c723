"""Data-parallel training through PyTorch DDP, launched by ``torchrun``.

``torchrun --nproc_per_node=N -m digitexp run SPEC --variant V`` starts N processes; each
finds its rank in the environment torchrun sets. Batches are sharded with
:class:`digitexp.data.DistributedBatches` (``set_epoch`` every epoch), losses and metrics are
reduced across ranks, validation detections are gathered on rank 0, and only rank 0 talks to
MLflow and writes checkpoints. The backend is NCCL on GPUs and gloo on the CPU.
"""

from __future__ import annotations

import datetime
import logging
import os
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from digitexp.errors import ConfigError

log = logging.getLogger("digitexp.train")


@dataclass(frozen=True)
class Distributed:
    rank: int
    world_size: int
    local_rank: int
    backend: str

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    # ----------------------------------------------------------------- collectives

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """The element-wise sum over ranks (a copy; the input is untouched). CPU tensors go
        through gloo and CUDA tensors through NCCL (the group has both backends on GPUs)."""
        out = tensor.detach().clone()
        dist.all_reduce(out, op=dist.ReduceOp.SUM)
        return out

    def gather(self, obj: Any) -> list[Any] | None:
        """Every rank's object on rank 0 (None elsewhere)."""
        out: list[Any] | None = [None] * self.world_size if self.is_main else None
        dist.gather_object(obj, out, dst=0)
        return out

    def broadcast(self, obj: Any) -> Any:
        """Rank 0's object on every rank."""
        box = [obj]
        dist.broadcast_object_list(box, src=0)
        return box[0]

    def barrier(self) -> None:
        dist.barrier()


def from_env() -> Distributed | None:
    """The DDP context when started by torchrun (even with one process: the same path as
    with several, NCCL included) or with WORLD_SIZE > 1, else None.

    Initializes the default process group once: NCCL for CUDA tensors and gloo for CPU
    tensors when CUDA is there (so CPU-side reductions and ``train.device=cpu`` work too),
    gloo alone otherwise.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 and "TORCHELASTIC_RUN_ID" not in os.environ:
        return None
    rank = int(os.environ.get("RANK", "0"))
    local_rank = int(os.environ.get("LOCAL_RANK", "0"))
    backend = "cpu:gloo,cuda:nccl" if torch.cuda.is_available() else "gloo"
    if torch.cuda.is_available():
        if local_rank >= torch.cuda.device_count():
            raise ConfigError(
                f"LOCAL_RANK {local_rank}: only {torch.cuda.device_count()} CUDA device(s)"
            )
        torch.cuda.set_device(local_rank)
    if not dist.is_initialized():
        dist.init_process_group(backend=backend, timeout=datetime.timedelta(minutes=30))
    log.info("torchrun: rank %d of %d, process group %s", rank, world, backend)
    return Distributed(rank, world, local_rank, backend)


def shutdown() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
