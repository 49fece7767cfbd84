"""The distribution a token is drawn from: modality mask, classifier-free guidance, temperature, top-k, top-p.

`log_distribution` is the one place that turns logits into it, for sampling and for rescoring alike, so the
log-probs RL scores are those of the distribution actually sampled.
"""

from __future__ import annotations

import torch

from tessera.model.sampling import SamplingConfig

# Truncation keeps every id within TIE of the cut-off logit. Sampling (cached, one token at a time) and scoring
# (one batched pass) round differently by ~1e-7; without the margin, a near-tie at the cut could be kept in one
# and dropped in the other, and a sampled token would score -inf.
TIE = 1e-4


def log_distribution(
    cond: torch.Tensor,  # (B, V) logits
    uncond: torch.Tensor | None,  # (B, V) logits of the unconditional rows, or None
    allowed: torch.Tensor,  # (V,) or (B, V) bool: ids this slot may emit
    cfg: SamplingConfig,
    guide: bool,
    image_only: torch.Tensor | None = None,  # (B, V) logits with the text dropped and the visual conditions kept
) -> torch.Tensor:
    """(B, V) log-probabilities of the distribution a token is drawn from; -inf outside its support. Guidance is
    u + s (c - u), or with visual conditions u + s_image (c_image - u) + s (c - c_image), each scale on its own
    condition (as instruction editing needs)."""
    logits = cond
    if guide and uncond is not None:
        if image_only is None:
            logits = uncond + cfg.cfg_scale * (cond - uncond)
        else:
            logits = uncond + cfg.image_scale * (image_only - uncond) + cfg.cfg_scale * (cond - image_only)
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


def sample_token(logp: torch.Tensor, generator: torch.Generator | None = None) -> torch.Tensor:
    """(B, V) log-probs -> (B,) ids, by one uniform number per row against the cumulative distribution (what
    `multinomial` does with V random numbers per row; the id found has probability > 0)."""
    cdf = logp.exp().cumsum(dim=-1)  # (B, V)
    u = torch.rand(len(logp), 1, generator=generator, device=logp.device) * cdf[:, -1:]
    return torch.searchsorted(cdf, u, side="right").squeeze(-1).clamp(max=logp.shape[-1] - 1)
