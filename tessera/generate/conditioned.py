"""Any-to-image with a model checkpoint: draw after segmentation maps, edge maps or source images with edit
instructions, and score the conditions set beside the tokenizer's ceiling."""

from __future__ import annotations

import numpy as np

from tessera.eval.conditions import ConditionCase, score_conditions
from tessera.eval.judge import Judge
from tessera.generate.images import draw_images
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, to_uint8
from tessera.sequence.tasks import Task
from tessera.understand.answer import check_reads, image_codes
from tessera.world.render import render_image

SHEET_COLUMNS = 8  # cases shown per task: condition, drawn and ceiling rows


def draw_conditioned(
    bundle: Bundle, cases: list[ConditionCase], sampling: SamplingConfig | None = None, seed: int = 0
) -> np.ndarray:
    """One image per case, drawn after its condition and text: uint8 (N, H, W, 3) in the cases' order."""
    images = np.empty((len(cases), bundle.cfg.canvas, bundle.cfg.canvas, 3), dtype=np.uint8)
    for task in dict.fromkeys(c.task for c in cases):
        check_reads(bundle, task)
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
    true image); and per task a sheet with rows condition | drawn | ceiling."""
    drawn = draw_conditioned(bundle, cases, sampling, seed)
    truth = np.stack([render_image(c.scene) for c in cases])
    ceiling_images = to_uint8(bundle.image_tokenizer.decode(image_codes(bundle, truth)))
    model, ceiling = score_conditions(judge, cases, drawn), score_conditions(judge, cases, ceiling_images)
    scores = {
        task: {metric: {"model": value, "ceiling": ceiling[task][metric]} for metric, value in metrics.items()}
        for task, metrics in model.items()
    }
    sheets = {}
    for task in scores:
        rows = [i for i, c in enumerate(cases) if c.task == task][:SHEET_COLUMNS]
        shown = [cases[i].condition for i in rows] + [drawn[i] for i in rows] + [ceiling_images[i] for i in rows]
        sheets[task] = grid(np.stack(shown), cols=len(rows))
    return scores, sheets
