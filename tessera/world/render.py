"""Anti-aliased rendering of scenes: RGB images, videos, segmentation maps and edge maps (numpy, uint8)."""

from __future__ import annotations

import numpy as np

from tessera.world.scene import BACKGROUND, PALETTE, POLYGONS, SHAPES, VIDEO_FRAMES, Object, Scene

SUPERSAMPLE = 4  # sub-samples per pixel side for anti-aliasing
SEGMENT_PALETTE = np.array(  # background, then one colour per shape class, for segmentation pictures
    [(0, 0, 0), (230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48)], dtype=np.uint8
)


def _inside(shape: str, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether unit-shape coordinates (u, v) lie inside the shape (even-odd rule for polygons)."""
    poly = POLYGONS[shape]
    return u * u + v * v <= 1.0 if poly is None else _in_polygon(poly, u, v)


def _in_polygon(poly: np.ndarray, u: np.ndarray, v: np.ndarray) -> np.ndarray:
    """Whether points (u, v) lie inside the polygon (V, 2), by the even-odd rule."""
    inside = np.zeros(u.shape, dtype=bool)
    for (x1, y1), (x2, y2) in zip(poly, np.roll(poly, -1, axis=0), strict=True):
        crosses = (y1 > v) != (y2 > v)
        with np.errstate(divide="ignore", invalid="ignore"):
            x_at = x1 + (v - y1) * (x2 - x1) / (y2 - y1)
        inside ^= crosses & (u < x_at)
    return inside


def coverage(obj: Object, canvas: int) -> tuple[int, int, np.ndarray]:
    """Fraction of each pixel the object covers, over its pixel window: (row0, col0, (h, w) float32)."""
    x1, y1, x2, y2 = obj.box
    c0, r0 = max(int(np.floor(x1)), 0), max(int(np.floor(y1)), 0)
    c1, r1 = min(int(np.ceil(x2)), canvas), min(int(np.ceil(y2)), canvas)
    s = SUPERSAMPLE
    xs = c0 + (np.arange((c1 - c0) * s) + 0.5) / s  # sub-sample centres in pixels
    ys = r0 + (np.arange((r1 - r0) * s) + 0.5) / s
    u = (xs[None, :] - obj.x) / obj.r
    v = (ys[:, None] - obj.y) / obj.r
    hit = _inside(obj.shape, *np.broadcast_arrays(u, v)).astype(np.float32)
    cov = hit.reshape(r1 - r0, s, c1 - c0, s).mean(axis=(1, 3))
    return r0, c0, cov


def polygon_coverage(points: np.ndarray, canvas: int) -> np.ndarray:
    """Fraction of each pixel of a canvas x canvas image that a polygon (V, 2) in pixel coordinates covers."""
    s = SUPERSAMPLE
    centres = (np.arange(canvas * s) + 0.5) / s
    hit = _in_polygon(points, *np.broadcast_arrays(centres[None, :], centres[:, None])).astype(np.float32)
    return hit.reshape(canvas, s, canvas, s).mean(axis=(1, 3))


def render_image(scene: Scene) -> np.ndarray:
    """The scene as an (H, W, 3) uint8 RGB image on the mid-grey background."""
    n = scene.canvas
    img = np.empty((n, n, 3), dtype=np.float32)
    img[:] = BACKGROUND
    for obj in scene.objects:
        r0, c0, cov = coverage(obj, n)
        h, w = cov.shape
        window = img[r0 : r0 + h, c0 : c0 + w]
        a = cov[..., None]
        window[:] = window * (1 - a) + np.asarray(PALETTE[obj.colour], dtype=np.float32) * a
    return np.clip(np.rint(img), 0, 255).astype(np.uint8)


def render_video(scene: Scene, frames: int = VIDEO_FRAMES) -> np.ndarray:
    """The scene in motion as (T, H, W, 3) uint8 frames."""
    return np.stack([render_image(scene.at_frame(t)) for t in range(frames)])


def render_labels(scene: Scene) -> np.ndarray:
    """(H, W) int16 instance map: 0 background, i + 1 where object i covers at least half the pixel."""
    n = scene.canvas
    labels = np.zeros((n, n), dtype=np.int16)
    for i, obj in enumerate(scene.objects):
        r0, c0, cov = coverage(obj, n)
        h, w = cov.shape
        window = labels[r0 : r0 + h, c0 : c0 + w]
        window[cov >= 0.5] = i + 1
    return labels


def render_segmentation(scene: Scene) -> np.ndarray:
    """(H, W) uint8 semantic map: 0 background, 1 + shape index elsewhere."""
    lookup = np.array([0] + [SHAPES.index(o.shape) + 1 for o in scene.objects], dtype=np.uint8)
    return lookup[render_labels(scene)]


def segmentation_to_rgb(seg: np.ndarray) -> np.ndarray:
    """Colour a semantic map (H, W) with one fixed colour per shape class: (H, W, 3) uint8."""
    return SEGMENT_PALETTE[seg]


def render_edges(scene: Scene) -> np.ndarray:
    """(H, W) uint8 edge map: 255 on object pixels that border another label, 0 elsewhere."""
    labels = render_labels(scene)
    padded = np.pad(labels, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    border = np.zeros_like(centre, dtype=bool)
    for dr, dc in ((0, 1), (2, 1), (1, 0), (1, 2)):
        border |= padded[dr : dr + labels.shape[0], dc : dc + labels.shape[1]] != centre
    return np.where(border & (centre > 0), 255, 0).astype(np.uint8)


def edges_to_rgb(edges: np.ndarray) -> np.ndarray:
    """An edge map (H, W) as a white-on-black picture (H, W, 3) uint8."""
    return np.repeat(edges[..., None], 3, axis=-1)


def render_map(scene: Scene, kind: str) -> np.ndarray:
    """A spatial condition as a picture the visual tokenizer codes: kind segmentation | edges. (H, W, 3) uint8."""
    if kind == "segmentation":
        return segmentation_to_rgb(render_segmentation(scene))
    if kind == "edges":
        return edges_to_rgb(render_edges(scene))
    raise ValueError(f"unknown map kind {kind!r}; expected segmentation or edges")
