"""Pictures: uint8 HWC arrays <-> float tensors in [-1, 1], reading and writing PNG images and GIF clips, grids."""

from __future__ import annotations

from pathlib import Path

import imageio.v3 as iio
import numpy as np
import torch
from PIL import Image, UnidentifiedImageError

from tessera.errors import InputError


def to_tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (..., H, W, 3) -> float (..., 3, H, W) in [-1, 1]; a (B, T, H, W, 3) stack -> (B, 3, T, H, W)."""
    x = torch.tensor(images).float() / 127.5 - 1  # a copy: PIL arrays are read-only
    return x.permute(0, 4, 1, 2, 3) if x.dim() == 5 else x.movedim(-1, -3)


def to_uint8(pixels: torch.Tensor) -> np.ndarray:
    """float (B, 3, H, W) or (B, 3, T, H, W) in [-1, 1] -> uint8 (B, H, W, 3) or (B, T, H, W, 3)."""
    x = ((pixels.detach().clamp(-1, 1) + 1) * 127.5).round().to(torch.uint8)
    return (x.permute(0, 2, 3, 4, 1) if x.dim() == 5 else x.permute(0, 2, 3, 1)).cpu().numpy()


def rgb8(im: Image.Image) -> np.ndarray:
    """A PIL image as (H, W, 3) uint8 RGB. 16- and 32-bit greyscale are scaled from their range, not clipped
    (PIL's convert would read a 16-bit PNG as white)."""
    if im.mode.startswith("I") or im.mode == "F":
        grey = np.asarray(im, dtype=np.float64)
        top = 65535.0 if im.mode.startswith("I;16") or grey.max(initial=0) > 255 else 255.0
        if im.mode == "F":
            top = 1.0 if grey.max(initial=0) <= 1 else 255.0
        grey = np.clip(np.round(grey / top * 255), 0, 255).astype(np.uint8)
        return np.repeat(grey[..., None], 3, axis=-1)
    return np.asarray(im.convert("RGB"))


def regular_file(path: str | Path) -> Path:
    """The path of an existing regular file; InputError for a missing one, a folder, a pipe, a dangling link."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"no such file: {path}")
    if not path.is_file():
        raise InputError(f"{path} is not a regular file")
    return path


def load_image(path: str | Path) -> np.ndarray:
    """An image file as (H, W, 3) uint8 RGB; InputError if it is missing, not a file, or unreadable."""
    try:
        with Image.open(regular_file(path)) as im:
            return rgb8(im)
    except (UnidentifiedImageError, OSError, Image.DecompressionBombError) as e:
        raise InputError(f"cannot read image {path}: not a readable picture") from e


def save_png(image: np.ndarray, path: str | Path, scale: int = 1) -> None:
    im = Image.fromarray(image)
    if scale > 1:
        im = im.resize((im.width * scale, im.height * scale), Image.NEAREST)
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    im.save(path)


def save_gif(frames: np.ndarray, path: str | Path, fps: int = 6) -> None:
    """(T, H, W, 3) uint8 frames as a looping GIF."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    iio.imwrite(path, frames, extension=".gif", duration=int(1000 / fps), loop=0)


def grid(images: list[np.ndarray] | np.ndarray, cols: int = 8, pad: int = 2) -> np.ndarray:
    """Tile equal-sized (H, W, 3) images into one picture, left to right, top to bottom, white gutters."""
    images = list(images)
    h, w = images[0].shape[:2]
    cols = max(1, min(cols, len(images)))
    rows = -(-len(images) // cols)
    sheet = np.full((rows * (h + pad) + pad, cols * (w + pad) + pad, 3), 255, dtype=np.uint8)
    for i, im in enumerate(images):
        r, c = divmod(i, cols)
        sheet[pad + r * (h + pad) : pad + r * (h + pad) + h, pad + c * (w + pad) : pad + c * (w + pad) + w] = im
    return sheet
