"""Any-to-image with a model checkpoint: draw after segmentation maps, edge maps, source images with edit
instructions or earlier frames, and score the conditions set beside the tokenizer's ceiling."""

from __future__ import annotations

import numpy as np

from tessera.data.examples import condition_cases
from tessera.eval.conditions import EVAL_SEED, ConditionCase, score_conditions
from tessera.eval.judge import Judge
from tessera.generate.images import draw_images
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid
from tessera.sequence.tasks import Task, conditioned
from tessera.world.render import render_image

SHEET_COLUMNS = 8  # cases shown per task: condition (the last given frame), drawn and ceiling rows
COPYABLE = (Task.INSTRUCT, Task.PREDICT)  # tasks whose condition is a picture of what is drawn, before a change


def draw_conditioned(
    bundle: Bundle, cases: list[ConditionCase], sampling: SamplingConfig | None = None, seed: int = 0
) -> np.ndarray:
    """One image per case, drawn after its condition and text: uint8 (N, H, W, 3) in the cases' order."""
    images = np.empty((len(cases), bundle.cfg.canvas, bundle.cfg.canvas, 3), dtype=np.uint8)
    for task in dict.fromkeys(c.task for c in cases):
        bundle.check_task(task)
        rows = [i for i, c in enumerate(cases) if c.task == task]
        pictures = np.stack([cases[i].condition for i in rows])
        texts = [cases[i].text for i in rows]
        drawn, _ = draw_images(
            bundle, texts, sampling, seed=seed, conditions=pictures, instructions=task == Task.INSTRUCT
        )
        images[rows] = drawn
    return images


def condition_scores(
    bundle: Bundle, judge: Judge, cases: list[ConditionCase], sampling: SamplingConfig | None = None, seed: int = 0
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, np.ndarray]]:
    """Per task and metric, the model's score and the ceiling (the judge on the tokenizer's round trip of the
    true image), and where the condition is a picture of the same kind (instruct, predict) the score of copying it
    (`copy`: the source image, the last given frame); and per task a sheet with rows condition | drawn | ceiling."""
    drawn = draw_conditioned(bundle, cases, sampling, seed)
    ceiling_images = bundle.round_trip(np.stack([render_image(c.scene) for c in cases]))
    model, ceiling = score_conditions(judge, cases, drawn), score_conditions(judge, cases, ceiling_images)
    copyable = [c for c in cases if c.task in COPYABLE]
    copy = {}
    if copyable:
        copy = score_conditions(judge, copyable, bundle.round_trip(np.stack([render_image(c.shown) for c in copyable])))
    scores = {
        task: {
            metric: {"model": value, "ceiling": ceiling[task][metric]}
            | ({"copy": copy[task][metric]} if task in copy else {})
            for metric, value in metrics.items()
        }
        for task, metrics in model.items()
    }
    sheets = {}
    for task in scores:
        rows = [i for i, c in enumerate(cases) if c.task == task][:SHEET_COLUMNS]
        given = [cases[i].condition if cases[i].condition.ndim == 3 else cases[i].condition[-1] for i in rows]
        shown = given + [drawn[i] for i in rows] + [ceiling_images[i] for i in rows]
        sheets[task] = grid(np.stack(shown), cols=len(rows))
    return scores, sheets


def evaluate_conditions(
    bundle: Bundle, judge: Judge, per_kind: int, sampling: SamplingConfig | None = None, seed: int = 0
) -> tuple[dict[str, dict[str, dict[str, float]]], dict[str, np.ndarray]]:
    """`condition_scores` on the conditions set (scenes from EVAL_SEED + seed) of every conditioned task the model
    was trained on."""
    cfg = bundle.cfg
    tasks = conditioned(cfg.tasks)
    cases = condition_cases(per_kind, cfg.canvas, EVAL_SEED + seed, bundle.fits, tasks, cfg.context_frames)
    return condition_scores(bundle, judge, cases, sampling, seed)
