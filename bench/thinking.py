"""Thinking while drawing against drawing in one go, on the same model and prompts.

    python bench/thinking.py --ckpt runs/think/checkpoint --prompts 8     # 8 prompts of each ShapesEval category
    python bench/thinking.py --ckpt runs/unified/sft/checkpoint           # zero-shot: a model never taught to think
    python bench/thinking.py --ckpt runs/unified/introspect/checkpoint --introspect    # draw, judge, redraw

Scores on an evaluation split's prompts (`--split`; the first --prompts of each category, --per-prompt images
each): the model drawing in one go (`generate`), and its thinking chains (`generate --think`): the bands as first
drawn and the final images, with the chains' redraw and critique statistics and the tokens each drew per image
(or, with --introspect, its introspection chains: the first image, the model's verdict, a second image after a
no; or, with --best-of K, one shot at K images per image asked, the model's most likely kept). Prints one JSON
line; thinking also prints a markdown table and writes a sheet of chains beside the checkpoint.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch

from tessera.data.prompts import SPLITS, split_metadata
from tessera.eval.judge import Judge
from tessera.eval.shapes_eval import score_images, summarize
from tessera.generate.images import draw_images, evaluate_model
from tessera.generate.introspect import evaluate_introspection
from tessera.generate.text import GREEDY
from tessera.generate.thinking_eval import evaluate_thinking
from tessera.model.bundle import load as load_bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, save_png

KEYS = ("overall", "strict", "objects_per_image", "objects_asked_per_image")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--ckpt", type=Path, required=True)
    parser.add_argument("--prompts", type=int, default=8, help="prompts of each category")
    parser.add_argument("--per-prompt", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--temperature", type=float, default=0.0, help="thoughts and critiques (0: greedy)")
    parser.add_argument("--split", choices=SPLITS, default="shapes-eval")
    parser.add_argument("--introspect", action="store_true", help="introspection chains in place of thinking")
    parser.add_argument("--best-of", type=int, default=0, help="only one-shot: K draws each, the most likely kept")
    args = parser.parse_args()
    if args.best_of < 0 or (args.best_of and args.introspect):
        parser.error("--best-of takes K >= 1 and measures one shot alone, without --introspect")
    bundle, judge = load_bundle(args.ckpt), Judge.load()
    metadata = split_metadata(args.split, args.prompts)
    if args.best_of:
        best_of(bundle, metadata, judge, args)
        return
    if args.introspect:
        introspection(bundle, metadata, judge, args)
        return
    start = time.time()
    one_shot, _, _ = evaluate_model(bundle, metadata, judge, args.per_prompt, seed=args.seed)
    drawn = time.time()
    writing = SamplingConfig(temperature=args.temperature) if args.temperature > 0 else GREEDY
    thought, images, lines = evaluate_thinking(bundle, metadata, judge, args.per_prompt, seed=args.seed,
                                               writing=writing)  # fmt: skip
    done = time.time()
    grid_tokens = math.prod(bundle.cfg.grid)
    row = {
        "ckpt": str(args.ckpt),
        "split": args.split,
        "images": len(images),
        "one_shot": {k: round(one_shot[k], 3) for k in KEYS},
        "first": {k: round(thought["first"][k], 3) for k in KEYS},
        "final": {k: round(thought["final"][k], 3) for k in KEYS},
        **{k: round(v, 3) for k, v in thought.items() if not isinstance(v, dict)},
        "one_shot_tokens_per_image": grid_tokens,
        "one_shot_s": round(drawn - start, 1),
        "thinking_s": round(done - drawn, 1),
    }
    print(json.dumps(row))
    save_png(grid(images[:16], cols=8), args.ckpt.parent / "thinking-sheet.png", scale=2)
    (args.ckpt.parent / "thinking-chains.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines[:32]))
    print(f"\n| drawn | {' | '.join(KEYS)} | tokens per image |\n|---|---|---|---|---|---|")
    table = (("one shot", one_shot, grid_tokens), ("thinking, bands as first drawn", thought["first"], None),
             ("thinking, final", thought["final"], round(thought["tokens_per_image"])))  # fmt: skip
    for name, summary, tokens in table:
        print(f"| {name} | " + " | ".join(f"{summary[k]:.3f}" for k in KEYS) + f" | {tokens or ''} |")
    redraws = np.mean([any(line["redrawn"]) for line in lines])
    print(f"\nchains redrawn {redraws:.3f}; redraws that fix {thought['redraw_fixes']:.3f}; critiques parsed "
          f"{thought['critiques_parsed']:.3f}; low precision {thought['low_precision']:.3f}, recall "
          f"{thought['low_recall']:.3f}")  # fmt: skip


def best_of(bundle, metadata: list[dict], judge: Judge, args) -> None:
    """One shot at a chain's token budget: K images for each image asked, the one the model finds most likely (the
    sum of its tokens' log-probs under the distribution sampled) kept; no judge chooses."""
    k, metas = args.best_of, [m for m in metadata for _ in range(args.per_prompt)]
    images, drawn = draw_images(bundle, [m["prompt"] for m in metas for _ in range(k)], seed=args.seed)
    likelihood = torch.cat([d.logprobs.sum(1).cpu() for d in drawn]).view(len(metas), k)  # (images asked, K)
    kept = images.reshape(len(metas), k, *images.shape[1:])[np.arange(len(metas)), likelihood.argmax(1).numpy()]
    summary = summarize(score_images(kept, metas, judge))
    tokens = k * math.prod(bundle.cfg.grid)
    row = {"ckpt": str(args.ckpt), "split": args.split, "images": len(metas), "best_of": k, "tokens_per_image": tokens}
    print(json.dumps(row | {key: round(summary[key], 3) for key in KEYS}))


def introspection(bundle, metadata: list[dict], judge: Judge, args) -> None:
    """The introspection chains (draw, judge in words, draw again after a no) of the same prompts."""
    start = time.time()
    scores = evaluate_introspection(bundle, metadata, judge, args.per_prompt, seed=args.seed)
    row = {
        "ckpt": str(args.ckpt),
        "split": args.split,
        "images": scores["one_shot"]["images"],
        "one_shot": {k: round(scores["one_shot"][k], 3) for k in KEYS},
        "introspective": {k: round(scores["introspective"][k], 3) for k in KEYS},
        **{k: round(v, 3) for k, v in scores.items() if not isinstance(v, dict)},
        "one_shot_tokens_per_image": math.prod(bundle.cfg.grid),
        "introspection_s": round(time.time() - start, 1),
    }
    print(json.dumps(row))


if __name__ == "__main__":
    main()
