from dataclasses import dataclass

import pytest

from tessera.config import load, override, parse_overrides
from tessera.errors import TesseraError


@dataclass
class Cfg:
    steps: int = 10
    lr: float = 1e-3
    name: str = "x"
    widths: tuple[int, ...] = (1, 2)
    ema: bool = False
    limit: int | None = None


def test_overrides_are_typed():
    cfg = load(Cfg(), pairs=["steps=20", "lr=3e-4", "widths=[4, 8]", "ema=true", "limit=5", "name=run"])
    assert cfg == Cfg(20, 3e-4, "run", (4, 8), True, 5)
    assert override(Cfg(), {"lr": 1}).lr == 1.0


@pytest.mark.parametrize(
    ("pair", "named"),
    [
        ("stpes=3", "'stpes'"),
        ("steps=abc", "steps"),
        ("steps=1.5", "steps"),
        ("lr=fast", "lr"),
        ("ema=3", "ema"),
        ("steps", "key=value"),
    ],
)
def test_bad_overrides_name_the_key(pair, named):
    with pytest.raises(TesseraError, match=named):
        load(Cfg(), pairs=[pair])


def test_yaml_file_then_options_then_pairs(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("steps: 7\nlr: 0.5\nname: y\n")
    assert load(Cfg(), path, pairs=["steps=9"]) == Cfg(steps=9, lr=0.5, name="y")
    assert load(Cfg(), path, {"name": "z", "steps": 8}, ["steps=9"]) == Cfg(steps=9, lr=0.5, name="z")
    path.write_text("- not a mapping\n")
    with pytest.raises(TesseraError, match="mapping"):
        load(Cfg(), path)
    assert parse_overrides([]) == {}


def test_enums_are_written_as_their_values():
    from tessera.config import to_dict
    from tessera.sequence.tasks import Task

    @dataclass
    class WithTasks:
        tasks: tuple[str, ...] = (Task.T2I, Task.QA)

    assert to_dict(WithTasks()) == {"tasks": ["t2i", "qa"]} and type(to_dict(WithTasks())["tasks"][0]) is str


def test_overrides_never_change_the_callers_mappings():
    @dataclass
    class Outer:
        inner: Cfg = None

    given = {"inner": {"steps": 3}}
    cfg = override(Outer(Cfg()), given | {"inner.lr": 0.5})
    assert cfg.inner == Cfg(steps=3, lr=0.5) and given == {"inner": {"steps": 3}}
