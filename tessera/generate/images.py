"""Prompts to pictures with a model checkpoint: the API behind `tessera generate` and ShapesEval generation."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tessera.engine.progress import progress_bar
from tessera.eval.shapes_eval import score_images, summarize
from tessera.generate.generator import Drawn, generate
from tessera.model.bundle import Bundle
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, save_png, to_uint8


@torch.no_grad()
def draw_images(
    bundle: Bundle,
    prompts: list[str],
    sampling: SamplingConfig | None = None,
    order: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
) -> tuple[np.ndarray, list[Drawn]]:
    """One image per prompt: uint8 (B, H, W, 3), and what was drawn per batch (codes, order, log-probs)."""
    sampling = sampling or bundle.cfg.sampling
    sampling.validate()
    text = bundle.encode_prompts(prompts)  # checks every prompt before any work
    device = bundle.model.output.weight.device
    gen = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    h, w = bundle.cfg.grid
    images, drawn = [], []
    with progress_bar(progress) as bar:
        task = bar.add_task("generating", total=len(prompts))
        for start in range(0, len(prompts), batch_size):
            chunk = text[start : start + batch_size]
            orders = make_orders(order or bundle.cfg.order, len(chunk), h, w, order_gen)
            d = generate(bundle.model, bundle.space, chunk, (h, w), orders, sampling, gen)
            images.append(to_uint8(bundle.image_tokenizer.decode(d.codes)))
            drawn.append(d)
            bar.update(task, advance=len(chunk))
    return np.concatenate(images), drawn


def write_images(images: np.ndarray, out: str | Path, cols: int = 8) -> Path:
    """A grid PNG at `out` and each image in the folder of the same name (out/0000.png, ...); returns the folder."""
    out = Path(out)
    singles = out.with_suffix("")
    for i, image in enumerate(images):
        save_png(image, singles / f"{i:04d}.png")
    save_png(grid(images, cols=min(cols, len(images))), out, scale=2)
    return singles


def write_shapes_eval(
    bundle: Bundle,
    out: str | Path,
    metadata: list[dict],
    per_prompt: int = 4,
    sampling: SamplingConfig | None = None,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = True,
) -> None:
    """Generate `per_prompt` images per metadata line into GenEval's layout: out/<index>/{metadata.jsonl, samples/}."""
    prompts = [m["prompt"] for m in metadata for _ in range(per_prompt)]
    images, _ = draw_images(bundle, prompts, sampling, seed=seed, batch_size=batch_size, progress=progress)
    for index, meta in enumerate(metadata):
        folder = Path(out) / f"{index:05d}"
        (folder / "samples").mkdir(parents=True, exist_ok=True)
        (folder / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
        for k in range(per_prompt):
            Image.fromarray(images[index * per_prompt + k]).save(folder / "samples" / f"{k:04d}.png")


def evaluate_model(
    bundle: Bundle,
    metadata: list[dict],
    judge,
    per_prompt: int = 1,
    sampling: SamplingConfig | None = None,
    seed: int = 0,
    batch_size: int = 64,
) -> tuple[dict, list[dict], np.ndarray]:
    """ShapesEval in memory: the summary, one row per image, and the images (prompt-major, per_prompt each)."""
    metas = [m for m in metadata for _ in range(per_prompt)]
    images, _ = draw_images(bundle, [m["prompt"] for m in metas], sampling, seed=seed, batch_size=batch_size)
    rows = score_images(images, metas, judge)
    return summarize(rows), rows, images
