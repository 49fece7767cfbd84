"""tessera rl / demo / unified: post-training and the pipelines."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tessera.cli.common import Fresh, Seed, console, preset
from tessera.errors import InputError


def pipeline_overrides(overrides: list[str] | None) -> list[str]:
    """A pipeline's overrides, checked: InputError if one sets a stage's seed, which --seed sets for every stage."""
    for pair in overrides or []:
        if pair.partition("=")[0].split(".")[-1] == "seed":
            raise InputError(f"{pair}: --seed sets the seed of every stage (give --seed N)")
    return overrides or []


def rl(
    init: Annotated[Path, typer.Option(help="The model checkpoint to improve (runs/<name>/checkpoint).")],
    reward: Annotated[
        str,
        typer.Option(
            help="shapes_eval | shapes_eval_partial | cycle | colour_share | brightness | format | clip, "
            "or weighted: 'shapes_eval:1,cycle:0.5'"
        ),
    ] = "shapes_eval",
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint/, metrics.jsonl.")] = Path("runs/rl"),
    fresh: Fresh = False,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Config overrides, e.g. steps=50 grpo.group_size=8 grpo.beta=0.04.")
    ] = None,
    seed: Seed = 0,
) -> None:
    """GRPO post-training with a verifiable reward on prompts from the world's grammar (ShapesEval's held out); with
    conditions={instruct: 1} (say) on the world's conditioned cases, rewarded against their truth.

    Runs on many processes under torchrun (each with its own prompts; fsdp=true shards the model)."""
    from tessera.config import load
    from tessera.engine.loop import finish
    from tessera.rl.trainer import RLConfig, RLTrainer

    cfg = load(RLConfig(), options={"init": str(init), "reward": reward, "seed": seed}, pairs=overrides)
    trainer = finish(RLTrainer(cfg, out, fresh=fresh))
    if not trainer.processes.main:
        return
    rows = trainer.engine.log.read()
    last = rows[-1] if rows else {}
    shown = next((last[k] for k in ("reward_mean", "read/reward_mean", "cond/reward_mean") if k in last), float("nan"))
    console.print(f"step {trainer.step}: reward {shown:.3f}; checkpoint in {out}/checkpoint")


def demo(
    preset_name: Annotated[
        str,
        typer.Option(
            "--preset", help="smoke | quick (about 21 min on 2 cores, with RL) | full | gpu (tessera/configs/demo/)"
        ),
    ] = "quick",
    out: Annotated[Path, typer.Option(help="Run folder; a rerun reuses the stages it finds finished.")] = Path(
        "runs/demo"
    ),
    fresh: Fresh = False,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, e.g. model.steps=300.")] = None,
    seed: Seed = 0,
) -> None:
    """The main job: train a tokenizer and a text-to-image model on the world, score it on ShapesEval, write
    report.html (sample grids per category, the ShapesEval table, loss curves, timings, the config)."""
    from tessera.config import load
    from tessera.pipelines.demo import DemoConfig, run_demo

    run_demo(load(DemoConfig(), preset("demo", preset_name), pairs=pipeline_overrides(overrides)), out, seed, fresh)


def unified(
    preset_name: Annotated[
        str, typer.Option("--preset", help="smoke | quick | gpu (tessera/configs/unified/)")
    ] = "quick",
    out: Annotated[Path, typer.Option(help="Run folder; a rerun reuses the stages it finds finished.")] = Path(
        "runs/unified"
    ),
    fresh: Fresh = False,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, e.g. rl.steps=40.")] = None,
    seed: Seed = 0,
) -> None:
    """One model that sees and draws: multi-task SFT, the CoRL ablation at equal RL steps (drawing only, reading
    only, unified, unified + refined) and introspective generation; writes report.html and results.json."""
    from tessera.config import load
    from tessera.pipelines.unified import UnifiedConfig, run_unified

    cfg = load(UnifiedConfig(), preset("unified", preset_name), pairs=pipeline_overrides(overrides))
    run_unified(cfg, out, seed, fresh)
