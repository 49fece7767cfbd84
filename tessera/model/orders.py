"""Generation orders over an h x w token grid, as raster indices in the order they are drawn."""

from __future__ import annotations

import torch

from tessera.errors import ConfigError

ORDERS = ("raster", "random")


def make_orders(kind: str, batch: int, h: int, w: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, h*w) raster indices: raster (row by row) or a fresh uniform permutation per row."""
    n = h * w
    if kind == "raster":
        return torch.arange(n).expand(batch, n).clone()
    if kind == "random":
        return torch.rand(batch, n, generator=generator).argsort(dim=1)
    raise ConfigError(f"unknown order {kind!r}; expected one of {', '.join(ORDERS)}")
