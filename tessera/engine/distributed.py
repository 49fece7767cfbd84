"""The processes of a run: one, or many under `torchrun` (gloo on CPU, nccl on GPU), each with its device; the
model replicated on each (DDP) or sharded across them (FSDP, PyTorch's `fully_shard`)."""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

import torch
import torch.distributed as dist
from torch.distributed.checkpoint.state_dict import (
    StateDictOptions,
    get_model_state_dict,
    get_optimizer_state_dict,
    set_model_state_dict,
    set_optimizer_state_dict,
)
from torch.distributed.fsdp import FSDPModule, fully_shard


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

    def end(self) -> None:
        """Leave the process group once every process has done its last exchange (the end of a run)."""
        if self.count > 1 and dist.is_initialized():
            dist.barrier()
            dist.destroy_process_group()
            # A gloo worker thread frees its last exchange's tensors just after the exchange ends, taking the GIL
            # to do so; once Python has begun to exit, that aborts the process. Sleeping hands it the GIL first.
            time.sleep(0.1)

    def gather(self, obj: Any) -> list[Any]:
        """Every process's `obj`, in rank order (on every process)."""
        if self.count == 1:
            return [obj]
        out: list[Any] = [None] * self.count
        dist.all_gather_object(out, obj)
        return out

    def wrap(self, model: torch.nn.Module, shard: Iterable[torch.nn.Module] | None = None) -> torch.nn.Module:
        """With several processes, the model under DistributedDataParallel, or with `shard` (its blocks) sharded in
        place, each block and then the rest, so that a process holds 1/count of every weight, gradient and
        optimizer moment and gathers a block's weights only while it runs."""
        if self.count == 1:
            return model
        if shard is not None:
            for block in shard:
                fully_shard(block)
            return fully_shard(model)
        ids = [self.local] if self.device.type == "cuda" else None
        return torch.nn.parallel.DistributedDataParallel(model, device_ids=ids)


def gradient_sync(model: torch.nn.Module, sync: bool):
    """A context in which backward averages gradients over processes (sync) or only accumulates them here."""
    if isinstance(model, FSDPModule):
        model.set_requires_gradient_sync(sync)
        return contextlib.nullcontext()
    if sync or not isinstance(model, torch.nn.parallel.DistributedDataParallel):
        return contextlib.nullcontext()
    return model.no_sync()


class Whole:
    """A sharded model, or its optimizer, saved and restored whole: `state_dict` gathers the full tensors onto the
    main process's CPU (the others get {}) and `load_state_dict` shards full ones; every process calls both."""

    def __init__(self, model: torch.nn.Module, opt: torch.optim.Optimizer | None = None):
        self.model, self.opt = model, opt

    @property
    def weights(self) -> bool:
        """Whether this is the model's weights (not its optimizer's state)."""
        return self.opt is None

    def state_dict(self) -> dict[str, Any]:
        options = StateDictOptions(full_state_dict=True, cpu_offload=True)
        if self.opt is None:
            return get_model_state_dict(self.model, options=options)
        return get_optimizer_state_dict(self.model, self.opt, options=options)

    def load_state_dict(self, state: dict[str, Any]) -> None:
        options = StateDictOptions(full_state_dict=True)
        if self.opt is None:
            set_model_state_dict(self.model, state, options=options)
        else:
            set_optimizer_state_dict(self.model, self.opt, state, options=options)
