"""The conditions set: any-to-image cases with the world's ground truth, and metrics that can fail.

- seg2i: the judge's per-pixel shape labels against the condition map (mIoU over background and the five shapes);
- edge2i: F1 of the edges of the judge's label map against the condition's (a tolerance of one canvas pixel);
- both: how often the judge reads exactly the scene, by shapes and places (`layout`) and with the caption's colours
  (`scene`);
- instruct: how often the judge reads exactly the edited scene (the change made, every other object kept), per
  edit kind, and how often it reads the source scene unchanged (`copied`: the instruction ignored);
- predict: the next frame's PSNR and SSIM against the true one, how often the judge reads exactly the scene of
  that frame (`persist`: every object there, same shape and colour, in its moved place), how far the objects it
  finds lie from where they should be (`motion_px`), how often it reads the last given frame (`still`), and the
  share of moving objects found nearer their next place than their last (`moved`: one frame of motion is under an
  exact read's tolerance, so only this and the pixel metrics tell predicting from copying).
Each beside the same metric on the visual tokenizer's round trip of the true image (the ceiling).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from tessera.eval.edits import matched, reads_as
from tessera.eval.judge import JUDGE_RES, Judge
from tessera.eval.metrics import psnr, structural_similarity
from tessera.pictures import to_tensor
from tessera.sequence.tasks import Task
from tessera.world.render import render_image, render_segmentation
from tessera.world.scene import SHAPES, Scene

EVAL_SEED = 1000  # the conditions set's scenes; training and RL draw theirs with other seeds
N_LABELS = 1 + len(SHAPES)  # background and the five shapes; the judge's "clutter" counts as a wrong label


@dataclass(frozen=True)
class ConditionCase:
    task: str
    kind: str  # instruct: the edit (recolour, move, add, remove); otherwise the task
    text: str  # the caption (maps) or the instruction
    condition: np.ndarray  # (H, W, 3) uint8: the picture the model reads
    scene: Scene  # what must be drawn
    shown: Scene  # what the condition shows (instruct: the scene before the edit)


def _nearest(labels: np.ndarray, size: int) -> np.ndarray:
    """(H, W) -> (size, size) by nearest neighbour."""
    rows = np.arange(size) * labels.shape[0] // size
    cols = np.arange(size) * labels.shape[1] // size
    return labels[rows][:, cols]


def true_labels(scene: Scene) -> np.ndarray:
    """(JUDGE_RES, JUDGE_RES) shape labels of the scene: 0 background, 1 + shape index."""
    return _nearest(render_segmentation(scene).astype(np.int64), JUDGE_RES)


def mean_iou(predicted: np.ndarray, true: np.ndarray) -> float:
    """Mean over the labels present in either of the intersection over union, pooled over all images."""
    ious = []
    for label in range(N_LABELS):
        p, t = predicted == label, true == label
        union = (p | t).sum()
        if union:
            ious.append((p & t).sum() / union)
    return float(np.mean(ious))


def edges(labels: np.ndarray) -> np.ndarray:
    """(..., H, W) labels -> bool edges: object pixels whose 4-neighbourhood holds another label."""
    padded = np.pad(labels, [(0, 0)] * (labels.ndim - 2) + [(1, 1), (1, 1)], mode="edge")
    centre = padded[..., 1:-1, 1:-1]
    border = np.zeros(centre.shape, dtype=bool)
    h, w = labels.shape[-2:]
    for dr, dc in ((0, 1), (2, 1), (1, 0), (1, 2)):
        border |= padded[..., dr : dr + h, dc : dc + w] != centre
    return border & (centre > 0)


def _tolerance(scene: Scene) -> int:
    """Edge F1's tolerance at JUDGE_RES: one pixel of the scene's canvas."""
    return max(1, JUDGE_RES // scene.canvas)


def edge_f1(predicted: np.ndarray, true: np.ndarray, tolerance: int) -> float:
    """F1 of (B, H, W) edge maps: an edge pixel counts as found when the other map has one within `tolerance`."""
    structure = np.ones((1, 2 * tolerance + 1, 2 * tolerance + 1), dtype=bool)
    near_true, near_pred = ndimage.binary_dilation(true, structure), ndimage.binary_dilation(predicted, structure)
    precision = (predicted & near_true).sum() / max(predicted.sum(), 1)
    recall = (true & near_pred).sum() / max(true.sum(), 1)
    return float(2 * precision * recall / max(precision + recall, 1e-12))


def offsets(detections: list, scene: Scene) -> list[float]:
    """For each of the scene's objects that a detection of its shape and colour reads, the pixels between the
    nearest such detection's centre and the object's."""
    out = []
    for o in scene.objects:
        near = [math.dist(d.centre, (o.x, o.y)) for d in detections if (d.shape, d.colour) == (o.shape, o.colour)]
        if near:
            out.append(min(near))
    return out


def moved_ahead(detections: list, before: Scene, after: Scene, least: float = 0.5) -> list[bool]:
    """For each object that moves at least `least` pixels from `before` to `after` (the same object, by index) and
    that a detection of its shape and colour reads: whether the nearest such detection lies nearer its place after
    than before. Copying the last frame scores False; one frame of motion is under an exact read's tolerance."""
    out = []
    for was, now in zip(before.objects, after.objects, strict=True):
        if math.dist((was.x, was.y), (now.x, now.y)) < least:
            continue
        near = [d.centre for d in detections if (d.shape, d.colour) == (now.shape, now.colour)]
        if near:
            c = min(near, key=lambda p: math.dist(p, (now.x, now.y)))
            out.append(math.dist(c, (now.x, now.y)) < math.dist(c, (was.x, was.y)))
    return out


def score_conditions(judge: Judge, cases: list[ConditionCase], images: np.ndarray) -> dict[str, dict[str, float]]:
    """Per task, its metrics on `images` (uint8 (N, H, W, 3), one per case, in order)."""
    found, labels = judge.read_labelled(images)
    out: dict[str, dict[str, float]] = {}
    for task in dict.fromkeys(c.task for c in cases):
        rows = [i for i, c in enumerate(cases) if c.task == task]
        scores: dict[str, float] = {}
        if task == Task.PREDICT:
            truth = to_tensor(np.stack([render_image(cases[i].scene) for i in rows]))
            drawn = to_tensor(images[rows])
            scores["psnr"] = float(psnr(drawn, truth).mean())
            scores["ssim"] = float(structural_similarity(drawn, truth).mean())
            scores["persist"] = float(np.mean([reads_as(found[i], cases[i].scene) for i in rows]))
            scores["motion_px"] = float(
                np.mean([d for i in rows for d in offsets(found[i], cases[i].scene)] or [np.nan])
            )
            scores["still"] = float(np.mean([reads_as(found[i], cases[i].shown) for i in rows]))
            ahead = [a for i in rows for a in moved_ahead(found[i], cases[i].shown, cases[i].scene)]
            scores["moved"] = float(np.mean(ahead)) if ahead else math.nan
        elif task == Task.INSTRUCT:
            exact = {i: reads_as(found[i], cases[i].scene) for i in rows}
            scores["success"] = float(np.mean(list(exact.values())))
            for kind in dict.fromkeys(cases[i].kind for i in rows):
                scores[kind] = float(np.mean([exact[i] for i in rows if cases[i].kind == kind]))
            scores["copied"] = float(np.mean([reads_as(found[i], cases[i].shown) for i in rows]))
        else:
            truth = np.stack([true_labels(cases[i].scene) for i in rows])
            if task == Task.SEG2I:
                scores["miou"] = mean_iou(labels[rows], truth)
            else:
                scores["edge_f1"] = edge_f1(edges(labels[rows]), edges(truth), _tolerance(cases[rows[0]].scene))
            scores["layout"] = float(np.mean([reads_as(found[i], cases[i].scene, colour=False) for i in rows]))
            scores["scene"] = float(np.mean([reads_as(found[i], cases[i].scene) for i in rows]))
        scores["objects"] = float(np.mean([len(found[i]) for i in rows]))
        scores["asked"] = float(np.mean([len(cases[i].scene.objects) for i in rows]))
        out[task] = scores
    return out


def case_scores(judge: Judge, cases: list[ConditionCase], images: np.ndarray) -> np.ndarray:
    """(N,) one score in [0, 1] per image against its case's truth, the RL reward of conditioned drawing: seg2i
    its mIoU, edge2i its edge F1, instruct and predict 1 when it reads as the scene to draw, else half the share of
    that scene's objects read right over the larger of asked and found (so drawing more never pays); and 0 for an
    edit that reads as its unedited source (a copy keeps most objects right without making the change)."""
    found, labels = judge.read_labelled(images)
    out = np.zeros(len(cases))
    for i, case in enumerate(cases):
        if case.task in (Task.INSTRUCT, Task.PREDICT):
            if case.task == Task.INSTRUCT and reads_as(found[i], case.shown):
                continue  # an unedited copy earns 0
            exact = reads_as(found[i], case.scene)
            out[i] = 1.0 if exact else 0.5 * matched(found[i], case.scene) / max(len(case.scene.objects), len(found[i]))
        elif case.task == Task.SEG2I:
            out[i] = mean_iou(labels[i], true_labels(case.scene))
        else:
            out[i] = edge_f1(edges(labels[i : i + 1]), edges(true_labels(case.scene)[None]), _tolerance(case.scene))
    return out
