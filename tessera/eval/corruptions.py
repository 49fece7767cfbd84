"""Image corruptions that generated images show (blur, noise, JPEG, colour jitter, small shifts, edges rough at
the scale of a tokenizer's patch), on batches."""

from __future__ import annotations

import io

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image

from tessera.world.scene import BACKGROUND

CORRUPTIONS = ("shift", "rough", "jpeg", "blur", "jitter", "noise")
PATCH = 4  # the quick tokenizer's patch on a 64-pixel canvas: the scale at which sampled edges go wrong


def shift(images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator, max_px: int = 2):
    """Translate each image (B, 3, H, W) and its label map (B, H, W) by up to max_px, filling with background."""
    m, (h, w) = max_px, images.shape[-2:]
    padded_i = F.pad(images, (m, m, m, m), value=BACKGROUND[0] / 127.5 - 1)
    padded_l = F.pad(labels, (m, m, m, m), value=0)
    out_i, out_l = torch.empty_like(images), torch.empty_like(labels)
    for b in range(images.shape[0]):
        dy, dx = (m + int(v) for v in rng.integers(-m, m + 1, size=2))
        out_i[b] = padded_i[b, :, dy : dy + h, dx : dx + w]
        out_l[b] = padded_l[b, dy : dy + h, dx : dx + w]
    return out_i, out_l


def rough(images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator, p: float = 0.5, block: int = PATCH):
    """Move a share p of the blocks on each shape's edge by one pixel (image and labels alike), as a model that
    draws patch by patch leaves them: notches and bumps, the shape still itself. H and W must be multiples of block."""
    b, _, h, w = images.shape
    blocks = labels.reshape(b, h // block, block, w // block, block)
    edge = blocks.amax(dim=(2, 4)) != blocks.amin(dim=(2, 4))  # (B, h/block, w/block): a mixed block
    moved = edge & torch.from_numpy(rng.random(edge.shape) < p)
    offset = torch.from_numpy(rng.integers(-1, 2, size=(2, *edge.shape))) * moved  # (2, B, h/block, w/block)
    dy, dx = (o.repeat_interleave(block, 1).repeat_interleave(block, 2) for o in offset)  # (B, H, W) each
    rows = (torch.arange(h).view(1, h, 1) + dy).clamp(0, h - 1)
    cols = (torch.arange(w).view(1, 1, w) + dx).clamp(0, w - 1)
    batch = torch.arange(b).view(b, 1, 1)
    return images.permute(0, 2, 3, 1)[batch, rows, cols].permute(0, 3, 1, 2), labels[batch, rows, cols]


def jpeg(images: torch.Tensor, rng: np.random.Generator, quality=(20, 85)) -> torch.Tensor:
    """Round-trip each image in [-1, 1] through JPEG at a random quality."""
    out = []
    for img in images:
        arr = ((img.permute(1, 2, 0).clamp(-1, 1) + 1) * 127.5).round().byte().numpy()
        buf = io.BytesIO()
        Image.fromarray(arr).save(buf, format="JPEG", quality=int(rng.integers(*quality)))
        back = np.asarray(Image.open(io.BytesIO(buf.getvalue())).convert("RGB"))
        out.append(torch.from_numpy(back.copy()).permute(2, 0, 1).float() / 127.5 - 1)
    return torch.stack(out)


def blur(images: torch.Tensor, rng: np.random.Generator, sigma=(0.3, 1.2)) -> torch.Tensor:
    """Gaussian blur with one random sigma per batch."""
    s = float(rng.uniform(*sigma))
    r = max(1, int(np.ceil(2.5 * s)))
    x = torch.arange(-r, r + 1, dtype=torch.float32)
    k = torch.exp(-(x**2) / (2 * s * s))
    k = k / k.sum()
    c = images.shape[1]
    padded = F.pad(images, (r, r, r, r), mode="replicate")
    out = F.conv2d(padded, k.view(1, 1, 1, -1).repeat(c, 1, 1, 1), groups=c)
    return F.conv2d(out, k.view(1, 1, -1, 1).repeat(c, 1, 1, 1), groups=c)


def jitter(images: torch.Tensor, rng: np.random.Generator, strength: float = 0.12) -> torch.Tensor:
    """Random brightness, contrast and saturation per image, small enough to keep every palette colour apart."""
    b = images.shape[0]
    u = lambda: torch.from_numpy(rng.uniform(-strength, strength, size=(b, 1, 1, 1))).float()  # noqa: E731
    x = (images + 1) / 2
    x = x * (1 + u())
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = (x - mean) * (1 + u()) + mean
    grey = x.mean(dim=1, keepdim=True)
    x = (x - grey) * (1 + u()) + grey
    return (x * 2 - 1).clamp(-1, 1)


def noise(images: torch.Tensor, rng: np.random.Generator, std=(0.02, 0.12)) -> torch.Tensor:
    """Additive Gaussian noise with a random standard deviation per batch."""
    g = torch.from_numpy(rng.standard_normal(images.shape)).float()
    return (images + float(rng.uniform(*std)) * g).clamp(-1, 1)


def corrupt(images: torch.Tensor, labels: torch.Tensor, rng: np.random.Generator, p: float = 0.5):
    """Apply each corruption with probability p, in a fixed order; returns (images, labels)."""
    if rng.random() < p:
        images, labels = shift(images, labels, rng)
    if rng.random() < p:
        images, labels = rough(images, labels, rng)
    if rng.random() < p:
        images = jpeg(images, rng)
    if rng.random() < p:
        images = blur(images, rng)
    if rng.random() < p:
        images = jitter(images, rng)
    if rng.random() < p:
        images = noise(images, rng)
    return images, labels
