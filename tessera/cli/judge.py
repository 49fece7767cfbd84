"""tessera judge: train the judge, read the objects in images."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tessera.cli.common import Fresh, Overrides, Seed, console

app = typer.Typer(help="The judge that reads objects from images.", no_args_is_help=True)


@app.command("train")
def train(
    out: Annotated[Path, typer.Option(help="Run folder; its checkpoint/ is a judge folder.")] = Path("runs/judge"),
    fresh: Fresh = False,
    overrides: Overrides = None,
    seed: Seed = 0,
) -> None:
    """Train the judge on renders (half corrupted, some with marks that are not objects) and report object
    precision/recall on held-out scenes, clean, corrupted and with marks."""
    from tessera.config import load
    from tessera.engine.loop import finish
    from tessera.eval.judge_train import JudgeTrainConfig, JudgeTrainer

    cfg = load(JudgeTrainConfig(), options={"seed": seed}, pairs=overrides)
    metrics = finish(JudgeTrainer(cfg, out, fresh=fresh)).metrics
    console.print(_metrics_table(metrics))
    console.print(f"judge checkpoint in {out}/checkpoint")


@app.command("eval")
def evaluate(
    weights: Annotated[Path | None, typer.Option(help="A judge folder (default: the shipped judge).")] = None,
    scenes: Annotated[int, typer.Option(min=1, help="Held-out scenes (training's evaluation reads 1,000).")] = 1000,
) -> None:
    """Object precision/recall of a judge on the held-out renders its training is measured on: clean, corrupted,
    rough-edged and with marks."""
    from tessera.eval.judge import Judge
    from tessera.eval.judge_train import held_out_metrics

    console.print(_metrics_table(held_out_metrics(Judge.load(weights), scenes)))


def _metrics_table(metrics: dict[str, dict]) -> Table:
    table = Table("held-out renders", "precision", "recall", "marks read as clutter")
    for name, m in metrics.items():
        flagged = f"{m['clutter_recall']:.4f}" if "clutter_recall" in m else "-"
        table.add_row(name, f"{m['precision']:.4f}", f"{m['recall']:.4f}", flagged)
    return table


@app.command("check")
def check(
    images: Annotated[list[Path], typer.Argument(help="One or more image files.")],
    weights: Annotated[Path | None, typer.Option(help="A judge folder (default: the shipped judge).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Print the objects the judge sees in each image."""
    from tessera.eval.judge import Judge
    from tessera.pictures import load_image

    judge = Judge.load(weights)
    for path in images:
        found = judge.read(load_image(path))[0]
        if as_json:
            print(json.dumps({"image": str(path), "objects": [d.to_dict() for d in found]}))
            continue
        table = Table(
            "shape", "colour", "size", "centre (x, y)", "box", "confidence", title=f"{path}: {len(found)} objects"
        )
        for d in found:
            x, y = d.centre
            box = ", ".join(f"{v:.0f}" for v in d.box)
            table.add_row(d.shape, d.colour, d.size, f"{x:.1f}, {y:.1f}", box, f"{d.confidence:.3f}")
        console.print(table)
