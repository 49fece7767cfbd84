"""The end-to-end demo: tokenizer -> text-to-image model -> ShapesEval -> GRPO (optional) -> report.html.

Each stage writes its result under the run folder and is skipped when a rerun finds it finished.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from tessera import checkpoint
from tessera.config import to_dict
from tessera.data.shapes import to_tensor, to_uint8
from tessera.eval import shapes_eval
from tessera.eval.judge import Judge
from tessera.eval.report import write_report
from tessera.pictures import grid, save_png
from tessera.rl.prompts import prompt_pools
from tessera.rl.trainer import RLConfig, RLTrainer
from tessera.runlog import read_metrics
from tessera.tokenizer.train import TokenizerTrainConfig, train_tokenizer
from tessera.train.trainer import TrainConfig, train
from tessera.world.constraints import from_geneval, sample_scene_for
from tessera.world.language import CATEGORIES
from tessera.world.render import render_image

console = Console()


@dataclass
class DemoConfig:
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    model: TrainConfig = field(default_factory=TrainConfig)
    per_prompt: int = 4  # ShapesEval images per prompt
    prompts: int = 0  # use only the first n ShapesEval prompts of each category (0: all 553)
    batch_size: int = 128  # generation batch
    rl: RLConfig = field(default_factory=lambda: RLConfig(steps=0))  # GRPO after supervised training; 0 steps: none


def _finished(folder: Path, steps: int) -> bool:
    state = checkpoint.load_state(folder)  # state.json alone: no need to read the optimizer state
    return state is not None and state["step"] >= steps


@torch.no_grad()
def tokenizer_ceiling(tokenizer, judge: Judge, metadata: list[dict], seed: int) -> dict:
    """ShapesEval of true scenes passed through the tokenizer (encode, decode): the best a model can score."""
    rng = np.random.default_rng(seed)
    images = np.stack([render_image(sample_scene_for(from_geneval(m), rng)) for m in metadata])
    x = to_tensor(images)
    recon = np.concatenate(
        [to_uint8(tokenizer.decode(tokenizer.encode(x[i : i + 128]))) for i in range(0, len(x), 128)]
    )
    found = judge.read(recon)
    rows = [{"tag": m["tag"], "correct": shapes_eval.score(d, m)[0]} for d, m in zip(found, metadata, strict=True)]
    return shapes_eval.summarize(rows)


def category_grids(rows: list[dict], out: Path, per_category: int = 16, prefix: str = "") -> dict[str, str]:
    """One framed grid per category (green: judged correct, red: wrong); returns category -> path relative to out."""
    paths = {}
    for category in CATEGORIES:
        chosen = [r for r in rows if r["tag"] == category][:per_category]
        if chosen:
            name = f"{prefix}samples-{category}.png"
            save_png(grid([shapes_eval.framed(r) for r in chosen], cols=4), out / name, scale=2)
            paths[category] = name
    return paths


def run_demo(cfg: DemoConfig, out: Path, seed: int = 0) -> dict:
    """Run (or finish) every stage; returns the ShapesEval summary of the final model."""
    out.mkdir(parents=True, exist_ok=True)
    timings_path = out / "timings.json"
    timings = json.loads(timings_path.read_text()) if timings_path.exists() else {}

    def timed(stage: str, fn):
        start = time.time()
        result = fn()
        timings[stage] = round(time.time() - start, 1)
        timings_path.write_text(json.dumps(timings, indent=1))
        return result

    tok_run, model_run = out / "tokenizer", out / "model"
    cfg.tokenizer.seed = cfg.model.seed = seed
    if _finished(tok_run / "checkpoint", cfg.tokenizer.steps):
        console.print("tokenizer: finished earlier, reused")
    else:
        timed("tokenizer", lambda: train_tokenizer(cfg.tokenizer, tok_run))
    judge = Judge.load()
    cfg.model.tokenizer = str(tok_run / "checkpoint")
    if _finished(model_run / "checkpoint", cfg.model.steps):
        console.print("model: finished earlier, reused")
    else:
        timed("model", lambda: train(cfg.model, model_run))

    from tessera.model.bundle import load as load_bundle

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bundle = load_bundle(model_run / "checkpoint", device)
    metadata = shapes_eval.first_prompts(cfg.prompts)
    summary, rows = _shapes_eval(cfg, bundle, out / "shapes_eval", metadata, judge, seed, timed)
    ceiling = timed("tokenizer ceiling", lambda: tokenizer_ceiling(bundle.tokenizer.cpu(), judge, metadata, seed))
    save_png(shapes_eval.sample_sheet(rows), out / "samples.png", scale=2)
    sections = {
        "notes": [
            f"ShapesEval overall {summary['overall']:.3f} over {summary['images']} generated images "
            f"({len(metadata)} prompts x {cfg.per_prompt}).",
            f"Tokenizer ceiling {ceiling['overall']:.3f}: true scenes passed through the tokenizer.",
        ],
        "shapes_eval": {"tokenizer reconstructions": ceiling, "model": summary},
        "sample_grids": category_grids(rows, out),
        "sample_sheet": "samples.png",
        "curves": {"tokenizer": read_metrics(tok_run), "model": read_metrics(model_run)},
        "curve_keys": {"tokenizer": ["loss", "psnr", "usage"], "model": ["loss", "acc", "tokens_per_s"]},
    }
    if cfg.rl.steps:
        summary = _rl_stage(cfg, out, bundle, metadata, judge, seed, timed, sections)
    sections |= {"timings": timings, "config": {"demo": to_dict(cfg)}}
    report = write_report(out, sections)
    console.print(shapes_eval.markdown_table(summary), soft_wrap=True)
    console.print(f"report: {report}")
    return summary


def _shapes_eval(cfg: DemoConfig, bundle, images: Path, metadata: list[dict], judge, seed: int, timed, after=""):
    """Generate ShapesEval images into a folder (unless a rerun finds them all) and score them."""
    from tessera.generate.images import write_shapes_eval

    if len(list(images.glob("*/samples/*.png"))) == len(metadata) * cfg.per_prompt:
        console.print(f"{images}: generated earlier, reused")
    else:
        timed(
            f"generate{after}",
            lambda: write_shapes_eval(bundle, images, metadata, cfg.per_prompt, seed=seed, batch_size=cfg.batch_size),
        )
    summary, rows = timed(f"score{after}", lambda: shapes_eval.evaluate_folder(images, judge))
    (images / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (images / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    return summary, rows


def _rl_stage(cfg: DemoConfig, out: Path, sft, metadata: list[dict], judge, seed: int, timed, sections: dict) -> dict:
    """GRPO from the supervised model, then ShapesEval after RL, the held-out prompts before and after, and
    before/after grids of the same prompts and seeds. Adds to `sections`; returns the summary after RL."""
    from tessera.generate.images import evaluate_model
    from tessera.model.bundle import load as load_bundle
    from tessera.rl.prompts import metadata_for

    rl_run = out / "rl"
    cfg.rl.init, cfg.rl.seed = str(out / "model" / "checkpoint"), seed
    if _finished(rl_run / "checkpoint", cfg.rl.steps):
        console.print("rl: finished earlier, reused")
    else:

        def fit():
            trainer = RLTrainer(cfg.rl, rl_run)
            trainer.resume()
            trainer.fit()

        timed("rl", fit)
    tuned = load_bundle(rl_run / "checkpoint", sft.model.output.weight.device)
    after, rows = _shapes_eval(cfg, tuned, rl_run / "shapes_eval", metadata, judge, seed, timed, after=" rl")
    before = sections["shapes_eval"]["model"]
    _, held_pools = prompt_pools(cfg.rl.seed)
    held = [m for c, pool in held_pools.items() for m in metadata_for(pool[: cfg.prompts or len(pool)], c)]

    def held_out():
        args = dict(per_prompt=cfg.per_prompt, seed=seed, batch_size=cfg.batch_size)
        return [evaluate_model(b, held, judge, **args)[0] for b in (sft, tuned)]

    held_before, held_after = timed("held-out prompts", held_out)
    sft_rows = [json.loads(line) for line in (out / "shapes_eval" / "results.jsonl").read_text().splitlines()]
    grids = before_after_grids(sft_rows, rows, out)
    sections["notes"] += [
        f"After {cfg.rl.steps} GRPO steps ({cfg.rl.reward}): ShapesEval overall {before['overall']:.3f} -> "
        f"{after['overall']:.3f} ({100 * (after['overall'] - before['overall']):+.1f} points).",
        f"Prompts RL never saw ({', '.join(held_pools)}; {len(held)} prompts): overall {held_before['overall']:.3f}"
        f" -> {held_after['overall']:.3f} (overall here: the mean of these three categories).",
    ]
    sections["shapes_eval"] |= {
        "model + RL": after,
        "model, held-out prompts": held_before,
        "model + RL, held-out prompts": held_after,
    }
    sections["before_after"] = grids
    sections["sample_grids"] = category_grids(rows, out, prefix="rl-")
    sections["curves"]["rl"] = read_metrics(rl_run)
    sections["curve_keys"]["rl"] = ["reward_mean", "kl", "entropy", "eval/overall", "held_out/overall"]
    return after


def before_after_grids(before: list[dict], after: list[dict], out: Path, per_category: int = 8) -> dict[str, str]:
    """Per category, the same prompts and seeds: top row before RL, bottom row after (framed green/red)."""
    paths = {}
    for category in CATEGORIES:
        pairs = [(b, a) for b, a in zip(before, after, strict=True) if b["tag"] == category][:per_category]
        if pairs:
            tiles = [shapes_eval.framed(b) for b, _ in pairs] + [shapes_eval.framed(a) for _, a in pairs]
            name = f"before-after-{category}.png"
            save_png(grid(tiles, cols=len(pairs)), out / name, scale=2)
            paths[category] = name
    return paths
