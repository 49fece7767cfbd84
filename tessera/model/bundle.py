"""A generative model checkpoint: the transformer, its text tokenizer, and the visual tokenizer it draws with.

Folder: config.yaml (kind: model), model.safetensors, text.json, tokenizer/ (a tokenizer checkpoint),
so a checkpoint is complete on its own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tessera.config import to_dict
from tessera.engine import checkpoint
from tessera.errors import CheckpointError, InputError
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer
from tessera.pictures import to_tensor, to_uint8
from tessera.sequence.ids import IdSpace
from tessera.sequence.layouts import pad_text
from tessera.sequence.tasks import Task
from tessera.text.tokenizers import TextTokenizer, WorldTokenizer, from_dict
from tessera.tokenizer import build as visual
from tessera.world.grammar import parse_description, parse_edit
from tessera.world.language import check_question


@dataclass
class BundleConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    n_text: int = 0
    n_image: int = 0
    text_len: int = 24
    grid: tuple[int, int] = (8, 8)
    canvas: int = 64
    order: str = "raster"  # the order it was trained in
    sampling: SamplingConfig = field(default_factory=SamplingConfig)  # defaults for generation
    tasks: tuple[str, ...] = (Task.T2I,)  # what it was trained to do (the names of sequence.tasks.Task)
    question_len: int = 24  # understanding: question tokens and answer tokens
    answer_len: int = 24
    context_frames: int = 2  # frame prediction: earlier frames each drawn frame follows
    video_grid: tuple[int, int, int] | None = None  # text-to-video: the code grid (t, h, w) of a clip
    bands: int = 3  # thinking while drawing: the bands it was trained to think in
    boi: bool = True  # a <boi> between the prompt and the image (False: LlamaGen's layout, class then image)
    hold_out: list[str] = field(default_factory=list)  # descriptions its data kept out (RL and chains keep them out)


@dataclass
class Bundle:
    cfg: BundleConfig
    model: Transformer
    text_tokenizer: TextTokenizer
    image_tokenizer: torch.nn.Module  # the visual tokenizer the model draws with (tessera.tokenizer)

    @property
    def space(self) -> IdSpace:
        return IdSpace(self.cfg.n_text, self.cfg.n_image, self.cfg.boi)

    def encode_prompts(self, prompts: list[str], instructions: bool = False) -> torch.Tensor:
        """(B, text_len) sequence ids; InputError on an unknown word, an empty or a too-long prompt, and (for a
        model of the world's words) on a prompt outside the world's grammar: a description, or with
        `instructions` an edit instruction."""
        if isinstance(self.text_tokenizer, WorldTokenizer):
            for prompt in prompts:
                parse_edit(prompt) if instructions else parse_description(prompt)
        ids = [self.text_tokenizer.encode(p) for p in prompts]
        return pad_text(self.space, ids, self.cfg.text_len)

    def fits(self, prompt: str) -> bool:
        """Whether a prompt's tokens fit the model's text length."""
        return len(self.text_tokenizer.encode(prompt)) <= self.cfg.text_len

    def encode_questions(self, questions: list[str]) -> torch.Tensor:
        """(B, question_len) sequence ids; InputError on a question outside the grammar or too long."""
        for question in questions:
            check_question(question)
        return pad_text(self.space, [self.text_tokenizer.encode(q) for q in questions], self.cfg.question_len)

    def check_task(self, task: str) -> None:
        """CheckpointError unless the model was trained to `task`."""
        if task not in self.cfg.tasks:
            raise CheckpointError(f"this model was not trained to {task} (its tasks: {', '.join(self.cfg.tasks)})")

    @torch.no_grad()
    def encode_images(self, images: np.ndarray) -> torch.Tensor:
        """uint8 (B, H, W, 3) at the model's canvas -> (B, h, w) codes; clips (B, T, H, W, 3) -> (B, t, h, w)."""
        if images.shape[-3:-1] != (self.cfg.canvas, self.cfg.canvas):
            raise InputError(
                f"images must be {self.cfg.canvas}x{self.cfg.canvas}, got {images.shape[-2]}x{images.shape[-3]}"
            )
        return self.image_tokenizer.encode(to_tensor(images).to(self.model.output.weight.device))

    @torch.no_grad()
    def round_trip(self, images: np.ndarray) -> np.ndarray:
        """uint8 (B, H, W, 3) pictures (or (B, T, H, W, 3) clips) through the visual tokenizer and back: what the
        model could draw at best."""
        return to_uint8(self.image_tokenizer.decode(self.encode_images(images)))

    def to(self, device) -> Bundle:
        self.model.to(device)
        self.image_tokenizer.to(device)
        return self


def save(folder: str | Path, bundle: Bundle, weights: dict, tokenizer_dir: str | Path, trainer=None, state=None):
    files = {"text.json": json.dumps(bundle.text_tokenizer.to_dict()), "tokenizer": Path(tokenizer_dir)}
    checkpoint.save(folder, "model", to_dict(bundle.cfg), weights, trainer, state, files=files)


DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


def load(folder: str | Path, device: str | torch.device = "cpu", dtype: str = "float32") -> Bundle:
    """A model checkpoint folder -> Bundle in eval mode, the transformer's weights (and so its cache) in `dtype`
    (bfloat16: for sampling alone; training and RL rescoring keep float32); CheckpointError on a wrong or corrupt
    checkpoint."""
    if dtype not in DTYPES:
        raise InputError(f"unknown dtype {dtype!r}; expected {' or '.join(DTYPES)}")
    folder = checkpoint.resolve(folder)
    cfg = checkpoint.load_config(folder, "model", BundleConfig())
    unknown = set(cfg.tasks) - set(Task)
    if unknown:
        raise CheckpointError(
            f"{folder} was trained for tasks this tessera does not know: {', '.join(sorted(unknown))}"
        )
    try:
        text = from_dict(json.loads((folder / "text.json").read_text()))
    except CheckpointError:
        raise
    except Exception as e:  # a missing file, or JSON of any other shape than a tokenizer's
        raise CheckpointError(f"{folder}/text.json is missing or corrupt") from e
    if text.vocab_size != cfg.n_text:
        raise CheckpointError(f"{folder}/text.json has {text.vocab_size} words; the model reads {cfg.n_text}")
    model = Transformer(cfg.model)
    checkpoint.load_into(model, checkpoint.load_weights(folder), str(folder))
    tok, _ = visual.load(folder / "tokenizer")
    if tok.codebook_size != cfg.n_image:
        raise CheckpointError(f"{folder}/tokenizer has {tok.codebook_size} codes; the model draws {cfg.n_image}")
    return Bundle(cfg, model.to(DTYPES[dtype]).eval(), text, tok).to(device)
