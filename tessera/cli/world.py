"""tessera world: sample scenes, render prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tessera.cli.common import Canvas, Seed, console
from tessera.errors import InputError

app = typer.Typer(help="The built-in Shapes world: sample scenes, render prompts.", no_args_is_help=True)


@app.command("sample")
def sample(
    out: Annotated[Path, typer.Option(help="Folder for the images, texts and scene graphs.")],
    n: Annotated[int, typer.Option(min=1, max=100_000, help="How many scenes.")] = 16,
    canvas: Canvas = 64,
    video: Annotated[bool, typer.Option(help="Also write each scene as a 9-frame GIF clip.")] = False,
    seed: Seed = 0,
) -> None:
    """Sample scenes; write PNG images, a grid, scene JSON and every text form (captions.jsonl)."""
    from tessera.world.samples import write_samples

    write_samples(out, n, canvas, video, seed)
    console.print(f"wrote {n} scenes to {out} (grid.png, captions.jsonl{', GIFs' if video else ''})")


@app.command("render")
def render(
    prompt: Annotated[str, typer.Argument(help='A description, e.g. "a red circle left of a blue star".')],
    out: Annotated[Path, typer.Option(help="Output PNG (or GIF with --kind video).")] = Path("render.png"),
    kind: Annotated[str, typer.Option(help="image | segmentation | edges | video")] = "image",
    canvas: Canvas = 64,
    scale: Annotated[int, typer.Option(min=1, max=16, help="Enlarge the picture by this factor (nearest).")] = 1,
    seed: Seed = 0,
) -> None:
    """Draw a scene that satisfies the prompt and render it."""
    from tessera.pictures import save_gif, save_png
    from tessera.world.samples import render_prompt

    suffix = ".gif" if kind == "video" else ".png"
    if out.suffix.lower() != suffix:
        raise InputError(f"--out must end in {suffix} for --kind {kind}, got {out.name!r}")
    picture = render_prompt(prompt, kind, canvas, seed)
    if kind == "video":
        save_gif(picture, out)
    else:
        save_png(picture, out, scale)
    console.print(f"wrote {out}")
