"""What every command shares: the console, option types, presets and devices."""

from __future__ import annotations

from importlib import resources
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console

from tessera.errors import ConfigError, InputError

console = Console()

Seed = Annotated[int, typer.Option(min=0, help="Random seed; the same seed gives the same result.")]
Guidance = Annotated[
    float | None, typer.Option("--cfg", min=0.0, help="Guidance scale (1: none; default: the checkpoint's).")
]
Canvas = Annotated[int, typer.Option(help="Canvas side in pixels: a multiple of 16 from 32 to 256.")]
Device = Annotated[str, typer.Option("--device", help="cpu | cuda | auto")]
Dtype = Annotated[
    str,
    typer.Option(
        "--dtype",
        help="float32 | bfloat16: the model's weights and cache while sampling (bfloat16 is faster where the CPU "
        "or GPU computes in it, and samples a slightly different distribution)",
    ),
]
Fresh = Annotated[
    bool, typer.Option(help="Start over (delete the run folder, a tessera run only) instead of resuming.")
]
Overrides = Annotated[list[str] | None, typer.Argument(help="Config overrides, key=value (e.g. steps=300).")]


def preset(group: str, *names: str) -> Path:
    """The first existing preset file tessera/configs/<group>/<name>.yaml."""
    root = Path(str(resources.files("tessera") / "configs" / group))
    for name in names:
        if (root / f"{name}.yaml").exists():
            return root / f"{name}.yaml"
    known = sorted(p.stem for p in root.glob("*.yaml"))
    raise ConfigError(f"no preset {names[-1]!r}; known presets: {', '.join(known)}")


def device(name: str) -> str:
    """cpu, cuda[:N], or auto (cuda when there is one)."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if name not in ("cpu", "cuda") and not name.startswith("cuda:"):
        raise InputError(f"unknown --device {name!r}; expected cpu, cuda or auto")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise InputError("--device cuda: no CUDA device here")
    return name
