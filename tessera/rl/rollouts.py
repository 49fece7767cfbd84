"""One step's samples for GRPO: drawing (prompts -> images) and reading (images + questions -> answers).

A Rollout keeps what the update needs: each sample's old log-probs and mask, its rewards, and how to rescore a
slice of its rows under a model (with grad) by the same distribution it was sampled from.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from tessera.data.shapes import to_uint8
from tessera.generate.generator import generate, score
from tessera.generate.sampling import SamplingConfig
from tessera.generate.text import score_text, write
from tessera.model.bundle import Bundle
from tessera.model.orders import make_orders
from tessera.rl.rewards import Reward, combine
from tessera.sequence.layouts import Batch, image_prefix
from tessera.train.data import understanding_example
from tessera.understand.answer import image_codes
from tessera.world.render import render_image


@dataclass
class Rollout:
    metadata: list[dict]  # one per sample; "tag" groups the reward statistics
    old_logp: torch.Tensor  # (B, T)
    mask: torch.Tensor  # (B, T) bool: sampled tokens
    rewards: torch.Tensor  # (B,) weighted sum
    parts: dict[str, torch.Tensor]  # reward name -> (B,)
    rescore: Callable[[torch.nn.Module, slice], torch.Tensor]  # (model, rows) -> (rows, T) log-probs
    seconds: dict[str, float]  # generate_s, reward_s
    images: np.ndarray | None = None  # drawn images (drawing rollouts)
    texts: list[str] | None = None  # written answers (reading rollouts)


def _rewarded(rewards: dict[str, Reward], weights: dict[str, float], metadata, images, texts, device):
    values = {name: fn(metadata, images, texts) for name, fn in rewards.items()}
    parts = {name: torch.tensor(v, device=device, dtype=torch.float32) for name, v in values.items()}
    return torch.tensor(combine(values, weights), device=device, dtype=torch.float32), parts


@torch.no_grad()
def draw_rollout(
    bundle: Bundle,
    metadata: list[dict],  # each prompt's metadata, repeated group_size times (adjacent)
    sampling: SamplingConfig,
    rewards: dict[str, Reward],
    weights: dict[str, float],
    gen: torch.Generator,
    order_seed: int,
    train_unconditional: bool = False,
) -> Rollout:
    b, device = bundle, bundle.model.output.weight.device
    text = b.encode_prompts([m["prompt"] for m in metadata]).to(device)
    h, w = b.cfg.grid
    order = make_orders(b.cfg.order, len(metadata), h, w, torch.Generator().manual_seed(order_seed))
    start = time.time()
    drawn = generate(b.model, b.space, text, (h, w), order, sampling, gen)
    images = to_uint8(b.tokenizer.decode(drawn.codes))
    drawn_at = time.time()
    total, parts = _rewarded(rewards, weights, metadata, images, [""] * len(metadata), device)
    seconds = {"generate_s": drawn_at - start, "reward_s": time.time() - drawn_at}

    def rescore(model: torch.nn.Module, rows: slice) -> torch.Tensor:
        args = (b.space, text[rows], drawn.ids[rows], drawn.order[rows], w, sampling)
        return score(model, *args, train_unconditional=train_unconditional)

    mask = torch.ones_like(drawn.ids, dtype=torch.bool)
    return Rollout(metadata, drawn.logprobs, mask, total, parts, rescore, seconds, images=images)


def read_examples(tasks: dict[str, float], n: int, group_size: int, rng: np.random.Generator, canvas: int):
    """n questions on fresh scenes (tasks drawn by share), each repeated group_size times: metadata lines."""
    names, shares = list(tasks), np.array(list(tasks.values()), dtype=float)
    out = []
    for _ in range(n):
        task = names[rng.choice(len(names), p=shares / shares.sum())]
        question, truth, scene = understanding_example(task, rng, canvas)
        out += [{"task": task, "tag": task, "question": question, "truth": truth, "scene": scene}] * group_size
    return out


@torch.no_grad()
def read_rollout(
    bundle: Bundle,
    metadata: list[dict],  # from read_examples
    sampling: SamplingConfig,
    rewards: dict[str, Reward],
    weights: dict[str, float],
    gen: torch.Generator,
) -> Rollout:
    b, device = bundle, bundle.model.output.weight.device
    start = time.time()
    images = np.stack([render_image(m["scene"]) for m in metadata])
    prompt = image_prefix(
        b.space, b.encode_questions([m["question"] for m in metadata]).to(device), image_codes(b, images)
    )
    written = write(b.model, b.space, prompt, b.cfg.answer_len + 1, sampling, gen)
    texts = written.texts(b.space, b.text)
    written_at = time.time()
    total, parts = _rewarded(rewards, weights, metadata, images, texts, device)
    seconds = {"generate_s": written_at - start, "reward_s": time.time() - written_at}

    def rescore(model: torch.nn.Module, rows: slice) -> torch.Tensor:
        part = Batch(prompt.ids[rows], prompt.pos[rows], prompt.slot[rows], prompt.loss[rows])
        return score_text(model, b.space, part, written.ids[rows], sampling)

    return Rollout(metadata, written.logprobs, written.mask, total, parts, rescore, seconds, texts=texts)
