"""The tokenizer interface in one place: config, construction, save and load.

Every tokenizer has `encode(pixels) -> codes` on a (t,) h, w grid (a sequence tokenizer's is one row, 1 x n),
`decode(codes) -> pixels`, `codebook_size`, `grid(shape)`, and `forward(pixels) -> (reconstruction, Quantized)`
for training.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn as nn

from tessera.config import to_dict
from tessera.engine import checkpoint
from tessera.errors import ConfigError
from tessera.tokenizer.conv import ConvVQ, ConvVQConfig
from tessera.tokenizer.omni import OmniConfig, OmniTok
from tessera.tokenizer.patch import PatchVQ, PatchVQConfig
from tessera.tokenizer.seq import SeqTok, SeqTokConfig

ARCHS = ("conv", "omni", "patch", "seq")


@dataclass
class TokenizerConfig:
    arch: str = "conv"  # conv | omni | patch | seq (one-dimensional)
    conv: ConvVQConfig = field(default_factory=ConvVQConfig)
    omni: OmniConfig = field(default_factory=OmniConfig)
    patch: PatchVQConfig = field(default_factory=PatchVQConfig)
    seq: SeqTokConfig = field(default_factory=SeqTokConfig)

    def validate(self) -> None:
        if self.arch not in ARCHS:
            raise ConfigError(f"unknown tokenizer arch {self.arch!r}; expected one of {', '.join(ARCHS)}")
        getattr(self, self.arch).validate(f"tokenizer.{self.arch}.")


def build(cfg: TokenizerConfig) -> nn.Module:
    cfg.validate()
    return {"conv": ConvVQ, "omni": OmniTok, "patch": PatchVQ, "seq": SeqTok}[cfg.arch](getattr(cfg, cfg.arch))


def save(folder: str | Path, model: nn.Module, cfg: TokenizerConfig, trainer=None, state=None) -> None:
    checkpoint.save(folder, "tokenizer", to_dict(cfg), model.state_dict(), trainer, state)


def load(folder: str | Path) -> tuple[nn.Module, TokenizerConfig]:
    """A tokenizer checkpoint folder -> (model in eval mode, config); ConfigError on anything wrong with it."""
    cfg = checkpoint.load_config(folder, "tokenizer", TokenizerConfig())
    model = build(cfg)
    checkpoint.load_into(model, checkpoint.load_weights(folder), str(folder))
    return model.eval(), cfg


def code_vectors(model: nn.Module) -> torch.Tensor:
    """(codebook_size, dim) every code's vector in the quantizer's latent space, scaled to unit variance."""
    if getattr(model, "quantize", None) is None:
        raise ConfigError("code_vectors needs a visual tokenizer with a codebook (a vq, fsq or lfq latent)")
    device = next(iter(model.state_dict().values())).device
    codes = torch.arange(model.codebook_size, device=device)[None]  # (1, K)
    with torch.no_grad():
        vectors = model.quantize.lookup(codes)[0].T.float()  # (K, dim)
    return vectors / vectors.std().clamp(min=1e-6)
