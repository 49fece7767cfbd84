"""A drawn band's critique from the judge: read the image drawn so far (the rows below the band blank) and compare
the objects it completes with the scene's objects that lie wholly above the band's lower edge."""

from __future__ import annotations

import math

import numpy as np

from tessera.eval.edits import PLACE_TOLERANCE
from tessera.eval.judge import Detection
from tessera.world.scene import BACKGROUND, SHAPES, Scene
from tessera.world.thoughts import MAX_SCORE, Critique, Thought


def drawn_so_far(image: np.ndarray, cut: float) -> np.ndarray:
    """(H, W, 3) uint8 with the pixel rows from `cut` down painted background: the image as drawn through a band."""
    out = image.copy()
    out[math.ceil(cut) :] = BACKGROUND
    return out


def band_critique(found: list[Detection], scene: Scene, cut: float, thought: Thought) -> Critique:
    """The critique of an image drawn down to pixel row `cut`, from the judge's detections on it (`drawn_so_far`):
    the scene's objects wholly above the cut against the detections, matched by shape, colour and centre within
    PLACE_TOLERANCE of the canvas; a detection left over counts as extra unless it touches the cut (an object the
    cut splits is not judged yet). The score is
    MAX_SCORE times the matched share of the larger of the two; `thought` is restated for the redraw."""
    due = [o for o in scene.objects if o.box[3] <= cut]
    seen = list(found)
    tolerance = PLACE_TOLERANCE * scene.canvas
    missing = []
    for o in due:
        near = [d for d in seen if (d.shape, d.colour) == (o.shape, o.colour)
                and math.dist(d.centre, (o.x, o.y)) <= tolerance]  # fmt: skip
        if near:
            seen.remove(min(near, key=lambda d: math.dist(d.centre, (o.x, o.y))))
        else:
            missing.append(o)
    seen = [d for d in seen if d.box[3] <= cut - 1]  # left over and touching the cut: a fragment of what follows
    matched = len(due) - len(missing)
    total = max(len(due), matched + len(seen))
    score = MAX_SCORE if total == 0 else round(MAX_SCORE * matched / total)
    extra = tuple((d.shape if d.shape in SHAPES else None, d.colour, d.size) for d in seen)  # clutter: "object"
    return Critique(score, tuple((o.shape, o.colour, o.size) for o in missing), extra, thought)
