"""Text-to-video: what each visual tokenizer leaves of a clip (the video metrics of true clips through its round
trip, and the tokens a clip costs), then the video preset trained on the best and scored on the held-out prompts.

    python bench/video.py --tokenizers runs/recipe/tokenizer-patch4-2048/checkpoint \
        runs/recipe/tokenizer-patch4-2048-c32/checkpoint:32 runs/video/tokenizer-omni-quick/checkpoint
    python bench/video.py --tokenizers ... --train runs/recipe/tokenizer-patch4-2048/checkpoint --steps 400

Clips are the 40 held-out video prompts' (seed 1000), at each tokenizer's canvas. Prints one JSON line per
tokenizer and per model, and a markdown table.
"""

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from recipe import PRESETS

from tessera.config import load
from tessera.data.prompts import video_prompts
from tessera.engine.loop import finish
from tessera.eval.conditions import EVAL_SEED
from tessera.eval.judge import Judge
from tessera.eval.video import score_videos
from tessera.generate.video import true_clips, video_scores
from tessera.model.bundle import load as load_bundle
from tessera.pictures import save_png, to_tensor, to_uint8
from tessera.tokenizer import build as visual
from tessera.train.trainer import TrainConfig, Trainer
from tessera.world.scene import VIDEO_FRAMES

RUNS = Path("runs/bench-video")
METRICS = ("first", "last", "persist", "motion", "success", "track_px")


@torch.no_grad()
def ceiling(spec: str, judge: Judge) -> dict:
    """The video metrics of the held-out prompts' true clips through a tokenizer, given as PATH[:CANVAS]."""
    path, _, canvas = spec.partition(":")
    tokenizer, _ = visual.load(path)
    canvas = int(canvas or 64)
    prompts = video_prompts()
    clips = true_clips(prompts, canvas, EVAL_SEED)
    back = np.concatenate([to_uint8(tokenizer.decode(tokenizer.encode(to_tensor(clips[i : i + 8]))))
                           for i in range(0, len(clips), 8)])  # fmt: skip
    tokens = math.prod(tokenizer.video_grid(clips.shape[1:4]))
    return {"tokenizer": spec, "tokens_per_clip": tokens, **score_videos(judge, prompts, back)}


def train(tokenizer: Path, steps: int) -> tuple[Path, float]:
    """The video preset on `tokenizer` for `steps` (reused when done); its checkpoint and training seconds."""
    out = RUNS / f"model-{tokenizer.parent.name}-{steps}steps"
    if (out / "checkpoint" / "model.safetensors").exists():
        return out / "checkpoint", float("nan")
    cfg = load(TrainConfig(), PRESETS / "model" / "video.yaml", pairs=[f"tokenizer={tokenizer}", f"steps={steps}"])
    start = time.time()
    finish(Trainer(cfg, out, progress=False, fresh=True))
    return out / "checkpoint", time.time() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tokenizers", nargs="+", default=[], help="PATH[:CANVAS] (canvas 64 unless given)")
    parser.add_argument("--train", type=Path, help="a tokenizer checkpoint to train the video preset on")
    parser.add_argument("--ckpt", type=Path, help="score this video model instead of training one")
    parser.add_argument("--steps", type=int, default=400)
    args = parser.parse_args()
    judge = Judge.load()
    rows = []
    for path in args.tokenizers:
        rows.append(ceiling(path, judge))
        print(json.dumps(rows[-1]))
    if args.train or args.ckpt:
        ckpt, seconds = (args.ckpt, float("nan")) if args.ckpt else train(args.train, args.steps)
        results = video_scores(load_bundle(ckpt), judge)
        save_png(results.sheet(), ckpt.parent / "t2v-sheet.png", scale=2)
        row = {"model": str(ckpt), "train_s": round(seconds, 1)}
        row |= {f"{m}/{k}": round(v, 3) for m, s in results.scores.items() for k, v in s.items()}
        rows.append(row)
        print(json.dumps(row))
    print("\n| clips through | tokens per clip (9 frames) | " + " | ".join(METRICS) + " |")
    print("|---" * (len(METRICS) + 2) + "|")
    for row in rows:
        if "tokenizer" in row:
            values = " | ".join(f"{row[m]:.3f}" for m in METRICS)
            print(f"| {row['tokenizer']} | {row['tokens_per_clip']} | {values} |")
    for row in rows:
        if "model" in row:
            for kind in ("model", "ceiling", "copy"):
                values = " | ".join(f"{row[f'{m}/{kind}']:.3f}" for m in METRICS)
                print(f"| {row['model']} ({kind}) | {VIDEO_FRAMES} frames | {values} |")


if __name__ == "__main__":
    main()
