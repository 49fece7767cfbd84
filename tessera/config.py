"""Dataclass configs: YAML presets and `key=value` overrides, with errors that name the key."""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from enum import Enum
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tessera.errors import ConfigError

C = TypeVar("C")


def _coerce(name: str, value: Any, kind: Any, current: Any = None) -> Any:
    """Convert a YAML value to the field's type, or raise ConfigError naming the key."""
    if dataclasses.is_dataclass(kind):
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping of its fields, got {value!r}")
        return override(current if current is not None else kind(), value, prefix=f"{name}.")
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None:
            return None
        return _coerce(name, value, options[0])
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{name}: expected a mapping, got {value!r}")
        key_kind, value_kind = typing.get_args(kind)
        return {_coerce(name, k, key_kind): _coerce(f"{name}.{k}", v, value_kind) for k, v in value.items()}
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise ConfigError(f"{name}: expected a list, got {value!r}")
        inner = typing.get_args(kind)[0]
        return origin(_coerce(name, v, inner) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{name}: expected true or false, got {value!r}")
    if kind is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)  # YAML reads 3e-4 as a string
        except ValueError:
            pass
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise ConfigError(f"{name}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


def override(cfg: C, items: dict[str, Any], prefix: str = "") -> C:
    """A copy of cfg with fields replaced; 'a.b' keys reach nested configs. Unknown keys and wrong types raise
    ConfigError naming the key."""
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name for f in dataclasses.fields(cfg)}
    nested: dict[str, Any] = {}
    for key, value in items.items():
        head, dot, rest = key.partition(".")
        if dot:
            given = nested.get(head, {})
            if not isinstance(given, dict):
                raise ConfigError(f"{prefix + head}: given both as a value and field by field")
            nested[head] = given | {rest: value}  # a new mapping: the caller's is never changed
        else:
            nested[head] = value
    changes = {}
    for key, value in nested.items():
        if key not in fields:
            raise ConfigError(f"unknown config key {prefix + key!r}; known keys: {', '.join(sorted(fields))}")
        changes[key] = _coerce(prefix + key, value, hints[key], getattr(cfg, key))
    return dataclasses.replace(cfg, **changes)


def to_dict(cfg: Any) -> dict:
    """A config as plain YAML-safe data (tuples become lists, enums their values), nested configs as mappings."""

    def plain(v):
        if isinstance(v, Enum):
            return v.value
        if isinstance(v, tuple | list):
            return [plain(x) for x in v]
        if isinstance(v, dict):
            return {plain(k): plain(x) for k, x in v.items()}
        return v

    return plain(dataclasses.asdict(cfg))


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """['steps=100', 'lr=3e-4'] -> {'steps': 100, 'lr': 0.0003}; values are read as YAML."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise ConfigError(f"expected key=value, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise ConfigError(f"{key}: cannot read value {raw!r}") from e
    return out


def load(
    cfg: C, path: str | Path | None = None, options: dict[str, Any] | None = None, pairs: list[str] | None = None
) -> C:
    """cfg updated from a YAML file (a preset, if given), then from options (a command's own flags, as 'a.b' keys),
    then from key=value pairs, which win."""
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise ConfigError(f"cannot read config {path}: {e.__class__.__name__}") from e
        if not isinstance(data, dict):
            raise ConfigError(f"config {path} must be a mapping of key: value")
        cfg = override(cfg, data)
    return override(cfg, (options or {}) | parse_overrides(pairs or []))


def at_least(cfg: Any, minimum: float, *names: str, prefix: str = "") -> None:
    """ConfigError naming the first of cfg's fields that is below `minimum` or not a number."""
    for name in names:
        value = getattr(cfg, name)
        if not value >= minimum:  # also false for NaN
            raise ConfigError(f"{prefix}{name} must be >= {minimum}, got {value}")


def within(cfg: Any, low: float, high: float, *names: str, prefix: str = "") -> None:
    """ConfigError naming the first of cfg's fields outside [low, high] (or not a number)."""
    for name in names:
        value = getattr(cfg, name)
        if not low <= value <= high:
            raise ConfigError(f"{prefix}{name} must lie in [{low}, {high}], got {value}")


def positive(cfg: Any, *names: str, prefix: str = "") -> None:
    """ConfigError naming the first of cfg's fields that is not a finite number > 0 (a rate, a temperature)."""
    for name in names:
        value = getattr(cfg, name)
        if not (value > 0 and math.isfinite(value)):
            raise ConfigError(f"{prefix}{name} must be a finite number > 0, got {value}")
