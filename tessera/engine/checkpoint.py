"""Checkpoint folders: config.yaml + model.safetensors (+ trainer.pt, state.json to resume), written atomically;
and atomic writes of single files.

A save writes a complete sibling folder (`<name>.tmp`, finished by a `.complete` mark), moves the current folder
aside (`<name>.old`) and the new one in, then removes the old one. A save can stop between any two of these
steps and a complete checkpoint still exists: `resolve` finds it, and the next save starts from it. Nothing is
unpickled: weights are safetensors, trainer state loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any, TypeVar

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tessera.config import override
from tessera.errors import CheckpointError, ConfigError

C = TypeVar("C")

COMPLETE = ".complete"  # the last file a save writes into its new folder: without it, the folder is torn


def write_atomically(path: str | Path, text: str) -> Path:
    """Write a text file so that it is always whole: a temporary name first, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


def _siblings(folder: Path) -> tuple[Path, Path]:
    return folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")


def _complete(folder: Path) -> bool:
    return (folder / COMPLETE).exists()


def _remove(folder: Path) -> None:
    """Delete a checkpoint copy, its completeness mark first: a half-deleted copy is never taken for whole."""
    (folder / COMPLETE).unlink(missing_ok=True)
    shutil.rmtree(folder, ignore_errors=True)


def is_checkpoint(folder: str | Path) -> bool:
    """A folder a tessera save wrote: its config.yaml names a kind."""
    try:
        config = yaml.safe_load((Path(folder) / "config.yaml").read_text())
    except (OSError, yaml.YAMLError):
        return False
    return isinstance(config, dict) and isinstance(config.get("kind"), str)


def resolve(folder: str | Path) -> Path:
    """The checkpoint to read: the folder, or, when a save stopped between its renames, its complete new copy
    (`.tmp`) or else its complete previous one (`.old`)."""
    folder = Path(folder)
    if folder.exists():
        return folder
    tmp, old = _siblings(folder)
    return next((copy for copy in (tmp, old) if _complete(copy)), folder)


def save(
    folder: str | Path,
    kind: str,
    config: dict,
    model: dict[str, torch.Tensor],
    trainer: dict[str, Any] | None = None,
    state: dict | None = None,
    files: dict[str, str | Path] | None = None,
) -> None:
    """Write a checkpoint of `kind` (tokenizer, model, ...); trainer: optimizer etc. state; state: JSON-able;
    files: extra entries, a text (str) or a file or folder to copy (Path). An existing folder is replaced only if
    it is a tessera checkpoint (or empty)."""
    folder = Path(folder)
    if folder.exists() and not is_checkpoint(folder) and (not folder.is_dir() or any(folder.iterdir())):
        raise CheckpointError(f"{folder} exists and is not a tessera checkpoint; refusing to replace it")
    tmp, old = _siblings(folder)
    found = resolve(folder)
    if found != folder:  # an earlier save stopped between its renames: its newest complete copy comes back first
        found.rename(folder)
    _remove(tmp)  # a torn copy, or one the folder already supersedes
    tmp.mkdir(parents=True)
    (tmp / "config.yaml").write_text(yaml.safe_dump({"kind": kind, **config}, sort_keys=False))
    save_file({k: v.detach().contiguous().cpu() for k, v in model.items()}, str(tmp / "model.safetensors"))
    if trainer is not None:
        torch.save(trainer, tmp / "trainer.pt")
    if state is not None:
        (tmp / "state.json").write_text(json.dumps(state, indent=1))
    for name, content in (files or {}).items():
        if isinstance(content, str):
            (tmp / name).write_text(content)
        elif Path(content).is_dir():
            shutil.copytree(content, tmp / name)
        else:
            shutil.copy2(content, tmp / name)
    (tmp / COMPLETE).write_text("")
    _remove(old)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    _remove(old)


def load_config(folder: str | Path, kind: str, default: C) -> C:
    """The checkpoint's config as `default`'s dataclass; CheckpointError if it is missing, unreadable, of another
    kind, or holds keys or values that config does not take."""
    folder = resolve(folder)
    path = folder / "config.yaml"
    if not path.is_file():
        raise CheckpointError(f"{folder} is not a tessera checkpoint (no config.yaml)")
    try:
        config = yaml.safe_load(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as e:
        raise CheckpointError(f"{path} is corrupt: not YAML") from e
    if not isinstance(config, dict) or config.get("kind") != kind:
        found = config.get("kind") if isinstance(config, dict) else None
        raise CheckpointError(f"{folder} is a {found or 'foreign'} checkpoint, not a {kind} checkpoint")
    config.pop("kind")
    try:
        return override(default, config)
    except ConfigError as e:
        raise CheckpointError(f"{path}: {e}") from e


def load_weights(folder: str | Path) -> dict[str, torch.Tensor]:
    folder = resolve(folder)
    path = folder / "model.safetensors"
    if not path.exists():
        raise CheckpointError(f"{folder} has no model.safetensors")
    try:
        return load_file(str(path))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{path} is corrupt: {str(e).splitlines()[0][:120]}") from e


def load_into(module: torch.nn.Module, weights: dict[str, torch.Tensor], where: str) -> None:
    """Load weights strictly; CheckpointError naming the first missing, unexpected or mis-shaped keys."""
    own = module.state_dict()
    missing = [k for k in own if k not in weights]
    extra = [k for k in weights if k not in own]
    shape = [k for k in own if k in weights and own[k].shape != weights[k].shape]
    if missing or extra or shape:
        parts = []
        for name, keys in (("missing", missing), ("unexpected", extra), ("mis-shaped", shape)):
            if keys:
                parts.append(f"{len(keys)} {name} (e.g. {', '.join(keys[:3])})")
        raise CheckpointError(f"{where} does not fit this architecture: " + "; ".join(parts))
    module.load_state_dict(weights)


def resumable(folder: str | Path) -> tuple[dict, dict] | None:
    """(trainer state, JSON state) of a checkpoint a run can continue from; None when there is none;
    CheckpointError when its trainer.pt or state.json cannot be read (it is never unpickled)."""
    folder = resolve(folder)
    if not (folder / "trainer.pt").exists() or not (folder / "state.json").exists():
        return None
    try:
        trainer = torch.load(folder / "trainer.pt", weights_only=True)
    except Exception as e:  # a corrupt file, or one holding anything but tensors and plain data
        reason = str(e).strip().splitlines()[0][:160] if str(e).strip() else type(e).__name__
        raise CheckpointError(f"{folder}/trainer.pt cannot be read safely: {reason}") from e
    try:
        state = json.loads((folder / "state.json").read_text())
    except (OSError, ValueError) as e:
        raise CheckpointError(f"{folder}/state.json is corrupt") from e
    if not isinstance(trainer, dict) or not isinstance(state, dict) or not isinstance(state.get("step"), int):
        raise CheckpointError(f"{folder} holds no trainer state to resume from")
    return trainer, state
