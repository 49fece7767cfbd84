"""One GRPO step, split into generation (KV-cached, guided), reward (the judge) and update time.

python bench/rl.py --init runs/demo/model/checkpoint [--steps 2] [--prompts 4] [--group 8]
Prints one JSON line: seconds per part of the last step and samples/s over the timed steps.
"""

import argparse
import json
import platform
import tempfile

import torch

from tessera.config import override
from tessera.rl.trainer import RLConfig, RLTrainer


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--init", required=True)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--group", type=int, default=8)
    args = parser.parse_args()
    cfg = override(
        RLConfig(),
        {
            "init": args.init,
            "steps": args.steps + 1,
            "prompts_per_step": args.prompts,
            "grpo.group_size": args.group,
            "eval_every": 0,
        },  # fmt: skip
    )
    with tempfile.TemporaryDirectory() as run:
        trainer = RLTrainer(cfg, run, progress=False)
        rows = trainer.fit()
    timed = rows[1:]  # the first step warms up
    machine = torch.cuda.get_device_name() if torch.cuda.is_available() else platform.machine()
    result = {
        "bench": "rl",
        "machine": f"{machine} {torch.get_num_threads()} threads",
        "samples_per_step": args.prompts * args.group,
        "image_tokens": trainer.bundle.cfg.grid[0] * trainer.bundle.cfg.grid[1],
        "generate_s": round(sum(r["generate_s"] for r in timed) / len(timed), 2),
        "reward_s": round(sum(r["reward_s"] for r in timed) / len(timed), 2),
        "update_s": round(sum(r["update_s"] for r in timed) / len(timed), 2),
        "samples_per_s": round(sum(r["samples_per_s"] for r in timed) / len(timed), 2),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
