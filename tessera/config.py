"""Dataclass configs: YAML presets and `key=value` overrides, with errors that name the key."""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

import yaml

from tessera.errors import UserError

C = TypeVar("C")


def _coerce(name: str, value: Any, kind: Any) -> Any:
    """Convert a YAML value to the field's type, or raise UserError naming the key."""
    origin = typing.get_origin(kind)
    if origin in (typing.Union, types.UnionType):
        options = [k for k in typing.get_args(kind) if k is not type(None)]
        if value is None:
            return None
        return _coerce(name, value, options[0])
    if origin in (tuple, list):
        if not isinstance(value, list | tuple):
            raise UserError(f"{name}: expected a list, got {value!r}")
        inner = typing.get_args(kind)[0]
        return origin(_coerce(name, v, inner) for v in value)
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise UserError(f"{name}: expected true or false, got {value!r}")
    if kind is float and isinstance(value, int | float | str) and not isinstance(value, bool):
        try:
            return float(value)  # YAML reads 3e-4 as a string
        except ValueError:
            pass
    if kind is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if kind is str and isinstance(value, str):
        return value
    raise UserError(f"{name}: expected {getattr(kind, '__name__', kind)}, got {value!r}")


def override(cfg: C, items: dict[str, Any]) -> C:
    """A copy of cfg with fields replaced; unknown keys and wrong types raise UserError."""
    hints = typing.get_type_hints(type(cfg))
    fields = {f.name for f in dataclasses.fields(cfg)}
    changes = {}
    for key, value in items.items():
        if key not in fields:
            raise UserError(f"unknown config key {key!r}; known keys: {', '.join(sorted(fields))}")
        changes[key] = _coerce(key, value, hints[key])
    return dataclasses.replace(cfg, **changes)


def parse_overrides(pairs: list[str]) -> dict[str, Any]:
    """['steps=100', 'lr=3e-4'] -> {'steps': 100, 'lr': 0.0003}; values are read as YAML."""
    out = {}
    for pair in pairs:
        key, sep, raw = pair.partition("=")
        if not sep or not key:
            raise UserError(f"expected key=value, got {pair!r}")
        try:
            out[key.strip()] = yaml.safe_load(raw)
        except yaml.YAMLError as e:
            raise UserError(f"{key}: cannot read value {raw!r}") from e
    return out


def load(cfg: C, path: str | Path | None = None, pairs: list[str] | None = None) -> C:
    """cfg updated from a YAML file (if given), then from key=value pairs."""
    if path is not None:
        try:
            data = yaml.safe_load(Path(path).read_text()) or {}
        except (OSError, yaml.YAMLError) as e:
            raise UserError(f"cannot read config {path}: {e.__class__.__name__}") from e
        if not isinstance(data, dict):
            raise UserError(f"config {path} must be a mapping of key: value")
        cfg = override(cfg, data)
    return override(cfg, parse_overrides(pairs or []))
