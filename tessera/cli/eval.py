"""tessera eval: ShapesEval on a folder, a checkpoint or the ground truth; reading on held-out scenes; edits."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Annotated

import typer

from tessera.cli.common import Canvas, Device, Dtype, Guidance, Seed, console, device
from tessera.errors import InputError

app = typer.Typer(help="Benchmarks.", no_args_is_help=True)


def _new_folder(out: Path | None, flag: str) -> Path:
    if out is None or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
        raise InputError(f"{flag} needs --out DIR, a new or empty folder for the images")
    return out


@app.command("shapes")
def shapes(
    images: Annotated[
        Path | None, typer.Option(help="A GenEval-layout folder: <index>/metadata.jsonl + samples/.")
    ] = None,
    ground_truth: Annotated[
        bool, typer.Option(help="Render 4 true scenes per prompt into --out and score them.")
    ] = False,
    out: Annotated[Path | None, typer.Option(help="Where results go (default: the images folder).")] = None,
    ckpt: Annotated[
        Path | None, typer.Option(help="A model checkpoint: generate the images into --out, then score them.")
    ] = None,
    per_prompt: Annotated[
        int, typer.Option(min=1, max=64, help="Images per prompt with --ckpt or --ground-truth (GenEval: 4).")
    ] = 4,
    weights: Annotated[Path | None, typer.Option(help="A judge folder (default: the shipped judge).")] = None,
    split: Annotated[
        str,
        typer.Option(
            help="The prompts with --ckpt or --ground-truth: shapes-eval (553), held-out (prompts no training "
            "text holds) or compositional (colour-shape pairs no training scene holds)."
        ),
    ] = "shapes-eval",
    think: Annotated[
        bool,
        typer.Option(
            help="With --ckpt: draw by thinking while drawing (generate --think); also writes thinking.json (the "
            "bands as first drawn against the final images, redraws, the critiques against the judge) and "
            "chains.jsonl."
        ),
    ] = False,
    cfg_scale: Guidance = None,
    canvas: Canvas = 64,
    device_name: Device = "auto",
    dtype: Dtype = "float32",
    seed: Seed = 0,
) -> None:
    """Score images on ShapesEval (553 prompts, GenEval's rules), or on the held-out or compositional split.

    Writes results.json, results.md, per-image results.jsonl and samples.png (green: correct, red: wrong).
    """
    from tessera.data.prompts import split_metadata
    from tessera.eval.judge import Judge
    from tessera.eval.shapes_eval import markdown_table, score_folder, write_ground_truth
    from tessera.world.scene import check_canvas

    if images is not None and split != "shapes-eval":
        raise InputError("--split chooses the prompts of --ckpt or --ground-truth; a folder has its own")
    if cfg_scale is not None and (ckpt is None or think):
        raise InputError("--cfg sets the guidance of --ckpt's samples (not of --think's chains)")
    prompts = split_metadata(split)
    judge = Judge.load(weights)
    if ground_truth:
        images = _new_folder(out, "--ground-truth")
        check_canvas(canvas)
        write_ground_truth(images, prompts, canvas=canvas, seed=seed, per_prompt=per_prompt)
    elif ckpt is not None:
        from tessera.generate.images import write_shapes_eval
        from tessera.model.bundle import load as load_bundle

        images = _new_folder(out, "--ckpt")
        bundle = load_bundle(ckpt, device(device_name), dtype)
        if think:
            from tessera.generate.thinking_eval import write_thinking_eval

            thought = write_thinking_eval(bundle, images, prompts, judge, per_prompt, seed=seed)
            shown = {k: v for k, v in thought.items() if not isinstance(v, dict)}
            console.print(f"first drawn {thought['first']['overall']:.3f}, final {thought['final']['overall']:.3f}; "
                          + ", ".join(f"{k} {v:.3f}" for k, v in shown.items()))  # fmt: skip
        else:
            sampling = bundle.cfg.sampling if cfg_scale is None else replace(bundle.cfg.sampling, cfg_scale=cfg_scale)
            write_shapes_eval(bundle, images, prompts, per_prompt, sampling, seed=seed)
    elif think:
        raise InputError("--think needs --ckpt CKPT --out DIR")
    if images is None:
        raise InputError("give --images DIR, --ckpt CKPT --out DIR, or --ground-truth --out DIR")
    summary, _ = score_folder(images, judge, out, title="ShapesEval" if split == "shapes-eval" else f"{split} split")
    console.print(markdown_table(summary), soft_wrap=True)
    if summary["skipped"]:
        console.print(f"skipped {len(summary['skipped'])} unreadable files (listed in results.json)")
    console.print(f"{summary['images']} images scored; results in {out or images}")


@app.command("understanding")
def understanding(
    ckpt: Annotated[Path, typer.Option(help="A model trained with caption / qa / judge tasks.")],
    n: Annotated[
        int,
        typer.Option(
            "-n",
            "--n",
            min=1,
            max=10_000,
            help="Held-out scenes per task (1,000: 200 questions a kind, a standard error of at most 0.035).",
        ),
    ] = 1000,
    out: Annotated[Path | None, typer.Option(help="Write results.json and results.jsonl here.")] = None,
    device_name: Device = "auto",
) -> None:
    """Question answering (per kind), captions and judging on scenes the model never saw."""
    from tessera.model.bundle import load as load_bundle
    from tessera.sequence.tasks import reading
    from tessera.understand.evaluate import evaluate_understanding, kinds_table, write_results

    bundle = load_bundle(ckpt, device(device_name))
    if not reading(bundle.cfg.tasks):
        raise InputError(f"{ckpt} was trained to draw only; it answers no questions")
    summary, rows = evaluate_understanding(bundle, n)
    if out is not None:
        write_results(out, summary, rows)
    for key, value in summary.items():
        if not key.startswith("qa/") or key == "qa/blind":  # each kind's scores go in the table
            console.print(f"{key:18s} {value:.3f}")
    if any("kind" in r for r in rows):
        console.print(kinds_table(summary, rows), soft_wrap=True)


@app.command("edits")
def edits(
    ckpt: Annotated[Path, typer.Option(help="A text-to-image model checkpoint.")],
    per_kind: Annotated[int, typer.Option(min=1, max=1000, help="Edits of each kind (remove, add, recolour).")] = 20,
    method: Annotated[
        str, typer.Option(help="root: kept tokens, then a tree grown from them | raster: then the rest row by row.")
    ] = "root",
    device_name: Device = "auto",
    seed: Seed = 0,
) -> None:
    """The world's edit set: per kind, how often the judge reads exactly the scene the edit must leave."""
    from tessera.eval.edits import edit_cases
    from tessera.eval.judge import Judge
    from tessera.generate.edit import edit_success
    from tessera.model.bundle import load as load_bundle

    if method not in ("root", "raster"):
        raise InputError(f"--method must be root or raster, got {method!r}")
    bundle = load_bundle(ckpt, device(device_name))
    cases = edit_cases(per_kind, bundle.cfg.canvas, seed=seed, fits=bundle.fits)
    scores, _ = edit_success(bundle, Judge.load(), cases, seed=seed, method=method)
    header = f"{'kind':10s} {'edited':>7s} {'ceiling':>8s} {'unedited':>9s}"
    console.print(f"{header}  ({per_kind} each, {method} edits, a model trained in {bundle.cfg.order} order)")
    for kind, s in scores.items():
        console.print(f"{kind:10s} {s['edited']:7.3f} {s['ceiling']:8.3f} {s['unedited']:9.3f}")


@app.command("conditions")
def conditions(
    ckpt: Annotated[
        Path,
        typer.Option(help="A model checkpoint trained on conditioned tasks (seg2i, edge2i, instruct, predict) or t2v."),
    ],
    per_kind: Annotated[int, typer.Option(min=1, max=1000, help="Cases of each map task and of each edit kind.")] = 20,
    image_scale: Annotated[
        float | None, typer.Option(min=0.0, help="Guidance of the visual condition (default: the checkpoint's).")
    ] = None,
    out: Annotated[
        Path | None, typer.Option(help="A folder for conditions.json, a sheet per task, clips and report.html.")
    ] = None,
    device_name: Device = "auto",
    seed: Seed = 0,
) -> None:
    """Any-to-image on the world's conditions set, and text-to-video on the held-out video prompts: per task its
    metrics beside the tokenizer's ceiling."""
    import dataclasses

    from tessera.eval.judge import Judge
    from tessera.generate.conditioned import evaluate_conditions_and_video, write_conditions_report
    from tessera.model.bundle import load as load_bundle
    from tessera.sequence.tasks import Task, conditioned

    bundle = load_bundle(ckpt, device(device_name))
    if not conditioned(bundle.cfg.tasks) and Task.T2V not in bundle.cfg.tasks:
        tasks = ", ".join(bundle.cfg.tasks)
        raise InputError(f"{ckpt} was not trained on a conditioned task or on t2v (its tasks: {tasks})")
    sampling = bundle.cfg.sampling
    if image_scale is not None:
        sampling = dataclasses.replace(sampling, image_scale=image_scale)
    scores, sheets, videos = evaluate_conditions_and_video(bundle, Judge.load(), per_kind, sampling, seed)
    header = f"{'task':9s} {'metric':9s} {'model':>7s} {'ceiling':>8s} {'copy':>7s}"
    console.print(
        f"{header}  ({per_kind} per kind, seed {seed}; copy: the source image, the last given frame, or a clip's "
        "first frame held)"
    )
    for task, metrics in scores.items():
        for metric, s in metrics.items():
            copy = f"{s['copy']:7.3f}" if "copy" in s else ""
            console.print(f"{task:9s} {metric:9s} {s['model']:7.3f} {s['ceiling']:8.3f} {copy}")
    if out is not None:
        write_conditions_report(out, scores, sheets, videos, ckpt)
        console.print(f"results, sheets (condition | drawn | ceiling) and report.html in {out}/")
