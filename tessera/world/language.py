"""Texts generated from scene graphs: captions, partial descriptions, GenEval-style prompts, QA pairs, edits,
the questions of the reading tasks, and every distinct prompt of each GenEval category.

Each generator builds its text from the objects it picked, so the text is true of the scene by construction;
the tests parse every text back with `tessera.world.grammar` and check it against the scene.
"""

from __future__ import annotations

import itertools
from dataclasses import replace

import numpy as np

from tessera.world.constraints import RELATIONS, Constraints
from tessera.world.grammar import (
    DIRECTIONS,
    MOTION_WORD,
    NUMBERS,
    PREFIXES,
    RELATION_PHRASES,
    SUFFIXES,
    parse_description,
    parse_question,
)
from tessera.world.scene import (
    COLOURS,
    SHAPES,
    SIZES,
    Object,
    Pairs,
    Scene,
    boxes_apart,
    direction_of,
    make_object,
    min_gap,
    pick_pair,
    place,
    relative_position,
)

CATEGORIES = ("single_object", "two_object", "counting", "colors", "position", "color_attr")
QUESTION_KINDS = ("count", "colour", "shape", "relation", "exists")
EDIT_OPS = ("recolour", "move", "add", "remove")
Description = tuple[str | None, str | None, str | None]  # (shape, colour, size); None leaves it out
CAPTION_QUESTION = "describe the image ."

_PHRASES_OF = {rel: [p for p, r in RELATION_PHRASES.items() if r == rel] for rel in RELATIONS}


def _choice(rng: np.random.Generator, items):
    return items[int(rng.integers(len(items)))]


def _article(word: str) -> str:
    return "an" if word[0] in "aeiou" else "a"


def noun_phrase(desc: Description, count: int = 1) -> str:
    """'a large red circle', 'two blue stars', 'one star', 'an orange object'."""
    shape, colour, size = desc
    noun = (shape or "object") + ("s" if count > 1 else "")
    words = " ".join(w for w in (size, colour, noun) if w)
    det = NUMBERS[count] if count > 1 else _article(words)
    return f"{det} {words}"


def describe(c: Constraints) -> str:
    """The world's prompt for parsed constraints of at most one relation: 'a red circle left of a square', 'two
    circles', 'a circle and a star' (every distinct prompt reads back as itself)."""
    phrases = [noun_phrase((s.shape, s.colour, s.size), s.count) for s in c.objects]
    if c.relations:
        (r,) = c.relations
        return f"{phrases[r.subject]} {r.relation} {phrases[r.target]}"
    return " and ".join(phrases)


def definite(desc: Description) -> str:
    shape, colour, size = desc
    return "the " + " ".join(w for w in (size, colour, shape or "object") if w)


def matches(desc: Description, o: Object) -> bool:
    shape, colour, size = desc
    return shape in (None, o.shape) and colour in (None, o.colour) and size in (None, o.size)


def distinct_prompts(category: str) -> list[str]:
    """Every distinct prompt of a category that the world can pose, in a fixed order."""
    pairs = [(a, b) for a, b in itertools.permutations(SHAPES, 2)]
    if category == "single_object":
        return [noun_phrase((s, None, None)) for s in SHAPES]
    if category == "two_object":
        return [f"{noun_phrase((a, None, None))} and {noun_phrase((b, None, None))}" for a, b in pairs]
    if category == "counting":
        return [noun_phrase((s, None, None), n) for s in SHAPES for n in (2, 3, 4)]
    if category == "colors":
        return [noun_phrase((s, c, None)) for s in SHAPES for c in COLOURS]
    if category == "position":
        rels = ("left of", "right of", "above", "below")
        return [f"{noun_phrase((a, None, None))} {r} {noun_phrase((b, None, None))}" for a, b in pairs for r in rels]
    if category == "color_attr":
        colour_pairs = list(itertools.permutations(COLOURS, 2))
        return [
            f"{noun_phrase((a, ca, None))} and {noun_phrase((b, cb, None))}"
            for a, b in pairs
            for ca, cb in colour_pairs
        ]
    raise ValueError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")


def judge_question(prompt: str) -> str:
    """The question that asks for a verdict on an image against a prompt."""
    return f"does this image show {prompt} ?"


def check_question(text: str) -> None:
    """PromptError unless the text is a reading task's question: the caption question, a judging question about
    a description in the grammar, or a question the grammar parses."""
    if text.strip() == CAPTION_QUESTION:
        return
    head, tail = "does this image show ", " ?"
    if text.startswith(head) and text.endswith(tail):
        parse_description(text[len(head) : -len(tail)])
    else:
        parse_question(text)


def join_clauses(clauses: list[str]) -> str:
    """'a', 'a and b', 'a, b and c'."""
    return clauses[0] if len(clauses) == 1 else ", ".join(clauses[:-1]) + " and " + clauses[-1]


def _frame(body: str, rng: np.random.Generator, p_prefix: float = 0.5, p_suffix: float = 0.2) -> str:
    if rng.random() < p_prefix:
        prefix = _choice(rng, PREFIXES)
        if prefix.startswith("there"):
            prefix = "there is" if body.split()[0] in ("a", "an") else "there are"
        body = f"{prefix} {body}"
    if rng.random() < p_suffix:
        body = f"{body} {_choice(rng, SUFFIXES)}"
    return body


def _relation_clause(a: Description, rel: str, b: Description, rng: np.random.Generator) -> str:
    return f"{noun_phrase(a)} {_choice(rng, _PHRASES_OF[rel])} {noun_phrase(b)}"


def caption(scene: Scene, rng: np.random.Generator) -> str:
    """A full caption naming every object once (exact counts), sometimes with sizes and one relation."""
    with_size = rng.random() < 0.5
    groups: dict[Description, list[Object]] = {}
    for o in scene.objects:
        groups.setdefault((o.shape, o.colour, o.size if with_size else None), []).append(o)
    keys = list(groups)
    rng.shuffle(keys)
    clauses, used = [], set()
    singles = [k for k in keys if len(groups[k]) == 1]
    pairs = [
        (a, b, rel)
        for a in singles
        for b in singles
        if a != b
        for rel in sorted(relative_position(groups[a][0].box, groups[b][0].box))
    ]
    if pairs and rng.random() < 0.5:
        a, b, rel = _choice(rng, pairs)
        clauses.append(_relation_clause(a, rel, b, rng))
        used = {a, b}
    clauses += [noun_phrase(k, len(groups[k])) for k in keys if k not in used]
    return _frame(join_clauses(clauses), rng)


def video_caption(scene: Scene, rng: np.random.Generator) -> str:
    """A full caption of a moving scene: every object once, each with the direction it moves in ('a red circle
    moving right and two small blue stars moving up'); objects must move along one axis."""
    with_size = rng.random() < 0.5
    groups: dict[tuple[Description, str], int] = {}
    for o in scene.objects:
        direction = direction_of(o)
        if direction is None:
            raise ValueError("a video caption needs every object moving along one axis")
        key = ((o.shape, o.colour, o.size if with_size else None), direction)
        groups[key] = groups.get(key, 0) + 1
    keys = list(groups)
    rng.shuffle(keys)
    return _frame(join_clauses([f"{noun_phrase(d, groups[d, m])} {MOTION_WORD} {m}" for d, m in keys]), rng)


def _random_description(o: Object, rng: np.random.Generator) -> Description:
    keep = rng.random(3) < (0.85, 0.5, 0.3)
    shape = o.shape if keep[0] else None
    colour = o.colour if keep[1] or shape is None else None
    return shape, colour, o.size if keep[2] else None


def partial_description(scene: Scene, rng: np.random.Generator) -> str:
    """Some of the objects, some of their attributes: true, but not the whole scene."""
    objs = list(scene.objects)
    order = rng.permutation(len(objs))[: int(rng.integers(1, len(objs) + 1))]
    clauses, taken = [], set()
    for i in order:
        if i in taken:
            continue
        desc = _random_description(objs[i], rng)
        hit = {j for j, o in enumerate(objs) if matches(desc, o)}
        if hit & taken:  # described sets stay disjoint, so every phrase can claim its own objects
            continue
        taken |= hit
        exact = len(hit) > 1 and rng.random() < 0.6
        clauses.append(noun_phrase(desc, len(hit)) if exact else noun_phrase(desc))
    return _frame(join_clauses(clauses), rng)


def prompt(scene: Scene, category: str, rng: np.random.Generator, framed: bool = True) -> str | None:
    """A GenEval-style prompt of one category that is true of the scene, or None if the scene has none."""
    objs = list(scene.objects)
    by_shape: dict[str, list[Object]] = {}
    for o in objs:
        by_shape.setdefault(o.shape, []).append(o)
    shapes = list(by_shape)
    alone = [o for o in objs if len(by_shape[o.shape]) == 1]  # GenEval reads colour and place of one per class
    if category == "single_object":
        body = noun_phrase((_choice(rng, shapes), None, None))
    elif category == "colors":
        if not alone:
            return None
        o = _choice(rng, alone)
        body = noun_phrase((o.shape, o.colour, None))
    elif category == "counting":
        many = [s for s in shapes if len(by_shape[s]) > 1]
        if not many:
            return None
        s = _choice(rng, many)
        body = noun_phrase((s, None, None), len(by_shape[s]))
    elif category in ("two_object", "color_attr", "position"):
        pool = objs if category == "two_object" else alone
        pairs = [(a, b) for a in pool for b in pool if a.shape != b.shape]
        if category == "position":
            pairs = [(a, b) for a, b in pairs if relative_position(a.box, b.box)]
        if not pairs:
            return None
        a, b = _choice(rng, pairs)
        if category == "two_object":
            body = f"{noun_phrase((a.shape, None, None))} and {noun_phrase((b.shape, None, None))}"
        elif category == "color_attr":
            body = f"{noun_phrase((a.shape, a.colour, None))} and {noun_phrase((b.shape, b.colour, None))}"
        else:
            rel = _choice(rng, sorted(relative_position(a.box, b.box)))
            body = _relation_clause((a.shape, None, None), rel, (b.shape, None, None), rng)
    else:
        raise ValueError(f"unknown category {category!r}; expected one of {', '.join(CATEGORIES)}")
    return _frame(body, rng, p_prefix=0.3, p_suffix=0.0) if framed else body


def unique_descriptions(o: Object, scene: Scene, colour: bool = True, shape: bool = True) -> list[Description]:
    """Descriptions (with 'the') that pick out o alone; colour/shape False leaves that attribute out."""
    out = []
    for s in (o.shape, None) if shape else (None,):
        for c in (None, o.colour) if colour else (None,):
            for z in (None, o.size):
                desc = (s, c, z)
                if (s or c or z) and sum(matches(desc, p) for p in scene.objects) == 1:
                    out.append(desc)
    return out


EXISTS_TRIES = 20  # descriptions tried for an absent object before a question about a present one


def question_answer(
    scene: Scene, rng: np.random.Generator, kind: str | None = None, avoid: Pairs = frozenset()
) -> tuple[str, str]:
    """A question about the scene and its one-word answer; no description in it names a (shape, colour) pair of
    `avoid` (the scene holds none of them either)."""
    kind = kind or _choice(rng, QUESTION_KINDS)
    objs = scene.objects
    if kind == "count":  # the answer drawn evenly from the counts a few descriptions give, so "one" is no rule
        by_count: dict[int, list[Description]] = {}
        for desc in [_random_description(_choice(rng, objs), rng) for _ in range(6)] + [_random_attrs(rng, avoid)]:
            by_count.setdefault(sum(matches(desc, o) for o in objs), []).append(desc)
        n = _choice(rng, sorted(by_count))
        desc = _choice(rng, by_count[n])
        noun = " ".join(w for w in (desc[2], desc[1], (desc[0] or "object") + "s") if w)
        return f"how many {noun} are there?", NUMBERS[n]
    if kind == "exists":  # the answer first; a "no" names a present object with one attribute changed, so the
        # descriptions of both answers are alike and the question's words do not give the answer away
        for _ in range(EXISTS_TRIES):
            desc = _random_description(_choice(rng, objs), rng)
            if rng.random() < 0.5:
                return f"is there {noun_phrase(desc)}?", "yes"
            missing = _altered(desc, rng, avoid)
            if not any(matches(missing, o) for o in objs):
                return f"is there {noun_phrase(missing)}?", "no"
        return f"is there {noun_phrase(desc)}?", "yes"
    if kind in ("colour", "shape"):
        options = [(o, d) for o in objs for d in unique_descriptions(o, scene, kind != "colour", kind != "shape")]
        if not options:
            return question_answer(scene, rng, "count", avoid)
        o, desc = _choice(rng, options)
        word = _choice(rng, ("colour", "color")) if kind == "colour" else "shape"
        return f"what {word} is {definite(desc)}?", o.colour if kind == "colour" else o.shape
    if kind == "relation":
        named = [(o, _choice(rng, ds)) for o in objs if (ds := unique_descriptions(o, scene))]
        if len(named) < 2:
            return question_answer(scene, rng, "exists", avoid)
        i, j = rng.choice(len(named), size=2, replace=False)
        (a, da), (b, db) = named[i], named[j]
        holds = relative_position(a.box, b.box)
        true_rels, false_rels = [r for r in RELATIONS if r in holds], [r for r in RELATIONS if r not in holds]
        want = bool(true_rels) and (rng.random() < 0.5 or not false_rels)  # "yes" about half the time
        rel = _choice(rng, true_rels if want else false_rels)
        phrase = _choice(rng, _PHRASES_OF[rel])
        return f"is {definite(da)} {phrase} {definite(db)}?", "yes" if want else "no"
    raise ValueError(f"unknown question kind {kind!r}; expected one of {', '.join(QUESTION_KINDS)}")


def _altered(desc: Description, rng: np.random.Generator, avoid: Pairs) -> Description:
    """The description with one of its named attributes given another value (never a pair of `avoid`)."""
    changes = [desc[:i] + (v,) + desc[i + 1 :] for i, values in enumerate((SHAPES, COLOURS, SIZES)) if desc[i]
               for v in values if v != desc[i]]  # fmt: skip
    return _choice(rng, [d for d in changes if (d[0], d[1]) not in avoid])


def _random_attrs(rng: np.random.Generator, avoid: Pairs) -> Description:
    if rng.random() < 0.6:
        return (*pick_pair(None, None, rng, avoid), None)
    return _choice(rng, SHAPES), None, None


def edit_instruction(scene: Scene, rng: np.random.Generator, op: str | None = None) -> tuple[str, Scene]:
    """An edit instruction and the scene after it: recolour, move, add or remove one object."""
    ops = [op] if op else list(rng.permutation(EDIT_OPS))
    for name in ops:
        made = _EDITS[name](scene, rng)
        if made is not None:
            return made
    if op is None:
        raise ValueError("no edit applies to this scene")
    raise ValueError(f"the {op!r} edit does not apply to this scene")


def _referent(scene: Scene, rng: np.random.Generator) -> tuple[int, Description] | None:
    options = [(i, d) for i, o in enumerate(scene.objects) for d in unique_descriptions(o, scene)]
    return _choice(rng, options) if options else None


def _swap(scene: Scene, i: int, new: Object | None) -> Scene:
    objs = list(scene.objects)
    if new is None:
        del objs[i]
    else:
        objs[i] = new
    return replace(scene, objects=tuple(objs))


def _recolour(scene: Scene, rng: np.random.Generator):
    ref = _referent(scene, rng)
    if ref is None:
        return None
    i, desc = ref
    colour = _choice(rng, [c for c in COLOURS if c != scene.objects[i].colour])
    text = _choice(
        rng,
        (
            f"make {definite(desc)} {colour}",
            f"paint {definite(desc)} {colour}",
            f"change the {_choice(rng, ('colour', 'color'))} of {definite(desc)} to {colour}",
        ),
    )
    return text, _swap(scene, i, replace(scene.objects[i], colour=colour))


def _move(scene: Scene, rng: np.random.Generator):
    ref = _referent(scene, rng)
    if ref is None:
        return None
    i, desc = ref
    o = scene.objects[i]
    others = [p for j, p in enumerate(scene.objects) if j != i]
    for direction in rng.permutation(list(DIRECTIONS)):
        dx, dy = DIRECTIONS[direction]
        step = rng.uniform(0.15, 0.35) * scene.canvas
        moved = replace(o, x=o.x + dx * step, y=o.y + dy * step)
        x1, y1, x2, y2 = moved.box
        inside = x1 >= 1 and y1 >= 1 and x2 <= scene.canvas - 1 and y2 <= scene.canvas - 1
        if inside and all(boxes_apart(moved, p, min_gap(scene.canvas)) for p in others):
            return f"move {definite(desc)} {direction}", _swap(scene, i, moved)
    return None


def _add(scene: Scene, rng: np.random.Generator):
    if len(scene.objects) >= 6:
        return None
    shape, colour, size = _choice(rng, SHAPES), _choice(rng, COLOURS), _choice(rng, SIZES)
    new = place(make_object(shape, colour, size, scene.canvas), list(scene.objects), scene.canvas, rng)
    if new is None:
        return None
    desc = (shape, colour if rng.random() < 0.8 else None, size if rng.random() < 0.5 else None)
    return f"add {noun_phrase(desc)}", replace(scene, objects=(*scene.objects, new))


def _remove(scene: Scene, rng: np.random.Generator):
    ref = _referent(scene, rng) if len(scene.objects) > 1 else None
    if ref is None:
        return None
    i, desc = ref
    return f"{_choice(rng, ('remove', 'delete'))} {definite(desc)}", _swap(scene, i, None)


_EDITS = {"recolour": _recolour, "move": _move, "add": _add, "remove": _remove}
