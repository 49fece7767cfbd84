"""Checkpoint folders: config.yaml + model.safetensors (+ trainer.pt, state.json to resume), written atomically;
and atomic writes of single files.

A save writes a complete sibling folder, then swaps it in; a crash mid-save leaves the previous checkpoint whole.
Nothing is unpickled: weights are safetensors, optimizer state loads with `torch.load(weights_only=True)`.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Any

import torch
import yaml
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file

from tessera.errors import CheckpointError


def write_atomically(path: str | Path, text: str) -> Path:
    """Write a text file so that it is always whole: a temporary name first, then a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)
    return path


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
    files: extra entries, a text (str) or a file or folder to copy (Path)."""
    folder = Path(folder)
    tmp, old = folder.with_name(folder.name + ".tmp"), folder.with_name(folder.name + ".old")
    shutil.rmtree(tmp, ignore_errors=True)
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
    shutil.rmtree(old, ignore_errors=True)
    if folder.exists():
        folder.rename(old)
    tmp.rename(folder)
    shutil.rmtree(old, ignore_errors=True)


def resolve(folder: str | Path) -> Path:
    """The checkpoint folder, or its previous copy if a save was cut short between the two renames."""
    folder = Path(folder)
    old = folder.with_name(folder.name + ".old")
    return old if not folder.exists() and old.exists() else folder


def load_config(folder: str | Path, kind: str) -> dict:
    """The checkpoint's config (without 'kind'); CheckpointError if it is missing, unreadable or of another kind."""
    folder = resolve(folder)
    path = folder / "config.yaml"
    if not path.exists():
        raise CheckpointError(f"{folder} is not a tessera checkpoint (no config.yaml)")
    try:
        config = yaml.safe_load(path.read_text())
    except yaml.YAMLError as e:
        raise CheckpointError(f"{path} is corrupt: not YAML") from e
    if not isinstance(config, dict) or config.get("kind") != kind:
        found = config.get("kind") if isinstance(config, dict) else None
        raise CheckpointError(f"{folder} is a {found or 'foreign'} checkpoint, not a {kind} checkpoint")
    config.pop("kind")
    return config


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


def load_state(folder: str | Path) -> dict | None:
    """The JSON state of a checkpoint (step, ...), None when there is no checkpoint or no state."""
    path = resolve(folder) / "state.json"
    return json.loads(path.read_text()) if path.exists() else None


def resumable(folder: str | Path) -> tuple[dict, dict] | None:
    """(trainer state, JSON state) of a checkpoint a run can continue from, or None."""
    if not resolve(folder).exists():
        return None
    trainer, state = load_trainer(folder)
    return (trainer, state) if trainer is not None and state is not None else None


def load_trainer(folder: str | Path) -> tuple[dict | None, dict | None]:
    """(trainer state, JSON state) of a checkpoint, either None when absent."""
    folder = resolve(folder)
    trainer = torch.load(folder / "trainer.pt", weights_only=True) if (folder / "trainer.pt").exists() else None
    state = json.loads((folder / "state.json").read_text()) if (folder / "state.json").exists() else None
    return trainer, state
