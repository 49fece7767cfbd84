"""What a text claims about a scene (objects, counts, relations); checking claims and drawing scenes that meet them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np

from tessera.errors import InputError
from tessera.world.scene import (
    SIZES,
    Pairs,
    Scene,
    add_straight_motion,
    check_canvas,
    make_object,
    pick_pair,
    place,
    relative_position,
)

RELATIONS = ("left of", "right of", "above", "below")
ROBUST_MARGIN = (
    0.2  # drawn scenes keep their relations under twice GenEval's margin, so a pixel of error can't flip them
)


class Thing(Protocol):
    """Anything with attributes and a box: a scene object or an object the judge read from an image."""

    shape: str
    colour: str
    size: str

    @property
    def box(self) -> tuple[float, float, float, float]: ...


@dataclass(frozen=True)
class ObjectSpec:
    """`count` objects with the given attributes (None: any). exact: the scene holds exactly `count` such objects.
    motion: in a video, the direction they move in (left, right, up, down); a still frame does not check it."""

    shape: str | None = None
    colour: str | None = None
    size: str | None = None
    count: int = 1
    exact: bool = False
    motion: str | None = None

    def accepts(self, thing: Thing) -> bool:
        """Whether the thing has these attributes; the motion too when the thing knows its own (a track)."""
        return (
            (self.shape is None or thing.shape == self.shape)
            and (self.colour is None or thing.colour == self.colour)
            and (self.size is None or thing.size == self.size)
            and (self.motion is None or getattr(thing, "motion", self.motion) == self.motion)
        )


@dataclass(frozen=True)
class RelationSpec:
    """Every object of spec `subject` lies `relation` every object of spec `target`."""

    subject: int
    relation: str
    target: int


@dataclass(frozen=True)
class Constraints:
    objects: tuple[ObjectSpec, ...]
    relations: tuple[RelationSpec, ...] = ()

    def holds(self, things: Sequence[Thing], exact: bool = False, margin: float = 0.1) -> bool:
        """True when distinct things can be assigned to every spec so that counts and relations hold.

        exact: the things are exactly those described (a full caption), none left over.
        """
        if any(s.exact and sum(s.accepts(t) for t in things) != s.count for s in self.objects):
            return False
        slots = [i for i, s in enumerate(self.objects) for _ in range(s.count)]
        if exact and len(slots) != len(things):
            return False
        return self._assign(things, slots, [], margin)

    def _assign(self, things: Sequence[Thing], slots: list[int], chosen: list[int], margin: float) -> bool:
        k = len(chosen)
        if k == len(slots):
            return self._relations_hold(things, slots, chosen, margin)
        spec = self.objects[slots[k]]
        # within one spec, take things in increasing index: combinations, not permutations
        start = chosen[-1] + 1 if k and slots[k - 1] == slots[k] else 0
        for j in range(start, len(things)):
            if j not in chosen and spec.accepts(things[j]) and self._assign(things, slots, [*chosen, j], margin):
                return True
        return False

    def _relations_hold(self, things, slots, chosen, margin) -> bool:
        groups: dict[int, list[int]] = {}
        for spec_index, j in zip(slots, chosen, strict=True):
            groups.setdefault(spec_index, []).append(j)
        return all(
            rel.relation in relative_position(things[a].box, things[b].box, margin)
            for rel in self.relations
            for a in groups[rel.subject]
            for b in groups[rel.target]
        )


def sample_scene_for(
    constraints: Constraints, rng: np.random.Generator, canvas: int = 64, tries: int = 500, avoid: Pairs = frozenset()
) -> Scene:
    """Draw a scene holding exactly the described objects, unspecified attributes at random (an unspecified colour
    never makes a (shape, colour) pair of `avoid`).

    Relations are kept with a safety margin. Raises InputError when no such scene can be drawn.
    """
    check_canvas(canvas)
    total = sum(s.count for s in constraints.objects)
    if total > 6:
        raise InputError(f"the text describes {total} objects; a scene holds at most 6")
    for _ in range(tries):
        objs = []
        for spec in constraints.objects:
            for _ in range(spec.count):
                shape, colour = pick_pair(spec.shape, spec.colour, rng, avoid)
                size = spec.size or SIZES[rng.integers(len(SIZES))]
                placed = place(make_object(shape, colour, size, canvas), objs, canvas, rng)
                if placed is None:
                    break
                objs.append(placed)
        if len(objs) == total and constraints.holds(objs, exact=True, margin=ROBUST_MARGIN):
            return Scene(canvas, tuple(objs))
    raise InputError(
        f"found no scene for the text in {tries} tries: its constraints contradict each other or do not fit "
        f"a {canvas}x{canvas} canvas"
    )


def moving_scene_for(
    constraints: Constraints, rng: np.random.Generator, canvas: int = 64, tries: int = 50, avoid: Pairs = frozenset()
) -> Scene:
    """A scene for the text (`sample_scene_for`) whose objects move as it says (at random where it is silent), in
    straight lines that stay on the canvas and clear of each other for a whole clip; InputError if none is found."""
    directions = [spec.motion for spec in constraints.objects for _ in range(spec.count)]
    for _ in range(tries):
        moving = add_straight_motion(sample_scene_for(constraints, rng, canvas, avoid=avoid), rng, directions)
        if moving is not None:
            return moving
    raise InputError(f"found no clip for the text in {tries} tries: its objects cannot move so on this canvas")


def to_geneval(constraints: Constraints, tag: str, prompt: str) -> dict:
    """GenEval metadata line: include (class, count, color, position) and, for exact counts, exclude count + 1.

    Relation targets are listed before their subjects, as GenEval's scorer needs.
    """
    targets = {r.target for r in constraints.relations}
    order = sorted(range(len(constraints.objects)), key=lambda i: i not in targets)
    new_index = {old: new for new, old in enumerate(order)}
    relation_of = {r.subject: r for r in constraints.relations}
    include, exclude = [], []
    for i in order:
        spec = constraints.objects[i]
        if spec.shape is None:
            raise ValueError("GenEval metadata needs a class for every object")
        item: dict = {"class": spec.shape, "count": spec.count}
        if spec.colour:
            item["color"] = spec.colour
        if i in relation_of:
            item["position"] = [relation_of[i].relation, new_index[relation_of[i].target]]
        include.append(item)
        if spec.exact and spec.colour is None and spec.size is None:
            exclude.append({"class": spec.shape, "count": spec.count + 1})
    line = {"tag": tag, "include": include}
    if exclude:
        line["exclude"] = exclude
    line["prompt"] = prompt
    return line


def from_geneval(meta: dict) -> Constraints:
    """Constraints of a GenEval metadata line (an exclude of count N + 1 makes an include of N exact)."""
    limits = {e["class"]: e["count"] for e in meta.get("exclude", [])}
    specs, relations = [], []
    for i, item in enumerate(meta["include"]):
        exact = limits.get(item["class"]) == item["count"] + 1
        specs.append(ObjectSpec(item["class"], item.get("color"), None, item["count"], exact))
        if "position" in item:
            relation, target = item["position"]
            relations.append(RelationSpec(i, relation, int(target)))
    return Constraints(tuple(specs), tuple(relations))
