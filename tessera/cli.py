"""The `tessera` command."""

from __future__ import annotations

import errno
import json
import os
import shutil
import sys
from pathlib import Path
from typing import Annotated

import numpy as np
import typer
from rich.console import Console
from rich.progress import track
from rich.table import Table

from tessera.errors import ConfigError, InputError, TesseraError

app = typer.Typer(
    help="tessera: autoregressive visual generation over discrete visual tokens.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)
world_app = typer.Typer(help="The built-in Shapes world: sample scenes, render prompts.", no_args_is_help=True)
judge_app = typer.Typer(help="The judge that reads objects from images.", no_args_is_help=True)
eval_app = typer.Typer(help="Benchmarks.", no_args_is_help=True)
tokenizer_app = typer.Typer(help="Visual tokenizers: train, evaluate, import.", no_args_is_help=True)
app.add_typer(world_app, name="world")
app.add_typer(judge_app, name="judge")
app.add_typer(eval_app, name="eval")
app.add_typer(tokenizer_app, name="tokenizer")
console = Console()
BAD_PATHS = (FileNotFoundError, PermissionError, IsADirectoryError, NotADirectoryError, FileExistsError)

Seed = Annotated[int, typer.Option(min=0, help="Random seed; the same seed gives the same result.")]
Canvas = Annotated[int, typer.Option(help="Canvas side in pixels: a multiple of 16 from 32 to 256.")]


@world_app.command("sample")
def world_sample(
    out: Annotated[Path, typer.Option(help="Folder for the images, texts and scene graphs.")],
    n: Annotated[int, typer.Option(min=1, help="How many scenes.")] = 16,
    canvas: Canvas = 64,
    video: Annotated[bool, typer.Option(help="Also write each scene as a 9-frame GIF clip.")] = False,
    seed: Seed = 0,
) -> None:
    """Sample scenes; write PNG images, a grid, scene JSON and every text form (captions.jsonl)."""
    from tessera.pictures import grid, save_gif, save_png
    from tessera.world import language as lang
    from tessera.world.render import render_image, render_video
    from tessera.world.scene import check_canvas, sample_scene

    check_canvas(canvas)
    rng = np.random.default_rng(seed)
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    out.mkdir(parents=True, exist_ok=True)
    images, records = [], []
    for i in track(range(n), description="sampling scenes", disable=n < 200):
        scene = sample_scene(rng, canvas, video=video)
        image = render_image(scene)
        if len(images) < 64:
            images.append(image)  # for the grid
        save_png(image, out / f"{i:05d}.png")
        if video:
            save_gif(render_video(scene), out / f"{i:05d}.gif")
        question, answer = lang.question_answer(scene, rng)
        try:
            edit, edited = lang.edit_instruction(scene, rng)
        except ValueError:  # rare: no object can be named alone and the scene is full
            edit, edited = None, None
        records.append(
            {
                "image": f"{i:05d}.png",
                "caption": lang.caption(scene, rng),
                "partial": lang.partial_description(scene, rng),
                "prompts": {c: p for c in lang.CATEGORIES if (p := lang.prompt(scene, c, rng)) is not None},
                "question": question,
                "answer": answer,
                "edit": edit,
                "edited_scene": edited.to_dict() if edited else None,
                "scene": scene.to_dict(),
            }
        )
    save_png(grid(images), out / "grid.png", scale=2)
    (out / "captions.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records))
    console.print(f"wrote {n} scenes to {out} (grid.png, captions.jsonl{', GIFs' if video else ''})")


@world_app.command("render")
def world_render(
    prompt: Annotated[str, typer.Argument(help='A description, e.g. "a red circle left of a blue star".')],
    out: Annotated[Path, typer.Option(help="Output PNG (or GIF with --kind video).")] = Path("render.png"),
    kind: Annotated[str, typer.Option(help="image | segmentation | edges | video")] = "image",
    canvas: Canvas = 64,
    scale: Annotated[int, typer.Option(min=1, max=16, help="Enlarge the picture by this factor (nearest).")] = 1,
    seed: Seed = 0,
) -> None:
    """Draw a scene that satisfies the prompt and render it."""
    from tessera.pictures import save_gif, save_png
    from tessera.world.constraints import sample_scene_for
    from tessera.world.grammar import parse_description
    from tessera.world.render import render_edges, render_image, render_segmentation, render_video, segmentation_to_rgb
    from tessera.world.scene import add_motion

    kinds = ("image", "segmentation", "edges", "video")
    if kind not in kinds:
        raise InputError(f"unknown --kind {kind!r}; expected one of {', '.join(kinds)}")
    suffix = ".gif" if kind == "video" else ".png"
    if out.suffix.lower() != suffix:
        raise InputError(f"--out must end in {suffix} for --kind {kind}, got {out.name!r}")
    rng = np.random.default_rng(seed)
    scene = sample_scene_for(parse_description(prompt), rng, canvas)
    if kind == "video":
        save_gif(render_video(add_motion(scene, rng)), out)
    else:
        picture = {
            "image": lambda: render_image(scene),
            "segmentation": lambda: segmentation_to_rgb(render_segmentation(scene)),
            "edges": lambda: np.repeat(render_edges(scene)[..., None], 3, axis=2),
        }[kind]()
        save_png(picture, out, scale)
    console.print(f"wrote {out}")


@judge_app.command("train")
def judge_train(
    out: Annotated[Path, typer.Option(help="Folder for judge.safetensors and judge.yaml.")] = Path("runs/judge"),
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. steps=300).")] = None,
    seed: Seed = 0,
) -> None:
    """Train the judge on renders (half corrupted) and report object precision/recall on held-out scenes."""
    from tessera.config import load
    from tessera.eval.judge_train import JudgeTrainConfig, train_judge

    cfg = load(JudgeTrainConfig(seed=seed), pairs=overrides)
    _, metrics = train_judge(cfg, out)
    table = Table("held-out renders", "precision", "recall")
    for name in ("clean", "corrupted"):
        table.add_row(name, f"{metrics[name]['precision']:.4f}", f"{metrics[name]['recall']:.4f}")
    console.print(table)
    console.print(f"trained in {metrics['train_seconds']} s; wrote {out}/judge.safetensors")


@judge_app.command("check")
def judge_check(
    images: Annotated[list[Path], typer.Argument(help="One or more image files.")],
    weights: Annotated[Path | None, typer.Option(help="Judge folder (default: the shipped judge).")] = None,
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
            table.add_row(
                d.shape,
                d.colour,
                d.size,
                f"{x:.1f}, {y:.1f}",
                ", ".join(f"{v:.0f}" for v in d.box),
                f"{d.confidence:.3f}",
            )
        console.print(table)


@eval_app.command("shapes")
def eval_shapes(
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
    per_prompt: Annotated[int, typer.Option(min=1, help="Images per prompt with --ckpt (GenEval: 4).")] = 4,
    weights: Annotated[Path | None, typer.Option(help="Judge folder (default: the shipped judge).")] = None,
    canvas: Canvas = 64,
    seed: Seed = 0,
) -> None:
    """Score images on ShapesEval (553 prompts, GenEval's rules).

    Writes results.json, results.md, per-image results.jsonl and samples.png (green: correct, red: wrong).
    """
    from tessera.eval.judge import Judge
    from tessera.eval.shapes_eval import (
        evaluate_folder,
        load_metadata,
        markdown_table,
        sample_sheet,
        write_ground_truth,
    )
    from tessera.pictures import save_png
    from tessera.world.scene import check_canvas

    judge = Judge.load(weights)
    if ground_truth:
        if out is None:
            raise InputError("--ground-truth needs --out DIR for the rendered images")
        if out.exists() and (not out.is_dir() or any(out.iterdir())):
            raise InputError(f"--out {out} must be a new or empty folder for --ground-truth")
        check_canvas(canvas)
        write_ground_truth(out, load_metadata(), canvas=canvas, seed=seed)
        images = out
    if ckpt is not None:
        from tessera.generate.images import write_shapes_eval
        from tessera.model.bundle import load as load_bundle

        if out is None or (out.exists() and (not out.is_dir() or any(out.iterdir()))):
            raise InputError("--ckpt needs --out DIR, a new or empty folder for the generated images")
        write_shapes_eval(load_bundle(ckpt, _device("auto")), out, load_metadata(), per_prompt, seed=seed)
        images = out
    if images is None:
        raise InputError("give --images DIR, --ckpt CKPT --out DIR, or --ground-truth --out DIR")
    summary, rows = evaluate_folder(images, judge)
    dest = out or images
    if dest.exists() and not dest.is_dir():
        raise InputError(f"--out {dest} is a file, not a folder")
    dest.mkdir(parents=True, exist_ok=True)
    (dest / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
    (dest / "results.md").write_text(f"ShapesEval ({judge.cfg.version})\n\n" + markdown_table(summary) + "\n")
    (dest / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    save_png(sample_sheet(rows), dest / "samples.png", scale=2)
    console.print(markdown_table(summary), soft_wrap=True)
    if summary["skipped"]:
        console.print(f"skipped {len(summary['skipped'])} unreadable files (listed in results.json)")
    console.print(f"{summary['images']} images scored; results in {dest}")


@app.command("train")
def train(
    tokenizer: Annotated[Path, typer.Option(help="The visual tokenizer checkpoint the model draws with.")],
    data: Annotated[
        str, typer.Option(help="shapes | shapes-classes | a folder of class sub-folders | a captions .jsonl")
    ] = "shapes",
    preset: Annotated[str, typer.Option(help="smoke | quick | full | gpu | gpt-b (tessera/configs/model/)")] = "quick",
    config: Annotated[Path | None, typer.Option(help="A YAML config file instead of the preset.")] = None,
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint/, samples/, metrics.jsonl.")] = Path("runs/t2i"),
    fresh: Annotated[bool, typer.Option(help="Start over instead of resuming the run's checkpoint.")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. steps=300).")] = None,
    seed: Seed = 0,
) -> None:
    """Train the autoregressive model (text- or class-to-image); resumes from the run's checkpoint unless --fresh.

    Runs on many processes under torchrun (gloo on CPU, nccl on GPU)."""
    from tessera.config import load, override, parse_overrides
    from tessera.train.trainer import TrainConfig
    from tessera.train.trainer import train as train_model

    path = config or _preset("model", preset)
    fixed = {"tokenizer": str(tokenizer), "data.source": data, "seed": seed}
    cfg = override(load(TrainConfig(), path), fixed | parse_overrides(overrides or []))
    if fresh and int(os.environ.get("RANK", "0")) == 0:
        shutil.rmtree(out, ignore_errors=True)
    trainer = train_model(cfg, out)
    if trainer.is_main:
        rows = trainer.log.read()
        last = rows[-1] if rows else {}
        console.print(f"step {trainer.step}: loss {last.get('loss', float('nan')):.3f}; checkpoint in {out}/checkpoint")
        if trainer.skipped:
            console.print(f"skipped {len(trainer.skipped)} unreadable examples (e.g. {next(iter(trainer.skipped))})")


@app.command("rl")
def rl(
    init: Annotated[Path, typer.Option(help="The model checkpoint to improve (runs/<name>/checkpoint).")],
    reward: Annotated[
        str, typer.Option(help="shapes_eval | shapes_eval_partial | colour_share | brightness | format")
    ] = "shapes_eval",
    out: Annotated[Path, typer.Option(help="Run folder: checkpoint/, metrics.jsonl.")] = Path("runs/rl"),
    fresh: Annotated[bool, typer.Option(help="Start over instead of resuming the run's checkpoint.")] = False,
    overrides: Annotated[
        list[str] | None, typer.Argument(help="Config overrides, e.g. steps=50 grpo.group_size=8 grpo.beta=0.04.")
    ] = None,
    seed: Seed = 0,
) -> None:
    """GRPO post-training with a verifiable reward on prompts from the world's grammar (ShapesEval's held out)."""
    from tessera.config import override, parse_overrides
    from tessera.rl.trainer import RLConfig, RLTrainer

    cfg = override(RLConfig(), {"init": str(init), "reward": reward, "seed": seed} | parse_overrides(overrides or []))
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    trainer = RLTrainer(cfg, out)
    trainer.resume()
    rows = trainer.fit()
    last = rows[-1] if rows else {}
    console.print(
        f"step {trainer.step}: reward {last.get('reward_mean', float('nan')):.3f}; checkpoint in {out}/checkpoint"
    )


@app.command("generate")
def generate(
    prompt: Annotated[str, typer.Argument(help="What to draw, e.g. 'a red circle left of a blue star'.")],
    ckpt: Annotated[Path, typer.Option(help="A model checkpoint folder (runs/<name>/checkpoint).")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="How many images.")] = 8,
    out: Annotated[Path, typer.Option(help="The grid PNG; single images go to a folder of the same name.")] = Path(
        "samples.png"
    ),
    cfg_scale: Annotated[
        float | None, typer.Option("--cfg", min=0.0, help="Guidance scale (1: none; default: the checkpoint's).")
    ] = None,
    temperature: Annotated[float | None, typer.Option(min=0.0, help="Sampling temperature (> 0).")] = None,
    top_k: Annotated[int | None, typer.Option(min=0, help="Keep the k most likely codes (0: all).")] = None,
    top_p: Annotated[float | None, typer.Option(min=0.0, max=1.0, help="Nucleus mass (1: all).")] = None,
    order: Annotated[str | None, typer.Option(help="raster | random (default: the order it was trained in).")] = None,
    introspect: Annotated[
        bool,
        typer.Option(
            help="Draw, judge your own image in words, draw again if it fails (a model from "
            "`tessera unified`); the grid's top row is the first image, the bottom row the final one."
        ),
    ] = False,  # fmt: skip
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
    seed: Seed = 0,
) -> None:
    """Draw images for a prompt; writes the grid and each image."""
    import dataclasses

    from tessera.generate.images import draw_images
    from tessera.model.bundle import load as load_bundle
    from tessera.pictures import grid, save_png

    if out.suffix.lower() != ".png":
        raise InputError(f"--out {out} must be a .png file")
    bundle = load_bundle(ckpt, _device(device))
    changes = {"cfg_scale": cfg_scale, "temperature": temperature, "top_k": top_k, "top_p": top_p}
    sampling = dataclasses.replace(bundle.cfg.sampling, **{k: v for k, v in changes.items() if v is not None})
    if introspect:
        _introspect(bundle, prompt, n, sampling, out, seed)
        return
    images, _ = draw_images(bundle, [prompt] * n, sampling, order=order, seed=seed, progress=n >= 64)
    singles = out.with_suffix("")
    singles.mkdir(parents=True, exist_ok=True)
    for i, image in enumerate(images):
        save_png(image, singles / f"{i:04d}.png")
    save_png(grid(images, cols=min(8, n)), out, scale=2)
    console.print(f"{n} images: grid {out}, single images in {singles}/")


def _introspect(bundle, prompt: str, n: int, sampling, out: Path, seed: int) -> None:
    """The chain for each of n samples: first image, verdict, final image (grid, single images, chain.jsonl)."""
    from tessera.generate.introspect import introspect
    from tessera.pictures import grid, save_png
    from tessera.understand.answer import check_reads

    check_reads(bundle, "introspect")
    chain = introspect(bundle, [prompt] * n, sampling, seed=seed)
    singles = out.with_suffix("")
    singles.mkdir(parents=True, exist_ok=True)
    lines = []
    for i in range(n):
        save_png(chain.first_images[i], singles / f"{i:04d}-first.png")
        save_png(chain.final_images[i], singles / f"{i:04d}-final.png")
        lines.append({"first": f"{i:04d}-first.png", "verdict": chain.verdicts[i], "redrawn": bool(chain.redraw[i]),
                      "final": f"{i:04d}-final.png"})  # fmt: skip
        console.print(f"{i:4d}  {chain.verdicts[i]}" + ("  -> drawn again" if chain.redraw[i] else ""))
    (singles / "chain.jsonl").write_text("".join(json.dumps(line) + "\n" for line in lines))
    save_png(grid(np.concatenate([chain.first_images, chain.final_images]), cols=n), out, scale=2)
    console.print(f"{n} chains: grid {out} (top: first images, bottom: final), chains in {singles}/chain.jsonl")


def _read(ckpt: Path, image: Path, task: str, device: str):
    """The bundle and the image (fitted to its canvas) for ask / caption."""
    from tessera.data.folders import fit
    from tessera.model.bundle import load as load_bundle
    from tessera.pictures import load_image
    from tessera.understand.answer import check_reads

    bundle = load_bundle(ckpt, _device(device))
    check_reads(bundle, task)
    return bundle, fit(load_image(image), bundle.cfg.canvas)[None]


@app.command("ask")
def ask(
    image: Annotated[Path, typer.Argument(help="An image file (fitted to the model's canvas).")],
    question: Annotated[
        str, typer.Argument(help="A question in the world's words, e.g. 'how many red circles are there?'.")
    ],
    ckpt: Annotated[Path, typer.Option(help="A model trained with the qa or judge task.")],
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
) -> None:
    """Answer a question about an image ('does this image show <prompt> ?' asks for a verdict and its reason)."""
    from tessera.understand.answer import ask as ask_model

    bundle, picture = _read(ckpt, image, "judge" if question.startswith("does this image show") else "qa", device)
    console.print(ask_model(bundle, picture, [question])[0])


@app.command("caption")
def caption(
    image: Annotated[Path, typer.Argument(help="An image file (fitted to the model's canvas).")],
    ckpt: Annotated[Path, typer.Option(help="A model trained with the caption task.")],
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
) -> None:
    """Describe an image in the world's words."""
    from tessera.understand.answer import ask as ask_model
    from tessera.understand.texts import CAPTION_QUESTION

    bundle, picture = _read(ckpt, image, "caption", device)
    console.print(ask_model(bundle, picture, [CAPTION_QUESTION])[0])


@eval_app.command("understanding")
def eval_understanding(
    ckpt: Annotated[Path, typer.Option(help="A model trained with caption / qa / judge tasks.")],
    n: Annotated[int, typer.Option("-n", "--n", min=1, help="Held-out scenes per task.")] = 200,
    out: Annotated[Path | None, typer.Option(help="Write results.json and results.jsonl here.")] = None,
    device: Annotated[str, typer.Option(help="cpu | cuda | auto")] = "auto",
) -> None:
    """Question answering (per kind), captions and judging on scenes the model never saw."""
    from tessera.model.bundle import load as load_bundle
    from tessera.understand.evaluate import evaluate_understanding

    bundle = load_bundle(ckpt, _device(device))
    if set(bundle.cfg.tasks) <= {"t2i"}:
        raise InputError(f"{ckpt} was trained to draw only; it answers no questions")
    summary, rows = evaluate_understanding(bundle, n)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        (out / "results.json").write_text(json.dumps(summary, indent=2) + "\n")
        (out / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    for key, value in summary.items():
        console.print(f"{key:14s} {value:.3f}")


def _device(name: str) -> str:
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"unknown --device {name!r}; expected cpu, cuda or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device here")
    return name


@tokenizer_app.command("train")
def tokenizer_train(
    arch: Annotated[
        str, typer.Option(help="conv (ConvVQ, LlamaGen layout) | omni (OmniTok, images and video)")
    ] = "conv",
    data: Annotated[str, typer.Option(help="shapes | shapes-video | a folder of images or videos")] = "shapes",
    preset: Annotated[str, typer.Option(help="smoke | quick | full (tessera/configs/tokenizer/)")] = "quick",
    config: Annotated[Path | None, typer.Option(help="A YAML config file instead of the preset.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/tokenizer-<arch>).")] = None,
    video: Annotated[bool, typer.Option(help="Treat a --data folder as videos.")] = False,
    fresh: Annotated[bool, typer.Option(help="Start over instead of resuming the run's checkpoint.")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. steps=300).")] = None,
    seed: Seed = 0,
) -> None:
    """Train a tokenizer; resumes from the run's checkpoint unless --fresh. Writes checkpoint/, samples/, metrics."""
    from tessera.config import load, override, parse_overrides
    from tessera.tokenizer.build import ARCHS
    from tessera.tokenizer.train import TokenizerTrainConfig, train_tokenizer

    if arch not in ARCHS:
        raise InputError(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHS)}")
    is_video = video or data == "shapes-video"
    path = config or _preset(
        "tokenizer", f"{arch}-video-{preset}" if is_video else f"{arch}-{preset}", f"{arch}-{preset}"
    )
    fixed = {"data": data, "video": is_video, "seed": seed, "tokenizer.arch": arch}
    cfg = override(load(TokenizerTrainConfig(), path), fixed | parse_overrides(overrides or []))
    run = out or Path("runs") / f"tokenizer-{arch}{'-video' if is_video else ''}"
    if fresh:
        shutil.rmtree(run, ignore_errors=True)
    trainer, rows = train_tokenizer(cfg, run)
    skipped = {**trainer.images.skipped, **(trainer.clips.skipped if trainer.clips else {})}
    last = rows[-1] if rows else {}
    console.print(f"step {trainer.step}: psnr {last.get('psnr', float('nan')):.2f} dB; checkpoint in {run}/checkpoint")
    if skipped:
        console.print(f"skipped {len(skipped)} unreadable files (e.g. {next(iter(skipped))})")


@tokenizer_app.command("eval")
def tokenizer_eval(
    ckpt: Annotated[Path, typer.Argument(help="A tokenizer checkpoint folder.")],
    data: Annotated[str, typer.Option(help="shapes | shapes-video | a folder of images or videos")] = "shapes",
    n: Annotated[int, typer.Option(min=1, help="How many held-out samples.")] = 256,
    video: Annotated[bool, typer.Option(help="Treat a --data folder as videos.")] = False,
    canvas: Canvas = 64,
    out: Annotated[
        Path | None, typer.Option(help="JSON file for the metrics (default: next to the checkpoint).")
    ] = None,
    seed: Seed = 1,
) -> None:
    """PSNR, SSIM, codebook usage and perplexity, the judge on reconstructions; per-frame and temporal for video."""
    from tessera.data.folders import source_for
    from tessera.eval.judge import Judge
    from tessera.tokenizer.build import load as load_tokenizer
    from tessera.tokenizer.evaluate import evaluate

    model, _ = load_tokenizer(ckpt)
    source = source_for(data, canvas, video=video or data == "shapes-video")
    metrics = evaluate(model, source, n=n, seed=seed, judge=Judge.load())
    dest = out or ckpt.with_name(f"eval-{data.replace('/', '_')}.json" if data.startswith("shapes") else "eval.json")
    dest.write_text(json.dumps(metrics, indent=2) + "\n")
    table = Table("metric", "value", title=f"{ckpt} on {data}")
    for k, v in metrics.items():
        table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    console.print(table)
    console.print(f"wrote {dest}")


@tokenizer_app.command("import-llamagen")
def tokenizer_import(
    path: Annotated[Path, typer.Argument(help="A LlamaGen or Janus VQ checkpoint (.pt/.pth/.safetensors).")],
    out: Annotated[Path, typer.Argument(help="The tokenizer checkpoint folder to write.")],
) -> None:
    """Convert a LlamaGen/Janus VQ checkpoint (VQ-16, VQ-8, any width) into a tessera tokenizer checkpoint."""
    from tessera.tokenizer.llamagen import import_llamagen

    model = import_llamagen(path, out)
    cfg = model.cfg
    console.print(
        f"imported ch={cfg.ch} ch_mult={list(cfg.ch_mult)} z={cfg.z_channels} "
        f"codebook {cfg.quantizer.codebook_size}x{cfg.quantizer.dim} "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) into {out}"
    )


def _preset(group: str, *names: str) -> Path:
    """The first existing preset file tessera/configs/<group>/<name>.yaml."""
    from importlib import resources

    root = Path(str(resources.files("tessera") / "configs" / group))
    for name in names:
        if (root / f"{name}.yaml").exists():
            return root / f"{name}.yaml"
    known = sorted(p.stem for p in root.glob("*.yaml"))
    raise ConfigError(f"no preset {names[-1]!r}; known presets: {', '.join(known)}")


@app.command("demo")
def demo(
    preset: Annotated[
        str, typer.Option(help="smoke | quick (about 26 min on 2 cores, with RL) | full | gpu (tessera/configs/demo/)")
    ] = "quick",
    out: Annotated[Path, typer.Option(help="Run folder; a rerun reuses the stages it finds finished.")] = Path(
        "runs/demo"
    ),
    fresh: Annotated[bool, typer.Option(help="Start over instead of reusing finished stages.")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, e.g. model.steps=300.")] = None,
    seed: Seed = 0,
) -> None:
    """The main job: train a tokenizer and a text-to-image model on the world, score it on ShapesEval, write
    report.html (sample grids per category, the ShapesEval table, loss curves, timings, the config)."""
    from tessera.config import load
    from tessera.demo import DemoConfig, run_demo

    cfg = load(DemoConfig(), _preset("demo", preset), overrides)
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    run_demo(cfg, out, seed)


@app.command("unified")
def unified(
    preset: Annotated[str, typer.Option(help="smoke | quick | gpu (tessera/configs/unified/)")] = "quick",
    out: Annotated[Path, typer.Option(help="Run folder; a rerun reuses the stages it finds finished.")] = Path(
        "runs/unified"
    ),
    fresh: Annotated[bool, typer.Option(help="Start over instead of reusing finished stages.")] = False,
    overrides: Annotated[list[str] | None, typer.Argument(help="Config overrides, e.g. rl.steps=40.")] = None,
    seed: Seed = 0,
) -> None:
    """One model that sees and draws: multi-task SFT, the CoRL ablation at equal RL steps (drawing only, reading
    only, unified, unified + refined) and introspective generation; writes report.html and results.json."""
    from tessera.config import load
    from tessera.unified import UnifiedConfig, run_unified

    cfg = load(UnifiedConfig(), _preset("unified", preset), overrides)
    if fresh:
        shutil.rmtree(out, ignore_errors=True)
    run_unified(cfg, out, seed)


def main() -> None:
    """Entry point: bad input (and bad usage) ends with one line on stderr and exit code 2; a full disk with one
    line and exit code 1; anything else is a bug and shows its traceback."""
    from PIL import Image
    from typer.exceptions import TyperException

    try:
        code = app(standalone_mode=False)
    except TyperException as e:  # usage: unknown option, missing argument, a value out of range
        message = " ".join(e.format_message().split())
        if message:  # (an empty one follows the help that a bare group prints)
            print(f"error: {message}", file=sys.stderr)
        sys.exit(2)
    except (TesseraError, Image.DecompressionBombError) as e:
        print(f"error: {' '.join(str(e).split())}", file=sys.stderr)
        sys.exit(2)
    except OSError as e:
        if e.errno in (errno.ENOSPC, errno.EDQUOT):
            print(f"error: disk full: {e.filename or e.strerror}", file=sys.stderr)
            sys.exit(1)
        if isinstance(e, BAD_PATHS):  # a path the user gave that is missing, not allowed or of the wrong kind
            print(f"error: {e.strerror}: {e.filename}", file=sys.stderr)
            sys.exit(2)
        raise
    sys.exit(code if isinstance(code, int) else 0)


if __name__ == "__main__":
    main()
