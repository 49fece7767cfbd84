"""Quantizers behind one interface: L2-normalised EMA VQ (ours), FSQ and LFQ (vector-quantize-pytorch)."""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from tessera.config import at_least
from tessera.errors import ConfigError


@dataclass
class QuantizerConfig:
    kind: str = "vq"  # vq | fsq | lfq
    codebook_size: int = 1024  # vq and lfq (lfq: a power of two); fsq: the product of fsq_levels
    dim: int = 8  # channels of the quantized latent
    l2_norm: bool = True  # vq: compare directions (cosine), as LlamaGen and OmniTokenizer do
    ema: bool = True  # vq: codebook follows an exponential moving average of its assigned vectors
    decay: float = 0.99
    commitment: float = 0.25
    restart_below: float = 0.03  # vq: a code whose EMA use falls below this is restarted from the batch
    restart: str = "error"  # vq: initial and restarted codes are batch vectors drawn by their distance to the codebook
    # (error: where the codebook fits worst, k-means++ style) or uniformly (uniform: on a flat background most
    # draws are background vectors, and codes pile up there while objects share a few)
    fsq_levels: tuple[int, ...] = (8, 5, 5, 5)
    entropy_weight: float = 0.1  # lfq

    def validate(self, prefix: str = "quantizer.") -> None:
        if self.kind not in ("vq", "fsq", "lfq"):
            raise ConfigError(f"{prefix}kind: unknown quantizer {self.kind!r}; expected vq, fsq or lfq")
        if self.restart not in ("error", "uniform"):
            raise ConfigError(f"{prefix}restart must be error or uniform, got {self.restart!r}")
        at_least(self, 2, "codebook_size", prefix=prefix)
        at_least(self, 1, "dim", prefix=prefix)
        if self.kind == "lfq" and self.codebook_size & (self.codebook_size - 1):
            raise ConfigError(f"{prefix}codebook_size must be a power of two for lfq, got {self.codebook_size}")
        if self.kind == "fsq" and (not self.fsq_levels or min(self.fsq_levels) < 2):
            raise ConfigError(f"{prefix}fsq_levels must be levels of 2 or more, got {list(self.fsq_levels)}")


@dataclass
class Quantized:
    latent: torch.Tensor  # (B, C, *S) quantized, with a straight-through gradient to the input
    codes: torch.Tensor  # (B, *S) long
    loss: torch.Tensor  # scalar: commitment (+ codebook or entropy) loss
    perplexity: torch.Tensor  # scalar: exp(entropy) of the batch's code histogram


def perplexity(codes: torch.Tensor, n: int) -> torch.Tensor:
    p = torch.bincount(codes.flatten(), minlength=n).float()
    p = p / p.sum()
    return torch.exp(-(p * torch.log(p.clamp_min(1e-12))).sum())


class VectorQuantizer(nn.Module):
    """Nearest-neighbour VQ with EMA updates, data initialisation and dead-code restart.

    `embedding` is named as in LlamaGen's VQ model, so its checkpoints load as they are.
    """

    def __init__(self, cfg: QuantizerConfig):
        super().__init__()
        self.cfg = cfg
        self.codebook_size = cfg.codebook_size
        self.embedding = nn.Embedding(cfg.codebook_size, cfg.dim)
        self.embedding.weight.data.uniform_(-1 / cfg.codebook_size, 1 / cfg.codebook_size)
        self.register_buffer("ema_count", torch.full((cfg.codebook_size,), 2 * cfg.restart_below))
        self.register_buffer("ema_sum", self.embedding.weight.data.clone())
        self.register_buffer("initialised", torch.tensor(False))

    def codebook(self) -> torch.Tensor:
        w = self.embedding.weight
        return F.normalize(w, dim=-1) if self.cfg.l2_norm else w

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, *S) -> latent (B, C, *S)."""
        return torch.movedim(self.codebook()[codes], -1, 1)

    def forward(self, z: torch.Tensor) -> Quantized:
        flat = torch.movedim(z, 1, -1).reshape(-1, z.shape[1])  # (N, C)
        if self.cfg.l2_norm:
            flat = F.normalize(flat, dim=-1)
        learning = self.training and torch.is_grad_enabled()  # encode() under no_grad never changes the codebook
        if learning and not bool(self.initialised):
            self._data_init(flat.detach())
        book = self.codebook()
        dist = flat.pow(2).sum(1, keepdim=True) - 2 * flat @ book.t() + book.pow(2).sum(1)[None]  # (N, K)
        codes = dist.argmin(1)
        quant = book[codes]
        if self.cfg.ema:
            loss = self.cfg.commitment * F.mse_loss(flat, quant.detach())
            if learning:
                self._ema_update(flat.detach(), codes)
        else:
            loss = F.mse_loss(quant, flat.detach()) + self.cfg.commitment * F.mse_loss(flat, quant.detach())
        quant = flat + (quant - flat).detach()  # straight-through
        shape = (z.shape[0], *z.shape[2:])
        latent = torch.movedim(quant.reshape(*shape, -1), -1, 1)
        return Quantized(latent, codes.reshape(shape), loss, perplexity(codes, self.codebook_size))

    def _draw(self, flat: torch.Tensor, n: int, book: torch.Tensor | None) -> torch.Tensor:
        """n batch vectors to (re)start codes from: uniformly, or by their squared distance to the nearest of
        `book` (k-means++ seeding), so new codes go where the codebook fits worst."""
        if self.cfg.restart == "uniform" or book is None:
            return flat[torch.randint(0, flat.shape[0], (n,), device=flat.device)]
        error = torch.cdist(flat, book).min(1).values.pow(2) + 1e-12  # (N,)
        return flat[torch.multinomial(error, n, replacement=True)]

    @torch.no_grad()
    def _data_init(self, flat: torch.Tensor) -> None:
        if self.cfg.restart == "uniform":
            picks = self._draw(flat, self.codebook_size, None)
        else:  # k-means++: each new centre drawn by its distance to those chosen so far
            picks = flat[torch.randint(0, flat.shape[0], (1,), device=flat.device)]
            while len(picks) < self.codebook_size:
                more = min(len(picks), self.codebook_size - len(picks))
                picks = torch.cat([picks, self._draw(flat, more, picks)])
        self.embedding.weight.data.copy_(picks)
        self.ema_sum.copy_(picks * 2 * self.cfg.restart_below)
        self.ema_count.fill_(2 * self.cfg.restart_below)  # unused codes are restarted within ~70 steps
        self.initialised.fill_(True)

    @torch.no_grad()
    def _ema_update(self, flat: torch.Tensor, codes: torch.Tensor) -> None:
        d = self.cfg.decay
        onehot = F.one_hot(codes, self.codebook_size).type(flat.dtype)  # (N, K)
        self.ema_count.mul_(d).add_(onehot.sum(0), alpha=1 - d)
        self.ema_sum.mul_(d).add_(onehot.t() @ flat, alpha=1 - d)
        n = self.ema_count.sum()
        smoothed = (self.ema_count + 1e-5) / (n + self.codebook_size * 1e-5) * n  # Laplace smoothing
        self.embedding.weight.data.copy_(self.ema_sum / smoothed[:, None])
        dead = self.ema_count < self.cfg.restart_below
        if dead.any():
            picks = self._draw(flat, int(dead.sum()), self.codebook()[~dead] if (~dead).any() else None)
            self.embedding.weight.data[dead] = picks
            self.ema_sum[dead] = picks * 2 * self.cfg.restart_below
            self.ema_count[dead] = 2 * self.cfg.restart_below

    def usage(self) -> float:
        """Fraction of codes in recent use (EMA count above the restart threshold)."""
        return float((self.ema_count >= self.cfg.restart_below).float().mean())


class _Wrapped(nn.Module):
    """FSQ or LFQ from vector-quantize-pytorch behind the Quantized interface (channels first)."""

    def __init__(self, cfg: QuantizerConfig):
        super().__init__()
        from vector_quantize_pytorch import FSQ, LFQ

        self.cfg = cfg
        if cfg.kind == "fsq":
            self.inner = FSQ(levels=list(cfg.fsq_levels), dim=cfg.dim)
        else:
            self.inner = LFQ(codebook_size=cfg.codebook_size, dim=cfg.dim, entropy_loss_weight=cfg.entropy_weight)
        self.codebook_size = int(self.inner.codebook_size)
        self.register_buffer("ema_count", torch.zeros(self.codebook_size))

    def forward(self, z: torch.Tensor) -> Quantized:
        spatial = z.shape[2:]
        seq = rearrange(z, "b c ... -> b (...) c")
        if self.cfg.kind == "fsq":
            quant, codes = self.inner(seq)
            loss = z.new_zeros(())
        else:
            quant, codes, loss = self.inner(seq)
        if self.training:
            hist = torch.bincount(codes.flatten(), minlength=self.codebook_size).float()
            self.ema_count.mul_(self.cfg.decay).add_(hist, alpha=1 - self.cfg.decay)
        latent = quant.transpose(1, 2).reshape(z.shape)
        return Quantized(latent, codes.reshape(z.shape[0], *spatial), loss, perplexity(codes, self.codebook_size))

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        quant = self.inner.indices_to_codes(codes.flatten(1))  # (B, N, C)
        return quant.transpose(1, 2).reshape(codes.shape[0], -1, *codes.shape[1:])

    def usage(self) -> float:
        return float((self.ema_count >= self.cfg.restart_below).float().mean())


def make_quantizer(cfg: QuantizerConfig) -> nn.Module:
    cfg.validate()
    return VectorQuantizer(cfg) if cfg.kind == "vq" else _Wrapped(cfg)
