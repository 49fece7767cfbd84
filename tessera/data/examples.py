"""Training examples as (task, text, answer, image, condition): from the world, a folder of classes, or captions.

Sources: `shapes` (the world's prompts and captions, text-to-image; with `tasks` also captioning, questions and
judging of the world's scenes, any-to-image: a segmentation or edge map with the scene's caption, a source
image with an edit instruction, earlier frames; and text-to-video: a clip of objects moving as its caption
says), `shapes-classes` (one coloured shape, class-to-image), a folder of class sub-folders (class-to-image), or
a JSONL of {"image", "caption"} lines (text-to-image). Unreadable files are skipped and counted.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tessera.data.folders import IMAGE_EXTS, fit, listed
from tessera.data.prompts import held_keys, may_ask, may_train_on, prompt_pools, with_colours
from tessera.errors import ConfigError, InputError
from tessera.eval.conditions import ConditionCase
from tessera.eval.critique import band_critique, drawn_so_far
from tessera.eval.judge import Judge
from tessera.eval.shapes_eval import UNSEEN_PAIRS, strict
from tessera.eval.verdicts import truth, verdict
from tessera.pictures import load_image
from tessera.sequence.bands import Bands
from tessera.sequence.tasks import CONDITIONED, MIXABLE, Task, tasks
from tessera.text.tokenizers import WorldTokenizer, class_name
from tessera.world import language as lang
from tessera.world.constraints import Constraints, sample_scene_for, to_geneval
from tessera.world.grammar import parse_description, parse_question
from tessera.world.render import render_image, render_map, render_video
from tessera.world.scene import (
    VIDEO_FRAMES,
    Scene,
    add_motion,
    add_straight_motion,
    check_canvas,
    pick_pair,
    sample_scene,
)
from tessera.world.thoughts import MAX_BANDS, REDRAW_BELOW, band_thought

WORLD_SOURCES = ("shapes", "shapes-classes")
MAX_REFUSED = 1000  # world texts in a row too long for their slot: then no text fits, and waiting is a hang
PROMPT_WEIGHTS = ("category", "sqrt")  # how a training prompt's category is drawn (`category_weights`)


@dataclass
class DataConfig:
    source: str = "shapes"  # shapes | shapes-classes | a folder of class sub-folders | a captions .jsonl
    examples: int = 20000  # how many world examples to draw (user data: every readable file)
    canvas: int = 64
    text_len: int = 24  # text tokens per example, left-padded; longer texts are an error (world: redrawn)
    prompt_share: float = 0.8  # world: share of ShapesEval-style prompts (the rest: captions of random scenes)
    prompt_weights: str = "category"  # world: each prompt category alike, or "sqrt" of its training prompts' count
    prompt_colours: float = 0.0  # world: share of prompts whose uncoloured objects each get a colour half the time
    named_order: bool = False  # world: a prompt's objects, upper first, in the order it names them (no relations)
    bpe_vocab: int = 4096
    cache: str = "runs/cache"
    tasks: dict[str, float] = field(default_factory=lambda: {Task.T2I: 1.0})  # world: task -> share of examples
    question_len: int = 24  # reading tasks: question tokens (left-padded) and answer tokens
    answer_len: int = 24
    context_frames: int = 2  # predict: earlier frames given before the one drawn
    bands: int = 3  # think: bands per image, as equal as the grid's rows allow
    thought_len: int = 40  # think: tokens of a thought or a critique (a longer one is redrawn)
    draft_share: float = 0.5  # think: share of chains whose one band is first drawn wrong, critiqued and redrawn
    drafts_from: str = ""  # think: a model checkpoint whose own drawings give the wrong bands (else: edited scenes)
    hold_out: list[str] = field(default_factory=list)  # world: descriptions no text may say (beside the project's)

    def validate(self) -> None:
        path = Path(self.source)
        user_data = path.is_dir() or (path.is_file() and path.suffix == ".jsonl")
        if self.source not in WORLD_SOURCES and not user_data:
            expected = "expected shapes, shapes-classes, a folder or a .jsonl file"
            raise ConfigError(f"data source {self.source!r}: {expected}")
        if not 2 <= self.context_frames < VIDEO_FRAMES:
            raise ConfigError(f"data.context_frames must lie in [2, {VIDEO_FRAMES - 1}], got {self.context_frames}")
        for name in ("examples", "text_len", "question_len", "answer_len", "bpe_vocab", "thought_len"):
            if getattr(self, name) < 1:
                raise ConfigError(f"data.{name} must be >= 1, got {getattr(self, name)}")
        if self.prompt_weights not in PROMPT_WEIGHTS:
            raise ConfigError(
                f"data.prompt_weights must be one of {', '.join(PROMPT_WEIGHTS)}, got {self.prompt_weights!r}"
            )
        for name in ("prompt_share", "prompt_colours", "draft_share"):
            if not 0 <= getattr(self, name) <= 1:
                raise ConfigError(f"data.{name} must lie in [0, 1], got {getattr(self, name)}")
        if not 1 <= self.bands <= MAX_BANDS:
            raise ConfigError(f"data.bands must lie in [1, {MAX_BANDS}], got {self.bands}")
        tasks(self.tasks, MIXABLE, "data.tasks")
        if set(self.tasks) != {Task.T2I} and self.source != "shapes":
            raise ConfigError("reading and conditioned tasks need the world's scenes: data.source=shapes")
        if not self.tasks or min(self.tasks.values()) < 0 or sum(self.tasks.values()) <= 0:
            raise ConfigError("data.tasks needs positive shares")
        if self.drafts_from and Task.THINK not in self.tasks:
            raise ConfigError("data.drafts_from gives thinking chains their drafts: add think to data.tasks")
        self.held_keys()

    def held_keys(self) -> frozenset[tuple]:
        """`hold_out`'s description keys; ConfigError on a text the grammar does not read, or one that leaves a
        category with no training prompt."""
        try:
            keys = held_keys(self.hold_out)
        except InputError as e:
            raise ConfigError(f"data.hold_out: {e}") from e
        if empty := [c for c, pool in prompt_pools(keys)[0].items() if not pool]:
            raise ConfigError(f"data.hold_out leaves no training prompt of {empty[0]}")
        return keys


@dataclass(frozen=True)
class Chain:
    """A thinking chain's texts: per band its thought and its critique; `draft`: the band first drawn wrong (from
    the example's draft image), critiqued low and drawn again, or -1."""

    thoughts: tuple[str, ...]
    critiques: tuple[str, ...]
    draft: int = -1


Example = tuple[str, str, str | Chain, np.ndarray, np.ndarray | None]
# (task, text, answer, uint8 image, uint8 condition picture(s) or None); text-to-image examples have no answer,
# text-to-video ones give the first frame as the image and the whole clip (T, H, W, 3) in the picture's place;
# thinking ones give their chain as the answer and a draft image (one band of it wrong) as the picture, if any


def category_weights(pools: dict[str, list[str]], weights: str) -> np.ndarray:
    """How often each prompt category is drawn: alike, or by the square root of its prompts' count (so a small
    category's few prompts are not each seen far more often than a large one's)."""
    sizes = np.array([len(pools[c]) for c in lang.CATEGORIES], float)
    w = np.ones_like(sizes) if weights == "category" else np.sqrt(sizes)
    return w / w.sum()


def world_text(
    rng: np.random.Generator,
    canvas: int,
    prompt_share: float,
    hold_out: frozenset[tuple] = frozenset(),
    prompt_weights: str = "category",
    prompt_colours: float = 0.0,
    named_order: bool = False,
):
    """One (text, scene) pair: a training prompt (`prompts.prompt_pools`, its category drawn by `prompt_weights`;
    with `prompt_colours`, its objects coloured by `prompts.with_colours`) with a scene holding just what it names
    (with `named_order`, drawn by `scene_in_named_order`), or a random scene with its full caption (never one that
    says what a held-out prompt, or `hold_out`, says)."""
    if rng.random() < prompt_share:
        pools = prompt_pools(hold_out)[0]
        if prompt_weights == "category":  # the draw as it always was, so seeded streams stay as they were
            pool = pools[lang.CATEGORIES[rng.integers(len(lang.CATEGORIES))]]
        else:
            pool = pools[lang.CATEGORIES[rng.choice(len(lang.CATEGORIES), p=category_weights(pools, prompt_weights))]]
        text = pool[rng.integers(len(pool))]
        if prompt_colours and rng.random() < prompt_colours:
            text = with_colours(text, rng, hold_out)
        described = parse_description(text)
        if named_order:
            return text, scene_in_named_order(described, rng, canvas)
        return text, sample_scene_for(described, rng, canvas, avoid=UNSEEN_PAIRS)
    return described_scene(rng, canvas, hold_out)


def scene_in_named_order(described: Constraints, rng: np.random.Generator, canvas: int, tries: int = 50) -> Scene:
    """A scene for a description whose objects, taken upper first (by their boxes' tops, the order a raster draws
    them in), come in the order it names them, so the words say which object is drawn first; a description with
    relations fixes its own layout and is drawn as it is."""
    named = [i for i, spec in enumerate(described.objects) for _ in range(spec.count)]  # spec of each scene object
    for _ in range(1 if described.relations else tries):
        scene = sample_scene_for(described, rng, canvas, avoid=UNSEEN_PAIRS)
        upper_first = sorted(range(len(named)), key=lambda k: scene.objects[k].box[1])
        if [named[k] for k in upper_first] == sorted(named):
            break
    return scene


def described_scene(rng: np.random.Generator, canvas: int, hold_out: frozenset[tuple] = frozenset()):
    """A random training scene and its whole caption (partial ones would teach drawing unasked objects)."""
    while True:
        scene = sample_scene(rng, canvas, avoid=UNSEEN_PAIRS)
        text = lang.caption(scene, rng)
        if may_train_on(text, hold_out):
            return text, scene


MAX_VIDEO_OBJECTS = 3  # objects in a training clip: more would not fit a caption that names each one's motion


def video_text(rng: np.random.Generator, canvas: int) -> tuple[str, Scene]:
    """A training clip's caption and scene: one to MAX_VIDEO_OBJECTS objects, each moving in a straight line,
    named with its direction; never one that says what a text-to-video evaluation prompt says."""
    while True:
        n = int(rng.integers(1, MAX_VIDEO_OBJECTS + 1))
        scene = add_straight_motion(sample_scene(rng, canvas, n, avoid=UNSEEN_PAIRS), rng)
        if scene is None:
            continue
        text = lang.video_caption(scene, rng)
        if may_train_on(text):
            return text, scene


def thinking_example(
    rng: np.random.Generator,
    canvas: int,
    bands: Bands,
    judge: Judge,
    prompt_share: float,
    draft_share: float,
    own: tuple[str, np.ndarray] | None = None,
    hold_out: frozenset[tuple] = frozenset(),
) -> tuple[str, Scene, Chain, np.ndarray | None]:
    """(prompt, scene, chain, draft image or None): a training text and its scene (`world_text`), the thought of
    each band from the scene, and each band's critique from the judge on the image drawn so far. With
    `draft_share`, one band is first drawn from an edited scene (an object recoloured, moved, added or removed):
    kept when its critique scores below REDRAW_BELOW, so the chain critiques it and draws the band again. With
    `own` (a model's prompt and its drawing), the prompt is that prompt and, unless the drawing reads exactly as
    the prompt (the strict rule), the draft is the first band of the drawing that reads wrong against the chain's
    scene and thoughts (TwiG's traces from the model's own judged samples)."""
    if own is None:
        text, scene = world_text(rng, canvas, prompt_share, hold_out)
    else:
        text, scene = own[0], sample_scene_for(parse_description(own[0]), rng, canvas, avoid=UNSEEN_PAIRS)
    rows = sum(bands.heights)
    edges = [canvas * bands.rows(b).start / rows for b in range(len(bands))] + [float(canvas)]
    thoughts = [band_thought(scene, b, edges) for b in range(len(bands))]
    image = render_image(scene)

    def with_band(wrong: np.ndarray, band: int) -> np.ndarray:
        mixed = image.copy()
        rows = slice(math.ceil(edges[band]), math.ceil(edges[band + 1]))
        mixed[rows] = wrong[rows]
        return mixed

    drafts = []  # (band, the true image with that band drawn wrong): the candidates, first band first
    if own is not None:
        drafts = [(b, with_band(own[1], b)) for b in range(len(bands))]
    elif rng.random() < draft_share:
        try:
            _, edited = lang.edit_instruction(scene, rng)
        except ValueError:  # no edit applies
            edited = None
        if edited is not None and not any((o.shape, o.colour) in UNSEEN_PAIRS for o in edited.objects):
            top = min(o.box[1] for o in set(scene.objects) ^ set(edited.objects))
            band = next(k for k in range(len(bands)) if top < edges[k + 1])
            drafts = [(band, with_band(render_image(edited), band))]
    partial = [drawn_so_far(image, edges[b + 1]) for b in range(len(bands))]
    partial += [drawn_so_far(mixed, edges[b + 1]) for b, mixed in drafts]
    found = judge.read(np.stack(partial + ([own[1]] if own is not None else [])))  # every one at once
    if own is not None and strict(found[-1], to_geneval(parse_description(text), "", text))[0]:
        drafts = []  # the model drew its prompt right (in a layout of its own): nothing to critique
    critiques = [band_critique(found[b], scene, edges[b + 1], thoughts[b]) for b in range(len(bands))]
    draft, mixed = -1, None
    for (band, candidate), seen in zip(drafts, found[len(bands) : len(bands) + len(drafts)], strict=True):
        drafted = band_critique(seen, scene, edges[band + 1], thoughts[band])
        if drafted.score < REDRAW_BELOW:  # else the wrong drawing is not seen from this band: no draft
            critiques[band], draft, mixed = drafted, band, candidate
            break
    chain = Chain(tuple(t.text() for t in thoughts), tuple(c.text() for c in critiques), draft)
    return text, scene, chain, mixed


def understanding_example(
    task: str, rng: np.random.Generator, canvas: int, hold_out: frozenset[tuple] = frozenset(), kind: str | None = None
):
    """(question, answer, scene) for caption | qa (of question `kind` exactly, or any; naming no held-out
    description, see `may_ask`) | judge. Judging pairs a
    ShapesEval-style prompt with a scene drawn for it or for another prompt of its category; the answer is the
    verdict on the true scene."""
    if task == Task.JUDGE:
        category = lang.CATEGORIES[rng.integers(len(lang.CATEGORIES))]
        pool = prompt_pools(hold_out)[0][category]
        prompt, drawn = pool[rng.integers(len(pool))], pool[rng.integers(len(pool))]
        chosen = parse_description(prompt if rng.random() < 0.5 else drawn)
        scene = sample_scene_for(chosen, rng, canvas, avoid=UNSEEN_PAIRS)
        meta = to_geneval(parse_description(prompt), category, prompt)
        return lang.judge_question(prompt), verdict(truth(scene), meta), scene
    if task == Task.CAPTION:
        caption, scene = described_scene(rng, canvas, hold_out)
        return lang.CAPTION_QUESTION, caption, scene
    while True:  # a scene that can be asked a question of `kind`, and a question no held-out description is in
        scene = sample_scene(rng, canvas, avoid=UNSEEN_PAIRS)
        question, answer = lang.question_answer(scene, rng, kind, avoid=UNSEEN_PAIRS)
        asked = parse_question(question)
        if (kind is None or asked.kind == kind) and may_ask(asked, hold_out):
            return question, answer, scene


def conditioned_example(
    task: str,
    rng: np.random.Generator,
    canvas: int,
    op: str | None = None,
    context: int = 2,
    hold_out: frozenset[tuple] = frozenset(),
) -> tuple[str, Scene, np.ndarray, Scene]:
    """(text, the scene to draw, the condition picture, the scene it shows) for seg2i | edge2i | instruct |
    predict. A map comes with the scene's whole caption (the map gives shapes and places, the caption colours); a
    source image with an edit instruction (of kind `op`, or any), and the scene to draw is the edited one; for
    predict, `context` frames of a moving scene (K, H, W, 3) and no text, and the scene to draw is the next frame
    (the scene shown is the last given frame)."""
    if task == Task.PREDICT:
        moving = add_motion(sample_scene(rng, canvas, avoid=UNSEEN_PAIRS), rng)
        start = int(rng.integers(VIDEO_FRAMES - context))
        frames = np.stack([render_image(moving.at_frame(start + i)) for i in range(context)])
        return "", moving.at_frame(start + context), frames, moving.at_frame(start + context - 1)
    if task == Task.INSTRUCT:
        while True:
            scene = sample_scene(rng, canvas, avoid=UNSEEN_PAIRS)
            try:
                instruction, after = lang.edit_instruction(scene, rng, op)
            except ValueError:  # the edit does not apply to this scene
                continue
            if not any((o.shape, o.colour) in UNSEEN_PAIRS for o in after.objects):
                return instruction, after, render_image(scene), scene
    caption, scene = described_scene(rng, canvas, hold_out)
    return caption, scene, render_map(scene, "segmentation" if task == Task.SEG2I else "edges"), scene


def condition_cases(
    per_kind: int,
    canvas: int = 64,
    seed: int = 0,
    fits: Callable[[str], bool] = lambda text: True,
    tasks: tuple[str, ...] = CONDITIONED,
    context: int = 2,
) -> list[ConditionCase]:
    """per_kind cases of each map task, of each edit kind and of frame prediction (after `context` frames), drawn
    from the world with `seed` (training draws with its own), whose texts a model `fits`."""
    rng = np.random.default_rng(seed)
    cases = []
    for task in tasks:
        for kind in lang.EDIT_OPS if task == Task.INSTRUCT else (task,):
            made = 0
            while made < per_kind:
                op = kind if task == Task.INSTRUCT else None
                text, scene, picture, shown = conditioned_example(task, rng, canvas, op, context)
                if not text or fits(text):
                    cases.append(ConditionCase(task, kind, text, picture, scene, shown))
                    made += 1
    return cases


def _world(
    cfg: DataConfig, seed: int, rows: int | None, own: Iterator[tuple[str, np.ndarray]] | None = None
) -> Iterator[Example]:
    rng = np.random.default_rng(seed)
    tokenizer = WorldTokenizer()
    if Task.THINK in cfg.tasks:
        if rows is None:
            raise ConfigError("thinking examples need the visual tokenizer's grid rows to lay out their bands")
        bands, judge = Bands.equal(rows, cfg.bands), Judge.load()
    names, shares = list(cfg.tasks), np.array(list(cfg.tasks.values()), dtype=float)
    hold_out = cfg.held_keys()
    made, refused, shortest = 0, 0, {}  # texts in a row too long for their slot, and the shortest of each kind
    while made < cfg.examples:
        if refused >= MAX_REFUSED:
            seen = ", ".join(f"data.{name} is {limit}, the shortest seen {n}" for name, (n, limit) in shortest.items())
            raise ConfigError(f"no world text fits its token budget ({seen}): raise it")
        if cfg.source == "shapes-classes":
            shape, colour = pick_pair(None, None, rng, UNSEEN_PAIRS)
            text = f"{colour} {shape}"
            scene = sample_scene_for(parse_description(f"a {text}"), rng, cfg.canvas)
            made += 1
            yield Task.T2I, text, "", render_image(scene), None
            continue
        task = names[0] if len(names) == 1 else names[rng.choice(len(names), p=shares / shares.sum())]
        condition = None
        if task in (Task.T2I, Task.T2V):
            if task == Task.T2I:
                text, scene = world_text(
                    rng, cfg.canvas, cfg.prompt_share, hold_out, cfg.prompt_weights, cfg.prompt_colours, cfg.named_order
                )
            else:
                text, scene = video_text(rng, cfg.canvas)
                condition = render_video(scene)  # (T, H, W, 3): the clip to draw
            answer = ""
            lengths = {"text_len": (len(tokenizer.encode(text)), cfg.text_len)}
        elif task == Task.THINK:
            drawing = next(own) if own is not None and rng.random() < cfg.draft_share else None
            edited = cfg.draft_share if own is None else 0.0  # a model's own drawings replace edited scenes
            text, scene, answer, condition = thinking_example(
                rng, cfg.canvas, bands, judge, cfg.prompt_share, edited, drawing, hold_out
            )
            said = [len(tokenizer.encode(t)) for t in (*answer.thoughts, *answer.critiques)]
            lengths = {
                "text_len": (len(tokenizer.encode(text)), cfg.text_len),
                "thought_len": (max(said), cfg.thought_len),
            }
        elif task in CONDITIONED:
            (text, scene, condition, _), answer = (
                conditioned_example(task, rng, cfg.canvas, None, cfg.context_frames, hold_out),
                "",
            )
            lengths = {"text_len": (len(tokenizer.encode(text)) if text else 0, cfg.text_len)}
        else:
            text, answer, scene = understanding_example(task, rng, cfg.canvas, hold_out)
            lengths = {
                "question_len": (len(tokenizer.encode(text)), cfg.question_len),
                "answer_len": (len(tokenizer.encode(answer)), cfg.answer_len),
            }
        if any(n > limit for n, limit in lengths.values()):
            refused += 1
            for name, (n, limit) in lengths.items():
                shortest[name] = (min(n, shortest.get(name, (n, limit))[0]), limit)
            continue
        made, refused = made + 1, 0
        yield task, text, answer, render_image(scene), condition


def _folder(cfg: DataConfig, skipped: dict) -> Iterator[Example]:
    root = Path(cfg.source)
    classes = sorted(d for d in root.iterdir() if d.is_dir())
    for d in classes:
        paths, others = listed(d, IMAGE_EXTS)
        skipped.update(others)
        for path in paths:
            try:
                yield Task.T2I, class_name(d.name), "", fit(load_image(path), cfg.canvas), None
            except (OSError, ValueError) as e:
                skipped[str(path)] = e.__class__.__name__


def _jsonl(cfg: DataConfig, skipped: dict) -> Iterator[Example]:
    path = Path(cfg.source)
    for n, line in enumerate(path.read_text().splitlines(), 1):
        if not line.strip():
            continue
        try:
            item = json.loads(line)
            image, caption = path.parent / item["image"], str(item["caption"])
            if not caption.strip():
                raise ValueError("empty caption")
            yield Task.T2I, caption, "", fit(load_image(image), cfg.canvas), None
        except (OSError, ValueError, KeyError, TypeError) as e:
            skipped[f"{path}:{n}"] = f"{e.__class__.__name__}: {str(e)[:80]}"


def examples(
    cfg: DataConfig,
    seed: int,
    skipped: dict,
    rows: int | None = None,
    own: Iterator[tuple[str, np.ndarray]] | None = None,
) -> tuple[Iterator[Example], int | None]:
    """The examples' stream and its length if known; unreadable files are added to `skipped` on the way. `rows`:
    the visual tokenizer's grid rows, which thinking examples lay their bands on; `own`: (prompt, drawing) pairs
    of a model (`data.drafts_from`), the drafts of thinking chains."""
    if cfg.source in WORLD_SOURCES:
        check_canvas(cfg.canvas)
        return _world(cfg, seed, rows, own), cfg.examples
    path = Path(cfg.source)
    if path.is_dir():
        return _folder(cfg, skipped), None
    if path.is_file() and path.suffix == ".jsonl":
        return _jsonl(cfg, skipped), None
    raise ConfigError(f"data source {cfg.source!r}: expected shapes, shapes-classes, a folder or a .jsonl file")
