"""How a model is sampled: guidance, temperature and truncation settings (the distribution itself is
`tessera.generate.sampling.log_distribution`). A model checkpoint keeps its defaults."""

from __future__ import annotations

import math
from dataclasses import dataclass

from tessera.config import at_least, positive
from tessera.errors import ConfigError


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # keep the k most likely ids; 0: all
    top_p: float = 1.0  # keep the smallest set holding this much probability; 1: all
    cfg_scale: float = 1.0  # classifier-free guidance u + s (c - u); 1: the conditional model alone
    image_scale: float = 1.0  # guidance of visual conditions (segmentation, edges, a source image) apart from text
    cfg_interval: tuple[float, float] = (0.0, 1.0)  # guide only image tokens i with lo <= i/N < hi

    def validate(self) -> None:
        positive(self, "temperature")  # greedy is top_k=1
        at_least(self, 0, "top_k")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        for name in ("cfg_scale", "image_scale"):
            value = getattr(self, name)
            if not (value >= 0 and math.isfinite(value)):
                raise ConfigError(f"guidance scale ({name}) must be a finite number >= 0, got {value}")
        lo, hi = self.cfg_interval
        if not 0 <= lo <= hi <= 1:
            raise ConfigError(f"cfg_interval must satisfy 0 <= lo <= hi <= 1, got {self.cfg_interval}")

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0 or self.image_scale != 1.0

    def guides(self, step: int, total: int) -> bool:
        lo, hi = self.cfg_interval
        return self.guided and lo <= step / total < hi
