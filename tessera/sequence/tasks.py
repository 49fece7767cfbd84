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


READING = (Task.CAPTION, Task.QA, Task.JUDGE)  # image-to-text tasks
MIXABLE = (Task.T2I, *READING)  # tasks a training mixture draws from the world (chains come from a model's samples)


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
