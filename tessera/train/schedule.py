"""Learning-rate schedule shared by every trainer: linear warmup, then cosine down to min_lr_ratio * lr."""

from __future__ import annotations

import math


def lr_at(cfg, step: int) -> float:
    """cfg has lr, warmup, steps and min_lr_ratio."""
    if step < cfg.warmup:
        return cfg.lr * (step + 1) / cfg.warmup
    progress = (step - cfg.warmup) / max(1, cfg.steps - cfg.warmup)
    return cfg.lr * (cfg.min_lr_ratio + (1 - cfg.min_lr_ratio) * 0.5 * (1 + math.cos(math.pi * min(progress, 1.0))))
