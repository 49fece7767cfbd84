"""Any-to-image with a model checkpoint: draw after segmentation maps, edge maps, source images with edit
instructions or earlier frames, and score the conditions set beside the tokenizer's ceiling."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from tessera.data.examples import condition_cases
from tessera.engine.checkpoint import write_atomically
from tessera.eval.conditions import EVAL_SEED, ConditionCase, score_conditions
from tessera.eval.judge import Judge
from tessera.eval.report import write_report
from tessera.generate.images import draw_images
from tessera.generate.video import SHEET_CLIPS, VideoResults, video_scores
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, save_gif, save_png
from tessera.sequence.tasks import CONDITIONED, Task, conditioned
from tessera.world.render import render_image

SHEET_COLUMNS = 8  # cases shown per task: condition (the last given frame), drawn and ceiling rows
SHEETS = (
    "Per task: the condition (the last given frame for predict) over what the model drew over the ceiling (the "
    "true image through the tokenizer); for t2v a clip's frames drawn over a true clip's through the tokenizer."
)
COPIES = {  # what each task's `copy` baseline shows
    Task.INSTRUCT: "the source image",
    Task.PREDICT: "the last given frame",
    Task.T2V: "the first frame held",
}
COPYABLE = tuple(t for t in COPIES if t in CONDITIONED)  # conditions that picture what is drawn, before a change


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


def evaluate_conditions_and_video(
    bundle: Bundle, judge: Judge, per_kind: int, sampling: SamplingConfig | None = None, seed: int = 0
) -> tuple[dict, dict[str, np.ndarray], VideoResults | None]:
    """Scores and sheets of the conditions set for every conditioned task the model was trained on, and for a t2v
    model of the held-out video prompts (with their clips)."""
    scores, sheets = (
        evaluate_conditions(bundle, judge, per_kind, sampling, seed) if conditioned(bundle.cfg.tasks) else ({}, {})
    )
    videos = None
    if Task.T2V in bundle.cfg.tasks:
        videos = video_scores(bundle, judge, sampling, seed)
        scores[Task.T2V], sheets[Task.T2V] = videos.scores, videos.sheet()
    return scores, sheets, videos


def condition_sections(
    out: Path, scores: dict, sheets: dict[str, np.ndarray], videos: VideoResults | None, folder: str = ""
) -> dict:
    """Each task's sheet (out/<folder><task>.png) and the first clips drawn and true (GIFs) written; the report's
    tables and figures for them (`write_report`'s keys, paths relative to out)."""
    (out / folder).mkdir(parents=True, exist_ok=True)
    for task, sheet in sheets.items():
        save_png(sheet, out / f"{folder}{task}.png", scale=2)
    figures = {"Sheets": {"text": SHEETS, "images": {task: f"{folder}{task}.png" for task in sheets}}}
    if videos is not None:
        clips = {}
        for i, prompt in enumerate(videos.prompts[:SHEET_CLIPS]):
            for name, source in (("drawn", videos.drawn), ("ceiling", videos.ceiling)):
                path = f"{folder}t2v-{i}-{name}.gif"
                save_gif(source[i].repeat(3, axis=1).repeat(3, axis=2), out / path)
                clips[f"{prompt} ({name})"] = path
        figures["Text-to-video clips"] = {"text": "Held-out prompts: the model's clip and a true one.", "images": clips}
    tables = {
        f"{task}: model, ceiling" + (f", copy ({COPIES[task]})" if task in COPIES else ""): {
            "head": ["metric", "model", "ceiling", *(["copy"] if task in COPIES else [])],
            "rows": [
                [metric, *(f"{s[k]:.3f}" for k in ("model", "ceiling", "copy") if k in s)]
                for metric, s in metrics.items()
            ],
        }
        for task, metrics in scores.items()
    }
    return {"tables": tables, "figures": figures}


def write_conditions_report(
    out: Path, scores: dict, sheets: dict[str, np.ndarray], videos: VideoResults | None, ckpt: Path
) -> Path:
    """out/conditions.json, the sheets and clips (`condition_sections`), and out/report.html with them all; returns
    the report's path."""
    out.mkdir(parents=True, exist_ok=True)
    write_atomically(out / "conditions.json", json.dumps(scores, indent=2) + "\n")
    notes = [f"checkpoint: {ckpt}", "the judge reads every picture; ceilings are true pictures through the tokenizer"]
    sections = condition_sections(out, scores, sheets, videos)
    return write_report(out, {"title": "tessera conditions report", "notes": notes, **sections})
