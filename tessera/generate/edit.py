"""Editing by prefix (STAR): the kept tokens of an image go first in a tree order, the model draws the rest.

Inpainting keeps the outside of a region, outpainting the inside, erasing keeps everything but an object's box and
prompts without it. A token is kept only if every one of its pixels is kept, so nothing of an erased area survives.
The kept region, connected or not, is contracted to one root (`orders.prefix_order`); `rejected_order` is STAR's
other way, drawing whole trees until the kept region happens to be a prefix, and works for connected regions only.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

import numpy as np
import torch

from tessera.errors import InputError
from tessera.eval.edits import EDIT_KINDS, EditCase, reads_as
from tessera.eval.judge import Judge
from tessera.generate.generator import generate
from tessera.model.bundle import Bundle
from tessera.model.orders import prefix_order, raster_prefix_order, rejected_order
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, to_tensor, to_uint8
from tessera.world.render import render_image

EDIT_PARTS = ("edited", "ceiling", "unedited")  # what edit_success scores per kind
METHODS = ("root", "reject", "raster")  # raster: kept tokens, then the rest row by row (a raster model's only order)


@dataclass
class Edit:
    images: np.ndarray  # (n, H, W, 3) uint8 edited images
    codes: torch.Tensor  # (n, h, w) their codes
    source: torch.Tensor  # (h, w) the source image's codes
    keep: torch.Tensor  # (h, w) bool: the tokens kept
    draws: list[int]  # per image, the trees drawn for its order (1 for the root method)


def token_mask(pixels_kept: np.ndarray, grid: tuple[int, int]) -> torch.Tensor:
    """(H, W) bool pixels -> (h, w) bool tokens: a token is kept when all of its pixels are."""
    h, w = grid
    ph, pw = pixels_kept.shape[0] // h, pixels_kept.shape[1] // w
    return torch.from_numpy(pixels_kept.reshape(h, ph, w, pw).all(axis=(1, 3)))


def box_mask(box: tuple[int, int, int, int], canvas: int, inside: bool) -> np.ndarray:
    """(canvas, canvas) bool: True inside the pixel box x0, y0, x1, y1 (x1, y1 excluded), or outside it."""
    x0, y0, x1, y1 = box
    if not (0 <= x0 < x1 <= canvas and 0 <= y0 < y1 <= canvas):
        raise InputError(f"box {x0},{y0},{x1},{y1} must satisfy 0 <= x0 < x1 <= {canvas} and 0 <= y0 < y1 <= {canvas}")
    mask = np.zeros((canvas, canvas), dtype=bool)
    mask[y0:y1, x0:x1] = True
    return mask if inside else ~mask


@torch.no_grad()
def edit(
    bundle: Bundle,
    image: np.ndarray,  # (H, W, 3) uint8 at the model's canvas
    keep: np.ndarray,  # (H, W) bool: the pixels to keep
    prompt: str,
    n: int = 4,
    sampling: SamplingConfig | None = None,
    method: str = "root",
    seed: int = 0,
    tries: int = 10000,
) -> Edit:
    """n edits of `image` that keep its tokens under `keep` exactly and draw the rest for `prompt`."""
    canvas = bundle.cfg.canvas
    if image.shape[:2] != (canvas, canvas) or keep.shape != image.shape[:2]:
        raise InputError(f"the image and its mask must be {canvas}x{canvas} pixels (the model's canvas), got "
                         f"{image.shape[1]}x{image.shape[0]} and {keep.shape[1]}x{keep.shape[0]}")  # fmt: skip
    if method not in METHODS:
        raise InputError(f"unknown edit method {method!r}; expected one of {', '.join(METHODS)}")
    sampling = sampling or bundle.cfg.sampling
    device = bundle.model.output.weight.device
    h, w = bundle.cfg.grid
    source = bundle.image_tokenizer.encode(to_tensor(image[None]).to(device))[0].cpu()  # (h, w)
    kept = token_mask(keep, (h, w))
    if kept.all():
        raise InputError("the mask keeps every token: there is nothing to draw")
    flat = kept.flatten().tolist()
    rng = random.Random(seed)
    orders, draws = [], []
    for _ in range(n):
        if method == "root":
            order, used = prefix_order(flat, h, w, rng), 1
        elif method == "raster":
            order, used = raster_prefix_order(flat), 1
        else:
            order, used = rejected_order(flat, h, w, rng, tries)
            if order is None:
                raise InputError(f"no spanning-tree order in {tries} draws has the kept region as its prefix (a "
                                 "kept region that is not connected never is); use method root")  # fmt: skip
        orders.append(order)
        draws.append(used)
    order = torch.tensor(orders)  # (n, h*w)
    given = bundle.space.image(source.flatten()[order[:, : int(kept.sum())]])  # (n, K) kept ids in order
    text = bundle.encode_prompts([prompt] * n)
    gen = torch.Generator(device=device).manual_seed(seed)
    drawn = generate(bundle.model, bundle.space, text, (h, w), order, sampling, gen, given=given)
    codes = drawn.codes.cpu()
    return Edit(to_uint8(bundle.image_tokenizer.decode(drawn.codes)), codes, source, kept, draws)


def edit_success(
    bundle: Bundle, judge: Judge, cases: list[EditCase], seed: int = 0, method: str = "root"
) -> tuple[dict[str, dict[str, float]], np.ndarray]:
    """Per edit kind, the share of cases the judge reads as exactly the scene the edit must leave: the model's
    edit (one per case, by `method`), the target scene through the tokenizer (the ceiling), and the unedited
    source (what an edit that changes nothing scores); and the edited images, (len(cases), H, W, 3)."""
    canvas = bundle.cfg.canvas
    sources = np.stack([render_image(c.before) for c in cases])  # (n, H, W, 3)
    edited = []
    for i, (case, source) in enumerate(zip(cases, sources, strict=True)):
        keep = box_mask(case.erase, canvas, inside=False)
        edited.append(edit(bundle, source, keep, case.prompt, n=1, method=method, seed=seed + i).images[0])
    edited = np.stack(edited)  # (n, H, W, 3)
    coded = bundle.round_trip(np.concatenate([np.stack([render_image(c.after) for c in cases]), sources]))
    readings = judge.read(np.concatenate([edited, coded]))  # edited, targets, sources: n each
    passed = np.array([reads_as(r, cases[i % len(cases)].after) for i, r in enumerate(readings)]).reshape(3, -1)
    kinds = np.array([c.kind for c in cases])
    scores = {
        kind: {name: float(passed[part, kinds == kind].mean()) for part, name in enumerate(EDIT_PARTS)}
        for kind in EDIT_KINDS
        if (kinds == kind).any()
    }
    return scores, edited


def kept_view(image: np.ndarray, kept: torch.Tensor) -> np.ndarray:
    """The image with its redrawn tokens pale: (H, W, 3) uint8, kept (h, w) bool."""
    h, w = kept.shape
    shown = np.repeat(np.repeat(kept.numpy(), image.shape[0] // h, 0), image.shape[1] // w, 1)
    return np.where(shown[..., None], image, (image // 3 + 170).astype(np.uint8))


def edit_sheet(cases: list[EditCase], edited: np.ndarray, grid_shape: tuple[int, int]) -> np.ndarray:
    """One row per case: the source, its kept tokens (the redrawn ones pale), the edit, the scene asked for."""
    tiles = []
    for case, image in zip(cases, edited, strict=True):
        source = render_image(case.before)
        kept = token_mask(box_mask(case.erase, case.before.canvas, inside=False), grid_shape)
        tiles += [source, kept_view(source, kept), image, render_image(case.after)]
    return grid(tiles, cols=4)
