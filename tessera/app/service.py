"""What the web app can do, free of the web: each request -> the pictures drawn, a caption per picture with the
judge's verdict, and a report in Markdown. Every input is checked before any work (a TesseraError names it)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tessera.app.readings import instruction_verdict, prompt_verdict, seen
from tessera.app.uploads import Limits, enlarge, read_pixels, read_upload
from tessera.errors import CheckpointError, InputError
from tessera.eval.judge import Judge
from tessera.eval.video import clip_scores
from tessera.generate.edit import edit
from tessera.generate.images import draw_images, image_batches
from tessera.generate.introspect import introspect
from tessera.generate.thinking import think_and_draw
from tessera.generate.thinking_eval import chain_picture
from tessera.generate.video import draw_videos
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import grid, save_gif
from tessera.sequence.bands import Bands
from tessera.sequence.tasks import Task
from tessera.understand.answer import ask
from tessera.world.grammar import answer_question, parse_edit, parse_question
from tessera.world.language import CAPTION_QUESTION, judge_question
from tessera.world.samples import render_prompt

Report = Callable[[float, str], None]  # (share done, what is being done)
ORDERS = ("as trained", "raster", "random", "spanning-tree")
READING_MODES = ("ask", "caption", "show")
SCALE = 4  # pictures are shown this many times their canvas


def _quiet(done: float, what: str) -> None:
    pass


@dataclass
class Shown:
    """One answer: pictures with a caption each, and a Markdown report."""

    pictures: list[np.ndarray | Path] = field(default_factory=list)  # arrays, or files in the app's folder (GIFs)
    captions: list[str] = field(default_factory=list)
    report: str = ""


def _mark(ok: bool) -> str:
    return "yes" if ok else "no"


class Service:
    """The loaded checkpoints (each request goes to the first that was trained to its task) and the judge."""

    def __init__(self, bundles: dict[str, Bundle], judge: Judge, folder: Path, limits: Limits | None = None):
        if not bundles:
            raise InputError("the app needs at least one checkpoint")
        self.bundles, self.judge, self.folder, self.limits = bundles, judge, folder, limits or Limits()

    def model(self, task: Task) -> Bundle:
        """The first checkpoint trained to `task`; CheckpointError (in the CLI's words for one checkpoint) when none
        is."""
        for bundle in self.bundles.values():
            if task in bundle.cfg.tasks:
                return bundle
        if len(self.bundles) == 1:
            next(iter(self.bundles.values())).check_task(task)
        theirs = "; ".join(f"{name}: {', '.join(b.cfg.tasks)}" for name, b in self.bundles.items())
        raise CheckpointError(f"no checkpoint served here was trained to {task} (their tasks: {theirs})")

    def overview(self) -> str:
        """Markdown: each checkpoint and what it was trained to do."""
        rows = [f"- `{name}`: {', '.join(b.cfg.tasks)} ({b.cfg.canvas}px)" for name, b in self.bundles.items()]
        return "\n".join(rows)

    def _sampling(self, bundle: Bundle, **changes) -> SamplingConfig:
        sampling = dataclasses.replace(bundle.cfg.sampling, **{k: v for k, v in changes.items() if v is not None})
        sampling.validate()
        return sampling

    def _judged(self, images: np.ndarray, prompt: str) -> tuple[list[str], str]:
        """A caption per image and a table: what the judge sees, GenEval's rule, the strict rule."""
        captions, lines = [], ["| # | the judge sees | prompt holds | exactly the scene |", "|---|---|---|---|"]
        held = 0
        for i, found in enumerate(self.judge.read(images)):
            rule, exact, why = prompt_verdict(found, prompt)
            held += exact
            captions.append(f"{'✓' if exact else '✗'} {seen(found)}" + (f" ({why})" if why else ""))
            lines.append(f"| {i} | {seen(found)} | {_mark(rule)} | {_mark(exact)} |")
        return captions, f"**judge:** {held} of {len(images)} exactly the scene\n\n" + "\n".join(lines)

    def draw(self, prompt: str, n: float, cfg_scale: float | None = None, temperature: float | None = None,
             top_k: float | None = None, top_p: float | None = None, order: str = ORDERS[0], seed: float = 0,
             report: Report = _quiet) -> Shown:  # fmt: skip
        """Text to image: n images, each judged against the prompt."""
        bundle = self.model(Task.T2I)
        prompt, n = self.limits.prompt(prompt), self.limits.count(n)
        if order not in ORDERS:
            raise InputError(f"unknown order {order!r}; expected one of {', '.join(ORDERS)}")
        sampling = self._sampling(bundle, cfg_scale=cfg_scale, temperature=temperature,
                                  top_k=None if top_k is None else int(top_k), top_p=top_p)  # fmt: skip
        images = []  # (image_batches checks the prompt before it draws)
        chosen = None if order == ORDERS[0] else order
        for batch, _ in image_batches(bundle, [prompt] * n, sampling, order=chosen, seed=int(seed), batch_size=4):
            images.append(batch)
            report(sum(map(len, images)) / n, "drawing")
        drawn = np.concatenate(images)
        captions, table = self._judged(drawn, prompt)
        return Shown(list(enlarge(drawn, SCALE)), captions, table)

    def introspect(self, prompt: str, n: float, seed: float = 0, report: Report = _quiet) -> Shown:
        """Draw, let the model judge its own image in words, draw again where it says no; first | final pairs."""
        bundle = self.model(Task.INTROSPECT)
        prompt, n = self.limits.prompt(prompt), self.limits.count(n)
        report(0.0, "drawing, judging, drawing again")
        chain = introspect(bundle, [prompt] * n, seed=int(seed))
        captions, table = self._judged(chain.final_images, prompt)
        pairs = zip(chain.first_images, chain.final_images, strict=True)
        pictures = [enlarge(grid([a, b], cols=2), SCALE) for a, b in pairs]
        said = [f"{i}: the model said *{v}*" + (" and drew again" if chain.redraw[i] else "")
                for i, v in enumerate(chain.verdicts)]  # fmt: skip
        return Shown(pictures, captions, "each picture: first | final\n\n" + "  \n".join(said) + "\n\n" + table)

    def think(self, prompt: str, n: float, bands: float | None = None, seed: float = 0,
              report: Report = _quiet) -> Shown:  # fmt: skip
        """Think while drawing: per chain a picture of its bands with their thoughts and critiques, and the steps."""
        bundle = self.model(Task.THINK)
        prompt, n = self.limits.prompt(prompt), self.limits.count(n)
        bundle.encode_prompts([prompt])
        schedule = Bands.equal(bundle.cfg.grid[0], int(bands or bundle.cfg.bands))
        report(0.0, "thinking and drawing")
        chain = think_and_draw(bundle, [prompt] * n, schedule, seed=int(seed))
        captions, table = self._judged(chain.images, prompt)
        pictures, steps = [], []
        for i in range(n):
            line = chain.line(i)
            pictures.append(chain_picture(chain.images[i], schedule, line["thoughts"], line["critiques"],
                                          line["redrawn"]))  # fmt: skip
            for b, thought in enumerate(line["thoughts"]):
                critique = line["critiques"][b] if b < len(line["critiques"]) else ""
                again = " → drawn again" if line["redrawn"][b] else ""
                steps.append(f"{i}.{b + 1} *{thought}*" + (f" — {critique}{again}" if critique else ""))
        return Shown(pictures, captions, "  \n".join(steps) + "\n\n" + table)

    def render(self, prompt: str, kind: str, seed: float = 0) -> np.ndarray:
        """A world scene for a description, as a picture, a segmentation or an edge map, enlarged for the browser."""
        canvas = next(iter(self.bundles.values())).cfg.canvas
        return enlarge(render_prompt(self.limits.prompt(prompt, "description"), kind, canvas, int(seed)), SCALE)

    def condition(self, kind: str, picture: str | None, prompt: str, n: float, image_scale: float | None = None,
                  seed: float = 0, report: Report = _quiet) -> Shown:  # fmt: skip
        """A segmentation or an edge map and the scene's caption -> n images, each judged against the caption."""
        tasks = {"segmentation": Task.SEG2I, "edges": Task.EDGE2I}
        if kind not in tasks:
            raise InputError(f"unknown condition {kind!r}; expected segmentation or edges")
        bundle = self.model(tasks[kind])
        prompt, n = self.limits.prompt(prompt), self.limits.count(n)
        bundle.encode_prompts([prompt])
        shown = read_upload(picture, self.folder, bundle.cfg.canvas, self.limits, f"{kind} map")
        sampling = self._sampling(bundle, image_scale=image_scale)
        report(0.0, "drawing")
        drawn, _ = draw_images(bundle, [prompt] * n, sampling, seed=int(seed), conditions=shown[None].repeat(n, 0))
        captions, table = self._judged(drawn, prompt)
        return Shown(list(enlarge(drawn, SCALE)), captions, table)

    def edit(self, source: dict | str | None, text: str, n: float, seed: float = 0, report: Report = _quiet) -> Shown:
        """With a painted mask: redraw what is painted so the image shows `text` (a scene). Without: follow `text`
        as an edit instruction. The source first, then the edits."""
        background, layers = (source.get("background"), source.get("layers") or []) if isinstance(source, dict) \
            else (source, [])  # fmt: skip
        n, text = self.limits.count(n), self.limits.prompt(text, "instruction or scene")
        painted = self._painted(layers)
        bundle = self.model(Task.T2I if painted is not None else Task.INSTRUCT)
        picture = read_upload(background, self.folder, bundle.cfg.canvas, self.limits, "source image")
        report(0.0, "editing")
        if painted is not None:
            bundle.encode_prompts([text])
            painted = read_mask(painted, bundle.cfg.canvas)
            drawn = edit(bundle, picture, ~painted, text, n, seed=int(seed)).images
            captions, table = self._judged(drawn, text)
        else:
            instruction = parse_edit(text)
            conditions = picture[None].repeat(n, 0)
            drawn, _ = draw_images(bundle, [text] * n, seed=int(seed), conditions=conditions, instructions=True)
            before, *after = self.judge.read(np.concatenate([picture[None], drawn]))
            verdicts = [instruction_verdict(instruction, before, found, bundle.cfg.canvas) for found in after]
            marks = ["✓" if v == "holds" else "✗" for v in verdicts]
            captions = [f"{m} {seen(found)}: {v}" for m, v, found in zip(marks, verdicts, after, strict=True)]
            held = sum(v == "holds" for v in verdicts)
            table = f"**judge:** source: {seen(before)}; the instruction holds in {held} of {n}"
        pictures = [enlarge(p, SCALE) for p in (picture, *drawn)]
        return Shown(pictures, ["the source", *captions], table)

    def _painted(self, layers: list) -> np.ndarray | None:
        """The union of the brush layers' painted pixels as one (H, W) bool, or None when nothing is painted."""
        union = None
        for layer in layers:
            alpha = read_pixels(layer, self.folder, self.limits, "mask", alpha=True)[..., 3] > 0
            union = alpha if union is None else union | alpha
        return union if union is not None and union.any() else None

    def video(self, prompt: str, n: float, seed: float = 0, report: Report = _quiet) -> Shown:
        """Text to video: per clip a GIF and its frames in a row, judged frame by frame."""
        bundle = self.model(Task.T2V)
        prompt, n = self.limits.prompt(prompt), self.limits.count(n)
        clips = []
        for i in range(n):  # one at a time, to show progress
            report(i / n, f"drawing clip {i + 1} of {n}")
            clips.append(draw_videos(bundle, [prompt], seed=int(seed) + i)[0])
        shown = Shown()
        lines = ["| # | first frame | last frame | persists | moves as told |", "|---|---|---|---|---|"]
        for i, clip in enumerate(clips):
            scores = clip_scores(self.judge.read(clip), prompt, clip.shape[1])
            gif = self.folder / f"clip-{int(seed)}-{i}.gif"
            save_gif(enlarge(clip, SCALE), gif)
            shown.pictures += [gif, enlarge(grid(list(clip), cols=len(clip)), 2)]
            shown.captions += [f"{'✓' if scores['success'] else '✗'} clip {i}", f"the frames of clip {i}"]
            lines.append(f"| {i} | " + " | ".join(_mark(scores[k] == 1) for k in ("first", "last", "persist",
                                                                                   "motion")) + " |")  # fmt: skip
        shown.report = "\n".join(lines)
        return shown

    def read(self, picture: str | None, mode: str, text: str = "", report: Report = _quiet) -> str:
        """Ask the model about an image (`mode` ask: a question; caption; show: does it show the description `text`)
        and set its answer beside the judge's reading."""
        if mode not in READING_MODES:
            raise InputError(f"unknown reading {mode!r}; expected one of {', '.join(READING_MODES)}")
        task = {"ask": Task.QA, "caption": Task.CAPTION, "show": Task.JUDGE}[mode]
        question = CAPTION_QUESTION
        if mode != "caption":
            question = self.limits.prompt(text, "question" if mode == "ask" else "description")
            question = question if mode == "ask" else judge_question(question)
        bundle = self.model(task)
        bundle.encode_questions([question])  # a question outside the grammar fails here
        image = read_upload(picture, self.folder, bundle.cfg.canvas, self.limits)
        report(0.0, "reading")
        answer = ask(bundle, image[None], [question])[0]
        found = self.judge.read(image[None])[0]
        lines = [f"**the model:** {answer}", f"**the judge sees:** {seen(found)}"]
        if mode == "ask":
            try:
                lines.append(f"**the judge's answer:** {answer_question(parse_question(question), found)}")
            except ValueError as e:  # 'the circle' names no single object the judge sees
                lines.append(f"**the judge's answer:** none ({e})")
        elif mode == "show":
            rule, exact, why = prompt_verdict(found, text.strip())
            lines.append(f"**the judge's verdict:** {'yes' if rule else 'no'}" + (f" ({why})" if why else ""))
        return "  \n".join(lines)


def read_mask(painted: np.ndarray, canvas: int) -> np.ndarray:
    """A painted (H, W) bool at any size -> (canvas, canvas) bool: a pixel counts as painted when any of the
    source pixels it covers is."""
    rows = np.linspace(0, painted.shape[0], canvas + 1).astype(int)
    cols = np.linspace(0, painted.shape[1], canvas + 1).astype(int)
    return np.logical_or.reduceat(np.logical_or.reduceat(painted, rows[:-1], axis=0), cols[:-1], axis=1)
