"""The end-to-end demo: tokenizer -> judge -> text-to-image model -> ShapesEval -> report.html.

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


def _finished(folder: Path, steps: int) -> bool:
    state = checkpoint.load_state(folder)  # state.json alone: no need to read the optimizer state
    return state is not None and state["step"] >= steps


def _metadata(cfg: DemoConfig) -> list[dict]:
    meta = shapes_eval.load_metadata()
    if cfg.prompts:
        meta = [m for c in CATEGORIES for m in [x for x in meta if x["tag"] == c][: cfg.prompts]]
    return meta


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


def category_grids(rows: list[dict], out: Path, per_category: int = 16) -> dict[str, str]:
    """One framed grid per category (green: judged correct, red: wrong); returns category -> path relative to out."""
    paths = {}
    for category in CATEGORIES:
        chosen = [r for r in rows if r["tag"] == category][:per_category]
        if chosen:
            name = f"samples-{category}.png"
            save_png(grid([shapes_eval.framed(r) for r in chosen], cols=4), out / name, scale=2)
            paths[category] = name
    return paths


def run_demo(cfg: DemoConfig, out: Path, seed: int = 0) -> dict:
    """Run (or finish) every stage; returns the ShapesEval summary of the model."""
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

    from tessera.generate.images import write_shapes_eval
    from tessera.model.bundle import load as load_bundle

    device = "cuda" if torch.cuda.is_available() else "cpu"
    bundle = load_bundle(model_run / "checkpoint", device)
    metadata = _metadata(cfg)
    images = out / "shapes_eval"
    expected = len(metadata) * cfg.per_prompt
    if len(list(images.glob("*/samples/*.png"))) == expected:
        console.print("ShapesEval images: generated earlier, reused")
    else:
        timed(
            "generate",
            lambda: write_shapes_eval(bundle, images, metadata, cfg.per_prompt, seed=seed, batch_size=cfg.batch_size),
        )
    summary, rows = timed("score", lambda: shapes_eval.evaluate_folder(images, judge))
    (images / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (images / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
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
        "curves": {"tokenizer": _rows(tok_run), "model": _rows(model_run)},
        "curve_keys": {"tokenizer": ["loss", "psnr", "usage"], "model": ["loss", "acc", "tokens_per_s"]},
        "timings": timings,
        "config": {"demo": to_dict(cfg)},
    }
    report = write_report(out, sections)
    console.print(shapes_eval.markdown_table(summary), soft_wrap=True)
    console.print(f"report: {report}")
    return summary


def _rows(run: Path) -> list[dict]:
    path = run / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []
