"""The processes of a run: one, or many under `torchrun` (gloo on CPU, nccl on GPU), each with its device."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist


@dataclass
class Processes:
    rank: int = 0
    count: int = 1  # processes in the run (torchrun's WORLD_SIZE)
    local: int = 0  # this process's index on its machine (its GPU)
    device: torch.device = field(default_factory=lambda: torch.device("cpu"))

    @classmethod
    def start(cls) -> Processes:
        """This process, from torchrun's environment; joins the process group when there are several."""
        rank, count = int(os.environ.get("RANK", "0")), int(os.environ.get("WORLD_SIZE", "1"))
        local = int(os.environ.get("LOCAL_RANK", "0"))
        cuda = torch.cuda.is_available()
        if count > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        device = torch.device(f"cuda:{local}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(device)
        return cls(rank, count, local, device)

    @property
    def main(self) -> bool:
        return self.rank == 0

    def barrier(self) -> None:
        if self.count > 1:
            dist.barrier()

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order (on every process)."""
        if self.count == 1:
            return [obj]
        out: list[Any] = [None] * self.count
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, model: torch.nn.Module) -> torch.nn.Module:
        """The model under DistributedDataParallel when there are several processes."""
        if self.count == 1:
            return model
        ids = [self.local] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)
