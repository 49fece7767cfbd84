"""A one-dimensional (seq) tokenizer: reconstruction and the judge's object F1 as a function of prefix length, code
use, decoding time, and its ShapesEval ceiling at full length beside a 2D tokenizer's. A tokenizer with a flow
decoder is measured twice: drawn by the flow, and by its code head alone from the same tokens.

    python bench/seq.py --tokenizer runs/recipe/tokenizer-seq32/checkpoint [--compare runs/recipe/tokenizer-patch4-2048/checkpoint] [--sheet PNG]

The sheet: 8 held-out scenes (top row), then each decoder's reconstruction from each prefix length, a row each.
"""  # noqa: E501

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch
from recipe import subset  # the recipe's fixed measuring set (training-distribution prompts)

from tessera.data.shapes import ShapesSource
from tessera.eval.judge import Judge
from tessera.pictures import grid, save_png, to_uint8
from tessera.pipelines.demo import tokenizer_ceiling
from tessera.tokenizer import build as visual
from tessera.tokenizer.evaluate import evaluate, prefix_curve


@torch.no_grad()
def decode_ms(tok, source: ShapesSource, batch: int = 32, repeats: int = 3) -> float:
    """Milliseconds per image to decode a batch of full-length codes, the best of a few runs."""
    codes = tok.encode(source.sample(batch, np.random.default_rng(0)))
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        tok.decode(codes)
        best = min(best, time.perf_counter() - start)
    return 1000 * best / batch


@torch.no_grad()
def sheet(decoders: list, source: ShapesSource, lengths: list[int], path: Path) -> None:
    """Originals, then a row per decoder and prefix length."""
    x = source.sample(8, np.random.default_rng(7))
    rows = [to_uint8(x)]
    for tok in decoders:
        codes = tok.encode(x)
        rows += [to_uint8(tok.decode(codes[..., :k])) for k in lengths]
    save_png(grid(np.concatenate(rows), cols=8), path, scale=2)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", type=Path, required=True)
    parser.add_argument("--compare", type=Path, help="a 2D tokenizer to set beside it")
    parser.add_argument("--n", type=int, default=256)
    parser.add_argument("--sheet", type=Path, help="a PNG of reconstructions per prefix length")
    args = parser.parse_args()
    judge, source = Judge.load(), ShapesSource(64)
    model, _ = visual.load(args.tokenizer)
    n = model.cfg.tokens
    lengths = sorted({1, 2, 4, 8, 16, n} & set(range(1, n + 1)))
    machine = {"machine": f"{platform.machine()} {torch.get_num_threads()} threads"}
    decoders = {model.cfg.decoder: model}  # (codes or flow)
    if model.flow is not None:
        decoders["code head"], _ = visual.load(args.tokenizer)
        decoders["code head"].flow = None  # the same weights and tokens, each patch the code head's most likely one
    for decoder, tok in decoders.items():
        for row in prefix_curve(tok, source, judge, lengths, n=args.n, seed=1):
            print(json.dumps(machine | {"tokenizer": str(args.tokenizer), "decoder": decoder} | row))
    if args.sheet:
        sheet(list(decoders.values()), source, lengths, args.sheet)
    named = [(f"{args.tokenizer} ({decoder})", tok) for decoder, tok in decoders.items()]
    if args.compare:
        named.append((str(args.compare), visual.load(args.compare)[0]))
    for path, tok in named:
        metrics = evaluate(tok, source, n=args.n, seed=1, judge=judge, progress=False)
        ceiling = tokenizer_ceiling(tok, judge, subset(), seed=0)
        print(json.dumps(machine | {
            "tokenizer": str(path), "tokens": int(torch.tensor(tok.grid((64, 64))).prod()),
            "decode_ms_per_image": round(decode_ms(tok, source), 2),
            "psnr": round(metrics["psnr"], 2), "codebook_usage": round(metrics["codebook_usage"], 3),
            "perplexity": round(metrics["perplexity"], 1), "judge_f1": round(metrics["judge_f1_reconstructions"], 3),
            "ceiling": round(ceiling["overall"], 3), "ceiling_strict": round(ceiling["strict"], 3),
        }))  # fmt: skip


if __name__ == "__main__":
    main()
