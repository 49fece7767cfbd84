"""What the app accepts from a browser: its limits, and uploads read only from the app's own temp folder."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from tessera.data.folders import fit
from tessera.errors import InputError
from tessera.pictures import rgb8


@dataclass(frozen=True)
class Limits:
    """Caps on one request; the queue serves one request at a time per model."""

    prompt_chars: int = 200
    images: int = 16  # images (or chains, clips) per request
    upload_bytes: int = 2_000_000
    upload_pixels: int = 1024 * 1024
    queue: int = 16  # requests waiting at most

    def prompt(self, text: str | None, what: str = "prompt") -> str:
        """The text, stripped; InputError when empty or longer than the cap."""
        text = (text or "").strip()
        if not text:
            raise InputError(f"the {what} is empty")
        if len(text) > self.prompt_chars:
            raise InputError(f"the {what} has {len(text)} characters; the app takes at most {self.prompt_chars}")
        return text

    def count(self, n: float | None) -> int:
        n = int(n or 1)
        if not 1 <= n <= self.images:
            raise InputError(f"asked for {n} images; the app draws 1 to {self.images} at a time")
        return n


def inside(path: str | Path, folder: Path) -> Path:
    """The resolved path when it lies in `folder`; InputError for anything else (the app reads nothing outside)."""
    resolved = Path(path).resolve()
    if not resolved.is_relative_to(folder.resolve()):
        raise InputError("the app reads only files uploaded to it")
    return resolved


def read_pixels(path: str | Path | None, folder: Path, limits: Limits, what: str = "image", alpha: bool = False
                ) -> np.ndarray:  # fmt: skip
    """An uploaded picture as (H, W, 3) uint8 RGB, or (H, W, 4) RGBA with `alpha`; InputError when it is missing,
    outside the app's folder, over the byte or pixel cap, or unreadable."""
    if not path:
        raise InputError(f"no {what} given: upload one or render one")
    path = inside(path, folder)
    if not path.is_file():
        raise InputError(f"the {what} upload is gone; upload it again")
    size = path.stat().st_size
    if size > limits.upload_bytes:
        raise InputError(f"the {what} is {size:,} bytes; the app takes at most {limits.upload_bytes:,}")
    try:
        with Image.open(path) as im:
            if im.width * im.height > limits.upload_pixels:
                cap = f"{limits.upload_pixels:,}"
                raise InputError(f"the {what} is {im.width}x{im.height}; the app takes at most {cap} pixels")
            return np.asarray(im.convert("RGBA")) if alpha else rgb8(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read the {what}: not a readable picture") from e


def read_upload(path: str | Path | None, folder: Path, canvas: int, limits: Limits, what: str = "image") -> np.ndarray:
    """An uploaded picture fitted to the canvas: (canvas, canvas, 3) uint8 (`read_pixels`, then `to_canvas`)."""
    return to_canvas(read_pixels(path, folder, limits, what), canvas)


def to_canvas(picture: np.ndarray, canvas: int) -> np.ndarray:
    """(H, W, 3) uint8 -> (canvas, canvas, 3): every k-th pixel of a square k-times enlargement, else `fit`."""
    side = picture.shape[0]
    if picture.shape[1] == side and side % canvas == 0:
        k = side // canvas
        return np.ascontiguousarray(picture[k // 2 :: k, k // 2 :: k])
    return fit(picture, canvas)


def enlarge(picture: np.ndarray, scale: int) -> np.ndarray:
    """(..., H, W, 3) -> (..., H*scale, W*scale, 3), each pixel a block (what the browser shows)."""
    return picture.repeat(scale, axis=-3).repeat(scale, axis=-2)
