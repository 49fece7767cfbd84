"""How often two gloo ranks abort on exit: a few sharded training steps, a gather, then the run's end, either
`Processes.end()` or a bare barrier and `destroy_process_group()`.

python bench/gloo_exit.py [--runs 60]
Prints one JSON line: aborted exits out of runs, for each ending. The aborts are a race (a gloo thread freeing
tensors after Python began to exit), so they come at a few percent; run both endings in one go to compare them.
"""

import argparse
import json
import os
import socket

import torch
import torch.distributed as dist

from tessera.engine.distributed import Processes


def rank_main(rank: int, port: int, bare: bool) -> None:
    """One rank: torchrun's environment, three sharded AdamW steps on a small MLP, a gather, and the end."""
    os.environ |= {"RANK": str(rank), "WORLD_SIZE": "2", "LOCAL_RANK": str(rank), "MASTER_ADDR": "127.0.0.1",
                   "MASTER_PORT": str(port)}  # fmt: skip
    torch.set_num_threads(1)
    processes = Processes.start()
    model = torch.nn.Sequential(*[torch.nn.Linear(64, 64) for _ in range(4)])
    model = processes.wrap(model, shard=list(model))
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for _ in range(3):
        model(torch.randn(4, 64)).square().mean().backward()  # (4, 64)
        opt.step()
        opt.zero_grad()
    processes.gather(rank)
    if bare:
        dist.barrier()
        dist.destroy_process_group()
    else:
        processes.end()


def aborts(runs: int, bare: bool) -> int:
    """How many of `runs` two-rank runs had a rank die by a signal."""
    failed = 0
    for _ in range(runs):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        try:
            torch.multiprocessing.spawn(rank_main, args=(port, bare), nprocs=2)
        except torch.multiprocessing.ProcessExitedException:
            failed += 1
    return failed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=60, help="two-rank runs per ending")
    args = parser.parse_args()
    print(json.dumps({"runs": args.runs, "end": aborts(args.runs, False), "bare": aborts(args.runs, True)}))


if __name__ == "__main__":
    main()
