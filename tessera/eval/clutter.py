"""Marks that are not objects - blobs, fragments of shapes, smears - for the judge to call clutter.

A model that sprays paint can hit GenEval's rule (it only asks that the named objects be there); the judge
learns to tell such marks from the five clean shapes, and the strict score counts every mark it sees.
"""

from __future__ import annotations

import numpy as np
from scipy import ndimage

from tessera.world.render import coverage, polygon_coverage
from tessera.world.scene import COLOURS, PALETTE, SHAPES, SIZE_FRACTION, Object

KINDS = ("blob", "fragment", "smear")


def _on_canvas(obj: Object, canvas: int) -> np.ndarray:
    """An object's coverage over the whole canvas: (H, W) float32."""
    out = np.zeros((canvas, canvas), np.float32)
    r0, c0, cov = coverage(obj, canvas)
    out[r0 : r0 + cov.shape[0], c0 : c0 + cov.shape[1]] = cov
    return out


def mark(kind: str, rng: np.random.Generator, canvas: int) -> np.ndarray:
    """The coverage (H, W) in [0, 1] of one mark of a kind, somewhere on the canvas."""
    r = float(rng.uniform(SIZE_FRACTION["small"], SIZE_FRACTION["large"] * 1.2) * canvas)
    x, y = (float(v) for v in rng.uniform(r + 1, canvas - r - 1, size=2))
    if kind == "blob":  # an irregular polygon: radii that wander, so it is none of the five shapes
        k = int(rng.integers(6, 13))
        angles = np.sort(rng.uniform(0, 2 * np.pi, k))
        radii = r * rng.uniform(0.35, 1.15, k)
        return polygon_coverage(np.stack([x + radii * np.cos(angles), y + radii * np.sin(angles)], 1), canvas)
    shape = SHAPES[int(rng.integers(len(SHAPES)))]
    whole = _on_canvas(Object(shape, "red", "large", x, y, r), canvas)
    if kind == "fragment":  # a shape cut by a line off its centre: a third to two thirds of it is left
        angle = rng.uniform(0, 2 * np.pi)
        offset = rng.uniform(0.15, 0.45) * r * rng.choice([-1, 1])
        rows, cols = np.mgrid[0:canvas, 0:canvas] + 0.5
        keep = (cols - x) * np.cos(angle) + (rows - y) * np.sin(angle) < offset
        return whole * keep
    # a smear: the shape dragged along a line
    length, angle = int(rng.integers(5, 11)), rng.uniform(0, np.pi)
    line = np.zeros((length, length), np.float32)
    t = np.linspace(-(length - 1) / 2, (length - 1) / 2, 4 * length)
    c = (length - 1) / 2
    line[np.rint(c + t * np.sin(angle)).astype(int), np.rint(c + t * np.cos(angle)).astype(int)] = 1
    smeared = ndimage.convolve(whole, line / line.sum(), mode="constant")
    return np.clip(smeared * 1.6, 0, 1)


def add_clutter(
    image: np.ndarray, shape_map: np.ndarray, colour_map: np.ndarray, n: int, rng: np.random.Generator, label: int
) -> None:
    """Paint n marks onto a rendered image (H, W, 3) uint8 where they touch no object, labelling their pixels
    `label` in shape_map and their colour in colour_map (both (H, W), 0 = background), in place."""
    canvas = image.shape[0]
    taken = ndimage.binary_dilation(shape_map > 0, iterations=2)
    picture = image.astype(np.float32)
    for _ in range(n):
        for _ in range(20):  # a few tries at a free spot
            cov = mark(KINDS[int(rng.integers(len(KINDS)))], rng, canvas)
            if not (taken & (cov > 0)).any() and (cov >= 0.5).sum() >= 6:
                break
        else:
            continue
        colour = int(rng.integers(len(COLOURS)))
        a = cov[..., None]
        picture = picture * (1 - a) + np.asarray(PALETTE[COLOURS[colour]], np.float32) * a
        shape_map[cov >= 0.5], colour_map[cov >= 0.5] = label, colour + 1
        taken |= ndimage.binary_dilation(cov > 0, iterations=2)
    image[:] = np.clip(np.rint(picture), 0, 255).astype(np.uint8)
