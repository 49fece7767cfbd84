"""A patch as a coverage mask times one colour over a flat background: two small codebooks in place of one big one.

A flat-coloured world's patch is the background blended with (almost always) one colour by a coverage mask
between 0 and 1 (anti-aliased edges). Coding the mask and the colour apart lets `masks` x `colours` codes stand
for every edge of every colour, where a codebook of whole patches must learn each edge once per colour. This is
what lets 8 x 8 patches keep sharp shapes (bench/RESULTS.md): 64 tokens for a 64 x 64 image instead of 256.
A patch is given the colour whose blend fits it best; the mask, fitted for that colour, is quantized by k-means.
"""

from __future__ import annotations

import torch
import torch.nn as nn

from tessera.tokenizer.quantizers import Quantized, QuantizerConfig, VectorQuantizer, perplexity

FAINT = 0.05  # a mask whose strongest pixel covers less than this is background: its code takes colour 0
VISIBLE = 0.25  # squared distance from the background (in [-1, 1] RGB) above which a pixel shows a colour
NEW = 0.2  # a flat pixel this far (RGB in [-1, 1]) from every colour of the palette is a new colour
FLAT = 0.02  # a pixel this close to its left and upper neighbours in every channel lies inside a flat region


class MaskColourQuantizer(nn.Module):
    """Patch vectors (B, 3 P, *S) -> codes mask x colours + colour, each decoded as background + mask (colour -
    background). In training the masks are fitted by online k-means and the palette takes, in the order met, the
    first `colours` distinct colours of flat regions."""

    def __init__(self, masks: QuantizerConfig, colours: int, background: tuple[float, float, float]):
        super().__init__()
        self.masks = VectorQuantizer(masks)
        self.masks.embedding.weight.requires_grad_(False)
        self.register_buffer("background", torch.tensor(background, dtype=torch.float32))  # (3,) in [-1, 1]
        self.register_buffer("palette", self.background.repeat(colours, 1))  # (K, 3) the colours found so far
        self.register_buffer("found", torch.tensor(0))

    @property
    def codebook_size(self) -> int:
        return self.masks.codebook_size * len(self.palette)

    @torch.no_grad()
    def _find_colours(self, pixels: torch.Tensor) -> None:
        """Add to the palette, while it has room, each flat pixel (M, 3) farther than NEW from every colour in it."""
        while (n := int(self.found)) < len(self.palette):
            new = pixels[torch.cdist(pixels, self.palette[:n]).amin(1) > NEW] if n else pixels
            if not len(new):
                return
            self.palette[n] = new[0]
            self.found += 1

    def usage(self) -> float:
        return self.masks.usage()

    def _blend(self, masks: torch.Tensor, colours: torch.Tensor) -> torch.Tensor:
        """masks (N, P) and colours (N, 3) -> patch vectors (N, 3 P)."""
        b = self.background
        return (b[None, :, None] + masks[:, None, :] * (colours - b)[:, :, None]).flatten(1)

    def lookup(self, codes: torch.Tensor) -> torch.Tensor:
        """Codes (B, *S) -> patch vectors (B, 3 P, *S)."""
        k = len(self.palette)
        flat = codes.flatten()
        masks = self.masks.codebook()[flat // k].clamp(0, 1)  # (N, P)
        patches = self._blend(masks, self.palette[flat % k])
        return torch.movedim(patches.reshape(*codes.shape, -1), -1, 1)

    def forward(self, z: torch.Tensor) -> Quantized:
        shape = (z.shape[0], *z.shape[2:])
        flat = torch.movedim(z, 1, -1).reshape(-1, z.shape[1])  # (N, 3 P)
        d = flat.reshape(flat.shape[0], 3, -1) - self.background[None, :, None]  # (N, 3, P) from the background
        learning = self.training and torch.is_grad_enabled()
        if learning:  # fit the colours to flat pixels that show one (not to edges, which blend two)
            side = round(d.shape[-1] ** 0.5)
            grid = d.reshape(-1, 3, side, side)
            flat_x = (grid[..., 1:, 1:] - grid[..., 1:, :-1]).abs().amax(1) < FLAT  # (N, f-1, f-1) like its left
            flat_y = (grid[..., 1:, 1:] - grid[..., :-1, 1:]).abs().amax(1) < FLAT  # ... and the one above
            shown = flat_x & flat_y & (grid[..., 1:, 1:].pow(2).sum(1) > VISIBLE)
            if shown.any():
                self._find_colours(grid[..., 1:, 1:].movedim(1, -1)[shown] + self.background)  # (M, 3)
        u = self.palette - self.background  # (K, 3) each colour's direction from the background
        alpha = (torch.einsum("ncp,kc->nkp", d, u) / u.pow(2).sum(1).clamp_min(1e-6)[None, :, None]).clamp(0, 1)
        error = (d[:, None] - alpha[:, :, None] * u[None, :, :, None]).pow(2).sum((2, 3))  # (N, K)
        error[:, int(self.found) :] = float("inf")  # colours not found yet
        colour = error.argmin(1)
        best = alpha[torch.arange(len(d)), colour]  # (N, P) the mask for that colour
        q = self.masks(best[:, :, None])
        mask = q.codes.flatten()
        colour = torch.where(self.masks.codebook()[mask].amax(1) < FAINT, 0, colour)
        codes = (mask * len(self.palette) + colour).reshape(shape)
        return Quantized(self.lookup(codes), codes, z.new_zeros(()), perplexity(codes, self.codebook_size))
