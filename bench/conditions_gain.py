"""Whether a conditions metric rose beyond noise: successes before and after, per pair of `tessera eval conditions`
folders (the same cases and seed) and pooled, with the two-proportion z.

    python bench/conditions_gain.py --metric remove runs/edit32/eval50-model,runs/edit32/eval50s1-rl-remove,50 \
        runs/edit32/eval250s3-model,runs/edit32/eval250s3-rl-remove,250

Each pair is BEFORE,AFTER,N: two result folders and the cases the metric counts (`--per-kind` for a kind, all
the task's cases for success).
"""

import argparse
import json
import math
from pathlib import Path


def z_score(before: int, after: int, n: int) -> float:
    """Two-proportion z of after/n against before/n (pooled variance)."""
    p = (before + after) / (2 * n)
    return (after - before) / n / math.sqrt(p * (1 - p) * 2 / n) if 0 < p < 1 else 0.0


def successes(folder: Path, task: str, metric: str, n: int) -> int:
    return round(json.loads((folder / "conditions.json").read_text())[task][metric]["model"] * n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="instruct")
    parser.add_argument("--metric", default="success", help="a kind (remove, ...) or success")
    parser.add_argument("pairs", nargs="+", help="BEFORE,AFTER,N")
    args = parser.parse_args()
    total = [0, 0, 0]
    for pair in args.pairs:
        before, after, size = pair.split(",")
        n = int(size)
        a, b = (successes(Path(f), args.task, args.metric, n) for f in (before, after))
        total = [total[0] + a, total[1] + b, total[2] + n]
        print(f"{after}: {args.metric} {a}/{n} -> {b}/{n}, z {z_score(a, b, n):.2f}")
    a, b, n = total
    print(f"pooled: {a}/{n} ({a / n:.3f}) -> {b}/{n} ({b / n:.3f}), z {z_score(a, b, n):.2f}")


if __name__ == "__main__":
    main()
