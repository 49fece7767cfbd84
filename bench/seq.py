"""A one-dimensional (seq) tokenizer: reconstruction and the judge's object F1 as a function of prefix length, code
use, and its ShapesEval ceiling at full length beside a 2D tokenizer's.

    python bench/seq.py --tokenizer runs/recipe/tokenizer-seq32/checkpoint [--compare runs/recipe/tokenizer-patch4-2048/checkpoint]
"""  # noqa: E501

import argparse
import json
import platform
from pathlib import Path

import torch
from recipe import subset  # the recipe's fixed measuring set (training-distribution prompts)

from tessera.data.shapes import ShapesSource
from tessera.eval.judge import Judge
from tessera.pipelines.demo import tokenizer_ceiling
from tessera.tokenizer import build as visual
from tessera.tokenizer.evaluate import evaluate, prefix_curve


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--compare", type=Path, help="a 2D tokenizer to set beside it")
    parser.add_argument("--n", type=int, default=256)
    args = parser.parse_args()
    judge, source = Judge.load(), ShapesSource(64)
    model, _ = visual.load(args.tokenizer)
    n = model.cfg.tokens
    lengths = sorted({1, 2, 4, 8, 16, n} & set(range(1, n + 1)))
    machine = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads"}
    for row in prefix_curve(model, source, judge, lengths, n=args.n, seed=1):
        print(json.dumps(machine | {"tokenizer": str(args.tokenizer)} | row))
    for path in filter(None, (args.tokenizer, args.compare)):
        tok, _ = visual.load(path)
        metrics = evaluate(tok, source, n=args.n, seed=1, judge=judge, progress=False)
        ceiling = tokenizer_ceiling(tok, judge, subset(), seed=0)
        print(json.dumps(machine | {
            "tokenizer": str(path), "tokens": int(torch.tensor(tok.grid((64, 64))).prod()),
            "psnr": round(metrics["psnr"], 2), "codebook_usage": round(metrics["codebook_usage"], 3),
            "perplexity": round(metrics["perplexity"], 1), "judge_f1": round(metrics["judge_f1_reconstructions"], 3),
            "ceiling": round(ceiling["overall"], 3), "ceiling_strict": round(ceiling["strict"], 3),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
