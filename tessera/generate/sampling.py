"""The distribution a token is drawn from: modality mask, classifier-free guidance, temperature, top-k, top-p.

`log_distribution` is the one place that turns logits into it, for sampling and for rescoring alike, so the
log-probs RL scores are those of the distribution actually sampled.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.errors import ConfigError

# Truncation keeps every id within TIE of the cut-off logit. Sampling (cached, one token at a time) and scoring
# (one batched pass) round differently by ~1e-7; without the margin, a near-tie at the cut could be kept in one
# and dropped in the other, and a sampled token would score -inf.
TIE = 1e-4


@dataclass
class SamplingConfig:
    temperature: float = 1.0
    top_k: int = 0  # keep the k most likely ids; 0: all
    top_p: float = 1.0  # keep the smallest set holding this much probability; 1: all
    cfg_scale: float = 1.0  # classifier-free guidance u + s (c - u); 1: the conditional model alone
    cfg_interval: tuple[float, float] = (0.0, 1.0)  # guide only image tokens i with lo <= i/N < hi

    def validate(self) -> None:
        if self.temperature <= 0:
            raise ConfigError(f"temperature must be > 0, got {self.temperature} (use top_k=1 for greedy)")
        if self.top_k < 0:
            raise ConfigError(f"top_k must be >= 0, got {self.top_k}")
        if not 0 < self.top_p <= 1:
            raise ConfigError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.cfg_scale < 0:
            raise ConfigError(f"guidance scale must be >= 0, got {self.cfg_scale}")
        lo, hi = self.cfg_interval
        if not 0 <= lo <= hi <= 1:
            raise ConfigError(f"cfg_interval must satisfy 0 <= lo <= hi <= 1, got {self.cfg_interval}")

    @property
    def guided(self) -> bool:
        return self.cfg_scale != 1.0

    def guides(self, step: int, total: int) -> bool:
        lo, hi = self.cfg_interval
        return self.guided and lo <= step / total < hi


def log_distribution(
    cond: torch.Tensor,  # (B, V) logits
    uncond: torch.Tensor | None,  # (B, V) logits of the unconditional rows, or None
    allowed: torch.Tensor,  # (V,) or (B, V) bool: ids this slot may emit
    cfg: SamplingConfig,
    guide: bool,
) -> torch.Tensor:
    """(B, V) log-probabilities of the distribution a token is drawn from; -inf outside its support."""
    logits = uncond + cfg.cfg_scale * (cond - uncond) if guide and uncond is not None else cond
    logits = logits.masked_fill(~allowed, float("-inf")) / cfg.temperature
    if cfg.top_k > 0:
        kth = logits.topk(min(cfg.top_k, logits.shape[-1]), dim=-1).values[..., -1:]
        logits = logits.masked_fill(logits < kth - TIE, float("-inf"))
    if cfg.top_p < 1.0:
        sorted_logits, _ = logits.sort(dim=-1, descending=True)
        probs = sorted_logits.softmax(dim=-1)
        kept = probs.cumsum(dim=-1) - probs <= cfg.top_p  # the mass before this id is still within top_p
        cutoff = sorted_logits.masked_fill(~kept, float("inf")).min(dim=-1, keepdim=True).values
        logits = logits.masked_fill(logits < cutoff - TIE, float("-inf"))
    return logits.log_softmax(dim=-1)


def draw(logp: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) log-probs -> (B,) ids."""
    return torch.multinomial(logp.exp(), 1, generator=generator).squeeze(-1)
