"""Thoughts and critiques of thinking while generating, from the scene graph, and their parser.

A thought says what a horizontal band of the image holds, object by object: which part of it (whole, or the top,
middle or bottom of an object that crosses the band's edge), its size, colour and shape, and where across:

    band one of three , the top of a large red circle on the left and a small blue star in the centre
    band three of three , nothing

A critique scores a drawn band from 0 to 10, says what is wrong, and restates the thought the band is drawn again
from:

    score four of ten , missing a large red circle and extra a green square , band one of three , ...
    score ten of ten , fine , band one of three , ...
"""

from __future__ import annotations

from dataclasses import dataclass

from tessera.world.grammar import NUMBERS, Parser, PromptError
from tessera.world.language import join_clauses, noun_phrase
from tessera.world.scene import Object, Scene

PARTS = {"whole": "", "top": "the top of", "middle": "the middle of", "bottom": "the bottom of"}
PLACES = {"left": "on the left", "centre": "in the centre", "right": "on the right"}
MAX_SCORE = 10
MAX_BANDS = 8
REDRAW_BELOW = 6  # a band whose critique scores less than this is drawn again


@dataclass(frozen=True)
class BandObject:
    """An object's share of a band: which part of it lies there, its attributes, and where across the canvas."""

    part: str  # whole | top | middle | bottom
    shape: str
    colour: str
    size: str
    place: str  # left | centre | right

    def text(self) -> str:
        head = PARTS[self.part]
        phrase = noun_phrase((self.shape, self.colour, self.size))
        return " ".join(w for w in (head, phrase, PLACES[self.place]) if w)


@dataclass(frozen=True)
class Thought:
    band: int  # 0-based
    bands: int
    objects: tuple[BandObject, ...]

    def text(self) -> str:
        body = join_clauses([o.text() for o in self.objects]) if self.objects else "nothing"
        return f"band {NUMBERS[self.band + 1]} of {NUMBERS[self.bands]} , {body}"


@dataclass(frozen=True)
class Critique:
    score: int  # 0..MAX_SCORE
    missing: tuple[tuple[str, str, str], ...]  # (shape, colour, size) of objects the band lacks
    extra: tuple[tuple[str | None, str, str], ...]  # and of marks it should not hold (shape None: not a shape)
    thought: Thought  # the thought the band is drawn again from

    def text(self) -> str:
        problems = [f"missing {noun_phrase(d)}" for d in self.missing] + [f"extra {noun_phrase(d)}" for d in self.extra]
        said = " and ".join(problems) if problems else "fine"
        return f"score {NUMBERS[self.score]} of {NUMBERS[MAX_SCORE]} , {said} , {self.thought.text()}"


def place_of(x: float, canvas: int) -> str:
    """left | centre | right: the third of the canvas a centre x falls in."""
    return ("left", "centre", "right")[min(2, int(3 * x / canvas))]


def part_of(o: Object, top: float, bottom: float) -> str | None:
    """Which part of the object lies in the pixel rows [top, bottom): None when it does not reach them."""
    y1, y2 = o.box[1], o.box[3]
    if y2 <= top or y1 >= bottom:
        return None
    above, below = y1 < top, y2 > bottom
    return "middle" if above and below else "bottom" if above else "top" if below else "whole"


def band_thought(scene: Scene, band: int, edges: list[float]) -> Thought:
    """The thought of band `band` whose pixel rows are [edges[band], edges[band + 1]): its objects left to right."""
    held = []
    for o in sorted(scene.objects, key=lambda o: o.x):
        part = part_of(o, edges[band], edges[band + 1])
        if part is not None:
            held.append(BandObject(part, o.shape, o.colour, o.size, place_of(o.x, scene.canvas)))
    return Thought(band, len(edges) - 1, tuple(held))


class _ThoughtParser(Parser):
    def number(self, low: int, high: int) -> int:
        tok = self.peek()
        if tok not in NUMBERS or not low <= NUMBERS.index(tok) <= high:
            raise PromptError(f"expected a number from {NUMBERS[low]} to {NUMBERS[high]} {self.where()}")
        self.i += 1
        return NUMBERS.index(tok)

    def thought(self) -> Thought:
        self.expect("band")
        band = self.number(1, MAX_BANDS)
        self.expect("of")
        bands = self.number(1, MAX_BANDS)
        if band > bands:
            raise PromptError(f"band {NUMBERS[band]} of {NUMBERS[bands]} does not exist")
        self.expect(",")
        objects = []
        if not self.accept("nothing"):
            while True:
                objects.append(self.band_object())
                if not (self.accept(",") or self.accept("and")):
                    break
        return Thought(band - 1, bands, tuple(objects))

    def band_object(self) -> BandObject:
        part = next((p for p, phrase in PARTS.items() if phrase and self.accept(phrase)), "whole")
        spec = self.np()
        if spec.count != 1 or None in (spec.shape, spec.colour, spec.size) or spec.motion:
            raise PromptError(f"a thought names one object by size, colour and shape {self.where()}")
        place = next((p for p, phrase in PLACES.items() if self.accept(phrase)), None)
        if place is None:
            raise PromptError(f"expected on the left, in the centre or on the right {self.where()}")
        return BandObject(part, spec.shape, spec.colour, spec.size, place)

    def critique(self) -> Critique:
        self.expect("score")
        score = self.number(0, MAX_SCORE)
        self.expect(f"of {NUMBERS[MAX_SCORE]}")
        self.expect(",")
        missing, extra = [], []
        if not self.accept("fine"):
            while True:
                kind = "missing" if self.accept("missing") else "extra" if self.accept("extra") else None
                if kind is None:
                    raise PromptError(f"expected fine, missing or extra {self.where()}")
                spec = self.np()
                if spec.count != 1 or None in (spec.colour, spec.size) or (kind == "missing" and spec.shape is None):
                    raise PromptError(f"a critique names one object by size, colour and shape {self.where()}")
                (missing if kind == "missing" else extra).append((spec.shape, spec.colour, spec.size))
                if not self.accept("and"):
                    break
        self.expect(",")
        return Critique(score, tuple(missing), tuple(extra), self.thought())


def parse_thought(text: str) -> Thought:
    """The band and objects a thought states; PromptError naming what is wrong."""
    parser = _ThoughtParser(text)
    thought = parser.thought()
    parser.done()
    return thought


def parse_critique(text: str) -> Critique:
    """The score, problems and revised thought a critique states; PromptError naming what is wrong."""
    parser = _ThoughtParser(text)
    critique = parser.critique()
    parser.done()
    return critique
