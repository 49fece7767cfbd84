"""Any-to-image with a model checkpoint: draw after segmentation maps, edge maps, source images with edit
instructions or earlier frames, and score the conditions set beside the tokenizer's ceiling."""

from __future__ import annotations

import numpy as np

from tessera.eval.conditions import ConditionCase, score_conditions
from tessera.eval.judge import Judge
from tessera.generate.images import draw_images
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, to_uint8
from tessera.sequence.tasks import Task
from tessera.world.render import render_image

SHEET_COLUMNS = 8  # cases shown per task: condition (the last given frame), drawn and ceiling rows
COPYABLE = (Task.INSTRUCT, Task.PREDICT)  # tasks whose condition is a picture of what is drawn, before a change


def _round_trip(bundle: Bundle, images: list[np.ndarray]) -> np.ndarray:
    """uint8 pictures through the model's visual tokenizer and back."""
    return to_uint8(bundle.image_tokenizer.decode(bundle.encode_images(np.stack(images))))


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
    ceiling_images, copies = (
        _round_trip(bundle, [render_image(getattr(c, kind)) for c in cases]) for kind in ("scene", "shown")
    )
    model, ceiling = score_conditions(judge, cases, drawn), score_conditions(judge, cases, ceiling_images)
    copy = score_conditions(judge, cases, copies)
    scores = {
        task: {
            metric: {"model": value, "ceiling": ceiling[task][metric]}
            | ({"copy": copy[task][metric]} if task in COPYABLE else {})
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
