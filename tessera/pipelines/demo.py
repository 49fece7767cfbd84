"""The end-to-end demo: tokenizer -> text-to-image model -> ShapesEval -> GRPO (optional) -> report.html.

Stages (`pipelines.stages`): the tokenizer, the model, ShapesEval of the model, the tokenizer's own ceiling, and
with RL: GRPO, ShapesEval after it, and the held-out prompts before and after; then the edit set on the final
model. A rerun reuses finished stages.
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
from tessera.data.prompts import split_metadata
from tessera.engine.runlog import read_metrics
from tessera.eval import shapes_eval
from tessera.eval.edits import EDIT_KINDS, edit_cases
from tessera.eval.judge import Judge
from tessera.eval.report import write_report
from tessera.generate.conditioned import condition_sections, evaluate_conditions_and_video
from tessera.generate.edit import edit_sheet, edit_success
from tessera.generate.images import evaluate_model, write_shapes_eval
from tessera.model.bundle import Bundle
from tessera.model.bundle import load as load_bundle
from tessera.pictures import grid, save_png, to_tensor, to_uint8
from tessera.pipelines.stages import Pipeline, reached
from tessera.rl.trainer import RLConfig, RLTrainer
from tessera.sequence.tasks import Task, conditioned
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
    edits_per_kind: int = 0  # the world's edit set on the final model (remove, add, recolour); 0: none
    conditions_per_kind: int = 0  # the conditions set on the final model, for each conditioned task it was trained
    # on (model.data.tasks: seg2i, edge2i, instruct, predict; with t2v also the held-out video prompts); 0: none


@torch.no_grad()
def tokenizer_ceiling(tokenizer, judge: Judge, metadata: list[dict], seed: int) -> dict:
    """ShapesEval of true scenes passed through the tokenizer (encode, decode): the best a model can score."""
    rng = np.random.default_rng(seed)
    images = np.stack([render_image(sample_scene_for(from_geneval(m), rng)) for m in metadata])
    x = to_tensor(images).to(next(tokenizer.parameters()).device)
    recon = np.concatenate(
        [to_uint8(tokenizer.decode(tokenizer.encode(x[i : i + 128]))) for i in range(0, len(x), 128)]
    )
    return shapes_eval.summarize(shapes_eval.score_images(recon, metadata, judge))


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
    splits = _splits(cfg.prompts)
    generation = {"per_prompt": cfg.per_prompt, "prompts": cfg.prompts, "seed": seed}

    def ceiling(new: bool) -> dict:
        return {name: tokenizer_ceiling(bundle.image_tokenizer, judge, meta, seed) for name, meta in splits.items()}

    ceilings = pipeline.stage("tokenizer_ceiling", generation, ceiling)
    scores = pipeline.stage(
        "model_scores", generation, lambda new: _measure(bundle, out / "shapes_eval", splits, judge, cfg, seed)
    )
    sections = {
        "notes": [
            f"{len(splits['ShapesEval'])} ShapesEval prompts, {len(splits['held-out'])} held-out prompts and "
            f"{len(splits['compositional'])} compositional prompts, {cfg.per_prompt} images each; the tokenizer "
            "ceiling is true scenes passed through the tokenizer.",
            *_notes("model", scores, ceilings),
        ],
        "shapes_eval": {f"tokenizer ceiling, {n}": s for n, s in ceilings.items()}
        | {f"model, {n}": s for n, s in scores.items()},
        "sample_grids": category_grids(shapes_eval.read_rows(out / "shapes_eval"), out),
        "sample_sheet": "shapes_eval/samples.png",
        "figures": split_figures(splits, rl=False),
        "curves": {"tokenizer": read_metrics(out / "tokenizer"), "model": read_metrics(out / "model")},
        "curve_keys": {"tokenizer": ["loss", "psnr", "usage"], "model": ["loss", "acc", "tokens_per_s"]},
    }
    summary = scores["ShapesEval"]
    if cfg.rl.steps:
        summary = _rl_stages(cfg, pipeline, splits, judge, seed, device, sections)
    if cfg.edits_per_kind or cfg.conditions_per_kind:
        final = load_bundle(out / ("rl" if cfg.rl.steps else "model") / "checkpoint", device)
        if cfg.edits_per_kind:
            _edit_stage(final, cfg.edits_per_kind, pipeline, judge, seed, sections)
        if cfg.conditions_per_kind and (conditioned(final.cfg.tasks) or Task.T2V in final.cfg.tasks):
            _conditions_stage(final, cfg.conditions_per_kind, pipeline, judge, seed, sections)
    sections |= {"timings": pipeline.timings(), "config": {"demo": to_dict(cfg)}}
    report = write_report(out, sections)
    console.print(shapes_eval.markdown_table(summary), soft_wrap=True)
    console.print(f"report: {report}")
    return summary


def _edit_stage(bundle: Bundle, per_kind: int, pipeline: Pipeline, judge: Judge, seed: int, sections: dict) -> None:
    """The edit set on the final model: success per kind in a table, and a sheet of each kind's edits."""
    cases = edit_cases(per_kind, bundle.cfg.canvas, seed=seed, fits=bundle.fits)

    def run(new: bool) -> dict:
        scores, edited = edit_success(bundle, judge, cases, seed=seed)
        for kind in EDIT_KINDS:
            rows = [i for i, c in enumerate(cases) if c.kind == kind][:4]
            sheet = edit_sheet([cases[i] for i in rows], edited[rows], bundle.cfg.grid)
            save_png(sheet, pipeline.folder / f"edits-{kind}.png", scale=2)
        return scores

    scores = pipeline.stage("edits", {"per_kind": per_kind, "seed": seed}, run)
    rows = [[k, f"{s['edited']:.3f}", f"{s['ceiling']:.3f}", f"{s['unedited']:.3f}"] for k, s in scores.items()]
    sections.setdefault("tables", {})[f"Editing ({per_kind} per kind, model trained in {bundle.cfg.order} order)"] = {
        "head": ["edit", "edited", "ceiling (target through the tokenizer)", "unedited source"],
        "rows": rows,
    }
    sections["edits"] = {kind: f"edits-{kind}.png" for kind in EDIT_KINDS}


def _conditions_stage(bundle: Bundle, per_kind: int, pipeline: Pipeline, judge: Judge, seed: int, sections: dict):
    """The conditions set (and the video prompts) on the final model: its tables, sheets and clips in the report."""

    def run(new: bool) -> dict:
        scores, sheets, videos = evaluate_conditions_and_video(bundle, judge, per_kind, seed=seed)
        return condition_sections(pipeline.folder, scores, sheets, videos, "conditions/")

    shown = pipeline.stage("conditions", {"per_kind": per_kind, "seed": seed}, run)
    sections.setdefault("tables", {}).update(shown["tables"])
    sections.setdefault("figures", {}).update(
        {f"Conditions: {heading.lower()}": figure for heading, figure in shown["figures"].items()}
    )


def _splits(prompts: int) -> dict[str, list[dict]]:
    """The prompts every model is measured on: ShapesEval (the first n of each category, or all 553), the held-out
    prompts no training saw, and the compositional split (pairs no training scene holds, all of them)."""
    return {"ShapesEval": split_metadata("shapes-eval", prompts), "held-out": split_metadata("held-out", prompts),
            "compositional": split_metadata("compositional")}  # fmt: skip


def _measure(bundle: Bundle, folder: Path, splits: dict, judge: Judge, cfg: DemoConfig, seed: int) -> dict:
    """Summaries by split: ShapesEval generated into `folder` (kept for the grids), the other splits in memory, each
    with a sheet of its first prompts in `folder` (split_sheet)."""
    args = dict(per_prompt=cfg.per_prompt, seed=seed, batch_size=cfg.batch_size)
    out = {"ShapesEval": _shapes_eval(bundle, folder, splits["ShapesEval"], judge, cfg, seed)}
    for name, meta in splits.items():
        if name not in out:
            out[name], rows, images = evaluate_model(bundle, meta, judge, **args)
            split_sheet(rows[:: cfg.per_prompt], images[:: cfg.per_prompt], folder / f"{name}.png")
    return out


def split_sheet(rows: list[dict], images: np.ndarray, path: Path, per_category: int = 8) -> None:
    """The first `per_category` images of each category in turn (a row each where a category has that many), framed
    green where GenEval's rule holds."""
    chosen = [[i for i, r in enumerate(rows) if r["tag"] == c][:per_category] for c in CATEGORIES]
    tiles = [shapes_eval.frame(images[i], rows[i]["correct"]) for i in sum(chosen, [])]
    save_png(grid(tiles, cols=per_category), path, scale=2)


def split_figures(splits: dict, rl: bool) -> dict[str, dict]:
    """The report's figure of the held-out and compositional sheets, per split, of the model (and after RL)."""
    models = (("model", "shapes_eval"), ("model + RL", "rl/shapes_eval"))[: 2 if rl else 1]
    shown = [name for name in splits if name != "ShapesEval"]
    images = {f"{label}, {name}": f"{folder}/{name}.png" for name in shown for label, folder in models}
    text = "The first prompts of each category, one image each, a row per category; green where GenEval's rule holds."
    return {"Held-out and compositional prompts": {"text": text, "images": images}}


def _notes(label: str, scores: dict, ceilings: dict | None = None) -> list[str]:
    """One line per split: GenEval's rule, the strict rule, objects per image read and asked for."""
    lines = []
    for split, s in scores.items():
        line = (f"{label}, {split}: GenEval {s['overall']:.3f}, strict {s['strict']:.3f}, objects per image "
                f"{s['objects_per_image']:.2f} for {s['objects_asked_per_image']:.2f} asked")  # fmt: skip
        if ceilings:
            line += f" (tokenizer ceiling {ceilings[split]['overall']:.3f}, strict {ceilings[split]['strict']:.3f})"
        lines.append(line + ".")
    return lines


def _shapes_eval(bundle: Bundle, folder: Path, metadata: list[dict], judge: Judge, cfg: DemoConfig, seed: int) -> dict:
    """Generate the ShapesEval images into a folder, score them, write the results beside them; the summary."""
    shutil.rmtree(folder, ignore_errors=True)  # the pipeline's own folder: nothing stale is scored
    write_shapes_eval(bundle, folder, metadata, cfg.per_prompt, seed=seed, batch_size=cfg.batch_size)
    summary, rows = shapes_eval.evaluate_folder(folder, judge)
    shapes_eval.write_results(folder, summary, rows, judge.cfg.version)
    return summary


def _rl_stages(
    cfg: DemoConfig, pipeline: Pipeline, splits: dict, judge: Judge, seed: int, device: str, sections: dict
) -> dict:
    """GRPO from the supervised model, then every split again, and before/after grids of the same prompts and seeds.
    Adds to `sections`; returns the ShapesEval summary after RL."""
    out = pipeline.folder
    rl_cfg = dataclasses.replace(cfg.rl, init=str(out / "model" / "checkpoint"), seed=seed)
    pipeline.stage("rl", to_dict(rl_cfg), lambda new: reached(RLTrainer(rl_cfg, out / "rl", fresh=new)))
    tuned = load_bundle(out / "rl" / "checkpoint", device)
    generation = {"per_prompt": cfg.per_prompt, "prompts": cfg.prompts, "seed": seed}
    after = pipeline.stage(
        "rl_scores", generation, lambda new: _measure(tuned, out / "rl" / "shapes_eval", splits, judge, cfg, seed)
    )
    sections["notes"] += [f"After {rl_cfg.steps} GRPO steps (reward {rl_cfg.reward}):", *_notes("model + RL", after)]
    sections["shapes_eval"] |= {f"model + RL, {n}": s for n, s in after.items()}
    sections["figures"] |= split_figures(splits, rl=True)
    rows = shapes_eval.read_rows(out / "rl" / "shapes_eval")
    sections["before_after"] = before_after_grids(shapes_eval.read_rows(out / "shapes_eval"), rows, out)
    sections["sample_grids"] = category_grids(rows, out, prefix="rl-")
    sections["curves"]["rl"] = read_metrics(out / "rl")
    sections["curve_keys"]["rl"] = ["reward_mean", "kl", "entropy", "eval/overall", "eval/strict", "held_out/overall"]
    return after["ShapesEval"]
