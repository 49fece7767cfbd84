"""Any-to-image, with and without disentangled causal attention at equal steps: the conditions set's metrics.

    python bench/conditions.py --steps 800            # trains model/conditions with dca on and off, then scores
    python bench/conditions.py --steps 800 --image-scale 2

Both runs share the preset, the seed, the data and the tokenizer (the recipe's patch4-2048, trained first if
runs/recipe/ lacks it); runs go to runs/bench-conditions/. Prints one JSON line per run and a markdown table.
"""

import argparse
import dataclasses
import json
import time
from pathlib import Path

from recipe import PRESETS, tokenizer_run

from tessera.config import load
from tessera.engine.loop import finish
from tessera.eval.judge import Judge
from tessera.generate.conditioned import evaluate_conditions
from tessera.model.bundle import load as load_bundle
from tessera.pictures import save_png
from tessera.train.trainer import TrainConfig, Trainer

RUNS = Path("runs/bench-conditions")


def run(dca: bool, steps: int, tokenizer: Path) -> tuple[Path, float]:
    """Train (or reuse) the conditions preset with dca on or off; its checkpoint and training seconds (NaN when
    reused)."""
    out = RUNS / f"dca-{'on' if dca else 'off'}-{steps}steps"
    if (out / "checkpoint" / "model.safetensors").exists():
        return out / "checkpoint", float("nan")
    pairs = [f"tokenizer={tokenizer}", f"steps={steps}", f"model.dca={str(dca).lower()}"]
    cfg = load(TrainConfig(), PRESETS / "model" / "conditions.yaml", pairs=pairs)
    start = time.time()
    finish(Trainer(cfg, out, progress=False, fresh=True))
    return out / "checkpoint", time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=800)
    parser.add_argument("--per-kind", type=int, default=20)
    parser.add_argument("--image-scale", type=float, default=None)
    args = parser.parse_args()
    tokenizer = tokenizer_run("patch4-2048", 2.0)
    judge, table = Judge.load(), {}
    for dca in (True, False):
        ckpt, seconds = run(dca, args.steps, tokenizer)
        bundle = load_bundle(ckpt)
        sampling = bundle.cfg.sampling
        if args.image_scale is not None:
            sampling = dataclasses.replace(sampling, image_scale=args.image_scale)
        scores, sheets = evaluate_conditions(bundle, judge, args.per_kind, sampling)
        for task, sheet in sheets.items():
            save_png(sheet, ckpt.parent / f"conditions-{task}.png", scale=2)
        flat = {f"{t}.{m}": round(s["model"], 3) for t, ms in scores.items() for m, s in ms.items()}
        ceiling = {f"{t}.{m}": round(s["ceiling"], 3) for t, ms in scores.items() for m, s in ms.items()}
        train_s = None if seconds != seconds else round(seconds)
        print(json.dumps({"dca": dca, "steps": args.steps, "train_s": train_s, **flat}))
        table[f"dca {'on' if dca else 'off'}"], table["ceiling"] = flat, ceiling
    print("\n| metric | " + " | ".join(table) + " |\n|---|" + "---|" * len(table))
    for metric in table["ceiling"]:
        print(f"| {metric} | " + " | ".join(f"{row[metric]:.3f}" for row in table.values()) + " |")


if __name__ == "__main__":
    main()
