"""ConvVQ: a VQGAN-style convolutional tokenizer whose modules and parameter names follow LlamaGen's VQ model.

A LlamaGen or Janus VQ-16 state dict loads into `ConvVQ(ConvVQConfig())` as it is (see llamagen.py).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.nn as nn
import torch.nn.functional as F

from tessera.config import at_least
from tessera.errors import ConfigError
from tessera.tokenizer.frames import FrameByFrame
from tessera.tokenizer.quantizers import Quantized, QuantizerConfig, make_quantizer


@dataclass
class ConvVQConfig:
    ch: int = 128
    ch_mult: tuple[int, ...] = (1, 1, 2, 2, 4)  # one level per entry; each but the last halves the side
    z_channels: int = 256
    num_res_blocks: int = 2
    norm_groups: int = 32  # GroupNorm groups (LlamaGen: 32); narrow models train better with fewer
    encoder: str = "conv"  # conv (LlamaGen) | patch: each f x f patch coded alone, so equal patches get equal codes
    dropout: float = 0.0
    quantizer: QuantizerConfig = field(default_factory=lambda: QuantizerConfig(codebook_size=16384, dim=8))

    def validate(self, prefix: str = "conv.") -> None:
        at_least(self, 1, "ch", "z_channels", "num_res_blocks", "norm_groups", prefix=prefix)
        if not self.ch_mult or min(self.ch_mult) < 1:
            raise ConfigError(f"{prefix}ch_mult must be one or more factors >= 1, got {list(self.ch_mult)}")
        for c in (self.ch * m for m in self.ch_mult):
            if c % min(self.norm_groups, c):
                raise ConfigError(f"{prefix}norm_groups ({self.norm_groups}) must divide every width, not {c}")
        if self.encoder not in ("conv", "patch"):
            raise ConfigError(f"{prefix}encoder must be conv or patch, got {self.encoder!r}")
        self.quantizer.validate(prefix + "quantizer.")


def _norm(c: int, groups: int) -> nn.GroupNorm:
    return nn.GroupNorm(min(groups, c), c, eps=1e-6, affine=True)


class ResnetBlock(nn.Module):
    def __init__(self, cin: int, cout: int, dropout: float, groups: int):
        super().__init__()
        self.norm1 = _norm(cin, groups)
        self.conv1 = nn.Conv2d(cin, cout, 3, 1, 1)
        self.norm2 = _norm(cout, groups)
        self.dropout = nn.Dropout(dropout)
        self.conv2 = nn.Conv2d(cout, cout, 3, 1, 1)
        if cin != cout:
            self.nin_shortcut = nn.Conv2d(cin, cout, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = self.conv1(F.silu(self.norm1(x)))
        h = self.conv2(self.dropout(F.silu(self.norm2(h))))
        return (self.nin_shortcut(x) if hasattr(self, "nin_shortcut") else x) + h


class AttnBlock(nn.Module):
    """Single-head self-attention over all positions, with 1x1 convolutions for q, k, v and the output."""

    def __init__(self, c: int, groups: int):
        super().__init__()
        self.norm = _norm(c, groups)
        self.q, self.k, self.v, self.proj_out = (nn.Conv2d(c, c, 1) for _ in range(4))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, c, h, w = x.shape
        n = self.norm(x)
        q, k, v = (m(n).reshape(b, 1, c, h * w).transpose(2, 3) for m in (self.q, self.k, self.v))  # (B, 1, HW, C)
        out = F.scaled_dot_product_attention(q, k, v).transpose(2, 3).reshape(b, c, h, w)
        return x + self.proj_out(out)


class Downsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 2, 0)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.pad(x, (0, 1, 0, 1)))  # pad right and bottom only, as LlamaGen does


class Upsample(nn.Module):
    def __init__(self, c: int):
        super().__init__()
        self.conv = nn.Conv2d(c, c, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv(F.interpolate(x, scale_factor=2.0, mode="nearest"))


class _Level(nn.Module):
    """One resolution: res blocks, attention (deepest level only) and a resampler."""

    def __init__(self, cin: int, cout: int, blocks: int, attn: bool, resample: type | None, cfg: ConvVQConfig):
        super().__init__()
        g = cfg.norm_groups
        self.res = nn.ModuleList(ResnetBlock(cin if i == 0 else cout, cout, cfg.dropout, g) for i in range(blocks))
        self.attn = nn.ModuleList(AttnBlock(cout, g) for _ in range(blocks)) if attn else nn.ModuleList()
        if resample is Downsample:
            self.downsample = Downsample(cout)
        elif resample is Upsample:
            self.upsample = Upsample(cout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for i, block in enumerate(self.res):
            x = block(x)
            if len(self.attn):
                x = self.attn[i](x)
        if hasattr(self, "downsample"):
            x = self.downsample(x)
        if hasattr(self, "upsample"):
            x = self.upsample(x)
        return x


def _mid(c: int, cfg: ConvVQConfig) -> nn.ModuleList:
    g = cfg.norm_groups
    return nn.ModuleList([ResnetBlock(c, c, cfg.dropout, g), AttnBlock(c, g), ResnetBlock(c, c, cfg.dropout, g)])


class Encoder(nn.Module):
    def __init__(self, cfg: ConvVQConfig):
        super().__init__()
        chs = [cfg.ch * m for m in (1, *cfg.ch_mult)]
        last = len(cfg.ch_mult) - 1
        self.conv_in = nn.Conv2d(3, cfg.ch, 3, 1, 1)
        self.conv_blocks = nn.ModuleList(
            _Level(chs[i], chs[i + 1], cfg.num_res_blocks, i == last, None if i == last else Downsample, cfg)
            for i in range(len(cfg.ch_mult))
        )
        self.mid = _mid(chs[-1], cfg)
        self.norm_out = _norm(chs[-1], cfg.norm_groups)
        self.conv_out = nn.Conv2d(chs[-1], cfg.z_channels, 3, 1, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(x)
        for level in self.conv_blocks:
            x = level(x)
        for block in self.mid:
            x = block(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class PatchEncoder(nn.Module):
    """Each f x f patch on its own: a strided convolution, then per-position layers. A code depends on its patch
    alone, so a flat background is one code everywhere: token statistics a small AR model learns quickly."""

    def __init__(self, cfg: ConvVQConfig):
        super().__init__()
        f, width = 2 ** (len(cfg.ch_mult) - 1), 4 * cfg.ch
        self.conv_in = nn.Conv2d(3, width, f, f)
        layers = [nn.SiLU(), nn.Conv2d(width, width, 1), nn.SiLU(), nn.Conv2d(width, width, 1), nn.SiLU()]
        self.mlp = nn.Sequential(*layers)
        self.conv_out = nn.Conv2d(width, cfg.z_channels, 1)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.conv_out(self.mlp(self.conv_in(x)))


class Decoder(nn.Module):
    def __init__(self, cfg: ConvVQConfig):
        super().__init__()
        chs = [cfg.ch * m for m in reversed(cfg.ch_mult)]  # deepest level first
        last = len(chs) - 1
        self.conv_in = nn.Conv2d(cfg.z_channels, chs[0], 3, 1, 1)
        self.mid = _mid(chs[0], cfg)
        self.conv_blocks = nn.ModuleList(
            _Level(chs[max(i - 1, 0)], chs[i], cfg.num_res_blocks + 1, i == 0, None if i == last else Upsample, cfg)
            for i in range(len(chs))
        )
        self.norm_out = _norm(chs[-1], cfg.norm_groups)
        self.conv_out = nn.Conv2d(chs[-1], 3, 3, 1, 1)

    def forward(self, z: torch.Tensor) -> torch.Tensor:
        x = self.conv_in(z)
        for block in self.mid:
            x = block(x)
        for level in self.conv_blocks:
            x = level(x)
        return self.conv_out(F.silu(self.norm_out(x)))


class ConvVQ(FrameByFrame):
    """Images (B, 3, H, W) in [-1, 1] <-> codes (B, H/f, W/f), f = 2 ** (len(ch_mult) - 1); videos frame by frame."""

    def __init__(self, cfg: ConvVQConfig):
        super().__init__()
        cfg.validate()
        self.cfg = cfg
        self.encoder = Encoder(cfg) if cfg.encoder == "conv" else PatchEncoder(cfg)
        self.decoder = Decoder(cfg)
        self.quantize = make_quantizer(cfg.quantizer)
        self.quant_conv = nn.Conv2d(cfg.z_channels, cfg.quantizer.dim, 1)
        self.post_quant_conv = nn.Conv2d(cfg.quantizer.dim, cfg.z_channels, 1)

    @property
    def codebook_size(self) -> int:
        return self.quantize.codebook_size

    @property
    def factor(self) -> int:
        return 2 ** (len(self.cfg.ch_mult) - 1)

    def grid(self, shape: tuple[int, ...]) -> tuple[int, ...]:
        """Code grid for pixels of shape (H, W) or (T, H, W)."""
        *t, h, w = shape
        return (*t, h // self.factor, w // self.factor)

    def quantized(self, pixels: torch.Tensor) -> Quantized:
        return self.quantize(self.quant_conv(self.encoder(pixels)))

    def forward_image(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        q = self.quantized(pixels)
        return self.decoder(self.post_quant_conv(q.latent)), q

    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.quantized(pixels).codes

    def decode_image(self, codes: torch.Tensor) -> torch.Tensor:
        return self.decoder(self.post_quant_conv(self.quantize.lookup(codes)))

    def last_layer(self) -> torch.Tensor:
        return self.decoder.conv_out.weight
