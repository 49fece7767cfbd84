"""OmniTok: one transformer tokenizer for images and video (the OmniTokenizer design).

The first frame is embedded alone and later frames in temporal patches, so an image is a one-frame video.
The encoder runs window-attention, then full-attention spatial blocks, then causal temporal blocks; the
decoder mirrors it. The latent is vector-quantized (VQ) or a diagonal Gaussian (KL).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F
from einops import rearrange

from tessera.config import at_least
from tessera.errors import ConfigError
from tessera.tokenizer.quantizers import Quantized, QuantizerConfig, make_quantizer


@dataclass
class OmniConfig:
    patch: int = 8
    temporal_patch: int = 4
    width: int = 512
    heads: int = 8
    window_blocks: int = 2
    full_blocks: int = 2
    temporal_blocks: int = 4
    window: int = 8  # window side, in tokens
    mlp_ratio: float = 4.0
    latent: str = "vq"  # vq | kl
    kl_weight: float = 1e-6
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=8192, dim=8))

    def validate(self, prefix: str = "omni.") -> None:
        at_least(self, 1, "patch", "temporal_patch", "width", "heads", "window", prefix=prefix)
        at_least(self, 0, "window_blocks", "full_blocks", "temporal_blocks", prefix=prefix)
        if self.width % self.heads:
            raise ConfigError(f"{prefix}width ({self.width}) must divide by heads ({self.heads})")
        if self.latent not in ("vq", "kl"):
            raise ConfigError(f"{prefix}latent must be vq or kl, got {self.latent!r}")
        self.quantizer.validate(prefix + "quantizer.")


def sincos_at(pos: torch.Tensor, dim: int, base: float = 10000.0) -> torch.Tensor:
    """(n,) real positions -> (n, dim) sinusoidal features, wavelengths from 2 pi to 2 pi base."""
    freq = torch.exp(-math.log(base) * torch.arange(0, dim, 2, device=pos.device, dtype=torch.float32) / dim)
    angles = pos.float()[:, None] * freq  # (n, dim/2)
    return torch.cat([torch.sin(angles), torch.cos(angles)], dim=1)


def sincos(n: int, dim: int, device) -> torch.Tensor:
    """(n, dim) sinusoidal embedding of positions 0..n-1."""
    return sincos_at(torch.arange(n, device=device, dtype=torch.float32), dim)


def positions(t: int, h: int, w: int, dim: int, device) -> torch.Tensor:
    """(t, h, w, dim): a third of the channels each for time, row and column."""
    d = (dim // 6) * 2
    rest = dim - 2 * d
    pt = sincos(t, rest, device)[:, None, None].expand(t, h, w, rest)
    ph = sincos(h, d, device)[None, :, None].expand(t, h, w, d)
    pw = sincos(w, d, device)[None, None, :].expand(t, h, w, d)
    return torch.cat([pt, ph, pw], dim=-1)


class Attention(nn.Module):
    def __init__(self, width: int, heads: int):
        super().__init__()
        self.heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor, causal: bool = False) -> torch.Tensor:
        q, k, v = rearrange(self.qkv(x), "b n (three h d) -> three b h n d", three=3, h=self.heads)
        out = F.scaled_dot_product_attention(q, k, v, is_causal=causal)
        return self.proj(rearrange(out, "b h n d -> b n (h d)"))


class Block(nn.Module):
    """Pre-norm transformer block over one axis of the (B, t, h, w, D) token grid: window, full or temporal."""

    def __init__(self, cfg: OmniConfig, mode: str):
        super().__init__()
        self.mode, self.window = mode, cfg.window
        self.norm1 = nn.LayerNorm(cfg.width)
        self.attn = Attention(cfg.width, cfg.heads)
        self.norm2 = nn.LayerNorm(cfg.width)
        hidden = int(cfg.width * cfg.mlp_ratio)
        self.mlp = nn.Sequential(nn.Linear(cfg.width, hidden), nn.GELU(), nn.Linear(hidden, cfg.width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:  # (B, t, h, w, D)
        b, t, h, w, d = x.shape
        if self.mode == "temporal":
            seq = rearrange(x, "b t h w d -> (b h w) t d")
            seq = seq + self.attn(self.norm1(seq), causal=True)
            x = rearrange(seq, "(b h w) t d -> b t h w d", b=b, h=h, w=w)
        elif self.mode == "full" or (h <= self.window and w <= self.window):
            seq = rearrange(x, "b t h w d -> (b t) (h w) d")
            seq = seq + self.attn(self.norm1(seq))
            x = rearrange(seq, "(b t) (h w) d -> b t h w d", b=b, h=h)
        else:
            s = self.window
            ph, pw = (-h) % s, (-w) % s
            padded = F.pad(x, (0, 0, 0, pw, 0, ph))
            seq = rearrange(padded, "b t (nh s1) (nw s2) d -> (b t nh nw) (s1 s2) d", s1=s, s2=s)
            seq = seq + self.attn(self.norm1(seq))
            padded = rearrange(seq, "(b t nh nw) (s1 s2) d -> b t (nh s1) (nw s2) d", b=b, t=t, s1=s, nh=(h + ph) // s)
            x = padded[:, :, :h, :w]
        return x + self.mlp(self.norm2(x))


class OmniTok(nn.Module):
    """Images (B, 3, H, W) -> codes (B, H/p, W/p); videos (B, 3, 1 + k*tp, H, W) -> codes (B, 1 + k, H/p, W/p)."""

    def __init__(self, cfg: OmniConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        p, tp, d = cfg.patch, cfg.temporal_patch, cfg.width
        self.embed_first = nn.Conv2d(3, d, p, p)
        self.embed_rest = nn.Conv3d(3, d, (tp, p, p), (tp, p, p))
        modes = ["window"] * cfg.window_blocks + ["full"] * cfg.full_blocks + ["temporal"] * cfg.temporal_blocks
        self.encoder = nn.ModuleList(Block(cfg, m) for m in modes)
        self.encoder_norm = nn.LayerNorm(d)
        latent = cfg.quantizer.dim * (2 if cfg.latent == "kl" else 1)
        self.quant_proj = nn.Linear(d, latent)
        self.quantize = make_quantizer(cfg.quantizer) if cfg.latent == "vq" else None
        self.post_quant_proj = nn.Linear(cfg.quantizer.dim, d)
        self.decoder = nn.ModuleList(Block(cfg, m) for m in reversed(modes))
        self.decoder_norm = nn.LayerNorm(d)
        self.unembed_first = nn.Linear(d, 3 * p * p)
        self.unembed_rest = nn.Linear(d, 3 * tp * p * p)

    @property
    def codebook_size(self) -> int:
        return self.quantize.codebook_size if self.quantize is not None else 0

    def grid(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Code grid for pixels of shape (H, W) or (T, H, W)."""
        *t, h, w = shape
        p = self.cfg.patch
        return (*(1 + (t[0] - 1) // self.cfg.temporal_patch for _ in t), h // p, w // p)

    def video_grid(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Code grid (t, h, w) of a clip of shape (T, H, W): 1 + (T - 1) / temporal_patch code frames."""
        return self.grid(shape)

    def _check(self, video: torch.Tensor) -> None:
        t, h, w = video.shape[2:]
        tp, p = self.cfg.temporal_patch, self.cfg.patch
        if (t - 1) % tp or h % p or w % p:
            raise ValueError(f"OmniTok needs 1 + k*{tp} frames and sides divisible by {p}; got {t}x{h}x{w}")

    def _embed(self, video: torch.Tensor) -> torch.Tensor:  # (B, 3, T, H, W) -> (B, t, h, w, D)
        tokens = [self.embed_first(video[:, :, 0])[:, :, None]]
        if video.shape[2] > 1:
            tokens.append(self.embed_rest(video[:, :, 1:]))
        x = rearrange(torch.cat(tokens, dim=2), "b d t h w -> b t h w d")
        return x + positions(*x.shape[1:4], x.shape[-1], x.device)

    def _unembed(self, x: torch.Tensor) -> torch.Tensor:  # (B, t, h, w, D) -> (B, 3, T, H, W)
        p, tp = self.cfg.patch, self.cfg.temporal_patch
        first = rearrange(self.unembed_first(x[:, :1]), "b t h w (c p1 p2) -> b c t (h p1) (w p2)", c=3, p1=p, p2=p)
        if x.shape[1] == 1:
            return first
        rest = rearrange(
            self.unembed_rest(x[:, 1:]), "b t h w (c q p1 p2) -> b c (t q) (h p1) (w p2)", c=3, q=tp, p1=p, p2=p
        )
        return torch.cat([first, rest], dim=2)

    def _latent(self, video: torch.Tensor) -> torch.Tensor:  # -> (B, C, t, h, w) before quantization
        self._check(video)
        x = self._embed(video)
        for block in self.encoder:
            x = block(x)
        return rearrange(self.quant_proj(self.encoder_norm(x)), "b t h w c -> b c t h w")

    def _decode_latent(self, z: torch.Tensor) -> torch.Tensor:
        x = self.post_quant_proj(rearrange(z, "b c t h w -> b t h w c"))
        x = x + positions(*x.shape[1:4], x.shape[-1], x.device)
        for block in self.decoder:
            x = block(x)
        return self._unembed(self.decoder_norm(x))

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """Reconstruction (same shape as pixels) and the latent's Quantized (codes None for KL)."""
        image = pixels.dim() == 4
        video = pixels[:, :, None] if image else pixels
        z = self._latent(video)
        if self.quantize is not None:
            q = self.quantize(z)
        else:
            mean, logvar = z.chunk(2, dim=1)
            logvar = logvar.clamp(-30, 20)
            sample = mean + torch.randn_like(mean) * torch.exp(0.5 * logvar) if self.training else mean
            kl = 0.5 * (mean.pow(2) + logvar.exp() - 1 - logvar).sum(1).mean()
            q = Quantized(sample, None, self.cfg.kl_weight * kl, z.new_zeros(()))
        recon = self._decode_latent(q.latent)
        if image:
            codes = q.codes[:, 0] if q.codes is not None else None
            return recon[:, :, 0], Quantized(q.latent[:, :, 0], codes, q.loss, q.perplexity)
        return recon, q

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """Codes (B, h, w) for images or (B, t, h, w) for videos; for KL, the latent mean (B, C, [t,] h, w)."""
        image = pixels.dim() == 4
        z = self._latent(pixels[:, :, None] if image else pixels)
        if self.quantize is not None:
            codes = self.quantize(z).codes
            return codes[:, 0] if image else codes
        mean = z.chunk(2, dim=1)[0]
        return mean[:, :, 0] if image else mean

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """Inverse of encode: pixels (B, 3, H, W) or (B, 3, T, H, W)."""
        if self.quantize is not None:
            image = codes.dim() == 3
            z = self.quantize.lookup(codes[:, None] if image else codes)
        else:
            image = codes.dim() == 4
            z = codes[:, :, None] if image else codes
        pixels = self._decode_latent(z)
        return pixels[:, :, 0] if image else pixels

    def last_layer(self) -> torch.Tensor:
        return self.unembed_first.weight
