"""User data: a folder of images, or of videos (GIF/MP4 files or sub-folders of frames).

Files are read lazily; an unreadable one is skipped and counted in `skipped`, never a crash.
"""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image

from tessera.data.shapes import ShapesSource
from tessera.errors import InputError
from tessera.pictures import to_tensor

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
VIDEO_EXTS = {".gif", ".mp4", ".webm", ".avi", ".mov", ".mkv"}


def fit(image: np.ndarray, side: int) -> np.ndarray:
    """Resize the shorter side to `side` and centre-crop to a square: (side, side, 3) uint8."""
    im = Image.fromarray(image).convert("RGB")
    scale = side / min(im.size)
    im = im.resize((max(side, round(im.width * scale)), max(side, round(im.height * scale))), Image.BICUBIC)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return np.asarray(im.crop((left, top, left + side, top + side)))


class _Folder:
    def __init__(self, root: str | Path, canvas: int, items: list[Path]):
        self.root, self.canvas, self.items = Path(root), canvas, items
        self.skipped: dict[str, str] = {}
        if not items:
            raise InputError(f"no usable files under {root}")

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        out = []
        while len(out) < n:
            if len(self.skipped) >= len(self.items):
                raise InputError(f"none of the {len(self.items)} files under {self.root} could be read")
            path = self.items[int(rng.integers(len(self.items)))]
            if str(path) in self.skipped:
                continue
            try:
                out.append(self.read(path))
            except Exception as e:  # any unreadable file is skipped and counted
                self.skipped[str(path)] = f"{e.__class__.__name__}: {str(e)[:80]}"
        return to_tensor(np.stack(out))

    def read(self, path: Path) -> np.ndarray:
        raise NotImplementedError


class ImageFolder(_Folder):
    """Every image file under root (recursive), fitted to canvas x canvas."""

    def __init__(self, root: str | Path, canvas: int = 64):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"no such folder: {root}")
        super().__init__(root, canvas, sorted(p for p in root.rglob("*") if p.suffix.lower() in IMAGE_EXTS))

    def read(self, path: Path) -> np.ndarray:
        with Image.open(path) as im:
            return fit(np.asarray(im.convert("RGB")), self.canvas)


class VideoFolder(_Folder):
    """Video files and frame folders under root; each sample is the first `frames` frames, fitted."""

    def __init__(self, root: str | Path, canvas: int = 64, frames: int = 9):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"no such folder: {root}")
        files = [p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in VIDEO_EXTS]
        frame_dirs = [
            d for d in root.rglob("*") if d.is_dir() and any(p.suffix.lower() in IMAGE_EXTS for p in d.iterdir())
        ]
        self.frames = frames
        super().__init__(root, canvas, sorted(files + frame_dirs))

    def read(self, path: Path) -> np.ndarray:
        if path.is_dir():
            names = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_EXTS)[: self.frames]
            clip = [np.asarray(Image.open(p).convert("RGB")) for p in names]
        else:
            clip = [frame[..., :3] for _, frame in zip(range(self.frames), iio.imiter(path), strict=False)]
        if len(clip) < self.frames:
            raise ValueError(f"{len(clip)} frames, need {self.frames}")
        return np.stack([fit(f if f.ndim == 3 else np.repeat(f[..., None], 3, -1), self.canvas) for f in clip])


def source_for(data: str, canvas: int, video: bool):
    """'shapes', 'shapes-video', or a folder path (images, or videos when `video`)."""
    if data in ("shapes", "shapes-video"):
        return ShapesSource(canvas, video=data == "shapes-video" or video)
    return VideoFolder(data, canvas) if video else ImageFolder(data, canvas)
