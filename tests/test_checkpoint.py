"""Checkpoint saves that stop anywhere: a complete checkpoint exists at every instant and resume finds it."""

import builtins
import contextlib
import io
import os
import shutil
from dataclasses import dataclass

import pytest
import torch

from tessera.engine import checkpoint
from tessera.errors import CheckpointError


@dataclass
class Toy:
    n: int = 0


class Crash(BaseException):
    """The process dies here (nothing catches it, as nothing catches a kill)."""


@contextlib.contextmanager
def crash_at(k: int | None, counted: list[int]):
    """Count the file operations that write or remove (`counted[0]`); the k-th of them never happens."""

    def counting(fn, writes=lambda *a, **kw: True):
        def wrapper(*args, **kwargs):
            if writes(*args, **kwargs):
                if counted[0] == k:
                    raise Crash
                counted[0] += 1
            return fn(*args, **kwargs)

        return wrapper

    def writing(file, mode="r", *args, **kwargs):
        return any(c in mode for c in "wax+")

    names = [(os, "rename"), (os, "replace"), (os, "unlink"), (os, "rmdir"), (os, "mkdir")]
    originals = [(m, n, getattr(m, n)) for m, n in names + [(builtins, "open"), (io, "open")]]
    with contextlib.ExitStack() as stack:
        stack.callback(lambda: [setattr(m, n, f) for m, n, f in originals])
        for module, name in names:
            setattr(module, name, counting(getattr(module, name)))
        builtins.open = io.open = counting(builtins.open, writing)
        yield


def save(folder, step: int) -> None:
    weights = {"w": torch.full((3,), float(step))}
    checkpoint.save(folder, "toy", {"n": 3}, weights, {"opt": {"step": step}}, {"step": step}, {"extra.txt": "x"})


def found_step(folder) -> int:
    """The step of the checkpoint a resume finds; it must be whole and self-consistent."""
    trainer, state = checkpoint.resumable(folder)
    weights = checkpoint.load_weights(folder)
    assert checkpoint.load_config(folder, "toy", Toy()) == Toy(n=3)
    assert trainer["opt"]["step"] == state["step"] and torch.equal(weights["w"], torch.full((3,), state["step"] * 1.0))
    return state["step"]


def test_a_save_stopped_between_any_two_file_operations_leaves_a_complete_checkpoint(tmp_path):
    counted = [0]
    with crash_at(None, counted):
        save(tmp_path / "probe" / "checkpoint", 1)
    first = counted[0]
    with crash_at(None, counted := [0]):
        save(tmp_path / "probe" / "checkpoint", 2)
    n = counted[0]  # the operations of a save over an existing checkpoint
    assert first >= 6 and n > first
    for k in range(n):
        folder = tmp_path / f"k{k}" / "checkpoint"
        save(folder, 1)
        with pytest.raises(Crash), crash_at(k, [0]):
            save(folder, 2)
        assert found_step(folder) in (1, 2), k
        for j in range(n):  # the next save stops too, anywhere
            with pytest.raises(Crash), crash_at(j, [0]):
                save(folder, 3)
            assert found_step(folder) in (1, 2, 3), (k, j)
        save(folder, 4)
        assert found_step(folder) == 4 and sorted(p.name for p in folder.parent.iterdir()) == ["checkpoint"]


def test_a_folder_that_is_not_a_checkpoint_is_never_replaced(tmp_path):
    mine = tmp_path / "photos"
    mine.mkdir()
    (mine / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a tessera checkpoint; refusing to replace it"):
        save(mine, 1)
    assert (mine / "holiday.jpg").exists() and not (tmp_path / "photos.tmp").exists()
    empty = tmp_path / "empty"
    empty.mkdir()
    save(empty, 1)
    assert found_step(empty) == 1


def test_a_corrupt_or_hostile_trainer_state_is_refused_in_one_line(tmp_path):
    folder = tmp_path / "checkpoint"
    save(folder, 1)
    (folder / "state.json").write_text("{not json")
    with pytest.raises(CheckpointError, match="state.json is corrupt"):
        checkpoint.resumable(folder)
    save(folder, 1)

    class Payload:
        def __reduce__(self):
            return (shutil.rmtree, (str(tmp_path),))

    torch.save({"opt": Payload()}, folder / "trainer.pt")
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        checkpoint.resumable(folder)
    assert tmp_path.exists()  # the payload never ran
    (folder / "trainer.pt").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="cannot be read safely"):
        checkpoint.resumable(folder)
