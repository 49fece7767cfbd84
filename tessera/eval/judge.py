"""The judge: a small segmentation network (shape and colour per pixel) plus connected components -> objects."""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from scipy import ndimage

from tessera.engine import checkpoint
from tessera.errors import InputError
from tessera.pictures import to_tensor
from tessera.world.scene import COLOURS, POLYGONS, SHAPES, SIZE_FRACTION

JUDGE_RES = 64  # the network reads every image at this size


def _unit_area(shape: str) -> float:
    poly = POLYGONS[shape]
    if poly is None:
        return math.pi
    x, y = poly[:, 0], poly[:, 1]
    return 0.5 * abs(float(np.dot(x, np.roll(y, -1)) - np.dot(y, np.roll(x, -1))))


# a component larger than the geometric mean of a small and a large object's area (at JUDGE_RES) reads as large
SIZE_SPLIT_AREA = {s: _unit_area(s) * SIZE_FRACTION["small"] * SIZE_FRACTION["large"] * JUDGE_RES**2 for s in SHAPES}
CLUTTER = "clutter"  # a mark that is none of the five shapes: a blob, a fragment, a smear
CLASSES = (*SHAPES, CLUTTER)  # what the judge reads a component as
SIZE_SPLIT_AREA[CLUTTER] = float(np.mean(list(SIZE_SPLIT_AREA.values())))
WEIGHTS_DIR = resources.files("tessera.eval") / "data" / "judge"


@dataclass
class JudgeConfig:
    widths: tuple[int, int, int, int] = (16, 32, 64, 96)
    min_area: float = 8.0  # pixels at JUDGE_RES: smaller components are noise
    version: str = "judge-v3"


@dataclass(frozen=True)
class Detection:
    """One object read from an image; box in the image's own pixels."""

    shape: str
    colour: str
    size: str
    box: tuple[float, float, float, float]
    confidence: float
    area: float

    @property
    def centre(self) -> tuple[float, float]:
        return (self.box[0] + self.box[2]) / 2, (self.box[1] + self.box[3]) / 2

    def to_dict(self) -> dict:
        return asdict(self)


def _block(cin: int, cout: int, stride: int = 1) -> nn.Sequential:
    return nn.Sequential(
        nn.Conv2d(cin, cout, 3, stride, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
        nn.Conv2d(cout, cout, 3, 1, 1, bias=False),
        nn.BatchNorm2d(cout),
        nn.ReLU(inplace=True),
    )


class JudgeNet(nn.Module):
    """A four-level U-Net: (B, 3, 64, 64) in [-1, 1] -> class logits (B, 7, H, W: background, five shapes,
    clutter), colour logits (B, 9, H, W: background, eight colours)."""

    def __init__(self, cfg: JudgeConfig):
        super().__init__()
        w1, w2, w3, w4 = cfg.widths
        self.down = nn.ModuleList([_block(3, w1), _block(w1, w2, 2), _block(w2, w3, 2), _block(w3, w4, 2)])
        self.up = nn.ModuleList([_block(w4 + w3, w3), _block(w3 + w2, w2), _block(w2 + w1, w1)])
        self.head = nn.Conv2d(w1, 1 + len(CLASSES) + 1 + len(COLOURS), 1)

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        skips = []
        for block in self.down:
            x = block(x)
            skips.append(x)
        x = skips.pop()
        for block in self.up:
            skip = skips.pop()
            x = block(torch.cat([F.interpolate(x, size=skip.shape[-2:], mode="nearest"), skip], dim=1))
        logits = self.head(x)
        return logits[:, : 1 + len(CLASSES)], logits[:, 1 + len(CLASSES) :]


def _conditional_mean(p: np.ndarray, fg: np.ndarray) -> np.ndarray:
    """Class probabilities given foreground, averaged over a component's pixels weighted by foreground: (K,)."""
    conditional = p / np.maximum(fg, 1e-6)
    return (conditional * fg).sum(axis=1) / max(fg.sum(), 1e-6)


def to_batch(images) -> torch.Tensor:
    """Images as float (B, 3, H, W) in [-1, 1]: accepts that, or uint8 (H, W, 3) / (B, H, W, 3) arrays."""
    if isinstance(images, torch.Tensor) and images.is_floating_point():
        x = images if images.dim() == 4 else images[None]
        return x.float()
    arr = np.asarray(images)
    return to_tensor(arr[None] if arr.ndim == 3 else arr)


class Judge:
    """Reads the objects in images. `Judge.load()` gives the shipped, versioned judge."""

    def __init__(self, net: JudgeNet, cfg: JudgeConfig):
        self.net = net.eval()
        self.cfg = cfg

    @classmethod
    def load(cls, folder: str | Path | None = None) -> Judge:
        """Load a judge checkpoint folder (default: the shipped judge); CheckpointError if it is not one."""
        folder = Path(str(WEIGHTS_DIR)) if folder is None else Path(folder)
        cfg = checkpoint.load_config(folder, "judge", JudgeConfig())
        net = JudgeNet(cfg)
        checkpoint.load_into(net, checkpoint.load_weights(folder), str(folder))
        return cls(net, cfg)

    @torch.no_grad()
    def probabilities(self, images) -> tuple[torch.Tensor, torch.Tensor]:
        """Per-pixel class and colour probabilities at JUDGE_RES: (B, 7, 64, 64), (B, 9, 64, 64)."""
        x = to_batch(images)
        if x.shape[-1] != JUDGE_RES or x.shape[-2] != JUDGE_RES:
            x = F.interpolate(x, size=(JUDGE_RES, JUDGE_RES), mode="bilinear", antialias=True, align_corners=False)
        shape_logits, colour_logits = self.net(x)
        return shape_logits.softmax(1), colour_logits.softmax(1)

    def read(self, images, batch_size: int = 256) -> list[list[Detection]]:
        """The objects in each image, most confident first."""
        return self.read_labelled(images, batch_size)[0]

    def read_labelled(self, images, batch_size: int = 256) -> tuple[list[list[Detection]], np.ndarray]:
        """The objects in each image, most confident first, and from the same pass each pixel's class at JUDGE_RES
        (B, JUDGE_RES, JUDGE_RES): 0 background, 1 + the index of a shape in CLASSES (the last: clutter)."""
        x = to_batch(images)
        if x.shape[-1] != x.shape[-2]:
            raise InputError(f"the judge reads square images; got {x.shape[-1]}x{x.shape[-2]}")
        canvas = x.shape[-1]
        out, labels = [], []
        for i in range(0, x.shape[0], batch_size):
            p_shape, p_colour = self.probabilities(x[i : i + batch_size])
            labels.append(p_shape.argmax(1).numpy())
            for ps, pc in zip(p_shape.numpy(), p_colour.numpy(), strict=True):
                out.append(self._objects(ps, pc, canvas))
        return out, np.concatenate(labels)

    def _objects(self, p_shape: np.ndarray, p_colour: np.ndarray, canvas: int) -> list[Detection]:
        foreground = p_shape[0] < 0.5
        labels, n = ndimage.label(foreground)
        scale = canvas / JUDGE_RES
        found = []
        for k, window in enumerate(ndimage.find_objects(labels), start=1):
            mask = labels[window] == k
            area = float(mask.sum())
            if area < self.cfg.min_area:
                continue
            fg = 1 - p_shape[0][window][mask]  # (P,) foreground probability of each pixel
            s = _conditional_mean(p_shape[(slice(1, None), *window)][:, mask], fg)  # (6,)
            c = _conditional_mean(p_colour[(slice(1, None), *window)][:, mask], 1 - p_colour[0][window][mask])  # (8,)
            rows, cols = window
            box = (cols.start * scale, rows.start * scale, cols.stop * scale, rows.stop * scale)
            shape = CLASSES[int(s.argmax())]
            found.append(
                Detection(
                    shape=shape,
                    colour=COLOURS[int(c.argmax())],
                    size="large" if area > SIZE_SPLIT_AREA[shape] else "small",
                    box=box,
                    confidence=float(s.max() * c.max()),
                    area=area * scale * scale,
                )
            )
        return sorted(found, key=lambda d: -d.confidence)
