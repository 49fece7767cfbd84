"""Ask a model about images: answers, captions and verdicts written with the KV-cached text sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tessera.data.folders import fit
from tessera.errors import CheckpointError, InputError
from tessera.generate.text import GREEDY, write
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import load_image, to_tensor
from tessera.sequence.layouts import image_prefix


def check_reads(bundle: Bundle, task: str) -> None:
    if task not in bundle.cfg.tasks:
        raise CheckpointError(f"this model was not trained to {task} (its tasks: {', '.join(bundle.cfg.tasks)})")


def read_picture(bundle: Bundle, path: str | Path) -> np.ndarray:
    """An image file fitted to the model's canvas: uint8 (1, H, W, 3)."""
    return fit(load_image(path), bundle.cfg.canvas)[None]


@torch.no_grad()
def image_codes(bundle: Bundle, images: np.ndarray) -> torch.Tensor:
    """uint8 (B, H, W, 3) at the model's canvas -> (B, h, w) codes."""
    if images.shape[1:3] != (bundle.cfg.canvas, bundle.cfg.canvas):
        raise InputError(
            f"images must be {bundle.cfg.canvas}x{bundle.cfg.canvas}, got {images.shape[2]}x{images.shape[1]}"
        )
    device = bundle.model.output.weight.device
    return bundle.image_tokenizer.encode(to_tensor(images).to(device))


@torch.no_grad()
def ask(
    bundle: Bundle,
    images: np.ndarray,  # uint8 (B, H, W, 3)
    questions: list[str],
    sampling: SamplingConfig = GREEDY,
    seed: int = 0,
    batch_size: int = 64,
) -> list[str]:
    """One answer per (image, question) pair."""
    question_ids = bundle.encode_questions(questions)  # checks every question before any work
    gen = torch.Generator(device=bundle.model.output.weight.device).manual_seed(seed)
    out = []
    for i in range(0, len(questions), batch_size):
        codes = image_codes(bundle, images[i : i + batch_size])
        prompt = image_prefix(bundle.space, question_ids[i : i + batch_size].to(codes.device), codes)
        written = write(bundle.model, bundle.space, prompt, bundle.cfg.answer_len + 1, sampling, gen)
        out += written.texts(bundle.space, bundle.text_tokenizer)
    return out
