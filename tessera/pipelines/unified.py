"""One model that sees and draws: multi-task SFT, then the CoRL ablation and introspective generation.

Stages (each skipped when a rerun finds it finished): a visual tokenizer (or a given one); one model trained on
text-to-image, captioning, question answering and judging; GRPO from it at equal steps - drawing only, reading
only, unified (both in one run), unified then refined per task; introspection (Janus-Pro-R1: chains from the
model's own judged samples, then RL with three advantages); thinking while drawing (TwiG): the SFT model
prompted to think and critique per band (zero-shot), and with `think_steps` a model trained on thinking chains
whose drafts are the SFT model's own drawings, then TwiG-GRPO. Every model is measured the same way: a ShapesEval
subset and reading on held-out scenes. Writes report.html and results.json.
"""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import torch
from rich.console import Console

from tessera.config import at_least, to_dict
from tessera.engine.checkpoint import write_atomically
from tessera.engine.loop import Trainable, finish
from tessera.engine.runlog import read_metrics
from tessera.errors import ConfigError
from tessera.eval import shapes_eval
from tessera.eval.judge import Judge
from tessera.eval.report import write_report
from tessera.generate.images import evaluate_model
from tessera.generate.introspect import evaluate_introspection
from tessera.generate.thinking_eval import evaluate_thinking
from tessera.model.bundle import load as load_bundle
from tessera.pipelines.stages import Pipeline, reached
from tessera.rl.trainer import RLConfig, RLTrainer
from tessera.sequence.tasks import Task, reading
from tessera.tokenizer.train import TokenizerTrainConfig, TokenizerTrainer
from tessera.train.introspect import IntrospectConfig, IntrospectionTrainer
from tessera.train.trainer import TrainConfig, Trainer
from tessera.understand.evaluate import evaluate_understanding
from tessera.world.language import CATEGORIES

console = Console()


@dataclass
class UnifiedConfig:
    tokenizer: TokenizerTrainConfig = field(default_factory=TokenizerTrainConfig)
    model: TrainConfig = field(default_factory=TrainConfig)  # give model.data.tasks a mixture
    rl: RLConfig = field(default_factory=RLConfig)  # shared by every RL run (steps: each variant's budget)
    draw_reward: str = "shapes_eval_exact"  # not raised by drawing more (cycle and the partial rule are)
    read: dict[str, float] = field(default_factory=lambda: {Task.QA: 2.0, Task.CAPTION: 1.0, Task.JUDGE: 1.0})
    introspect: IntrospectConfig = field(default_factory=IntrospectConfig)
    introspect_rl_steps: int = 20
    think_steps: int = 0  # TwiG SFT: a model trained (at the SFT model's settings) on text-to-image and thinking
    # chains whose drafts are the SFT model's own drawings; 0: thinking is measured zero-shot only
    think_rl_steps: int = 0  # TwiG-GRPO from that model (with think_steps)
    eval_prompts: int = 8  # ShapesEval: the first n prompts of each category
    eval_per_prompt: int = 2
    eval_read: int = 100  # held-out scenes per reading task

    def validate(self) -> None:
        at_least(self, 0, "introspect_rl_steps", "think_steps", "think_rl_steps")
        if self.think_rl_steps and not self.think_steps:
            raise ConfigError("think_rl_steps trains the think_steps model: set think_steps too")


def measure(bundle, judge: Judge, cfg: UnifiedConfig, seed: int) -> dict:
    """ShapesEval on a benchmark subset and reading on held-out scenes, one flat dict."""
    subset = shapes_eval.first_prompts(cfg.eval_prompts)
    summary, _, _ = evaluate_model(bundle, subset, judge, cfg.eval_per_prompt, seed=seed, batch_size=128)
    out = {f"shapes/{k}": v for k, v in summary.items() if isinstance(v, float)}
    if reading(bundle.cfg.tasks):
        scores, _ = evaluate_understanding(bundle, cfg.eval_read)
        out |= {f"read/{k}": v for k, v in scores.items()}
    return out


def run_unified(cfg: UnifiedConfig, out: str | Path, seed: int = 0, fresh: bool = False) -> dict:
    """Run (or finish) every stage; writes results.json and report.html; returns the results."""
    cfg.validate()
    with Pipeline(out, "unified", fresh) as pipeline:
        return _unified(cfg, pipeline, seed)


def _unified(cfg: UnifiedConfig, pipeline: Pipeline, seed: int) -> dict:
    out = pipeline.folder
    device = "cuda" if torch.cuda.is_available() else "cpu"
    judge = Judge.load()
    results: dict[str, dict] = {}

    def measured(
        run: Path, make: Callable[[bool], Trainable], scores: Callable[[Path], dict] | None = None
    ) -> Callable[[bool], dict]:
        """A stage that finishes the trainer make(fresh) builds in `run`, then measures the model it leaves there
        (`scores` of its checkpoint; by default ShapesEval and reading)."""

        def stage(new: bool) -> dict:
            finish(make(new))
            ckpt = run / "checkpoint"
            return scores(ckpt) if scores else measure(load_bundle(ckpt, device), judge, cfg, seed)

        return stage

    def introspection(ckpt: Path) -> dict:
        return _introspection_scores(ckpt, judge, cfg, seed, device)

    def thinking(ckpt: Path) -> dict:
        return _thinking_scores(ckpt, judge, cfg, seed, device)

    tok_cfg = dataclasses.replace(cfg.tokenizer, seed=seed)
    pipeline.stage(
        "tokenizer", to_dict(tok_cfg), lambda new: reached(TokenizerTrainer(tok_cfg, out / "tokenizer", fresh=new))
    )
    sft = out / "sft" / "checkpoint"
    model_cfg = dataclasses.replace(cfg.model, tokenizer=str(out / "tokenizer" / "checkpoint"), seed=seed)
    results["sft"] = pipeline.stage(
        "sft",
        to_dict(model_cfg),
        measured(out / "sft", lambda new: Trainer(model_cfg, out / "sft", fresh=new)),
    )

    def rl(name: str, init: Path, steps: int, draw: bool, read: bool) -> Path:
        run = out / name
        rl_cfg = dataclasses.replace(
            cfg.rl, init=str(init), steps=steps, draw=draw, read=dict(cfg.read) if read else {},
            reward=cfg.draw_reward, eval_every=0, seed=seed,
        )  # fmt: skip
        results[name] = pipeline.stage(
            name, to_dict(rl_cfg), measured(run, lambda new: RLTrainer(rl_cfg, run, fresh=new))
        )
        return run / "checkpoint"

    steps = cfg.rl.steps
    rl("draw-only", sft, steps, draw=True, read=False)
    rl("read-only", sft, steps, draw=False, read=True)
    rl("unified", sft, steps, draw=True, read=True)
    half = rl("unified-half", sft, steps // 2, draw=True, read=True)
    rl("refined-draw", half, steps - steps // 2, draw=True, read=False)
    rl("refined-read", half, steps - steps // 2, draw=False, read=True)

    intro_cfg = dataclasses.replace(cfg.introspect, init=str(sft), seed=seed)
    intro = out / "introspect"
    fit_intro = measured(intro, lambda new: IntrospectionTrainer(intro_cfg, intro, fresh=new), introspection)
    results["introspect-sft"] = pipeline.stage("introspect-sft", to_dict(intro_cfg), fit_intro)
    intro_rl = dataclasses.replace(
        cfg.rl, init=str(intro / "checkpoint"), steps=cfg.introspect_rl_steps, introspect=True, draw=True, read={},
        eval_every=0, seed=seed,
    )  # fmt: skip
    intro_run = out / "introspect-rl"
    fit_intro_rl = measured(intro_run, lambda new: RLTrainer(intro_rl, intro_run, fresh=new), introspection)
    results["introspect-rl"] = pipeline.stage("introspect-rl", to_dict(intro_rl), fit_intro_rl)
    think = {"init": str(sft), "eval_prompts": cfg.eval_prompts, "eval_per_prompt": cfg.eval_per_prompt, "seed": seed}
    results["think-zero-shot"] = pipeline.stage("think-zero-shot", think, lambda new: thinking(sft))
    if cfg.think_steps:
        data = dataclasses.replace(model_cfg.data, tasks={Task.T2I: 1.0, Task.THINK: 1.0}, drafts_from=str(sft))
        think_cfg = dataclasses.replace(model_cfg, data=data, steps=cfg.think_steps)
        think_run = out / "think-sft"
        fit_think = measured(think_run, lambda new: Trainer(think_cfg, think_run, fresh=new), thinking)
        results["think-sft"] = pipeline.stage("think-sft", to_dict(think_cfg), fit_think)
        if cfg.think_rl_steps:
            think_rl = dataclasses.replace(
                cfg.rl, init=str(think_run / "checkpoint"), steps=cfg.think_rl_steps, think=True, draw=True, read={},
                reward="shapes_eval", separate_advantages=False, eval_every=0, seed=seed,
            )  # fmt: skip
            think_rl_run = out / "think-rl"
            fit_think_rl = measured(think_rl_run, lambda new: RLTrainer(think_rl, think_rl_run, fresh=new), thinking)
            results["think-rl"] = pipeline.stage("think-rl", to_dict(think_rl), fit_think_rl)
    results["timings"] = pipeline.timings()
    write_atomically(out / "results.json", json.dumps(results, indent=1) + "\n")
    report = write_report(out, _sections(results, cfg, out))
    console.print(f"report: {report}")
    return results


def _introspection_scores(ckpt: Path, judge: Judge, cfg: UnifiedConfig, seed: int, device: str) -> dict:
    """One-shot against introspective ShapesEval of the same chains, and how well the model judges itself."""
    subset = shapes_eval.first_prompts(cfg.eval_prompts)
    scores = evaluate_introspection(load_bundle(ckpt, device), subset, judge, cfg.eval_per_prompt, seed=seed)
    return {
        "one_shot": scores["one_shot"]["overall"],
        "introspective": scores["introspective"]["overall"],
        "self_eval_agreement": scores["self_eval_agreement"],
        "judge_says_yes": scores["judge_says_yes"],
        "redrawn": scores["redrawn"],
        "tokens_per_image": scores["tokens_per_image"],
    }


CHAINS = ("tokens_per_image", "chains_redrawn", "redraw_fixes", "critiques_parsed", "low_precision", "low_recall")
THINKING = ("one_shot", "first", "final", "strict", *CHAINS)  # the report's rows: scores, then the chains' statistics
ROUTES = {"think-zero-shot": "zero-shot (the SFT model)", "think-sft": "TwiG SFT", "think-rl": "TwiG SFT + GRPO"}


def _thinking_scores(ckpt: Path, judge: Judge, cfg: UnifiedConfig, seed: int, device: str) -> dict:
    """Thinking while drawing (TwiG), the model prompted to think and critique each band: ShapesEval of its images
    drawn in one go, of its bands as first drawn and of its final images, and its chains' statistics."""
    subset, bundle = shapes_eval.first_prompts(cfg.eval_prompts), load_bundle(ckpt, device)
    one_shot, _, _ = evaluate_model(bundle, subset, judge, cfg.eval_per_prompt, seed=seed)
    summary, _, _ = evaluate_thinking(bundle, subset, judge, cfg.eval_per_prompt, seed=seed)
    scores = {"one_shot": one_shot["overall"], "first": summary["first"]["overall"]}
    scores |= {"final": summary["final"]["overall"], "strict": summary["final"]["strict"]}
    return scores | {k: summary[k] for k in CHAINS}


ABLATION = ("sft", "draw-only", "read-only", "unified", "refined-draw", "refined-read")


def _sections(results: dict, cfg: UnifiedConfig, out: Path) -> dict:
    keys = [
        "shapes/overall", "shapes/strict", *[f"shapes/{c}" for c in CATEGORIES], "shapes/objects_per_image",
        "shapes/objects_asked_per_image", "read/qa", "read/caption", "read/judge", "read/judge/no_precision",
        "read/judge/no_recall",
    ]  # fmt: skip
    keys += sorted({k for name in ABLATION for k in results.get(name, {}) if k.startswith("read/qa/")})
    rows = [[k, *[_fmt(results.get(name, {}).get(k)) for name in ABLATION]] for k in keys]
    intro_keys = ["one_shot", "introspective", "self_eval_agreement", "judge_says_yes", "redrawn", "tokens_per_image"]
    intro_rows = [
        [k, *[_fmt(results.get(n, {}).get(k)) for n in ("introspect-sft", "introspect-rl")]] for k in intro_keys
    ]
    routes = [name for name in ROUTES if name in results]
    think_rows = [[k, *[_fmt(results[name].get(k)) for name in routes]] for k in THINKING]
    best = {"unified + refined": {"shapes": results.get("refined-draw", {}).get("shapes/overall"),
                                  "qa": results.get("refined-read", {}).get("read/qa")}}  # fmt: skip
    notes = [
        f"Every RL run has {cfg.rl.steps} steps from the same multi-task SFT model; unified + refined is "
        f"{cfg.rl.steps // 2} unified steps, then {cfg.rl.steps - cfg.rl.steps // 2} per task "
        f"(ShapesEval {_fmt(best['unified + refined']['shapes'])}, QA {_fmt(best['unified + refined']['qa'])}).",
        f"ShapesEval on the first {cfg.eval_prompts} prompts of each category x {cfg.eval_per_prompt} images; "
        f"reading on {cfg.eval_read} held-out scenes per task.",
    ]
    curves = {
        n: read_metrics(out / n) for n in ("draw-only", "read-only", "unified", "introspect-rl") if (out / n).exists()
    }
    return {
        "notes": notes,
        "tables": {
            "CoRL ablation at equal RL steps": {"head": ["metric", *ABLATION], "rows": rows},
            "Introspective generation (Janus-Pro-R1)": {
                "head": ["metric", "after SFT", "after RL"],
                "rows": intro_rows,
            },
            "Thinking while drawing (TwiG)": {"head": ["metric", *[ROUTES[n] for n in routes]], "rows": think_rows},
        },
        "curves": curves,
        "curve_keys": {n: ["reward_mean", "read/reward_mean", "reward/honest", "kl", "read/kl"] for n in curves},
        "timings": results.get("timings", {}),
        "config": {"unified": to_dict(cfg)},
    }


def _fmt(v) -> str:
    return "–" if v is None else f"{v:.3f}"
