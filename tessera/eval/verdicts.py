"""A verdict in words on whether an image meets a prompt, from the objects read in it.

"yes" when the image meets the prompt by GenEval's rules, else "no , " and what its first failing clause sees
("no , there is no star", "no , the circle is blue", "no , the circle is not left of the star").
"""

from __future__ import annotations

from collections.abc import Sequence

from tessera.eval.judge import Detection
from tessera.eval.shapes_eval import ScoreConfig, check_clauses, group_by_class
from tessera.world.grammar import NUMBERS
from tessera.world.scene import Scene


def is_yes(verdict: str) -> bool:
    return verdict.split()[:1] == ["yes"]


def _plural(n: int, noun: str) -> str:
    if n == 0:
        return f"there is no {noun}"
    return f"there is one {noun}" if n == 1 else f"there are {NUMBERS[n]} {noun}s"


def verdict(detections: Sequence[Detection], meta: dict, cfg: ScoreConfig | None = None) -> str:
    """'yes', or 'no , <what the first failing clause sees>' in the world's words."""
    cfg = cfg or ScoreConfig()
    groups = group_by_class(detections, meta["tag"], cfg)
    include = meta.get("include", [])
    for i, (ok, _) in enumerate(check_clauses(detections, meta, cfg)):
        if ok:
            continue
        if i >= len(include):  # an exclude clause: too many of a class
            req = meta["exclude"][i - len(include)]
            return f"no , {_plural(len(groups.get(req['class'], [])), req['class'])}"
        req = include[i]
        cls, found = req["class"], groups.get(req["class"], [])[: req["count"]]
        if len(found) < req["count"]:
            return f"no , {_plural(len(found), cls)}"
        wrong = [d.colour for d in found if d.colour != req.get("color", d.colour)]
        if wrong:
            return f"no , the {cls} is {wrong[0]}"
        rel, target = req["position"]
        return f"no , the {cls} is not {rel} the {include[target]['class']}"
    return "yes"


def truth(scene: Scene) -> list[Detection]:
    """A scene's own objects as detections: what a perfect judge would read."""
    return [
        Detection(o.shape, o.colour, o.size, o.box, 1.0, (o.box[2] - o.box[0]) * (o.box[3] - o.box[1]))
        for o in scene.objects
    ]
