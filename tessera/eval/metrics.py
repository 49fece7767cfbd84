"""Metrics: how well one list of objects matches another, and pixel fidelity (PSNR, SSIM)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import torch
from torchmetrics.functional.image import structural_similarity_index_measure as ssim

from tessera.world.constraints import Thing


@dataclass
class Counts:
    true_positives: int = 0
    predicted: int = 0
    actual: int = 0

    @property
    def precision(self) -> float:
        return self.true_positives / self.predicted if self.predicted else 1.0

    @property
    def recall(self) -> float:
        return self.true_positives / self.actual if self.actual else 1.0

    def to_dict(self) -> dict:
        return {"precision": self.precision, "recall": self.recall, **self.__dict__}


def _centre(t: Thing) -> tuple[float, float]:
    x1, y1, x2, y2 = t.box
    return (x1 + x2) / 2, (y1 + y2) / 2


def match_objects(predicted: Sequence[Thing], actual: Sequence[Thing], attributes=("shape", "colour", "size")) -> int:
    """True positives: one-to-one pairs, nearest centres first, where the predicted centre lies in the actual box
    and every named attribute agrees."""
    pairs = []
    for i, p in enumerate(predicted):
        px, py = _centre(p)
        for j, a in enumerate(actual):
            x1, y1, x2, y2 = a.box
            if x1 - 1 <= px <= x2 + 1 and y1 - 1 <= py <= y2 + 1:
                ax, ay = _centre(a)
                pairs.append(((px - ax) ** 2 + (py - ay) ** 2, i, j))
    used_p, used_a, hits = set(), set(), 0
    for _, i, j in sorted(pairs):
        if i in used_p or j in used_a:
            continue
        used_p.add(i)
        used_a.add(j)
        hits += all(getattr(predicted[i], k) == getattr(actual[j], k) for k in attributes)
    return hits


def object_counts(predicted: Sequence[Sequence[Thing]], actual: Sequence[Sequence[Thing]], **kw) -> Counts:
    """Precision and recall over many images."""
    c = Counts()
    for p, a in zip(predicted, actual, strict=True):
        c.true_positives += match_objects(p, a, **kw)
        c.predicted += len(p)
        c.actual += len(a)
    return c


def psnr(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-item PSNR in dB for (N, 3, H, W) pixels in [-1, 1]."""
    mse = (recon - target).pow(2).flatten(1).mean(1).clamp_min(1e-12)
    return 10 * torch.log10(4 / mse)


def structural_similarity(recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Per-item SSIM for (N, 3, H, W) pixels in [-1, 1]."""
    return ssim((recon + 1) / 2, (target + 1) / 2, data_range=1.0, reduction="none")
