"""The world's grammar: parse descriptions, questions and edit instructions back into what they claim or ask."""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from tessera.errors import InputError
from tessera.world.constraints import Constraints, ObjectSpec, RelationSpec, Thing
from tessera.world.scene import COLOURS, DIRECTIONS, MAX_OBJECTS, SHAPES, SIZES, boxes_apart, relative_position

NUMBERS = (
    "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen sixteen "
    "seventeen eighteen nineteen twenty"
).split()
PREFIXES = (
    "a photo of",
    "an image of",
    "a picture of",
    "a drawing of",
    "an image with",
    "a picture with",
    "there is",
    "there are",
    "this image shows",
    "the picture shows",
)
SUFFIXES = ("on a grey background", "on a gray background")
RELATION_PHRASES = {
    "left of": "left of",
    "to the left of": "left of",
    "right of": "right of",
    "to the right of": "right of",
    "above": "above",
    "below": "below",
}
ANY_NOUNS = ("object", "shape")
PLURAL = {**{s + "s": s for s in SHAPES}, "objects": "object", "shapes": "shape"}
QUESTION_WORDS = ["how", "many", "are", "there", "what", "colour", "color", "is", "shape", "?"]
MOTION_WORD = "moving"  # "a red circle moving right": an object of a video and its direction
EDIT_WORDS = ["make", "paint", "change", "the", "colour", "color", "of", "to", "move", "add", "remove", "delete"]
THOUGHT_WORDS = ["band", "nothing", "score", "fine", "missing", "extra", "top", "middle", "bottom", "in", "centre"]
TASK_WORDS = ["describe", "image", "does", "this", "show", "not", "no", "yes"]  # captioning, judging, reasons
ANSWERS = ("yes", "no", *NUMBERS[: MAX_OBJECTS + 1], *COLOURS, *SHAPES)


def _phrase_words(*groups) -> set[str]:
    return {w for group in groups for phrase in group for w in phrase.split()}


VOCAB: tuple[str, ...] = tuple(
    sorted(
        _phrase_words(PREFIXES, SUFFIXES, RELATION_PHRASES, DIRECTIONS, ANSWERS)
        | set(NUMBERS)
        | set(SHAPES)
        | set(PLURAL)
        | set(ANY_NOUNS)
        | set(COLOURS)
        | set(SIZES)
        | set(QUESTION_WORDS)
        | set(EDIT_WORDS)
        | set(TASK_WORDS)
        | set(THOUGHT_WORDS)
        | {MOTION_WORD, "a", "an", "and", "the", ",", ".", "?"}
    )
)
_VOCAB_SET = set(VOCAB)


class PromptError(InputError):
    """A text outside the grammar; the message names the offending part."""


@dataclass(frozen=True)
class Question:
    """kind: count | colour | shape | relation | exists."""

    kind: str
    subject: ObjectSpec
    relation: str | None = None
    target: ObjectSpec | None = None


@dataclass(frozen=True)
class Edit:
    """op: recolour | move | add | remove; `subject` is the object referred to (or added)."""

    op: str
    subject: ObjectSpec
    colour: str | None = None
    direction: str | None = None


def tokenize(text: str) -> list[str]:
    """Lower-case words and punctuation; raises PromptError on an empty text or an unknown word."""
    if not text.strip():
        raise PromptError("empty prompt")
    bad = re.search(r"[^a-zA-Z0-9,.?\s]", text)
    if bad:
        raise PromptError(f"unexpected character {bad.group()!r}")
    tokens = re.findall(r"[a-z]+|[0-9]+|[,.?]", text.lower())
    for tok in tokens:
        if tok.isdigit():
            continue
        if tok not in _VOCAB_SET:
            raise PromptError(f"unknown word {tok!r}")
    return tokens


class Parser:
    """Recursive descent over the world's words: descriptions, questions and edits here; thoughts extend it."""

    def __init__(self, text: str):
        self.text = text
        self.toks = tokenize(text)
        self.i = 0

    # -- token helpers -------------------------------------------------------------------------
    def peek(self, k: int = 0) -> str | None:
        j = self.i + k
        return self.toks[j] if j < len(self.toks) else None

    def accept(self, phrase: str) -> bool:
        words = phrase.split()
        if self.toks[self.i : self.i + len(words)] == words:
            self.i += len(words)
            return True
        return False

    def accept_any(self, phrases) -> str | None:
        for p in sorted(phrases, key=lambda p: -len(p.split())):  # longest first
            if self.accept(p):
                return p
        return None

    def expect(self, phrase: str) -> None:
        if not self.accept(phrase):
            raise PromptError(f"expected {phrase!r} {self.where()}")

    def where(self) -> str:
        tok = self.peek()
        return "at the end" if tok is None else f"before {tok!r}"

    def done(self) -> None:
        self.accept(".") or self.accept("?")
        if self.peek() is not None:
            raise PromptError(f"unexpected {self.peek()!r}")

    # -- noun phrases --------------------------------------------------------------------------
    def count(self) -> tuple[int, bool]:
        tok = self.peek()
        if tok in ("a", "an"):
            self.i += 1
            return 1, False
        n = int(tok) if tok is not None and tok.isdigit() else NUMBERS.index(tok) if tok in NUMBERS else None
        if n is None:
            raise PromptError(f"expected 'a', 'an' or a number {self.where()}")
        if not 1 <= n <= MAX_OBJECTS:
            raise PromptError(f"count {tok!r} is out of range: a scene holds one to {NUMBERS[MAX_OBJECTS]} objects")
        self.i += 1
        return n, True

    def noun(self, plural: bool) -> str | None:
        tok = self.peek()
        singular = PLURAL.get(tok) if plural else tok
        if singular in SHAPES or singular in ANY_NOUNS:
            self.i += 1
            return singular if singular in SHAPES else None
        if tok in PLURAL or tok in SHAPES or tok in ANY_NOUNS:
            raise PromptError(f"{tok!r} should be {'plural' if plural else 'singular'} here")
        raise PromptError(f"expected a shape {self.where()}")

    def attributes(self, plural: bool) -> tuple[str | None, str | None, str | None]:
        size = self.peek() if self.peek() in SIZES else None
        self.i += size is not None
        colour = self.peek() if self.peek() in COLOURS else None
        self.i += colour is not None
        return self.noun(plural), colour, size

    def np(self) -> ObjectSpec:
        n, exact = self.count()
        shape, colour, size = self.attributes(plural=n > 1)
        return ObjectSpec(shape, colour, size, n, exact, self.motion())

    def motion(self) -> str | None:
        if not self.accept(MOTION_WORD):
            return None
        return self.direction()

    def direction(self) -> str:
        direction = self.peek()
        if direction not in DIRECTIONS:
            raise PromptError(f"expected left, right, up or down {self.where()}")
        self.i += 1
        return direction

    def definite_np(self) -> ObjectSpec:
        self.expect("the")
        shape, colour, size = self.attributes(plural=False)
        return ObjectSpec(shape, colour, size)

    def relation(self) -> str | None:
        phrase = self.accept_any(RELATION_PHRASES)
        return RELATION_PHRASES[phrase] if phrase else None

    # -- the three text forms ------------------------------------------------------------------
    def description(self) -> Constraints:
        self.accept_any(PREFIXES)
        specs: list[ObjectSpec] = []
        relations: list[RelationSpec] = []
        while True:
            specs.append(self.np())
            rel = self.relation()
            if rel:
                specs.append(self.np())
                relations.append(RelationSpec(len(specs) - 2, rel, len(specs) - 1))
            if self.accept_any(SUFFIXES) or self.peek() in (None, ".", "?"):
                break
            sep = self.accept(",")
            if not (self.accept("and") or sep):
                raise PromptError(f"expected ',' or 'and' {self.where()}")
        self.done()
        if sum(s.count for s in specs) > MAX_OBJECTS:
            raise PromptError(f"the text describes {sum(s.count for s in specs)} objects; a scene holds at most six")
        return Constraints(tuple(specs), tuple(relations))

    def question(self) -> Question:
        if self.accept("how many"):
            shape, colour, size = self.attributes(plural=True)
            self.expect("are there")
            q = Question("count", ObjectSpec(shape, colour, size))
        elif self.accept("what colour is") or self.accept("what color is"):
            q = Question("colour", self.definite_np())
        elif self.accept("what shape is"):
            q = Question("shape", self.definite_np())
        elif self.accept("is there") or self.accept("are there"):
            q = Question("exists", self.np())
        elif self.accept("is"):
            subject = self.definite_np()
            rel = self.relation()
            if rel is None:
                raise PromptError(f"expected a relation {self.where()}")
            q = Question("relation", subject, rel, self.definite_np())
        else:
            raise PromptError(f"not a question {self.where()}")
        self.done()
        return q

    def edit(self) -> Edit:
        if self.accept("make") or self.accept("paint"):
            subject = self.definite_np()
            e = Edit("recolour", subject, colour=self.colour())
        elif self.accept("change the colour of") or self.accept("change the color of"):
            subject = self.definite_np()
            self.expect("to")
            e = Edit("recolour", subject, colour=self.colour())
        elif self.accept("move"):
            subject = self.definite_np()
            e = Edit("move", subject, direction=self.direction())
        elif self.accept("add"):
            e = Edit("add", self.np())
        elif self.accept("remove") or self.accept("delete"):
            e = Edit("remove", self.definite_np())
        else:
            raise PromptError(f"not an edit instruction {self.where()}")
        self.done()
        return e

    def colour(self) -> str:
        tok = self.peek()
        if tok not in COLOURS:
            raise PromptError(f"expected a colour {self.where()}")
        self.i += 1
        return tok


def parse_description(text: str) -> Constraints:
    """Parse a prompt, caption or partial description into the constraints it states."""
    return Parser(text).description()


def parse_question(text: str) -> Question:
    return Parser(text).question()


def parse_edit(text: str) -> Edit:
    return Parser(text).edit()


def _the(spec: ObjectSpec, things: Sequence[Thing]) -> Thing:
    found = [t for t in things if spec.accepts(t)]
    if len(found) != 1:
        raise ValueError(f"'the' refers to {len(found)} objects")
    return found[0]


def answer_question(q: Question, things: Sequence[Thing]) -> str:
    """The true answer to a parsed question about these objects (a word of ANSWERS)."""
    if q.kind == "count":
        return NUMBERS[sum(q.subject.accepts(t) for t in things)]
    if q.kind == "colour":
        return _the(q.subject, things).colour
    if q.kind == "shape":
        return _the(q.subject, things).shape
    if q.kind == "exists":
        return "yes" if Constraints((q.subject,)).holds(things) else "no"
    a, b = _the(q.subject, things), _the(q.target, things)
    return "yes" if q.relation in relative_position(a.box, b.box) else "no"


def edit_holds(e: Edit, before: Sequence[Thing], after: Sequence[Thing]) -> bool:
    """Whether `after` is `before` with exactly the instructed change made to the one object referred to."""
    key = lambda t: (t.shape, t.colour, t.size, t.box)  # noqa: E731
    if e.op == "add":
        new = [t for t in after if key(t) not in {key(b) for b in before}]
        kept = len(after) == len(before) + 1 and len(new) == 1
        return kept and e.subject.accepts(new[0]) and all(boxes_apart(new[0], b) for b in before)
    target = _the(e.subject, before)
    rest = [key(t) for t in before if t is not target]
    if e.op == "remove":
        return sorted(map(key, after)) == sorted(rest)
    changed = [t for t in after if key(t) not in rest]
    if len(after) != len(before) or len(changed) != 1:
        return False
    new = changed[0]
    if e.op == "recolour":
        return (new.shape, new.size, new.box, new.colour) == (target.shape, target.size, target.box, e.colour)
    dx, dy = DIRECTIONS[e.direction]
    moved_x, moved_y = new.box[0] - target.box[0], new.box[1] - target.box[1]
    along = moved_x * dx + moved_y * dy
    across = abs(moved_x) * (1 - abs(dx)) + abs(moved_y) * (1 - abs(dy))
    same = (new.shape, new.colour, new.size) == (target.shape, target.colour, target.size)
    clear = all(boxes_apart(new, t) for t in after if t is not new)
    return same and along > 0 and across < 1e-6 and clear
