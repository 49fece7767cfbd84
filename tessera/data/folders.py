"""User data: a folder of images, or of videos (GIF/MP4 files or sub-folders of frames).

Files are read lazily; an unreadable one is skipped and counted in `skipped`, never a crash.
"""

from __future__ import annotations

import itertools
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image

from tessera.data.shapes import ShapesSource
from tessera.errors import InputError
from tessera.pictures import load_image, to_tensor
from tessera.world.scene import Pairs

IMAGE_EXTS = {".png", ".jpg", ".jpeg", ".bmp", ".webp", ".gif", ".tif", ".tiff"}
VIDEO_EXTS = {".gif", ".mp4", ".webm", ".avi", ".mov", ".mkv"}


def fit(image: np.ndarray, side: int) -> np.ndarray:
    """Resize the shorter side to `side` and centre-crop to a square: (side, side, 3) uint8."""
    im = Image.fromarray(image).convert("RGB")
    scale = side / min(im.size)
    im = im.resize((max(side, round(im.width * scale)), max(side, round(im.height * scale))), Image.BICUBIC)
    left, top = (im.width - side) // 2, (im.height - side) // 2
    return np.asarray(im.crop((left, top, left + side, top + side)))


def listed(root: Path, exts: set[str], recursive: bool = True) -> tuple[list[Path], dict[str, str]]:
    """The files under root (in sub-folders too when recursive) named with one of exts: the regular ones, and the
    rest (pipes, sockets, dangling links) as skipped, with why."""
    found, skipped = [], {}
    for path in sorted(root.rglob("*") if recursive else root.iterdir()):
        if path.suffix.lower() in exts and not path.is_dir():
            if path.is_file():
                found.append(path)
            else:
                skipped[str(path)] = "not a regular file"
    return found, skipped


class _Folder:
    def __init__(self, root: str | Path, canvas: int, items: list[Path], skipped: dict[str, str]):
        self.root, self.canvas, self.items = Path(root), canvas, items
        self.skipped = skipped
        if not items:
            raise InputError(f"no usable files under {root}")

    def sample(self, n: int, rng: np.random.Generator) -> torch.Tensor:
        out = []
        while len(out) < n:
            if all(str(p) in self.skipped for p in self.items):
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
        super().__init__(root, canvas, *listed(root, IMAGE_EXTS))

    def read(self, path: Path) -> np.ndarray:
        return fit(load_image(path), self.canvas)


class VideoFolder(_Folder):
    """Video files and frame folders under root; each sample is the first `frames` frames, fitted."""

    def __init__(self, root: str | Path, canvas: int = 64, frames: int = 9):
        root = Path(root)
        if not root.is_dir():
            raise InputError(f"no such folder: {root}")
        files, skipped = listed(root, VIDEO_EXTS)
        frame_dirs = [d for d in root.rglob("*") if d.is_dir() and listed(d, IMAGE_EXTS, recursive=False)[0]]
        self.frames = frames
        super().__init__(root, canvas, sorted(files + frame_dirs), skipped)

    def read(self, path: Path) -> np.ndarray:
        clip = read_clip(path, self.canvas, self.frames)
        if len(clip) < self.frames:
            raise ValueError(f"{len(clip)} frames, need {self.frames}")
        return clip


def read_clip(path: Path, canvas: int, frames: int | None = None) -> np.ndarray:
    """The first `frames` (None: all) frames of a video file or a folder of frame images, fitted: (T, S, S, 3)."""
    if path.is_dir():
        clip = [load_image(p) for p in listed(path, IMAGE_EXTS, recursive=False)[0][:frames]]
    else:
        clip = [frame[..., :3] for frame in itertools.islice(iio.imiter(path), frames)]
    return np.stack([fit(f if f.ndim == 3 else np.repeat(f[..., None], 3, -1), canvas) for f in clip])


def source_for(data: str, canvas: int, video: bool, avoid: Pairs = frozenset()):
    """'shapes', 'shapes-video' (no object a pair of `avoid`), or a folder path (images, or videos when `video`)."""
    if data in ("shapes", "shapes-video"):
        return ShapesSource(canvas, video=data == "shapes-video" or video, avoid=avoid)
    return VideoFolder(data, canvas) if video else ImageFolder(data, canvas)
