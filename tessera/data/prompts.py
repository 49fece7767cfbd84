"""What training may say: prompts from the world's grammar with every evaluation prompt kept out.

Kept out of every training text (prompts, captions, judging questions, RL and introspection prompts):
- ShapesEval's own prompts of colors, position and color_attr, where the world has more distinct prompts than
  the benchmark needs (single_object, two_object and counting have too few to hold any out: there the test is
  new seeds);
- a second held-out set of those categories, the same size or smaller, to test that a gain carries over;
- the compositional split: every text naming one of the colour-shape pairs no training scene holds
  (`shapes_eval.UNSEEN_PAIRS`);
- the text-to-video prompts (`video_prompts`): one or two objects, each moving one way.
The split is fixed (seed 0), whatever the seed of a run, so runs of different seeds never train on each other's
held-out prompts. A run may keep more descriptions out of its data's texts (`data.hold_out`), to measure on
prompts it has not seen without touching these (bench/recipe.py does).
"""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import numpy as np

from tessera.errors import InputError
from tessera.eval.shapes_eval import COMPOSITIONAL_PATH, UNSEEN_PAIRS, first_prompts, load_metadata
from tessera.world.constraints import Constraints, RelationSpec, to_geneval
from tessera.world.grammar import MOTION_WORD, Question, parse_description
from tessera.world.language import CATEGORIES, describe, distinct_prompts, noun_phrase
from tessera.world.scene import DIRECTIONS, pick_pair

HELD_OUT = ("colors", "position", "color_attr")
SPLIT_SEED = 0


def mentions_unseen(text: str) -> bool:
    """Whether a description names a colour-shape pair of the compositional split."""
    return any((s.shape, s.colour) in UNSEEN_PAIRS for s in parse_description(text).objects)


def description_key(text: str) -> tuple:
    """What a description asks for, whatever its wording or framing: its objects and relations."""
    return constraints_key(parse_description(text))


def constraints_key(c: Constraints) -> tuple:
    """The key of parsed constraints (see `description_key`)."""
    specs = [(s.shape or "", s.colour or "", s.size or "", s.count, s.motion or "") for s in c.objects]
    relations = sorted((specs[r.subject], r.relation, specs[r.target]) for r in c.relations)
    return tuple(sorted(specs)), tuple(relations)


@cache
def held_out_pools() -> dict[str, list[str]]:
    """The second held-out set per category: prompts of ShapesEval's held-out categories it does not use."""
    rng = np.random.default_rng(SPLIT_SEED)
    benchmark = {m["prompt"] for m in load_metadata()}
    held = {}
    for category in HELD_OUT:
        pool = distinct_prompts(category)
        rest = [p for p in pool if p not in benchmark]
        rest = [rest[i] for i in rng.permutation(len(rest))]
        held[category] = rest[: min(len({p for p in pool if p in benchmark}), len(rest) // 2)]
    return held


@cache
def kept_out() -> frozenset[tuple]:
    """The description keys no training text may have: ShapesEval's held-out categories, the second held-out
    set and the compositional split."""
    texts = [m["prompt"] for m in load_metadata() if m["tag"] in HELD_OUT]
    texts += [p for pool in held_out_pools().values() for p in pool]
    texts += [m["prompt"] for m in load_metadata(COMPOSITIONAL_PATH)]
    texts += video_prompts()
    return frozenset(description_key(t) for t in texts)


@cache
def video_prompts(singles: int = 16, pairs: int = 24) -> list[str]:
    """The text-to-video evaluation prompts, fixed: `singles` of one object and `pairs` of two different ones, each
    with a colour and a direction ('a red circle moving right and a blue square moving up'), no unseen pair."""
    rng = np.random.default_rng(SPLIT_SEED + 1)
    out: dict[tuple, str] = {}
    for n, want in ((1, singles), (2, pairs)):
        made = 0
        while made < want:
            objects = set()
            while len(objects) < n:
                objects.add(pick_pair(None, None, rng, UNSEEN_PAIRS))
            clauses = [
                f"{noun_phrase((shape, colour, None))} {MOTION_WORD} {list(DIRECTIONS)[rng.integers(len(DIRECTIONS))]}"
                for shape, colour in sorted(objects)
            ]
            text = " and ".join(clauses)
            if description_key(text) not in out:
                out[description_key(text)] = text
                made += 1
    return list(out.values())


def held_keys(texts: list[str]) -> frozenset[tuple]:
    """The description keys of a run's own held-out texts (`data.hold_out`)."""
    return frozenset(description_key(t) for t in texts)


def may_train_on(text: str, hold_out: frozenset[tuple] = frozenset()) -> bool:
    """Whether a description may be a training text: no held-out prompt in other words (the project's, or a run's
    own `hold_out` keys), no unseen pair."""
    key = description_key(text)
    return not mentions_unseen(text) and key not in kept_out() and key not in hold_out


def with_colours(text: str, rng: np.random.Generator, hold_out: frozenset[tuple] = frozenset()) -> str:
    """A training prompt whose objects without a colour each get one half the time ('a circle left of a square' ->
    'a red circle left of a square'), never a pair of the compositional split; the prompt itself where the new
    one says what a held-out prompt says."""
    c = parse_description(text)
    specs = [
        replace(s, colour=pick_pair(s.shape, None, rng, UNSEEN_PAIRS)[1]) if not s.colour and rng.random() < 0.5 else s
        for s in c.objects
    ]
    coloured = describe(replace(c, objects=tuple(specs)))
    return coloured if may_train_on(coloured, hold_out) else text


def may_ask(q: Question, hold_out: frozenset[tuple] = frozenset()) -> bool:
    """Whether a parsed reading question may be trained on: what it names ("is there a green star?": a green star;
    "is the circle left of the square?": a circle left of a square) is no held-out description. Its answer is left
    out of the rule: else "what colour is the star?" could never be answered "green", and its words would give that
    away."""
    relations = (RelationSpec(0, q.relation, 1),) if q.kind == "relation" else ()
    key = constraints_key(Constraints((q.subject, q.target) if relations else (q.subject,), relations))
    return key not in kept_out() and key not in hold_out


@cache
def prompt_pools(hold_out: frozenset[tuple] = frozenset()) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training prompts, second held-out prompts) per category; `hold_out`: a run's own keys kept out too."""
    train = {c: [p for p in distinct_prompts(c) if may_train_on(p, hold_out)] for c in CATEGORIES}
    return train, held_out_pools()


def metadata_for(prompts: list[str], category: str) -> list[dict]:
    """GenEval metadata lines for prompts of one category."""
    return [to_geneval(parse_description(p), category, p) for p in prompts]


SPLITS = ("shapes-eval", "held-out", "compositional")


def split_metadata(split: str, per_category: int = 0) -> list[dict]:
    """An evaluation split's prompts as GenEval metadata: ShapesEval, the second held-out set, or the compositional
    split (pairs no training scene holds); the first `per_category` of each category (0: all)."""
    if split == "shapes-eval":
        return first_prompts(per_category)
    if split == "held-out":
        return [m for c, pool in held_out_pools().items() for m in metadata_for(pool[: per_category or None], c)]
    if split == "compositional":
        meta = load_metadata(COMPOSITIONAL_PATH)
        return [m for c in CATEGORIES for m in [x for x in meta if x["tag"] == c][: per_category or None]]
    raise InputError(f"unknown split {split!r}; expected one of {', '.join(SPLITS)}")


def sample_prompts(
    pools: dict[str, list[str]], n: int, rng: np.random.Generator, weights: np.ndarray | None = None
) -> list[dict]:
    """n metadata lines: categories in turn from a random start, or drawn by `weights` (one per category of
    CATEGORIES); prompts at random within each."""
    if weights is None:
        start = int(rng.integers(len(CATEGORIES)))
        categories = [CATEGORIES[(start + i) % len(CATEGORIES)] for i in range(n)]
    else:
        categories = [CATEGORIES[i] for i in rng.choice(len(CATEGORIES), size=n, p=weights / weights.sum())]
    out = []
    for category in categories:
        pool = pools[category]
        out += metadata_for([pool[int(rng.integers(len(pool)))]], category)
    return out
