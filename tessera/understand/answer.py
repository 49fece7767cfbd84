"""Ask a model about images: answers, captions and verdicts written with the KV-cached text sampler."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from tessera.data.folders import fit
from tessera.generate.text import GREEDY, write
from tessera.model.bundle import Bundle
from tessera.model.sampling import SamplingConfig
from tessera.pictures import load_image
from tessera.sequence.layouts import image_prefix


def read_picture(bundle: Bundle, path: str | Path) -> np.ndarray:
    """An image file fitted to the model's canvas: uint8 (1, H, W, 3)."""
    return fit(load_image(path), bundle.cfg.canvas)[None]


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
        codes = bundle.encode_images(images[i : i + batch_size])
        prompt = image_prefix(bundle.space, question_ids[i : i + batch_size].to(codes.device), codes)
        written = write(bundle.model, bundle.space, prompt, bundle.cfg.answer_len + 1, sampling, gen)
        out += written.texts(bundle.space, bundle.text_tokenizer)
    return out
