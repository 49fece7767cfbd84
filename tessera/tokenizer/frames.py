"""Image tokenizers code videos frame by frame: forward, encode and decode on clips, from their image versions."""

from __future__ import annotations

import torch
import torch.nn as nn

from tessera.tokenizer.quantizers import Quantized


class FrameByFrame(nn.Module):
    """A subclass codes images (`forward_image`, `encode_image`, `decode_image`, `grid`); clips reuse them."""

    def forward(self, pixels: torch.Tensor) -> tuple[torch.Tensor, Quantized]:
        """Reconstruction and the quantizer's output; videos (B, 3, T, H, W) are coded frame by frame."""
        if pixels.dim() == 4:
            return self.forward_image(pixels)
        b, _, t = pixels.shape[:3]
        recon, q = self.forward_image(pixels.transpose(1, 2).flatten(0, 1))
        codes = q.codes.reshape(b, t, *q.codes.shape[1:])
        recon = recon.reshape(b, t, *recon.shape[1:]).transpose(1, 2)
        return recon, Quantized(q.latent, codes, q.loss, q.perplexity)

    def video_grid(self, shape: tuple[int, int, int]) -> tuple[int, int, int]:
        """Code grid (T, h, w) of a clip of shape (T, H, W): one code frame per frame."""
        return (shape[0], *self.grid(shape[1:]))

    @torch.no_grad()
    def encode(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, H, W) -> (B, h, w) codes; (B, 3, T, H, W) -> (B, T, h, w)."""
        if pixels.dim() == 4:
            return self.encode_image(pixels)
        b, t = pixels.shape[0], pixels.shape[2]
        return self.encode_image(pixels.transpose(1, 2).flatten(0, 1)).reshape(b, t, *self.grid(pixels.shape[-2:]))

    @torch.no_grad()
    def decode(self, codes: torch.Tensor) -> torch.Tensor:
        """(B, h, w) codes -> (B, 3, H, W) pixels; (B, T, h, w) -> (B, 3, T, H, W)."""
        if codes.dim() == 3:
            return self.decode_image(codes)
        b, t = codes.shape[:2]
        frames = self.decode_image(codes.flatten(0, 1))
        return frames.reshape(b, t, *frames.shape[1:]).transpose(1, 2)
