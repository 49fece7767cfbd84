"""The world's edit set: remove an object, add one, or recolour one, each with the box to redraw and the scene the
edit must leave; an edit succeeds when the judge reads exactly that scene (the change made, every other object
unchanged in shape, colour and place, nothing extra)."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from tessera.eval.judge import Detection
from tessera.world import language as lang
from tessera.world.scene import Scene, sample_scene

EDIT_KINDS = ("remove", "add", "recolour")
PLACE_TOLERANCE = 0.06  # a kept object may move this fraction of the canvas (the tokenizer's edges) and count as kept


@dataclass(frozen=True)
class EditCase:
    kind: str
    before: Scene
    after: Scene
    prompt: str  # the whole caption of the scene after the edit
    erase: tuple[int, int, int, int]  # the pixel box x0, y0, x1, y1 (x1, y1 excluded) to redraw


def _changed_box(before: Scene, after: Scene) -> tuple[int, int, int, int]:
    """The box around every object that differs between the scenes, one pixel wider, within the canvas."""
    changed = set(before.objects) ^ set(after.objects)
    x0, y0 = min(o.box[0] for o in changed), min(o.box[1] for o in changed)
    x1, y1 = max(o.box[2] for o in changed), max(o.box[3] for o in changed)
    c = before.canvas
    return max(0, math.floor(x0) - 1), max(0, math.floor(y0) - 1), min(c, math.ceil(x1) + 2), min(c, math.ceil(y1) + 2)


def edit_cases(
    per_kind: int, canvas: int = 64, seed: int = 0, fits: Callable[[str], bool] = lambda prompt: True
) -> list[EditCase]:
    """per_kind cases of each kind on scenes of 1-3 objects, whose captions after the edit a model `fits`."""
    rng = np.random.default_rng(seed)
    cases: list[EditCase] = []
    for kind in EDIT_KINDS:
        made = 0
        while made < per_kind:
            before = sample_scene(rng, canvas, n_objects=int(rng.integers(1 if kind == "add" else 2, 4)))
            try:
                _, after = lang.edit_instruction(before, rng, kind)
            except ValueError:  # the edit does not apply to this scene
                continue
            prompt = lang.caption(after, rng)
            if not fits(prompt):
                continue
            cases.append(EditCase(kind, before, after, prompt, _changed_box(before, after)))
            made += 1
    return cases


def matched(detections: list[Detection], scene: Scene, colour: bool = True) -> int:
    """How many of the scene's objects a detection reads as: same shape and colour (or shape alone), centre within
    PLACE_TOLERANCE of the canvas; each detection stands for one object at most."""
    tolerance = PLACE_TOLERANCE * scene.canvas
    left, found = list(detections), 0
    for o in scene.objects:
        near = [d for d in left if d.shape == o.shape and (d.colour == o.colour or not colour)
                and math.dist(d.centre, (o.x, o.y)) <= tolerance]  # fmt: skip
        if near:
            left.remove(min(near, key=lambda d: math.dist(d.centre, (o.x, o.y))))
            found += 1
    return found


def reads_as(detections: list[Detection], scene: Scene, colour: bool = True) -> bool:
    """True when the detections are exactly the scene's objects (`matched`), one each and none left over."""
    n = len(scene.objects)
    return len(detections) == n and matched(detections, scene, colour) == n
