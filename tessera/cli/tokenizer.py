"""tessera tokenizer: train, evaluate and import visual tokenizers."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from tessera.cli.common import Canvas, Fresh, Overrides, Seed, console, preset
from tessera.errors import InputError

app = typer.Typer(help="Visual tokenizers: train, evaluate, import.", no_args_is_help=True)
Data = Annotated[str, typer.Option(help="shapes | shapes-video | a folder of images or videos")]
Video = Annotated[bool, typer.Option(help="Treat a --data folder as videos.")]


@app.command("train")
def train(
    arch: Annotated[
        str,
        typer.Option(
            help="conv (ConvVQ, LlamaGen layout) | omni (OmniTok, images and video) | patch (PatchVQ, k-means) | "
            "seq (SeqTok, one ordered sequence; any prefix decodes)"
        ),
    ] = "conv",
    data: Data = "shapes",
    preset_name: Annotated[
        str, typer.Option("--preset", help="smoke | quick | full | masks (patch) (tessera/configs/tokenizer/)")
    ] = "quick",
    config: Annotated[Path | None, typer.Option(help="A YAML config file instead of the preset.")] = None,
    out: Annotated[Path | None, typer.Option(help="Run folder (default runs/tokenizer-<arch>).")] = None,
    video: Video = False,
    fresh: Fresh = False,
    overrides: Overrides = None,
    seed: Seed = 0,
) -> None:
    """Train a tokenizer; resumes from the run's checkpoint unless --fresh. Writes checkpoint/, samples/, metrics."""
    from tessera.config import load
    from tessera.engine.loop import finish
    from tessera.tokenizer.build import ARCHS
    from tessera.tokenizer.train import TokenizerTrainConfig, TokenizerTrainer

    if arch not in ARCHS:
        raise InputError(f"unknown --arch {arch!r}; expected one of {', '.join(ARCHS)}")
    is_video = video or data == "shapes-video"
    names = (f"{arch}-video-{preset_name}", f"{arch}-{preset_name}") if is_video else (f"{arch}-{preset_name}",)
    options = {"data": data, "video": is_video, "seed": seed, "tokenizer.arch": arch}
    cfg = load(TokenizerTrainConfig(), config or preset("tokenizer", *names), options, overrides)
    run = out or Path("runs") / f"tokenizer-{arch}{'-video' if is_video else ''}"
    trainer = finish(TokenizerTrainer(cfg, run, fresh=fresh))
    skipped = {**trainer.images.skipped, **(trainer.clips.skipped if trainer.clips else {})}
    rows = trainer.engine.log.read()
    last = rows[-1] if rows else {}
    console.print(f"step {trainer.step}: psnr {last.get('psnr', float('nan')):.2f} dB; checkpoint in {run}/checkpoint")
    if skipped:
        console.print(f"skipped {len(skipped)} unreadable files (e.g. {next(iter(skipped))})")


@app.command("eval")
def evaluate(
    ckpt: Annotated[Path, typer.Argument(help="A tokenizer checkpoint folder.")],
    data: Data = "shapes",
    n: Annotated[int, typer.Option(min=1, max=100_000, help="How many held-out samples.")] = 256,
    video: Video = False,
    canvas: Canvas = 64,
    out: Annotated[
        Path | None, typer.Option(help="JSON file for the metrics (default: next to the checkpoint).")
    ] = None,
    prefixes: Annotated[
        str | None,
        typer.Option(help="A seq tokenizer: decode from these prefix lengths too, e.g. 1,2,4,8,16,32 (PSNR, F1)."),
    ] = None,
    seed: Seed = 1,
) -> None:
    """PSNR, SSIM, codebook usage and perplexity, the judge on reconstructions; per-frame and temporal for video;
    with --prefixes, a sequence tokenizer decoded from its first k tokens."""
    from tessera.data.folders import source_for
    from tessera.eval.judge import Judge
    from tessera.tokenizer.build import load as load_tokenizer
    from tessera.tokenizer.evaluate import evaluate as evaluate_tokenizer
    from tessera.tokenizer.evaluate import prefix_curve, write_metrics

    model, _ = load_tokenizer(ckpt)
    source = source_for(data, canvas, video=video or data == "shapes-video")
    lengths = _lengths(prefixes, model) if prefixes else None
    judge = Judge.load()
    metrics = evaluate_tokenizer(model, source, n=n, seed=seed, judge=judge)
    if lengths:
        metrics["prefixes"] = prefix_curve(model, source, judge, lengths, n=n, seed=seed)
    dest = out or ckpt.with_name(f"eval-{data.replace('/', '_')}.json" if data.startswith("shapes") else "eval.json")
    write_metrics(dest, metrics)
    table = Table("metric", "value", title=f"{ckpt} on {data}")
    for k, v in metrics.items():
        if k != "prefixes":
            table.add_row(k, f"{v:.4f}" if isinstance(v, float) else str(v))
    for row in metrics.get("prefixes", []):
        psnr = "" if row["psnr"] is None else f"PSNR {row['psnr']:.2f}, "
        name = "the originals" if row["psnr"] is None else f"first {row['tokens']} tokens"
        table.add_row(name, f"{psnr}judge F1 {row['judge_f1']:.3f}")
    console.print(table)
    console.print(f"wrote {dest}")


def _lengths(text: str, model) -> list[int]:
    """'1,2,4' -> [1, 2, 4]; InputError unless the tokenizer is a sequence one and every length fits it."""
    from tessera.tokenizer.seq import SeqTok

    if not isinstance(model, SeqTok):
        raise InputError("--prefixes needs a sequence tokenizer (arch seq)")
    try:
        lengths = [int(part) for part in text.split(",")]
    except ValueError as e:
        raise InputError(f"--prefixes is a comma-separated list of token counts, got {text!r}") from e
    if not all(1 <= k <= model.cfg.tokens for k in lengths):
        raise InputError(f"--prefixes must lie in 1..{model.cfg.tokens}, got {text!r}")
    return lengths


@app.command("import-llamagen")
def import_llamagen(
    path: Annotated[Path, typer.Argument(help="A LlamaGen or Janus VQ checkpoint (.pt/.pth/.safetensors).")],
    out: Annotated[Path, typer.Argument(help="The tokenizer checkpoint folder to write.")],
) -> None:
    """Convert a LlamaGen/Janus VQ checkpoint (VQ-16, VQ-8, any width) into a tessera tokenizer checkpoint."""
    from tessera.tokenizer.llamagen import import_llamagen as convert

    model = convert(path, out)
    cfg = model.cfg
    console.print(
        f"imported ch={cfg.ch} ch_mult={list(cfg.ch_mult)} z={cfg.z_channels} "
        f"codebook {cfg.quantizer.codebook_size}x{cfg.quantizer.dim} "
        f"({sum(p.numel() for p in model.parameters()) / 1e6:.1f}M parameters) into {out}"
    )
