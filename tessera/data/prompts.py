"""Training prompts from the world's grammar, with ShapesEval's prompts and a second held-out set kept out of training.

In colors, position and color_attr the world has more distinct prompts than ShapesEval uses: those ShapesEval
uses are held out, and so is a second seeded set of the same size or smaller, to test that a gain carries over
to prompts RL never saw. single_object, two_object and counting have too few distinct prompts to hold any out.
"""

from __future__ import annotations

import numpy as np

from tessera.eval.shapes_eval import load_metadata
from tessera.world.constraints import to_geneval
from tessera.world.grammar import parse_description
from tessera.world.language import CATEGORIES, distinct_prompts

HELD_OUT = ("colors", "position", "color_attr")


def prompt_pools(seed: int = 0) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(training prompts, second held-out prompts) per category."""
    rng = np.random.default_rng(seed)
    benchmark = {m["prompt"] for m in load_metadata()}
    train, held = {}, {}
    for category in CATEGORIES:
        pool = distinct_prompts(category)
        if category not in HELD_OUT:
            train[category] = pool
            continue
        rest = [p for p in pool if p not in benchmark]
        rest = [rest[i] for i in rng.permutation(len(rest))]
        used = len({p for p in pool if p in benchmark})
        k = min(used, len(rest) // 2)
        held[category], train[category] = rest[:k], rest[k:]
    return train, held


def metadata_for(prompts: list[str], category: str) -> list[dict]:
    """GenEval metadata lines for prompts of one category."""
    return [to_geneval(parse_description(p), category, p) for p in prompts]


def sample_prompts(pools: dict[str, list[str]], n: int, rng: np.random.Generator) -> list[dict]:
    """n metadata lines, categories in turn from a random start, prompts at random within each."""
    start = int(rng.integers(len(CATEGORIES)))
    out = []
    for i in range(n):
        category = CATEGORIES[(start + i) % len(CATEGORIES)]
        pool = pools[category]
        out += metadata_for([pool[int(rng.integers(len(pool)))]], category)
    return out
