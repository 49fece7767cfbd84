"""Tokenizer losses: reconstruction, an optional perceptual (LPIPS-style) loss, and PatchGAN hinge GAN (2D and 3D)."""

from __future__ import annotations

from pathlib import Path

import torch
import torch.nn as nn
import torch.nn.functional as F

from tessera.errors import ConfigError, InputError


def reconstruction(recon: torch.Tensor, target: torch.Tensor, kind: str = "l1") -> torch.Tensor:
    if kind == "l1":
        return (recon - target).abs().mean()
    if kind == "l2":
        return (recon - target).pow(2).mean()
    raise ConfigError(f"unknown reconstruction loss {kind!r}; expected l1 or l2")


class PatchDiscriminator(nn.Module):
    """PatchGAN: strided 4x4 convolutions to a map of real/fake logits; Conv3d for videos (dims=3)."""

    def __init__(self, dims: int = 2, ch: int = 64, layers: int = 3):
        super().__init__()
        conv = nn.Conv2d if dims == 2 else nn.Conv3d
        norm = nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d
        mods: list[nn.Module] = [conv(3, ch, 4, 2, 1), nn.LeakyReLU(0.2, True)]
        c = ch
        for i in range(1, layers + 1):
            nc = ch * min(2**i, 8)
            stride = 2 if i < layers else 1
            mods += [conv(c, nc, 4, stride, 1, bias=False), norm(nc), nn.LeakyReLU(0.2, True)]
            c = nc
        mods.append(conv(c, 1, 4, 1, 1))
        self.net = nn.Sequential(*mods)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x)


def hinge_d_loss(real: torch.Tensor, fake: torch.Tensor) -> torch.Tensor:
    return 0.5 * (F.relu(1 - real).mean() + F.relu(1 + fake).mean())


def hinge_g_loss(fake: torch.Tensor) -> torch.Tensor:
    return -fake.mean()


def adaptive_weight(rec_loss: torch.Tensor, g_loss: torch.Tensor, last: torch.Tensor, cap: float = 1e4) -> torch.Tensor:
    """Scale the GAN term so its gradient at the decoder's last layer matches the reconstruction's (VQGAN)."""
    rec_grad = torch.autograd.grad(rec_loss, last, retain_graph=True)[0]
    g_grad = torch.autograd.grad(g_loss, last, retain_graph=True)[0]
    return (rec_grad.norm() / (g_grad.norm() + 1e-4)).clamp(0, cap).detach()


VGG16_LAYERS = (64, 64, "M", 128, 128, "M", 256, 256, 256, "M", 512, 512, 512, "M", 512, 512, 512)
TAPS = (3, 8, 15, 22, 29)  # relu1_2, relu2_2, relu3_3, relu4_3, relu5_3 in the `features` index


class Perceptual(nn.Module):
    """LPIPS (VGG16 variant) from a local safetensors file holding `features.N.*` (VGG16) and `lins.K.weight`.

    Nothing is downloaded: without a file there is no perceptual loss.
    """

    def __init__(self, weights: str | Path):
        super().__init__()
        from safetensors.torch import load_file

        layers: list[nn.Module] = []
        c = 3
        for v in VGG16_LAYERS:
            if v == "M":
                layers.append(nn.MaxPool2d(2))
            else:
                layers += [nn.Conv2d(c, v, 3, 1, 1), nn.ReLU(inplace=False)]
                c = v
        self.features = nn.Sequential(*layers)
        self.lins = nn.ModuleList(nn.Conv2d(ch, 1, 1, bias=False) for ch in (64, 128, 256, 512, 512))
        self.register_buffer("shift", torch.tensor([-0.030, -0.088, -0.188])[None, :, None, None])
        self.register_buffer("scale", torch.tensor([0.458, 0.448, 0.450])[None, :, None, None])
        try:
            state = load_file(str(weights))
            self.load_state_dict(state, strict=False)
            missing = [k for k in self.state_dict() if k not in state and k not in ("shift", "scale")]
        except Exception as e:
            raise InputError(f"cannot load perceptual weights {weights}: {str(e).splitlines()[0][:120]}") from e
        if missing:
            raise InputError(f"perceptual weights {weights} lack {len(missing)} tensors (e.g. {missing[0]})")
        self.requires_grad_(False).eval()

    def _taps(self, x: torch.Tensor) -> list[torch.Tensor]:
        out, h = [], (x - self.shift) / self.scale
        for i, layer in enumerate(self.features):
            h = layer(h)
            if i in TAPS:
                out.append(h / (h.pow(2).sum(1, keepdim=True).sqrt() + 1e-10))
        return out

    def forward(self, recon: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        if recon.dim() == 5:  # videos: frame by frame
            recon, target = (v.transpose(1, 2).flatten(0, 1) for v in (recon, target))
        total = recon.new_zeros(())
        for lin, a, b in zip(self.lins, self._taps(recon), self._taps(target), strict=True):
            total = total + lin((a - b).pow(2)).mean()
        return total
