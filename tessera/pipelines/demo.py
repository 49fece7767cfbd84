"""The end-to-end demo: tokenizer -> text-to-image model -> ShapesEval -> GRPO (optional) -> report.html.

Stages (`pipelines.stages`): the tokenizer, the model, ShapesEval of the model, the tokenizer's own ceiling, and
with RL: GRPO, ShapesEval after it, and the held-out prompts before and after. A rerun reuses finished stages.
"""

from __future__ import annotations

import dataclasses
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
from rich.console import Console

from tessera.config import to_dict
from tessera.data.prompts import metadata_for, prompt_pools
from tessera.engine.runlog import read_metrics
from tessera.eval import shapes_eval
from tessera.eval.judge import Judge
from tessera.eval.report import write_report
from tessera.generate.images import evaluate_model, write_shapes_eval
from tessera.model.bundle import Bundle
from tessera.model.bundle import load as load_bundle
from tessera.pictures import grid, save_png, to_tensor, to_uint8
from tessera.pipelines.stages import Pipeline, reached
from tessera.rl.trainer import RLConfig, RLTrainer
from tessera.tokenizer.train import TokenizerTrainConfig, TokenizerTrainer
from tessera.train.trainer import TrainConfig, Trainer
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


@torch.no_grad()
def tokenizer_ceiling(tokenizer, judge: Judge, metadata: list[dict], seed: int) -> dict:
    """ShapesEval of true scenes passed through the tokenizer (encode, decode): the best a model can score."""
    rng = np.random.default_rng(seed)
    images = np.stack([render_image(sample_scene_for(from_geneval(m), rng)) for m in metadata])
    x = to_tensor(images).to(next(tokenizer.parameters()).device)
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


def run_demo(cfg: DemoConfig, out: str | Path, seed: int = 0, fresh: bool = False) -> dict:
    """Run (or finish) every stage; returns the ShapesEval summary of the final model."""
    with Pipeline(out, "demo", fresh) as pipeline:
        return _demo(cfg, pipeline, seed)


def _demo(cfg: DemoConfig, pipeline: Pipeline, seed: int) -> dict:
    out = pipeline.folder
    device = "cuda" if torch.cuda.is_available() else "cpu"
    judge = Judge.load()
    tok_cfg = dataclasses.replace(cfg.tokenizer, seed=seed)
    model_cfg = dataclasses.replace(cfg.model, tokenizer=str(out / "tokenizer" / "checkpoint"), seed=seed)
    pipeline.stage(
        "tokenizer", to_dict(tok_cfg), lambda new: reached(TokenizerTrainer(tok_cfg, out / "tokenizer", fresh=new))
    )
    pipeline.stage("model", to_dict(model_cfg), lambda new: reached(Trainer(model_cfg, out / "model", fresh=new)))
    bundle = load_bundle(out / "model" / "checkpoint", device)
    metadata = shapes_eval.first_prompts(cfg.prompts)
    generation = {"per_prompt": cfg.per_prompt, "prompts": cfg.prompts, "seed": seed}
    summary = pipeline.stage(
        "shapes_eval", generation, lambda new: _shapes_eval(bundle, out / "shapes_eval", metadata, judge, cfg, seed)
    )
    ceiling = pipeline.stage(
        "tokenizer_ceiling", generation, lambda new: tokenizer_ceiling(bundle.image_tokenizer, judge, metadata, seed)
    )
    rows = shapes_eval.read_rows(out / "shapes_eval")
    sections = {
        "notes": [
            f"ShapesEval overall {summary['overall']:.3f} over {summary['images']} generated images "
            f"({len(metadata)} prompts x {cfg.per_prompt}).",
            f"Tokenizer ceiling {ceiling['overall']:.3f}: true scenes passed through the tokenizer.",
        ],
        "shapes_eval": {"tokenizer reconstructions": ceiling, "model": summary},
        "sample_grids": category_grids(rows, out),
        "sample_sheet": "shapes_eval/samples.png",
        "curves": {"tokenizer": read_metrics(out / "tokenizer"), "model": read_metrics(out / "model")},
        "curve_keys": {"tokenizer": ["loss", "psnr", "usage"], "model": ["loss", "acc", "tokens_per_s"]},
    }
    if cfg.rl.steps:
        summary = _rl_stages(cfg, pipeline, bundle, metadata, judge, seed, sections)
    sections |= {"timings": pipeline.timings(), "config": {"demo": to_dict(cfg)}}
    report = write_report(out, sections)
    console.print(shapes_eval.markdown_table(summary), soft_wrap=True)
    console.print(f"report: {report}")
    return summary


def _shapes_eval(bundle: Bundle, folder: Path, metadata: list[dict], judge: Judge, cfg: DemoConfig, seed: int) -> dict:
    """Generate the ShapesEval images into a folder, score them, write the results beside them; the summary."""
    shutil.rmtree(folder, ignore_errors=True)  # the pipeline's own folder: nothing stale is scored
    write_shapes_eval(bundle, folder, metadata, cfg.per_prompt, seed=seed, batch_size=cfg.batch_size)
    summary, rows = shapes_eval.evaluate_folder(folder, judge)
    shapes_eval.write_results(folder, summary, rows, judge.cfg.version)
    return summary


def _rl_stages(
    cfg: DemoConfig, pipeline: Pipeline, sft: Bundle, metadata: list[dict], judge: Judge, seed: int, sections: dict
) -> dict:
    """GRPO from the supervised model, then ShapesEval after RL, the held-out prompts before and after, and
    before/after grids of the same prompts and seeds. Adds to `sections`; returns the summary after RL."""
    out = pipeline.folder
    rl_cfg = dataclasses.replace(cfg.rl, init=str(out / "model" / "checkpoint"), seed=seed)
    pipeline.stage("rl", to_dict(rl_cfg), lambda new: reached(RLTrainer(rl_cfg, out / "rl", fresh=new)))
    tuned = load_bundle(out / "rl" / "checkpoint", sft.model.output.weight.device)
    generation = {"per_prompt": cfg.per_prompt, "prompts": cfg.prompts, "seed": seed}
    after = pipeline.stage(
        "shapes_eval_rl",
        generation,
        lambda new: _shapes_eval(tuned, out / "rl" / "shapes_eval", metadata, judge, cfg, seed),
    )
    _, held_pools = prompt_pools(rl_cfg.seed)
    held = [m for c, pool in held_pools.items() for m in metadata_for(pool[: cfg.prompts or len(pool)], c)]

    def held_out(new: bool) -> list[dict]:
        args = dict(per_prompt=cfg.per_prompt, seed=seed, batch_size=cfg.batch_size)
        return [evaluate_model(b, held, judge, **args)[0] for b in (sft, tuned)]

    held_before, held_after = pipeline.stage("held_out", generation, held_out)
    before = sections["shapes_eval"]["model"]
    rows = shapes_eval.read_rows(out / "rl" / "shapes_eval")
    sections["notes"] += [
        f"After {rl_cfg.steps} GRPO steps ({rl_cfg.reward}): ShapesEval overall {before['overall']:.3f} -> "
        f"{after['overall']:.3f} ({100 * (after['overall'] - before['overall']):+.1f} points).",
        f"Prompts RL never saw ({', '.join(held_pools)}; {len(held)} prompts): overall {held_before['overall']:.3f}"
        f" -> {held_after['overall']:.3f} (overall here: the mean of these three categories).",
    ]
    sections["shapes_eval"] |= {
        "model + RL": after,
        "model, held-out prompts": held_before,
        "model + RL, held-out prompts": held_after,
    }
    sections["before_after"] = before_after_grids(shapes_eval.read_rows(out / "shapes_eval"), rows, out)
    sections["sample_grids"] = category_grids(rows, out, prefix="rl-")
    sections["curves"]["rl"] = read_metrics(out / "rl")
    sections["curve_keys"]["rl"] = ["reward_mean", "kl", "entropy", "eval/overall", "held_out/overall"]
    return after
