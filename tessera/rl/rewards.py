"""Verifiable rewards, by name: each maps (prompt metadata, images, texts) to one float per sample.

`shapes_eval` is the judge with GenEval's rules (1 if every clause holds), `shapes_eval_partial` the share of
clauses that hold, `format` a regular expression over generated text; `colour_share` (pixels near one palette
colour) and `brightness` (mean pixel value) are dense rewards for quick tests; `clip` is a model-based reward
(CLIP score from local open_clip weights, optional). More plug in through `register`.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence

import numpy as np

from tessera.errors import ConfigError, InputError
from tessera.eval.conditions import case_scores
from tessera.eval.judge import Judge
from tessera.eval.shapes_eval import asked, check_clauses, strict
from tessera.eval.verdicts import is_yes, truth
from tessera.sequence.tasks import Task
from tessera.understand.evaluate import caption_holds
from tessera.world.constraints import sample_scene_for
from tessera.world.grammar import ANSWERS, parse_description
from tessera.world.scene import PALETTE

Reward = Callable[[Sequence[dict], np.ndarray, Sequence[str]], np.ndarray]
FACTORIES: dict[str, Callable[..., Reward]] = {}
ANY_PROMPT = ("brightness", "colour_share", "clip")  # rewards that need no world metadata: any prompt will do


def register(name: str):
    """Decorator: a factory `(**options) -> Reward` under `name`."""

    def add(factory: Callable[..., Reward]) -> Callable[..., Reward]:
        FACTORIES[name] = factory
        return factory

    return add


def make_reward(name: str, **options) -> Reward:
    if name not in FACTORIES:
        raise ConfigError(f"unknown reward {name!r}; known rewards: {', '.join(sorted(FACTORIES))}")
    return FACTORIES[name](**options)


def _judged(one: Callable[[list, dict], float], judge=None) -> Reward:
    """A reward from a score of what the judge reads in one image against its prompt's metadata."""
    judge = judge or Judge.load()

    def reward(metadata: Sequence[dict], images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return np.array([one(found, m) for m, found in zip(metadata, judge.read(images), strict=True)], np.float32)

    return reward


def _clauses(found: list, meta: dict) -> list[bool]:
    return [ok for ok, _ in check_clauses(found, meta)]


@register("shapes_eval")
def shapes_eval(judge=None) -> Reward:
    """GenEval's rule: 1 when every clause holds. Clutter can satisfy it (it only asks that objects be there)."""
    return _judged(lambda found, meta: float(all(_clauses(found, meta))), judge)


@register("shapes_eval_partial")
def shapes_eval_partial(judge=None) -> Reward:
    """The share of GenEval's clauses that hold: dense, and as easy to game by drawing more as the rule itself."""
    return _judged(lambda found, meta: float(np.mean(_clauses(found, meta))), judge)


@register("strict")
def strict_reward(judge=None) -> Reward:
    """1 when the judge reads exactly the prompt's scene: nothing missing, nothing extra, no clutter, all clear."""
    return _judged(lambda found, meta: float(strict(found, meta)[0]), judge)


@register("shapes_eval_exact")
def shapes_eval_exact(judge=None, extras_power: float = 1.0) -> Reward:
    """Dense and not raised by drawing more, nor by drawing nothing: 1 when the strict rule holds, else 3/4 of the
    share of include clauses that hold (an exclude clause, "fewer than 4 stars", holds on an empty canvas), times
    (asked / max(asked, objects and marks read)) ** extras_power. Every object or mark beyond the asked ones costs."""

    def one(found: list, meta: dict) -> float:
        if strict(found, meta)[0]:
            return 1.0
        included = _clauses(found, meta)[: len(meta["include"])]  # (the exclude clauses follow)
        return 0.75 * float(np.mean(included)) * (asked(meta) / max(asked(meta), len(found))) ** extras_power

    return _judged(one, judge)


@register("shapes_eval_exact_sq")
def shapes_eval_exact_sq(judge=None) -> Reward:
    """shapes_eval_exact with the extras factor squared: one object too many costs more than one asked object
    missing (for two asked: both drawn beside an extra 0.33, one drawn alone 0.375)."""
    return shapes_eval_exact(judge, extras_power=2.0)


@register("format")
def format_reward(pattern: str = r".+") -> Reward:
    try:
        compiled = re.compile(pattern, re.DOTALL)
    except re.error as e:
        raise ConfigError(f"format reward: bad pattern {pattern!r} ({e})") from e

    def reward(metadata: Sequence[dict], images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return np.array([float(compiled.fullmatch(t) is not None) for t in texts], dtype=np.float32)

    return reward


@register("colour_share")
def colour_share(colour: str = "red", tolerance: int = 40) -> Reward:
    if colour not in PALETTE:
        raise ConfigError(f"colour_share: unknown colour {colour!r}; known: {', '.join(PALETTE)}")
    target = np.array(PALETTE[colour], dtype=np.int32)

    def reward(metadata: Sequence[dict], images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        near = np.abs(images.astype(np.int32) - target).max(axis=-1) <= tolerance  # (B, H, W)
        return near.mean(axis=(1, 2)).astype(np.float32)

    return reward


@register("brightness")
def brightness() -> Reward:
    """Mean pixel value in [0, 1]: dense and model-agnostic, for smoke tests of the RL loop."""

    def reward(metadata: Sequence[dict], images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return (images.reshape(len(images), -1).mean(axis=1) / 255).astype(np.float32)

    return reward


@register("answer")
def answer() -> Reward:
    """Reading: 1 when the written answer is right - the word for questions, the yes/no for verdicts (and 0.5 more
    for the reason), an exactly true caption. metadata carries task, truth and the scene."""

    def one(meta: dict, text: str) -> float:
        if meta["task"] == Task.QA:
            return float(text == meta["truth"])
        if meta["task"] == Task.CAPTION:
            return float(caption_holds(text, meta["scene"]))
        agree = is_yes(text) == is_yes(meta["truth"])
        return float(agree) * (0.5 + 0.5 * (text == meta["truth"]))

    return _per_answer(one)


@register("answer_format")
def answer_format() -> Reward:
    """Reading: 1 when the answer has its task's form (one answer word; 'yes' or 'no , <reason>'; a description
    in the grammar), whether or not it is right."""

    def one(meta: dict, text: str) -> float:
        if meta["task"] == Task.QA:
            return float(text in ANSWERS)
        if meta["task"] == Task.JUDGE:
            return float(text == "yes" or re.fullmatch(r"no , [a-z ]+", text) is not None)
        try:
            parse_description(text)
            return 1.0
        except InputError:
            return 0.0

    return _per_answer(one)


def _per_answer(one: Callable[[dict, str], float]) -> Reward:
    """A reward from a score of one (metadata, written text) pair."""

    def reward(metadata: Sequence[dict], images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return np.array([one(m, t) for m, t in zip(metadata, texts, strict=True)], dtype=np.float32)

    return reward


@register("cycle")
def cycle(reader=None, seed: int = 0) -> Reward:
    """Drawing: the model captions its own image (`reader`: images -> captions); the reward is the share of the
    prompt's clauses that hold in a scene drawn for the caption (0 when the caption is outside the grammar)."""
    if reader is None:
        raise ConfigError("the cycle reward needs a model that captions (it is given by the RL trainer)")

    rng = np.random.default_rng(seed)

    def one(meta: dict, caption: str, canvas: int) -> float:
        try:
            scene = sample_scene_for(parse_description(caption), rng, canvas)
        except (InputError, ValueError):
            return 0.0
        return float(np.mean([ok for ok, _ in check_clauses(truth(scene), meta)]))

    def reward(metadata: Sequence[dict], images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        captions = reader(images)
        return np.array([one(m, c, images.shape[1]) for m, c in zip(metadata, captions, strict=True)], np.float32)

    return reward


@register("clip")
def clip_score(model: str = "ViT-B-32", weights: str = "", device: str = "cpu") -> Reward:
    """Cosine similarity of image and prompt under a CLIP model from local open_clip weights (not installed by
    tessera: open_clip needs torchvision)."""
    if not weights:
        raise ConfigError("clip reward: give the path of local open_clip weights (weights=...)")
    try:
        import open_clip
    except ImportError:
        raise ConfigError("clip reward: open_clip is not installed (pip install open_clip_torch)") from None
    import torch
    from PIL import Image

    net, _, preprocess = open_clip.create_model_and_transforms(model, pretrained=weights, device=device)
    tokenize = open_clip.get_tokenizer(model)

    @torch.no_grad()
    def reward(metadata: Sequence[dict], images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        pixels = torch.stack([preprocess(Image.fromarray(im)) for im in images]).to(device)
        image = torch.nn.functional.normalize(net.encode_image(pixels), dim=-1)
        text = torch.nn.functional.normalize(net.encode_text(tokenize([m["prompt"] for m in metadata]).to(device)))
        return (image * text).sum(-1).float().cpu().numpy()

    return reward


@register("condition")
def condition_reward(judge=None) -> Reward:
    """Conditioned drawing (metadata with a "case"): each image's score against its case's truth
    (`eval.conditions.case_scores`: mIoU, edge F1, or the edited scene read exactly, with partial credit)."""
    judge = judge or Judge.load()

    def reward(metadata: Sequence[dict], images: np.ndarray, texts: Sequence[str]) -> np.ndarray:
        return case_scores(judge, [m["case"] for m in metadata], images)

    return reward


def parse_spec(spec: str) -> dict[str, float]:
    """'shapes_eval' or 'shapes_eval:1,format:0.5' -> {name: weight}; every name must be registered."""
    weights = {}
    for part in spec.split(","):
        name, _, weight = part.strip().partition(":")
        if name not in FACTORIES:
            raise ConfigError(f"unknown reward {name!r}; known rewards: {', '.join(sorted(FACTORIES))}")
        try:
            weights[name] = float(weight) if weight else 1.0
        except ValueError:
            raise ConfigError(f"reward {name!r}: weight {weight!r} is not a number") from None
    return weights


def combine(values: dict[str, np.ndarray], weights: dict[str, float]) -> np.ndarray:
    """The weighted sum of several rewards (one advantage for all; `grpo.advantages` per reward keeps them apart)."""
    missing = set(weights) - set(values)
    if missing:
        raise ValueError(f"no values for rewards {', '.join(sorted(missing))}")
    return sum(w * values[name] for name, w in weights.items())
