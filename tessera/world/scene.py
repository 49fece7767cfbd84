"""The Shapes world's scene graph: objects with shape, colour, size, position and velocity, and a seeded sampler."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field, replace

import numpy as np

from tessera.errors import ConfigError, InputError

SHAPES = ("circle", "square", "triangle", "diamond", "star")
COLOURS = ("red", "orange", "yellow", "green", "blue", "purple", "white", "black")
SIZES = ("small", "large")
PALETTE = {  # RGB, fixed: the judge and every metric read colours against this table
    "red": (220, 40, 40),
    "orange": (245, 140, 20),
    "yellow": (240, 220, 30),
    "green": (40, 170, 60),
    "blue": (40, 90, 230),
    "purple": (140, 50, 190),
    "white": (250, 250, 250),
    "black": (15, 15, 15),
}
BACKGROUND = (128, 128, 128)
SIZE_FRACTION = {"small": 0.08, "large": 0.125}  # half-extent as a fraction of the canvas side
MAX_OBJECTS = 6
GAP = 2.0  # minimum pixels between two objects' boxes at 64x64 (scaled with the canvas), so they never touch
POSITION_MARGIN = 0.1  # GenEval's position threshold
VIDEO_FRAMES = 9
DIRECTIONS = {"left": (-1, 0), "right": (1, 0), "up": (0, -1), "down": (0, 1)}  # unit steps (y grows downwards)


def check_canvas(canvas: int) -> int:
    """Return canvas if it is a multiple of 16 from 32 to 256, else raise InputError."""
    if canvas % 16 or not 32 <= canvas <= 256:
        raise ConfigError(f"canvas must be a multiple of 16 from 32 to 256, got {canvas}")
    return canvas


def _polygon(shape: str) -> np.ndarray | None:
    """Unit polygon (V, 2) of a shape, centred on its bounding box; None for the circle."""
    if shape == "circle":
        return None
    if shape == "square":
        pts = [(-0.88, -0.88), (0.88, -0.88), (0.88, 0.88), (-0.88, 0.88)]
    elif shape == "diamond":
        pts = [(0.0, -1.0), (1.0, 0.0), (0.0, 1.0), (-1.0, 0.0)]
    elif shape == "triangle":
        pts = [(0.0, -1.0), (1.0, 0.9), (-1.0, 0.9)]
    elif shape == "star":
        pts = []
        for k in range(10):
            radius = 1.0 if k % 2 == 0 else 0.45
            angle = -math.pi / 2 + k * math.pi / 5
            pts.append((radius * math.cos(angle), radius * math.sin(angle)))
    else:
        raise ValueError(f"unknown shape {shape!r}")
    poly = np.array(pts, dtype=np.float64)
    lo, hi = poly.min(0), poly.max(0)
    return poly - (lo + hi) / 2  # bounding box centred on the origin


POLYGONS = {s: _polygon(s) for s in SHAPES}
HALF_EXTENT = {  # (hx, hy) of the unit shape's bounding box
    s: (1.0, 1.0) if p is None else tuple(float(v) for v in (p.max(0) - p.min(0)) / 2) for s, p in POLYGONS.items()
}


@dataclass(frozen=True)
class Object:
    """One object: attributes, centre (x, y) in pixels, half-size r in pixels, velocity in pixels per frame."""

    shape: str
    colour: str
    size: str
    x: float
    y: float
    r: float
    vx: float = 0.0
    vy: float = 0.0

    @property
    def box(self) -> tuple[float, float, float, float]:
        """Bounding box (x1, y1, x2, y2) in pixels."""
        hx, hy = HALF_EXTENT[self.shape]
        return (self.x - hx * self.r, self.y - hy * self.r, self.x + hx * self.r, self.y + hy * self.r)


@dataclass(frozen=True)
class Scene:
    """A canvas and the objects on it (drawn in order)."""

    canvas: int
    objects: tuple[Object, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict:
        return {"canvas": self.canvas, "objects": [asdict(o) for o in self.objects]}

    @staticmethod
    def from_dict(d: dict) -> Scene:
        return Scene(int(d["canvas"]), tuple(Object(**o) for o in d["objects"]))

    def at_frame(self, t: int) -> Scene:
        """The scene after t frames of constant-velocity motion, bouncing off the border."""
        return replace(self, objects=tuple(_moved(o, t, self.canvas) for o in self.objects))


def _reflect(p: float, lo: float, hi: float) -> float:
    """Fold a free coordinate p back into [lo, hi] as a ball bouncing between two walls."""
    span = hi - lo
    if span <= 0:
        return lo
    q = (p - lo) % (2 * span)
    return lo + (q if q <= span else 2 * span - q)


def _moved(o: Object, t: int, canvas: int) -> Object:
    hx, hy = (h * o.r for h in HALF_EXTENT[o.shape])
    x = _reflect(o.x + o.vx * t, hx + 1, canvas - hx - 1)
    y = _reflect(o.y + o.vy * t, hy + 1, canvas - hy - 1)
    return replace(o, x=x, y=y)


def min_gap(canvas: int) -> float:
    """Pixels kept between objects: GAP at 64x64, growing with the canvas so the judge's 64x64 view keeps it."""
    return max(GAP, GAP * canvas / 64)


def boxes_apart(a: Object, b: Object, gap: float = GAP) -> bool:
    """True when the two boxes are at least `gap` pixels apart along x or y."""
    ax1, ay1, ax2, ay2 = a.box
    bx1, by1, bx2, by2 = b.box
    return ax2 + gap <= bx1 or bx2 + gap <= ax1 or ay2 + gap <= by1 or by2 + gap <= ay1


def relative_position(box_a, box_b, margin: float = POSITION_MARGIN) -> set[str]:
    """Where A lies relative to B by GenEval's rule: centre offset less a margin of the summed box sizes."""
    ca = np.array([(box_a[0] + box_a[2]) / 2, (box_a[1] + box_a[3]) / 2])
    cb = np.array([(box_b[0] + box_b[2]) / 2, (box_b[1] + box_b[3]) / 2])
    dim = np.array([box_a[2] - box_a[0] + box_b[2] - box_b[0], box_a[3] - box_a[1] + box_b[3] - box_b[1]])
    offset = ca - cb
    revised = np.maximum(np.abs(offset) - margin * dim, 0) * np.sign(offset)
    if np.all(np.abs(revised) < 1e-3):
        return set()
    dx, dy = revised / np.linalg.norm(offset)
    rels = set()
    if dx < -0.5:
        rels.add("left of")
    if dx > 0.5:
        rels.add("right of")
    if dy < -0.5:
        rels.add("above")
    if dy > 0.5:
        rels.add("below")
    return rels


def place(obj: Object, others: list[Object], canvas: int, rng: np.random.Generator, tries: int = 200) -> Object | None:
    """Move obj to a random spot inside the canvas that keeps clear of others; None if none is found."""
    hx, hy = (h * obj.r for h in HALF_EXTENT[obj.shape])
    for _ in range(tries):
        x = rng.uniform(hx + 1, canvas - hx - 1)
        y = rng.uniform(hy + 1, canvas - hy - 1)
        cand = replace(obj, x=float(x), y=float(y))
        if all(boxes_apart(cand, o, min_gap(canvas)) for o in others):
            return cand
    return None


def make_object(shape: str, colour: str, size: str, canvas: int) -> Object:
    """An object at the canvas centre, sized for the canvas."""
    return Object(shape, colour, size, canvas / 2, canvas / 2, SIZE_FRACTION[size] * canvas)


Pairs = frozenset[tuple[str, str]]  # (shape, colour) pairs a scene may not hold


def pick_pair(
    shape: str | None, colour: str | None, rng: np.random.Generator, avoid: Pairs = frozenset()
) -> tuple[str, str]:
    """(shape, colour) with the unset ones drawn at random, again while the pair is one to avoid; InputError if
    both are set to such a pair."""
    if shape and colour and (shape, colour) in avoid:
        raise InputError(f"a {colour} {shape} is held out of every training scene")
    while True:
        pair = (shape or SHAPES[rng.integers(len(SHAPES))], colour or COLOURS[rng.integers(len(COLOURS))])
        if pair not in avoid:
            return pair


def sample_scene(
    rng: np.random.Generator,
    canvas: int = 64,
    n_objects: int | None = None,
    video: bool = False,
    avoid: Pairs = frozenset(),
) -> Scene:
    """Draw a random scene: 1-6 objects with uniform attributes (no (shape, colour) pair of `avoid`), none
    overlapping."""
    check_canvas(canvas)
    n = int(rng.integers(1, MAX_OBJECTS + 1)) if n_objects is None else n_objects
    if not 1 <= n <= MAX_OBJECTS:
        raise InputError(f"a scene holds 1 to {MAX_OBJECTS} objects, not {n}")
    while True:
        objs: list[Object] = []
        for _ in range(n):
            shape, colour = pick_pair(None, None, rng, avoid)
            size = SIZES[rng.integers(len(SIZES))]
            placed = place(make_object(shape, colour, size, canvas), objs, canvas, rng)
            if placed is None:
                break
            objs.append(placed)
        if len(objs) == n:
            scene = Scene(canvas, tuple(objs))
            return add_motion(scene, rng) if video else scene


def add_motion(scene: Scene, rng: np.random.Generator, frames: int = VIDEO_FRAMES, tries: int = 30) -> Scene:
    """Give every object a constant velocity such that no two objects overlap in any frame.

    Velocities are drawn jointly; each failed draw lowers the top speed, so the last try is a still scene.
    """
    for attempt in range(tries):
        speed = 0.035 * scene.canvas * (1 - attempt / (tries - 1))
        v = rng.uniform(-speed, speed, size=(len(scene.objects), 2))
        moving = replace(
            scene,
            objects=tuple(replace(o, vx=float(vx), vy=float(vy)) for o, (vx, vy) in zip(scene.objects, v, strict=True)),
        )
        if all(_frame_clear(moving.at_frame(t)) for t in range(1, frames)):
            return moving
    return scene


def add_straight_motion(
    scene: Scene,
    rng: np.random.Generator,
    directions: list[str | None] | None = None,
    frames: int = VIDEO_FRAMES,
    tries: int = 100,
) -> Scene | None:
    """Give every object a speed along one direction (its own of `directions`, or one at random), such that over
    `frames` frames it never reaches the border (no bounce: its direction holds throughout) and no two objects
    overlap in any frame; None if no such motion is found. Speeds lie in [0.5, 1] of the world's top speed, so
    every object travels at least 14 % of the canvas over nine frames."""
    top = 0.035 * scene.canvas
    directions = directions or [None] * len(scene.objects)
    for _ in range(tries):
        moved = []
        for o, direction in zip(scene.objects, directions, strict=True):
            dx, dy = DIRECTIONS[direction or list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]]
            speed = float(rng.uniform(0.5, 1.0)) * top
            moved.append(replace(o, vx=dx * speed, vy=dy * speed))
        moving = replace(scene, objects=tuple(moved))
        last = moving.at_frame(frames - 1)
        unbounced = all(
            math.isclose(b.x, a.x + a.vx * (frames - 1)) and math.isclose(b.y, a.y + a.vy * (frames - 1))
            for a, b in zip(moving.objects, last.objects, strict=True)
        )
        if unbounced and all(_frame_clear(moving.at_frame(t)) for t in range(1, frames)):
            return moving
    return None


def direction_of(o: Object) -> str | None:
    """The direction an object moves in when it moves along one axis; None when still or diagonal."""
    for name, (dx, dy) in DIRECTIONS.items():
        if (o.vx, o.vy) != (0, 0) and o.vx * dy == 0 and o.vy * dx == 0 and o.vx * dx + o.vy * dy > 0:
            return name
    return None


def _frame_clear(scene: Scene) -> bool:
    objs = scene.objects
    gap = min_gap(scene.canvas)
    return all(boxes_apart(a, b, gap) for i, a in enumerate(objs) for b in objs[i + 1 :])
