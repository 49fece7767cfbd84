"""Thinking chains shown and measured: a picture of each chain with its thoughts, the files `generate --think`
writes, and ShapesEval of chains (`eval shapes --think`)."""

from __future__ import annotations

import json
import textwrap
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from tessera.engine.checkpoint import write_atomically
from tessera.eval.judge import Judge
from tessera.eval.shapes_eval import score_images, summarize
from tessera.generate.images import write_geneval
from tessera.generate.text import GREEDY
from tessera.generate.thinking import ThinkingChain, think_and_draw
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, save_png
from tessera.sequence.bands import Bands
from tessera.world.thoughts import REDRAW_BELOW


def chain_picture(image: np.ndarray, bands: Bands, thoughts: list[str], critiques: list[str], redrawn: list[bool],
                  scale: int = 4, panel: int = 640) -> np.ndarray:  # fmt: skip
    """The final image (scaled) with its bands ruled off, and beside each band its thought and its critique."""
    h = image.shape[0] * scale
    picture = Image.new("RGB", (image.shape[1] * scale + panel, h), "white")
    picture.paste(Image.fromarray(image).resize((image.shape[1] * scale, h), Image.NEAREST))
    draw = ImageDraw.Draw(picture)
    rows = sum(bands.heights)
    for b in range(len(bands)):
        top = h * bands.rows(b).start // rows
        if b:
            draw.line([(0, top), (picture.width, top)], fill=(200, 0, 0), width=1)
        lines = textwrap.wrap(thoughts[b], 100)
        if b < len(critiques) and critiques[b]:
            lines += textwrap.wrap(critiques[b] + ("  (drawn again)" if redrawn[b] else ""), 100)
        for k, line in enumerate(lines):
            draw.text((image.shape[1] * scale + 6, top + 3 + 11 * k), line, fill=(90, 90, 90) if k else (0, 0, 0))
    return np.asarray(picture)


def write_thinking(chain: ThinkingChain, out: str | Path, bands: Bands) -> Path:
    """At `out` a grid (top row: bands as first drawn, bottom row: final); in the folder of the same name each
    final image, its picture with the thoughts (NNNN-chain.png), and chain.jsonl: per row its thoughts, critiques,
    scores and which bands were drawn again."""
    out = Path(out)
    folder = out.with_suffix("")
    lines = []
    for i in range(len(chain.prompts)):
        save_png(chain.images[i], folder / f"{i:04d}.png")
        picture = chain_picture(chain.images[i], bands, chain.thoughts[i], chain.critiques[i], chain.redrawn[i])
        save_png(picture, folder / f"{i:04d}-chain.png")
        lines.append(chain.line(i) | {"image": f"{i:04d}.png", "chain": f"{i:04d}-chain.png",
                                      "bands": list(bands.heights)})  # fmt: skip
    write_atomically(folder / "chain.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    save_png(grid(np.concatenate([chain.first_images, chain.images]), cols=len(lines)), out, scale=2)
    return folder


def evaluate_thinking(
    bundle: Bundle,
    metadata: list[dict],
    judge: Judge,
    per_prompt: int = 1,
    bands: Bands | None = None,
    seed: int = 0,
    batch_size: int = 32,
    writing: SamplingConfig = GREEDY,
) -> tuple[dict, np.ndarray, list[dict]]:
    """ShapesEval of thinking chains: of the bands as first drawn (`first`) and of the final images (`final`); how
    often a chain draws a band again and how often that turns a wrong image (strict rule) right; whether the
    critique's "low" (a band scored below REDRAW_BELOW) agrees with the strict rule failing on the image as first
    drawn (precision, recall); tokens drawn per image. Also the final images and one line per chain."""
    metas = [m for m in metadata for _ in range(per_prompt)]
    first_rows, final_rows, images, lines, tokens = [], [], [], [], []
    for i in range(0, len(metas), batch_size):
        part = metas[i : i + batch_size]
        chain = think_and_draw(bundle, [m["prompt"] for m in part], bands, writing=writing, seed=seed + i)
        first_rows += score_images(chain.first_images, part, judge)
        final_rows += score_images(chain.images, part, judge)
        images.append(chain.images)
        tokens.append(chain.tokens)
        lines += [chain.line(k) for k in range(len(part))]
    said_low = np.array([any(s is not None and s < REDRAW_BELOW for s in line["scores"]) for line in lines])
    wrong = np.array([not r["strict"] for r in first_rows])
    redrawn = np.array([any(line["redrawn"]) for line in lines])
    fixed = np.array([not a["strict"] and b["strict"] for a, b in zip(first_rows, final_rows, strict=True)])
    summary = {
        "first": summarize(first_rows),
        "final": summarize(final_rows),
        "chains_redrawn": float(redrawn.mean()),
        "bands_redrawn": float(np.mean([b for line in lines for b in line["redrawn"]] or [0.0])),
        "redraw_fixes": float(fixed[redrawn].mean()) if redrawn.any() else 0.0,
        "critiques_parsed": float(np.mean([s is not None for line in lines for s in line["scores"]] or [0.0])),
        "low_precision": float(wrong[said_low].mean()) if said_low.any() else 0.0,
        "low_recall": float(said_low[wrong].mean()) if wrong.any() else 0.0,
        "tokens_per_image": float(np.mean(tokens)),
    }
    return summary, np.concatenate(images), lines


def write_thinking_eval(
    bundle: Bundle, out: Path, metadata: list[dict], judge: Judge, per_prompt: int = 4, seed: int = 0
) -> dict:
    """`evaluate_thinking` with its final images in GenEval's layout under `out` (to be scored like any folder),
    and out/thinking.json (its summary) and out/chains.jsonl beside them; returns the summary."""
    summary, images, lines = evaluate_thinking(bundle, metadata, judge, per_prompt, seed=seed)
    write_geneval(out, metadata, per_prompt, [images])
    write_atomically(out / "thinking.json", json.dumps(summary, indent=2) + "\n")
    write_atomically(out / "chains.jsonl", "".join(json.dumps(line) + "\n" for line in lines))
    return summary
