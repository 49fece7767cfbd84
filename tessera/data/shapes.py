"""The Shapes world as an endless, seeded source of training images and clips."""

from __future__ import annotations

import numpy as np
import torch

from tessera.world.render import render_image, render_video
from tessera.world.scene import VIDEO_FRAMES, Scene, check_canvas, sample_scene


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]; a (B, T, H, W, 3) stack -> (B, 3, T, H, W)."""
    x = torch.tensor(images).float() / 127.5 - 1  # a copy: PIL arrays are read-only
    return x.permute(0, 4, 1, 2, 3) if x.dim() == 5 else x.movedim(-1, -3)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) or (B, 3, T, H, W) in [-1, 1] -> uint8 (B, H, W, 3) or (B, T, H, W, 3)."""
    x = ((pixels.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return (x.permute(0, 2, 3, 4, 1) if x.dim() == 5 else x.permute(0, 2, 3, 1)).cpu().numpy()


class ShapesSource:
    """Fresh random scenes every call: images (B, 3, H, W) or 9-frame clips (B, 3, 9, H, W)."""

    def __init__(self, canvas: int = 64, video: bool = False, frames: int = VIDEO_FRAMES):
        self.canvas, self.video, self.frames = check_canvas(canvas), video, frames
        self.skipped: dict[str, str] = {}

    def scenes(self, n: int, rng: np.random.Generator) -> list[Scene]:
        return [sample_scene(rng, self.canvas, video=self.video) for _ in range(n)]

    def render(self, scenes: list[Scene]) -> torch.Tensor:
        if self.video:
            return to_tensor(np.stack([render_video(s, self.frames) for s in scenes]))
        return to_tensor(np.stack([render_image(s) for s in scenes]))

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        return self.render(self.scenes(n, rng))
