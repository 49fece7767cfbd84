"""What a sequence asks of the model. Every task is a layout of the one token stream (`sequence.layouts`)."""

from __future__ import annotations

from collections.abc import Iterable
from enum import StrEnum

from tessera.errors import ConfigError


class Task(StrEnum):
    T2I = "t2i"  # text (or a class name) -> image
    CAPTION = "caption"  # image -> a description of it
    QA = "qa"  # image + question -> one answer word
    JUDGE = "judge"  # image + "does this image show <prompt> ?" -> "yes" or "no , <reason>"
    INTROSPECT = "introspect"  # text -> image, a verdict on it, and the image again after "no" (Janus-Pro-R1)
    SEG2I = "seg2i"  # a segmentation map + the scene's caption -> image (OmniGen-AR)
    EDGE2I = "edge2i"  # an edge map + the scene's caption -> image
    INSTRUCT = "instruct"  # a source image + an edit instruction -> the edited image
    PREDICT = "predict"  # earlier frames of a clip -> the next frame
    T2V = "t2v"  # text naming objects and their motion -> a clip (its code frames in one stream)
    THINK = "think"  # text -> per band a thought, the band, a critique and (after a low score) the band again


READING = (Task.CAPTION, Task.QA, Task.JUDGE)  # image-to-text tasks
CONDITIONED = (Task.SEG2I, Task.EDGE2I, Task.INSTRUCT, Task.PREDICT)  # visual conditions (and text) -> image
MIXABLE = (Task.T2I, Task.T2V, Task.THINK, *READING, *CONDITIONED)  # tasks a training mixture draws from the world
# (not introspection chains: those come from a model's own samples)


def tasks(names: Iterable[str], allowed: Iterable[Task] = tuple(Task), where: str = "tasks") -> tuple[Task, ...]:
    """Names -> Tasks; ConfigError naming the first name that is not one of `allowed`."""
    allowed = tuple(allowed)
    out = []
    for name in names:
        if name not in allowed:
            raise ConfigError(f"{where}: unknown task {name!r}; expected some of {', '.join(allowed)}")
        out.append(Task(name))
    return tuple(out)


def reading(names: Iterable[str]) -> tuple[Task, ...]:
    """The image-to-text tasks among `names`, in READING order."""
    have = set(names)
    return tuple(t for t in READING if t in have)


def conditioned(names: Iterable[str]) -> tuple[Task, ...]:
    """The tasks among `names` that draw after a visual condition, in CONDITIONED order."""
    have = set(names)
    return tuple(t for t in CONDITIONED if t in have)
