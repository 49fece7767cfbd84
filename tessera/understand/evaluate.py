"""How well a model reads images: question answering per kind, captions, and judging, on scenes it never saw.

Scenes come from a seed of their own (the training data's scenes are drawn from the run's seed). A caption is
right when every object it names is there and nothing else (the parsed caption holds exactly); a verdict agrees
when its yes/no matches the verdict on the true scene, and its reason is right when the words match too. Questions
are of every kind alike, and each kind's `base` is what always giving its commonest answer would score; its
`blind` is what the model scores when each question is asked of another scene's image (the words and the model's
habits, not this image): a model that reads scores above both.
"""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

import numpy as np

from tessera.data.examples import understanding_example
from tessera.engine.checkpoint import write_atomically
from tessera.errors import InputError
from tessera.eval.verdicts import is_yes
from tessera.model.bundle import Bundle
from tessera.sequence.tasks import Task, reading
from tessera.understand.answer import ask
from tessera.world.grammar import parse_description
from tessera.world.language import QUESTION_KINDS
from tessera.world.render import render_image

HELD_OUT_SEED = 1_000_003


def caption_holds(caption: str, scene) -> bool:
    try:
        return parse_description(caption).holds(scene.objects, exact=True)
    except InputError:  # not a description in the grammar
        return False


def evaluate_understanding(
    bundle: Bundle, n: int = 1000, seed: int = HELD_OUT_SEED, batch_size: int = 64
) -> tuple[dict, list[dict]]:
    """n examples per reading task the model was trained on -> (summary, one row per example)."""
    rng = np.random.default_rng(seed)
    rows = []
    for task in reading(bundle.cfg.tasks):
        kinds = QUESTION_KINDS if task == Task.QA else (None,)  # questions: every kind alike
        examples = [understanding_example(task, rng, bundle.cfg.canvas, kind=kinds[i % len(kinds)]) for i in range(n)]
        images = np.stack([render_image(scene) for _, _, scene in examples])
        questions = [q for q, _, _ in examples]
        answers = ask(bundle, images, questions, batch_size=batch_size)
        if task == Task.QA:  # each question asked again of the scene before it: what the words alone pass
            blind = ask(bundle, np.roll(images, 1, axis=0), questions, batch_size=batch_size)
        for i, ((question, truth, scene), said) in enumerate(zip(examples, answers, strict=True)):
            row = {"task": task, "question": question, "truth": truth, "answer": said}
            if task == Task.QA:
                row |= {"kind": kinds[i % len(kinds)], "correct": said == truth, "blind": blind[i] == truth}
            elif task == Task.CAPTION:
                row["correct"] = caption_holds(said, scene)
            else:
                row |= {"correct": is_yes(said) == is_yes(truth), "reason_correct": said == truth}
            rows.append(row)
    return summarize(rows), rows


def summarize(rows: list[dict]) -> dict:
    summary = {}
    for task in (Task.QA, Task.CAPTION, Task.JUDGE):
        mine = [r for r in rows if r["task"] == task]
        if mine:
            summary[task] = float(np.mean([r["correct"] for r in mine]))
    if blind := [r["blind"] for r in rows if "blind" in r]:
        summary["qa/blind"] = float(np.mean(blind))
    for kind in sorted({r["kind"] for r in rows if "kind" in r}):
        asked = [r for r in rows if r.get("kind") == kind]
        summary[f"qa/{kind}"] = float(np.mean([r["correct"] for r in asked]))
        summary[f"qa/{kind}/base"] = Counter(r["truth"] for r in asked).most_common(1)[0][1] / len(asked)
        if blind := [r["blind"] for r in asked if "blind" in r]:
            summary[f"qa/{kind}/blind"] = float(np.mean(blind))
    verdicts = [r for r in rows if r["task"] == Task.JUDGE]
    truly_no = [r for r in verdicts if not is_yes(r["truth"])]
    said_no = [r for r in verdicts if not is_yes(r["answer"])]
    if truly_no:
        summary["judge/reason"] = float(np.mean([r["reason_correct"] for r in truly_no]))
        summary["judge/no_recall"] = float(np.mean([not is_yes(r["answer"]) for r in truly_no]))
    if said_no:
        summary["judge/no_precision"] = float(np.mean([not is_yes(r["truth"]) for r in said_no]))
    return summary


def kinds_table(summary: dict, rows: list[dict]) -> str:
    """Question answering per kind as a markdown table: questions asked, accuracy with its standard error, the
    commonest answer's share (base) and the blind score."""
    lines = ["| kind | asked | accuracy | ± | base | blind |", "|---|---|---|---|---|---|"]
    for kind in sorted({r["kind"] for r in rows if "kind" in r}):
        n, p = sum(r.get("kind") == kind for r in rows), summary[f"qa/{kind}"]
        blind = summary.get(f"qa/{kind}/blind")
        cells = [kind, str(n), f"{p:.3f}", f"{(p * (1 - p) / n) ** 0.5:.3f}", f"{summary[f'qa/{kind}/base']:.3f}",
                 "" if blind is None else f"{blind:.3f}"]  # fmt: skip
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_results(folder: str | Path, summary: dict, rows: list[dict]) -> None:
    """results.json (the summary) and results.jsonl (one row per question)."""
    write_atomically(Path(folder) / "results.json", json.dumps(summary, indent=2) + "\n")
    write_atomically(Path(folder) / "results.jsonl", "".join(json.dumps(r) + "\n" for r in rows))
