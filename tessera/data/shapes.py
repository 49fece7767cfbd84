"""The Shapes world as an endless, seeded source of training images and clips."""

from __future__ import annotations

import numpy as np
import torch

from tessera.pictures import to_tensor
from tessera.world.render import render_image, render_video
from tessera.world.scene import VIDEO_FRAMES, Pairs, Scene, check_canvas, sample_scene


class ShapesSource:
    """Fresh random scenes every call: images (B, 3, H, W) or 9-frame clips (B, 3, 9, H, W); no object is a
    (shape, colour) pair of `avoid`."""

    def __init__(self, canvas: int = 64, video: bool = False, frames: int = VIDEO_FRAMES, avoid: Pairs = frozenset()):
        self.canvas, self.video, self.frames, self.avoid = check_canvas(canvas), video, frames, avoid
        self.skipped: dict[str, str] = {}

    def scenes(self, n: int, rng: np.random.Generator) -> list[Scene]:
        return [sample_scene(rng, self.canvas, video=self.video, avoid=self.avoid) for _ in range(n)]

    def render(self, scenes: list[Scene]) -> torch.Tensor:
        if self.video:
            return to_tensor(np.stack([render_video(s, self.frames) for s in scenes]))
        return to_tensor(np.stack([render_image(s) for s in scenes]))

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        return self.render(self.scenes(n, rng))
