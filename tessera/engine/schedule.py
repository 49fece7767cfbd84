"""The learning-rate schedule of every trainer: linear warmup, then cosine down to min_ratio x lr."""

from __future__ import annotations

import math
from dataclasses import dataclass


@dataclass(frozen=True)
class WarmupCosine:
    lr: float
    warmup: int
    steps: int
    min_ratio: float = 0.1  # 1: constant after warmup

    def __call__(self, step: int) -> float:
        """The learning rate of step `step` (0-based)."""
        if step < self.warmup:
            return self.lr * (step + 1) / self.warmup
        progress = (step - self.warmup) / max(1, self.steps - self.warmup)
        cosine = 0.5 * (1 + math.cos(math.pi * min(progress, 1.0)))
        return self.lr * (self.min_ratio + (1 - self.min_ratio) * cosine)
