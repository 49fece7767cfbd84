"""Prompts to pictures with a model checkpoint: the API behind `tessera generate` and ShapesEval generation."""

from __future__ import annotations

import itertools
import json
import math
from collections.abc import Iterable, Iterator
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from tessera.data.prompts import held_keys, prompt_pools, sample_prompts
from tessera.engine.progress import progress_bar
from tessera.eval.shapes_eval import score_images, summarize
from tessera.generate.generator import Drawn, generate
from tessera.model.bundle import Bundle
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, save_png, to_uint8
from tessera.sequence.layouts import Conditions, pad_text
from tessera.sequence.tasks import Task


@torch.no_grad()
def image_batches(
    bundle: Bundle,
    prompts: list[str],
    sampling: SamplingConfig | None = None,
    order: str | None = None,
    seed: int = 0,
    batch_size: int = 64,
    progress: bool = False,
    conditions: np.ndarray | None = None,
    instructions: bool = False,
    video: bool = False,
) -> Iterator[tuple[np.ndarray, Drawn]]:
    """One image per prompt, a batch at a time as it is drawn: uint8 (b, H, W, 3) and what was drawn (codes, order,
    log-probs). With `conditions` (uint8 (B, H, W, 3) pictures: segmentation or edge maps, or source images with
    edit instructions as the prompts and `instructions` set; or (B, K, H, W, 3) earlier frames of clips, whose
    next frames are drawn with no text), each image is drawn after its conditions. With `video`, a clip per prompt:
    uint8 (b, T, H, W, 3), its code frames drawn as one image. Every prompt is checked before any work."""
    sampling = sampling or bundle.cfg.sampling
    sampling.validate()
    clips = conditions is not None and conditions.ndim == 5
    if clips:
        text = pad_text(bundle.space, [[] for _ in prompts], bundle.cfg.text_len)
    else:
        text = bundle.encode_prompts(prompts, instructions=instructions)
    device = bundle.model.output.weight.device
    gen = torch.Generator(device=device).manual_seed(seed)
    order_gen = torch.Generator().manual_seed(seed)
    if video:
        bundle.check_task(Task.T2V)
    grid = bundle.cfg.video_grid if video else bundle.cfg.grid
    *t, h, w = grid
    with progress_bar(progress) as bar:
        task = bar.add_task("generating", total=len(prompts))
        for start in range(0, len(prompts), batch_size):
            chunk = text[start : start + batch_size]
            orders = make_orders(order or bundle.cfg.order, len(chunk), math.prod(t) * h, w, order_gen)
            coded = None if conditions is None else condition_codes(bundle, conditions[start : start + batch_size])
            drawn = generate(bundle.model, bundle.space, chunk, grid, orders, sampling, gen, conditions=coded)
            yield to_uint8(bundle.image_tokenizer.decode(drawn.codes)), drawn
            bar.update(task, advance=len(chunk))


def condition_codes(bundle: Bundle, pictures: np.ndarray) -> Conditions:
    """uint8 pictures -> the Conditions they make: (B, H, W, 3) one each (a map, a source image), or (B, K, H, W,
    3) earlier frames of clips, whose next frame is drawn."""
    if pictures.ndim == 4:
        return Conditions(bundle.encode_images(pictures)[:, None])  # (B, 1, h, w)
    b, k = pictures.shape[:2]
    codes = bundle.encode_images(pictures.reshape(b * k, *pictures.shape[2:]))
    return Conditions.clip(codes.view(b, k, *codes.shape[1:]))


def draw_images(bundle: Bundle, prompts: list[str], *args, **kwargs) -> tuple[np.ndarray, list[Drawn]]:
    """One image per prompt, all at once: uint8 (B, H, W, 3), and what was drawn per batch (`image_batches`)."""
    batches = list(image_batches(bundle, prompts, *args, **kwargs))
    return np.concatenate([images for images, _ in batches]), [drawn for _, drawn in batches]


def own_drawings(bundle: Bundle, n: int, seed: int, progress: bool = True) -> Iterator[tuple[str, np.ndarray]]:
    """(prompt, drawing) pairs of a model: n training prompts (never an evaluation prompt), each drawn once, then
    the same pairs again: the drafts of thinking chains built from a model's own samples."""
    metadata = sample_prompts(prompt_pools(held_keys(bundle.cfg.hold_out))[0], n, np.random.default_rng(seed))
    prompts = [m["prompt"] for m in metadata]
    images, _ = draw_images(bundle, prompts, seed=seed, progress=progress)
    return itertools.cycle(zip(prompts, images, strict=True))


def write_images(batches: Iterable[np.ndarray], out: str | Path, cols: int = 8, shown: int = 64) -> Path:
    """Each image into the folder named like `out` (out/0000.png, ...) as its batch arrives, then a grid of the
    first `shown` at `out`; returns the folder."""
    out = Path(out)
    singles, first, n = out.with_suffix(""), [], 0
    for images in batches:
        for image in images:
            save_png(image, singles / f"{n:04d}.png")
            n += 1
        first += list(images[: shown - len(first)])
    save_png(grid(first, cols=min(cols, len(first))), out, scale=2)
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
    """Generate `per_prompt` images per metadata line into GenEval's layout (`write_geneval`), each image written
    as its batch is drawn."""
    prompts = [m["prompt"] for m in metadata for _ in range(per_prompt)]
    batches = image_batches(bundle, prompts, sampling, seed=seed, batch_size=batch_size, progress=progress)
    write_geneval(out, metadata, per_prompt, (images for images, _ in batches))


def write_geneval(out: str | Path, metadata: list[dict], per_prompt: int, batches: Iterable[np.ndarray]) -> None:
    """GenEval's layout, out/<index>/{metadata.jsonl, samples/NNNN.png}: `per_prompt` images per metadata line,
    prompt-major, written as their batches arrive."""
    out = Path(out)
    for index, meta in enumerate(metadata):
        (out / f"{index:05d}" / "samples").mkdir(parents=True, exist_ok=True)
        (out / f"{index:05d}" / "metadata.jsonl").write_text(json.dumps(meta) + "\n")
    n = 0
    for images in batches:
        for image in images:
            index, k = divmod(n, per_prompt)
            Image.fromarray(image).save(out / f"{index:05d}" / "samples" / f"{k:04d}.png")
            n += 1


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
