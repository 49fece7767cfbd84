"""Thinking while generating (TwiG) as a layout of the one stream: the image is drawn in horizontal bands, each
after a thought that says what it must hold, each optionally followed by a critique and drawn again once.

    text <think> thought 1 </think> <boi> band 1 <eoi> [<think> critique 1 </think> [<boi> band 1 again <eoi>]]
         <think> thought 2 </think> <boi> band 2 <eoi> ...

A band's tokens sit on its own grid cells (raster within the band); a band drawn again sits on the same cells, and
what follows it reads the later drawing. The cache is never rebuilt: target-aware positions let text and image
alternate in one sequence.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.errors import ConfigError
from tessera.sequence.chains import concat, stretch
from tessera.sequence.ids import IMAGE, TEXT, IdSpace
from tessera.sequence.layouts import Batch, grid_positions, stack


@dataclass(frozen=True)
class Bands:
    """A schedule of horizontal bands: each band's height in grid rows, top to bottom."""

    heights: tuple[int, ...]

    @classmethod
    def equal(cls, rows: int, k: int = 3) -> Bands:
        """k bands over `rows` grid rows, as equal as rows allow (the upper ones one row taller)."""
        if not 1 <= k <= rows:
            raise ConfigError(f"{k} bands do not fit {rows} grid rows: use 1 to {rows}")
        return cls(tuple(rows // k + (i < rows % k) for i in range(k)))

    def __len__(self) -> int:
        return len(self.heights)

    def rows(self, band: int) -> range:
        """The grid rows of band `band` (0-based)."""
        start = sum(self.heights[:band])
        return range(start, start + self.heights[band])

    def cells(self, band: int, width: int) -> torch.Tensor:
        """(rows * width,) raster indices of the band's cells, in raster order."""
        r = self.rows(band)
        return torch.arange(r.start * width, r.stop * width)


@dataclass
class BandStep:
    """One band of a chain: its thought, the band drawn, and optionally a critique and the band drawn again (codes
    in raster order over the band's cells). `learn`: train on the first drawing (False: the model's own sample,
    kept as context)."""

    thought: list[int]  # text-tokenizer ids
    codes: torch.Tensor  # (n,) image codes of the band
    learn: bool = True
    critique: list[int] | None = None
    redraw: torch.Tensor | None = None  # (n,) codes drawn again after the critique


def chain_length(text_len: int, width: int, bands: Bands, thought_len: int, critique_len: int = 0) -> int:
    """Tokens in the longest chain: text, then per band a thought and the band, and with critiques (critique_len
    > 0) a critique and the band again."""
    again = 1 if critique_len else 0
    per_band = [(thought_len + 2) + (1 + again) * (h * width + 2) + again * (critique_len + 2) for h in bands.heights]
    return text_len + sum(per_band)


def thinking_row(space: IdSpace, text: list[int], steps: list[BandStep], bands: Bands, width: int) -> Batch:
    """One chain (text: sequence ids of the prompt, left-padded) -> a (1, T) Batch. The loss falls on each thought
    and critique with its </think>, on each band learnt with its <eoi>, and on every band drawn again."""
    if len(steps) != len(bands):
        raise ValueError(f"{len(steps)} steps for {len(bands)} bands")
    s = space.special
    parts = [stretch(text, TEXT, False)]
    for band, step in enumerate(steps):
        cells = bands.cells(band, width)
        pos = grid_positions(cells[None], (sum(bands.heights), width))[0]  # (n, 3)
        parts += [
            stretch([s("<think>")], TEXT, False),
            stretch([*space.text(step.thought), s("</think>")], TEXT, True),
            stretch([s("<boi>")], TEXT, step.learn),
            stretch(space.image(step.codes).tolist(), IMAGE, step.learn, pos),
            stretch([s("<eoi>")], TEXT, step.learn),
        ]
        if step.critique is not None:
            parts += [
                stretch([s("<think>")], TEXT, True),
                stretch([*space.text(step.critique), s("</think>")], TEXT, True),
            ]
        if step.redraw is not None:
            parts += [
                stretch([s("<boi>")], TEXT, True),
                stretch(space.image(step.redraw).tolist(), IMAGE, True, pos),
                stretch([s("<eoi>")], TEXT, True),
            ]
    return concat(parts)


def thinking_batch(space: IdSpace, text: torch.Tensor, chains: list[list[BandStep]], bands: Bands, width: int) -> Batch:
    """Chains of a batch (text: (B, L) prompts) as one right-padded training Batch."""
    rows = [thinking_row(space, text[i].tolist(), steps, bands, width) for i, steps in enumerate(chains)]
    return stack(rows, space)
