"""The GRPO objective as pure functions: group advantages and the clipped, optionally KL-regularised loss.

The loss types follow trl's GRPOTrainer: grpo (each sequence's token mean, then the batch mean), bnpo (the mean
over the batch's active tokens), dr_grpo (the sum over B x max_len), dapo (the sum over the active tokens of the
whole, possibly distributed and accumulated, batch).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from tessera.config import at_least
from tessera.errors import ConfigError

LOSS_TYPES = ("grpo", "bnpo", "dr_grpo", "dapo")
SCALINGS = ("group", "batch", "none")


@dataclass
class GRPOConfig:
    group_size: int = 8  # samples per prompt
    scale_rewards: str = "group"  # divide advantages by the std of the group | the batch | not at all
    epsilon_low: float = 0.2  # ratio clip below: 1 - epsilon_low
    epsilon_high: float = 0.2  # ratio clip above: 1 + epsilon_high
    beta: float = 0.0  # weight of the k3 KL term to the reference model; 0: no reference model
    loss_type: str = "grpo"
    max_len: int = 0  # dr_grpo's normaliser; 0: the width of the mask
    eps: float = 1e-4  # added to the std

    def validate(self) -> None:
        if self.loss_type not in LOSS_TYPES:
            raise ConfigError(f"loss_type must be one of {', '.join(LOSS_TYPES)}, got {self.loss_type!r}")
        if self.scale_rewards not in SCALINGS:
            raise ConfigError(f"scale_rewards must be one of {', '.join(SCALINGS)}, got {self.scale_rewards!r}")
        at_least(self, 0, "epsilon_low", "epsilon_high", "beta", "max_len", "eps", prefix="grpo.")
        if self.group_size < 2:
            raise ConfigError(f"group_size must be >= 2 (advantages compare a prompt's samples), got {self.group_size}")


def advantages(rewards: torch.Tensor, group_size: int, scale: str = "group", eps: float = 1e-4) -> torch.Tensor:
    """(B,) rewards, B = prompts x group_size with each prompt's samples adjacent -> (B,) advantages
    (r - mean_G) / (std + eps), the std of the group, of the batch, or 1; exactly 0 for a group whose rewards agree."""
    grouped = rewards.view(-1, group_size)  # (P, G)
    agrees = grouped.amax(dim=1, keepdim=True) == grouped.amin(dim=1, keepdim=True)  # (P, 1): exactly 0, not rounding
    centred = (grouped - grouped.mean(dim=1, keepdim=True)).masked_fill(agrees, 0.0).flatten()
    if scale == "group":
        std = grouped.std(dim=1).repeat_interleave(group_size)
    elif scale == "batch":
        std = rewards.std().expand_as(rewards)
    else:
        return centred
    return centred / (std + eps)


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-token k3 estimator of KL(policy || reference): exp(ref - logp) - (ref - logp) - 1, >= 0."""
    delta = ref_logp - logp
    return torch.exp(delta) - delta - 1


def grpo_loss(
    logp: torch.Tensor,  # (B, T) log-probs of the sampled tokens under the current policy (with grad)
    old_logp: torch.Tensor,  # (B, T) the same under the policy that sampled them
    advantage: torch.Tensor,  # (B,) one per sample, applied to all of its tokens, or (B, T) one per token
    mask: torch.Tensor,  # (B, T) bool: generated tokens
    cfg: GRPOConfig,
    ref_logp: torch.Tensor | None = None,  # (B, T) under the frozen reference model, needed when beta > 0
    active_tokens: float | None = None,  # dapo: active tokens of the whole batch (all ranks, all micro-batches)
) -> tuple[torch.Tensor, dict[str, float]]:
    """The loss to minimise and its statistics (ratio, clip fraction, KL)."""
    cfg.validate()
    mask = mask.to(logp.dtype)
    ratio = torch.exp(logp - old_logp)
    clipped = ratio.clamp(1 - cfg.epsilon_low, 1 + cfg.epsilon_high)
    adv = advantage[:, None] if advantage.dim() == 1 else advantage  # (B, 1) or (B, T)
    per_token = -torch.minimum(ratio * adv, clipped * adv)  # (B, T)
    kl = None
    if cfg.beta != 0:
        if ref_logp is None:
            raise ValueError("beta > 0 needs the reference model's log-probs")
        kl = k3_kl(logp, ref_logp)
        per_token = per_token + cfg.beta * kl
    total = (per_token * mask).sum()
    if cfg.loss_type == "grpo":
        loss = ((per_token * mask).sum(dim=1) / mask.sum(dim=1).clamp(min=1)).mean()
    elif cfg.loss_type == "bnpo":
        loss = total / mask.sum().clamp(min=1)
    elif cfg.loss_type == "dr_grpo":
        loss = total / (logp.shape[0] * (cfg.max_len or logp.shape[1]))
    else:  # dapo
        loss = total / (active_tokens if active_tokens is not None else mask.sum().clamp(min=1))
    n = mask.sum().clamp(min=1)
    was_clipped = ((ratio < 1 - cfg.epsilon_low) & (adv < 0)) | ((ratio > 1 + cfg.epsilon_high) & (adv > 0))
    stats = {
        "ratio": float((ratio.detach() * mask).sum() / n),
        "clip_fraction": float((was_clipped.to(mask.dtype) * mask).sum() / n),
    }
    if kl is not None:
        stats["kl"] = float((kl.detach() * mask).sum() / n)
    return loss, stats
