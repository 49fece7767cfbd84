"""The judge's verdict beside every picture the app draws: what it sees, and whether the request holds."""

from __future__ import annotations

import math
from collections.abc import Sequence

from tessera.eval.edits import PLACE_TOLERANCE
from tessera.eval.judge import CLUTTER, Detection
from tessera.eval.shapes_eval import score, strict
from tessera.world.constraints import to_geneval
from tessera.world.grammar import Edit, parse_description
from tessera.world.scene import DIRECTIONS


def seen(found: Sequence[Detection]) -> str:
    """What the judge sees, in words: 'a small red circle, a large blue star, 2 marks that are not objects'."""
    objects = [f"a {d.size} {d.colour} {d.shape}" for d in found if d.shape != CLUTTER]
    marks = sum(d.shape == CLUTTER for d in found)
    if marks:
        objects.append("1 mark that is not an object" if marks == 1 else f"{marks} marks that are not objects")
    return ", ".join(objects) if objects else "nothing"


def prompt_verdict(found: Sequence[Detection], prompt: str) -> tuple[bool, bool, str]:
    """(GenEval's rule holds, the strict rule holds, why not) for an image drawn for `prompt`."""
    constraints = parse_description(prompt)
    tag = "counting" if any(s.count > 1 for s in constraints.objects) else "app"
    meta = to_geneval(constraints, tag, prompt)
    rule, why = score(found, meta)
    exact, why_not_exact = strict(found, meta)
    return rule, exact, why or why_not_exact


def _near(a: Detection, b: Detection, canvas: int) -> bool:
    return math.dist(a.centre, b.centre) <= PLACE_TOLERANCE * canvas


def instruction_verdict(edit: Edit, before: Sequence[Detection], after: Sequence[Detection], canvas: int) -> str:
    """Whether the judge reads `after` as `before` with exactly the instructed change: 'holds', or what breaks it.
    Objects are matched by shape, colour and place (within the edit metric's tolerance)."""
    marks = sum(d.shape == CLUTTER for d in after)
    if marks:
        return f"fails: {marks} marks that are not objects"
    before = [d for d in before if d.shape != CLUTTER]
    left = [d for d in after if d.shape != CLUTTER]
    target = None
    if edit.op != "add":
        referred = [d for d in before if edit.subject.accepts(d)]
        if len(referred) != 1:
            return f"cannot tell: the instruction refers to {len(referred)} objects the judge sees in the source"
        target = referred[0]
    for kept in (d for d in before if d is not target):
        same = [d for d in left if (d.shape, d.colour) == (kept.shape, kept.colour) and _near(d, kept, canvas)]
        if not same:
            return f"fails: the {kept.colour} {kept.shape} that should stay is gone or moved"
        left.remove(same[0])
    if edit.op == "remove":
        return "holds" if not left else f"fails: {seen(left)} not in the source"
    if len(left) != 1:
        return f"fails: {len(left)} changed objects where one is asked ({seen(left)})"
    new = left[0]
    if edit.op == "add":
        return "holds" if edit.subject.accepts(new) else f"fails: added {seen([new])}"
    if edit.op == "recolour":
        ok = (new.shape, new.colour) == (target.shape, edit.colour) and _near(new, target, canvas)
        return "holds" if ok else f"fails: {seen([new])} in place of a {edit.colour} {target.shape}"
    dx, dy = DIRECTIONS[edit.direction]
    moved_x, moved_y = new.centre[0] - target.centre[0], new.centre[1] - target.centre[1]
    along, across = moved_x * dx + moved_y * dy, abs(moved_x * dy) + abs(moved_y * dx)
    ok = (new.shape, new.colour) == (target.shape, target.colour) and along > across
    return "holds" if ok else f"fails: the {target.colour} {target.shape} did not move {edit.direction}"
