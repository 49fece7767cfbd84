"""How fast a model learns to read one object's colour or shape from questions, beside a small convolutional net on
the same codes: single-object scenes ("what colour is the object?", "what shape is the object?"; with --objects, scenes
of several and the world's questions, which name the object asked about, without the CNN), the quick preset's
model (with any changes to its config) trained from scratch on those reading rows alone (batch 32, lr 3e-3 unless
told, after 30 warm-up steps, AdamW), and a two-layer CNN over the tokenizer's code vectors, max-pooled (the same
batches and optimiser); each scored on 512 held-out scenes every 100 steps. Chance: colour 0.125, shape 0.2.

    python bench/read_learning.py --tokenizer DIR [--steps 300] [--lr 1e-3] [--objects 3] [--attrs shape]
                                  [--set image_pool=true read_both_ways=true]
"""

import argparse
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
import yaml

from tessera.eval.shapes_eval import UNSEEN_PAIRS
from tessera.model.transformer import ModelConfig, Transformer
from tessera.pictures import to_tensor
from tessera.sequence.ids import IdSpace
from tessera.sequence.layouts import image_to_text, pad_answer, pad_text
from tessera.text.tokenizers import WorldTokenizer
from tessera.tokenizer import build as visual
from tessera.world.language import question_answer
from tessera.world.render import render_image
from tessera.world.scene import COLOURS, SHAPES, Scene, sample_scene

BATCH, WARMUP, HELD = 32, 30, 512
QUICK = Path(__file__).parents[1] / "tessera" / "configs" / "model" / "quick.yaml"


def train(
    params: list[torch.Tensor],
    loss_of: Callable[[torch.Tensor], torch.Tensor],
    score: Callable[[], float],
    steps: int,
    lr: float,
) -> list[float]:
    """AdamW on `loss_of(indices)` over consecutive batches; the held-out score every 100 steps."""
    opt = torch.optim.AdamW(params, lr, betas=(0.9, 0.95), weight_decay=0.05)
    scores = []
    for step in range(steps):
        for group in opt.param_groups:
            group["lr"] = lr * min(1.0, (step + 1) / WARMUP)
        loss = loss_of(torch.arange(step * BATCH, (step + 1) * BATCH))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, 1.0)
        opt.step()
        if (step + 1) % 100 == 0:
            scores.append(score())
    return scores


def transformer_reads(
    space: IdSpace, codes, vectors, questions, answers, steps: int, lr: float, changes: dict
) -> list[float]:
    """The quick preset's model (with `changes` to its config) on reading rows `question <boi> image <eoi> <sep>
    answer <eos>`: the held-out share of answers its most likely word gets right."""
    preset = yaml.safe_load(QUICK.read_text())["model"] | changes
    ids = {"vocab_size": space.size, "image_codes": space.n_image}
    cfg = ModelConfig(**{"code_dim": vectors.shape[1]} | preset | ids)
    torch.manual_seed(0)
    model = Transformer(cfg)
    if cfg.code_dim:
        model.code_vectors.copy_(vectors)

    def rows(idx):
        answer = pad_answer(space, [answers[i] for i in idx], 2)
        return image_to_text(space, questions[idx], codes[idx], answer)

    def loss_of(idx):
        batch = rows(idx)
        select = batch.loss[:, 1:]
        logits = model(batch.ids[:, :-1], batch.pos[:, :-1], batch.pos[:, 1:], select=select)  # (M, vocab)
        return F.cross_entropy(logits, batch.ids[:, 1:][select])

    def score():
        batch, n = rows(torch.arange(len(codes) - HELD, len(codes))), HELD
        with torch.no_grad():
            logits = model(batch.ids[:, :-1], batch.pos[:, :-1], batch.pos[:, 1:])  # (n, T, vocab)
        at = (batch.ids[:, :-1] == space.special("<sep>")).int().argmax(1)  # the answer follows <sep>
        said = logits[torch.arange(n), at].argmax(-1)
        return (said == batch.ids[torch.arange(n), at + 1]).float().mean().item()

    return train(list(model.parameters()), loss_of, score, steps, lr)


def cnn_reads(codes, vectors, labels: torch.Tensor, classes: int, steps: int, lr: float) -> list[float]:
    """Two 3x3 convolutions over the code vectors' grid, max-pooled, then a linear layer: held-out accuracy."""
    torch.manual_seed(0)
    x = vectors[codes].permute(0, 3, 1, 2)  # (N, code_dim, h, w)
    net = nn.Sequential(nn.Conv2d(x.shape[1], 64, 3, padding=1), nn.GELU(), nn.Conv2d(64, 64, 3, padding=1),
                        nn.GELU(), nn.AdaptiveMaxPool2d(1), nn.Flatten(), nn.Linear(64, classes))  # fmt: skip

    def score():
        with torch.no_grad():
            return (net(x[-HELD:]).argmax(1) == labels[-HELD:]).float().mean().item()

    return train(list(net.parameters()), lambda idx: F.cross_entropy(net(x[idx]), labels[idx]), score, steps, lr)


def draw(rng: np.random.Generator, n: int, objects: int) -> tuple[list[Scene], dict[str, tuple[list, list]]]:
    """n scenes of `objects` objects, each with a colour and a shape question and their answers; a lone object is
    asked "what colour / shape is the object?", one among others by the world's questions, which name it."""
    scenes, asked = [], {attr: ([], []) for attr in ("colour", "shape")}
    while len(scenes) < n:
        scene = sample_scene(rng, 64, objects, avoid=UNSEEN_PAIRS)
        if objects == 1:
            pairs = {attr: (f"what {attr} is the object?", getattr(scene.objects[0], attr)) for attr in asked}
        else:
            pairs = {attr: question_answer(scene, rng, attr, UNSEEN_PAIRS) for attr in asked}
        if pairs["colour"][1] in COLOURS and pairs["shape"][1] in SHAPES:  # not a question of another kind
            scenes.append(scene)
            for attr, (q, a) in pairs.items():
                asked[attr][0].append(q)
                asked[attr][1].append(a)
    return scenes, asked


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tokenizer", required=True, help="a visual tokenizer checkpoint folder (64x64 canvas)")
    parser.add_argument("--steps", type=int, default=300, help="training steps of each reader")
    parser.add_argument("--lr", type=float, default=3e-3, help="peak learning rate of both readers")
    parser.add_argument("--attrs", nargs="+", default=["colour", "shape"], choices=["colour", "shape"])
    parser.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="changes to the model's config")
    parser.add_argument("--objects", type=int, default=1, help="objects in a scene (more than one: no CNN)")
    parser.add_argument("--no-cnn", action="store_true", help="skip the CNN")
    args = parser.parse_args()
    if bad := [c for c in args.set if c.split("=")[0] not in ModelConfig.__dataclass_fields__ or "=" not in c]:
        parser.error(f"--set takes KEY=VALUE with KEY a field of the model's config, not {bad[0]!r}")
    changes = {k: yaml.safe_load(v) for k, v in (c.split("=", 1) for c in args.set)}
    tokenizer, _ = visual.load(args.tokenizer)
    vectors = visual.code_vectors(tokenizer)  # (K, code_dim), unit variance
    words = WorldTokenizer()
    rng = np.random.default_rng(0)
    n = args.steps * BATCH + HELD
    scenes, asked = draw(rng, n, args.objects)
    with torch.no_grad():
        codes = torch.cat([tokenizer.encode(to_tensor(np.stack([render_image(s) for s in scenes[i : i + 256]])))
                           for i in range(0, n, 256)])  # fmt: skip
    space = IdSpace(words.vocab_size, len(vectors))
    print(f"{n} scenes of {args.objects} objects, codes {tuple(codes.shape[1:])}, {args.steps} steps of {BATCH}")
    print(f"model changes: {changes or 'none'}")
    for attr in args.attrs:
        encoded = [words.encode(q) for q in asked[attr][0]]
        question = pad_text(space, encoded, max(map(len, encoded)))
        answers = [words.encode(a) for a in asked[attr][1]]
        start = time.time()
        scores = transformer_reads(space, codes, vectors, question, answers, args.steps, args.lr, changes)
        print(f"transformer, {attr}: " + " ".join(f"{s:.3f}" for s in scores) + f"  ({time.time() - start:.0f} s)")
    if args.no_cnn or args.objects > 1:
        return
    labels = torch.tensor([SHAPES.index(s.objects[0].shape) for s in scenes])
    scores = cnn_reads(codes, vectors, labels, len(SHAPES), args.steps, args.lr)
    print("CNN on the codes, shape: " + " ".join(f"{s:.3f}" for s in scores))


if __name__ == "__main__":
    main()
