"""Text-to-video metrics: every frame judged, the objects tracked from frame to frame, the prompt checked on the
first and the last frame and its motion on the tracks.

- first, last: the judge reads exactly the prompt's objects on the first (last) frame;
- persist: every frame holds the same objects (shape and colour) as many as the prompt names;
- motion: every object of the first frame is tracked through the clip and each moves as the prompt says (a track's
  direction is its net travel, along one axis and at least MIN_TRAVEL of the canvas);
- success: all four at once;
- track_px: how far the tracked centres stray from a constant-velocity line (RMS pixels): jitter and jumps.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from tessera.eval.judge import Detection, Judge
from tessera.world.grammar import parse_description
from tessera.world.scene import DIRECTIONS

MIN_TRAVEL = 0.07  # of the canvas: less net travel has no direction (the world's slowest object travels 0.14)
TRACK_REACH = 0.25  # of the canvas: the farthest a tracked object may move from one frame to the next


@dataclass(frozen=True)
class Track:
    """One object followed through a clip: its attributes and first box (as the prompt describes it), its centre
    in every frame, and the direction it travelled (None: too little, or not along one axis)."""

    shape: str
    colour: str
    size: str
    box: tuple[float, float, float, float]
    centres: tuple[tuple[float, float], ...]
    motion: str | None


def heading(centres: list[tuple[float, float]], canvas: int) -> str | None:
    """The direction of the net travel from the first centre to the last, when it keeps to one axis (the other
    under half of it) and covers at least MIN_TRAVEL of the canvas."""
    dx, dy = (b - a for a, b in zip(centres[0], centres[-1], strict=True))
    if max(abs(dx), abs(dy)) < MIN_TRAVEL * canvas:
        return None
    for name, (ux, uy) in DIRECTIONS.items():
        along, across = dx * ux + dy * uy, abs(dx * uy) + abs(dy * ux)
        if along > 0 and across <= along / 2:
            return name
    return None


def follow(frames: list[list[Detection]], canvas: int) -> tuple[list[Track], int]:
    """Tracks of the objects read in the first frame, each continued by the nearest unused detection of the same
    shape and colour within TRACK_REACH in the next frame; (the tracks kept through every frame, the number lost)."""
    paths = [[d] for d in frames[0]]
    lost = 0
    for found in frames[1:]:
        left, kept = list(found), []
        for path in paths:
            last = path[-1]
            near = [d for d in left if (d.shape, d.colour) == (last.shape, last.colour)
                    and math.dist(d.centre, last.centre) <= TRACK_REACH * canvas]  # fmt: skip
            if near:
                best = min(near, key=lambda d: math.dist(d.centre, last.centre))
                left.remove(best)
                kept.append([*path, best])
            else:
                lost += 1
        paths = kept
    tracks = []
    for path in paths:
        centres = [d.centre for d in path]
        first = path[0]
        tracks.append(Track(first.shape, first.colour, first.size, first.box, tuple(centres), heading(centres, canvas)))
    return tracks, lost


def line_error(centres: tuple[tuple[float, float], ...]) -> float:
    """RMS distance (pixels) of the centres from their least-squares constant-velocity fit."""
    xy = np.asarray(centres, dtype=np.float64)  # (T, 2)
    t = np.arange(len(xy), dtype=np.float64)
    design = np.stack([np.ones_like(t), t], axis=1)  # (T, 2)
    fit = design @ np.linalg.lstsq(design, xy, rcond=None)[0]
    return float(np.sqrt(((xy - fit) ** 2).sum(1).mean()))


def clip_scores(frames: list[list[Detection]], prompt: str, canvas: int) -> dict[str, float]:
    """The metrics of one clip (its frames' detections) against its prompt."""
    wanted = parse_description(prompt)
    asked = sum(s.count for s in wanted.objects)
    kinds = [sorted((d.shape, d.colour) for d in found) for found in frames]
    tracks, lost = follow(frames, canvas)
    first, last = wanted.holds(frames[0], exact=True), wanted.holds(frames[-1], exact=True)
    persist = all(k == kinds[0] for k in kinds) and len(kinds[0]) == asked
    motion = lost == 0 and wanted.holds(tracks, exact=True)
    return {
        "first": float(first),
        "last": float(last),
        "persist": float(persist),
        "motion": float(motion),
        "success": float(first and last and persist and motion),
        "track_px": float(np.mean([line_error(t.centres) for t in tracks])) if tracks else math.nan,
        "objects": float(np.mean([len(found) for found in frames])),
        "asked": float(asked),
    }


def score_videos(judge: Judge, prompts: list[str], clips: np.ndarray) -> dict[str, float]:
    """Mean metrics of uint8 clips (N, T, H, W, 3), one per prompt; track_px over the clips that have a track."""
    n, t = clips.shape[:2]
    found = judge.read(clips.reshape(n * t, *clips.shape[2:]))
    rows = [clip_scores(found[i * t : (i + 1) * t], prompts[i], clips.shape[2]) for i in range(n)]
    out = {}
    for key in rows[0]:
        values = [r[key] for r in rows if not math.isnan(r[key])]
        out[key] = float(np.mean(values)) if values else math.nan
    return out
