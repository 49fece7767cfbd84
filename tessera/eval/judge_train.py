"""Train the judge on renders with exact masks, half of each batch corrupted, and marks that are not objects
(blobs, fragments, smears: the class clutter) in some scenes; measure object precision/recall on clean, corrupted
and malformed renders (those with marks), and how many marks it flags as clutter."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from scipy import ndimage

from tessera.config import at_least, positive, to_dict, within
from tessera.engine import checkpoint
from tessera.engine.loop import Engine
from tessera.engine.schedule import WarmupCosine
from tessera.eval.clutter import add_clutter
from tessera.eval.corruptions import corrupt, rough
from tessera.eval.judge import CLASSES, CLUTTER, Judge, JudgeConfig, JudgeNet, to_batch
from tessera.eval.metrics import Counts, object_counts
from tessera.world.render import render_image, render_labels
from tessera.world.scene import COLOURS, Scene, check_canvas, sample_scene

EVAL_SEED = 1_000_003  # held-out scenes come from this stream, never from a training seed


@dataclass
class JudgeTrainConfig:
    steps: int = 2400
    batch_size: int = 32
    lr: float = 3e-3  # cosine down to 0, no warmup
    weight_decay: float = 1e-4
    scenes: int = 8000
    canvas: int = 64
    corrupt_p: float = 0.5
    negatives: int = 2  # object-free noise images added to each batch
    clutter: float = 0.5  # share of training scenes with one to three marks that are not objects
    eval_scenes: int = 1000
    log_every: int = 25
    save_every: int = 600
    seed: int = 0

    def validate(self) -> None:
        at_least(self, 1, "steps", "batch_size", "scenes", "eval_scenes", "log_every", "save_every")
        at_least(self, 0, "negatives", "weight_decay")
        positive(self, "lr")
        within(self, 0, 1, "corrupt_p", "clutter")
        check_canvas(self.canvas)


def labelled_renders(
    scenes: list[Scene], clutter: float = 0.0, rng: np.random.Generator | None = None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, H, W, 3) uint8 with per-pixel class and colour labels (N, H, W) uint8, 0 background; a share
    `clutter` of them (drawn with rng) also shows one to three marks that are not objects."""
    images = np.stack([render_image(s) for s in scenes])
    shape_maps, colour_maps = [], []
    for image, s in zip(images, scenes, strict=True):
        labels = render_labels(s)
        shape_map = np.array([0] + [CLASSES.index(o.shape) + 1 for o in s.objects], np.uint8)[labels]
        colour_map = np.array([0] + [COLOURS.index(o.colour) + 1 for o in s.objects], np.uint8)[labels]
        if clutter and rng.random() < clutter:
            add_clutter(image, shape_map, colour_map, int(rng.integers(1, 4)), rng, CLASSES.index(CLUTTER) + 1)
        shape_maps.append(shape_map)
        colour_maps.append(colour_map)
    return images, np.stack(shape_maps), np.stack(colour_maps)


def held_out_scenes(n: int, canvas: int = 64, seed: int = EVAL_SEED) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, canvas) for _ in range(n)]


def evaluate(judge: Judge, scenes: list[Scene], renders: str = "clean", seed: int = 0) -> Counts:
    """Object precision/recall (shape, colour and size must all agree) on renders of the scenes: clean, with each
    corruption at p 0.5, or with rough edges alone (every edge block moved at p 0.5)."""
    images, shape_maps, _ = labelled_renders(scenes)
    x = to_batch(images)
    if renders != "clean":
        rng, change = np.random.default_rng(seed), {"corrupted": corrupt, "rough": rough}[renders]
        labels = torch.from_numpy(shape_maps)
        x = torch.cat([change(x[i : i + 50], labels[i : i + 50], rng)[0] for i in range(0, len(x), 50)])
    return object_counts(judge.read(x), [s.objects for s in scenes])


def evaluate_malformed(judge: Judge, scenes: list[Scene], seed: int = 0) -> dict:
    """Renders with marks: object precision/recall over the shapes the judge reads (a mark read as a shape is a
    false object), and the share of marks it reads as clutter."""
    images, shape_maps, _ = labelled_renders(scenes, clutter=1.0, rng=np.random.default_rng(seed))
    found = judge.read(images)
    shapes = [[d for d in f if d.shape != CLUTTER] for f in found]
    marks = [ndimage.label(m == CLASSES.index(CLUTTER) + 1)[1] for m in shape_maps]
    flagged = [min(sum(d.shape == CLUTTER for d in f), n) for f, n in zip(found, marks, strict=True)]
    counts = object_counts(shapes, [s.objects for s in scenes]).to_dict()
    return counts | {"marks": int(sum(marks)), "clutter_recall": sum(flagged) / max(sum(marks), 1)}


def noise_images(n: int, canvas: int, rng: np.random.Generator) -> torch.Tensor:
    """Object-free images (B, 3, H, W): per-pixel noise, half of them smoothed; the judge must see nothing in them."""
    x = torch.from_numpy(rng.uniform(-1, 1, size=(n, 3, canvas, canvas))).float()
    smooth = F.avg_pool2d(F.pad(x, (2, 2, 2, 2), mode="reflect"), 5, stride=1) * 2
    return torch.where(torch.arange(n)[:, None, None, None] % 2 == 0, x, smooth.clamp(-1, 1))


def _batch(data, idx, rng, corrupt_p, negatives: int):
    """A training batch: the first half clean renders, then corrupted renders, then `negatives` noise images."""
    images, shape_maps, colour_maps = data
    x = to_batch(images[idx])  # (B, 3, H, W)
    labels = torch.from_numpy(np.stack([shape_maps[idx], colour_maps[idx]], axis=1).astype(np.int64))  # (B, 2, H, W)
    half = len(idx) // 2
    packed = labels[half:, 0] * 16 + labels[half:, 1]  # shift both maps together
    x_c, packed = corrupt(x[half:], packed, rng, p=corrupt_p)
    x = torch.cat([x[:half], x_c, noise_images(negatives, x.shape[-1], rng)])
    labels = torch.cat(
        [
            labels[:half],
            torch.stack([packed // 16, packed % 16], dim=1),
            torch.zeros(negatives, *labels.shape[1:], dtype=torch.int64),
        ]
    )
    return x, labels


class JudgeTrainer:
    def __init__(self, cfg: JudgeTrainConfig, run: str | Path, progress: bool = True, fresh: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.engine = Engine(
            run, "judge", cfg.steps, self.write, to_dict(cfg), log_every=cfg.log_every, save_every=cfg.save_every,
            show=("loss",), progress=progress, fresh=fresh,
        )  # fmt: skip
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        scenes = [sample_scene(self.rng, cfg.canvas) for _ in range(cfg.scenes)]
        self.data = labelled_renders(scenes, cfg.clutter, self.rng)
        self.net = JudgeNet(JudgeConfig())
        self.opt = torch.optim.AdamW(self.net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        self.metrics: dict = {}
        self.engine.track(net=self.net, opt=self.opt, data=self.rng)
        self.engine.schedule(self.opt, WarmupCosine(cfg.lr, warmup=0, steps=cfg.steps, min_ratio=0.0))
        self.engine.every(cfg.steps, self.evaluate)  # once, after the last step

    def write(self, folder: Path, trainer: dict, state: dict) -> None:
        save_judge(folder, self.net, JudgeConfig(), trainer, state | {"metrics": self.metrics})

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        self.net.train()
        idx = self.rng.integers(0, cfg.scenes, size=cfg.batch_size)
        x, labels = _batch(self.data, idx, self.rng, cfg.corrupt_p, cfg.negatives)
        shape_logits, colour_logits = self.net(x)
        loss = F.cross_entropy(shape_logits, labels[:, 0]) + F.cross_entropy(colour_logits, labels[:, 1])
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.net.parameters(), float("inf"))  # measured, not clipped
        self.engine.check_finite(loss=loss, gradient_norm=norm)
        self.opt.step()
        return {"loss": loss.item()}

    def fit(self, until: int | None = None) -> list[dict]:
        """Train to cfg.steps (or stop after step `until`, as a killed run would); returns the metrics log."""
        return self.engine.fit(self.train_step, until)

    def evaluate(self) -> dict[str, float]:
        """held_out_metrics of the judge being trained (kept with the checkpoint), flattened for the log."""
        cfg = self.cfg
        self.metrics = held_out_metrics(Judge(self.net.eval(), JudgeConfig()), cfg.eval_scenes, cfg.seed, cfg.canvas)
        out = {f"{kind}/{k}": v[k] for kind, v in self.metrics.items() for k in ("precision", "recall")}
        return out | {"malformed/clutter_recall": self.metrics["malformed"]["clutter_recall"]}


def held_out_metrics(judge: Judge, scenes: int = 1000, seed: int = 0, canvas: int = 64) -> dict[str, dict]:
    """Object precision/recall on held-out renders, clean, corrupted, rough-edged and with marks, and the share
    of marks read as clutter; `seed` is the training run's (each kind of render draws from seed + its own step)."""
    held_out = held_out_scenes(scenes, canvas)
    return {
        "clean": evaluate(judge, held_out).to_dict(),
        "corrupted": evaluate(judge, held_out, "corrupted", seed=seed + 1).to_dict(),
        "rough": evaluate(judge, held_out, "rough", seed=seed + 3).to_dict(),
        "malformed": evaluate_malformed(judge, held_out, seed=seed + 2),
    }


def save_judge(folder: Path, net: JudgeNet, cfg: JudgeConfig, trainer: dict | None, state: dict) -> None:
    """A judge checkpoint folder: config.yaml (kind: judge), model.safetensors, state.json (+ trainer.pt)."""
    checkpoint.save(folder, "judge", to_dict(cfg), net.state_dict(), trainer, state)
