"""Train the judge on renders with exact masks, half of each batch corrupted; measure object precision/recall."""

from __future__ import annotations

import math
import os
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
import yaml
from rich.progress import Progress
from safetensors.torch import save_file

from tessera.errors import ConfigError
from tessera.eval.corruptions import corrupt
from tessera.eval.judge import Judge, JudgeConfig, JudgeNet, to_batch
from tessera.eval.metrics import Counts, object_counts
from tessera.world.render import render_image, render_labels
from tessera.world.scene import COLOURS, SHAPES, Scene, sample_scene

EVAL_SEED = 1_000_003  # held-out scenes come from this stream, never from a training seed


@dataclass
class JudgeTrainConfig:
    steps: int = 900
    batch_size: int = 32
    lr: float = 3e-3
    weight_decay: float = 1e-4
    scenes: int = 8000
    canvas: int = 64
    corrupt_p: float = 0.5
    negatives: int = 2  # object-free noise images added to each batch
    eval_scenes: int = 1000
    seed: int = 0

    def __post_init__(self):
        for name in ("steps", "batch_size", "scenes", "eval_scenes"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be at least 1, got {getattr(self, name)}")
        if not (self.lr > 0 and math.isfinite(self.lr)):
            raise ConfigError(f"lr must be a positive number, got {self.lr}")
        if not 0 <= self.corrupt_p <= 1:
            raise ConfigError(f"corrupt_p must lie in [0, 1], got {self.corrupt_p}")


def labelled_renders(scenes: list[Scene]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Images (N, H, W, 3) uint8 with per-pixel shape and colour classes (N, H, W) uint8; 0 is background."""
    images = np.stack([render_image(s) for s in scenes])
    shape_maps, colour_maps = [], []
    for s in scenes:
        labels = render_labels(s)
        shape_maps.append(np.array([0] + [SHAPES.index(o.shape) + 1 for o in s.objects], np.uint8)[labels])
        colour_maps.append(np.array([0] + [COLOURS.index(o.colour) + 1 for o in s.objects], np.uint8)[labels])
    return images, np.stack(shape_maps), np.stack(colour_maps)


def held_out_scenes(n: int, canvas: int = 64, seed: int = EVAL_SEED) -> list[Scene]:
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, canvas) for _ in range(n)]


def evaluate(judge: Judge, scenes: list[Scene], corrupted: bool, seed: int = 0) -> Counts:
    """Object precision/recall (shape, colour and size must all agree) on renders of the scenes."""
    images, shape_maps, _ = labelled_renders(scenes)
    x = to_batch(images)
    if corrupted:
        rng = np.random.default_rng(seed)
        chunks = [
            corrupt(x[i : i + 50], torch.from_numpy(shape_maps[i : i + 50]), rng, p=0.5)[0]
            for i in range(0, len(x), 50)
        ]
        x = torch.cat(chunks)
    return object_counts(judge.read(x), [s.objects for s in scenes])


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


def train_judge(cfg: JudgeTrainConfig, out: str | Path | None = None, progress: bool = True) -> tuple[Judge, dict]:
    """Train a judge; write judge.safetensors + judge.yaml to `out` when given. Returns the judge and metrics."""
    torch.manual_seed(cfg.seed)
    rng = np.random.default_rng(cfg.seed)
    t0 = time.time()
    scenes = [sample_scene(rng, cfg.canvas) for _ in range(cfg.scenes)]
    data = labelled_renders(scenes)
    jcfg = JudgeConfig()
    net = JudgeNet(jcfg)
    opt = torch.optim.AdamW(net.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: 0.5 * (1 + math.cos(math.pi * min(s / cfg.steps, 1))))
    net.train()
    losses = []
    with Progress(disable=not progress) as bar:
        task = bar.add_task("training the judge", total=cfg.steps)
        for _ in range(cfg.steps):
            idx = rng.integers(0, cfg.scenes, size=cfg.batch_size)
            x, labels = _batch(data, idx, rng, cfg.corrupt_p, cfg.negatives)
            shape_logits, colour_logits = net(x)
            loss = F.cross_entropy(shape_logits, labels[:, 0]) + F.cross_entropy(colour_logits, labels[:, 1])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            losses.append(loss.item())
            bar.update(task, advance=1, description=f"training the judge  loss {np.mean(losses[-50:]):.4f}")
    judge = Judge(net.eval(), jcfg)
    train_s = time.time() - t0
    held_out = held_out_scenes(cfg.eval_scenes, cfg.canvas)
    tenth = max(1, cfg.steps // 10)
    metrics = {
        "train_seconds": round(train_s, 1),
        "initial_loss": float(np.mean(losses[:tenth])),
        "final_loss": float(np.mean(losses[-tenth:])),
        "clean": evaluate(judge, held_out, corrupted=False).to_dict(),
        "corrupted": evaluate(judge, held_out, corrupted=True, seed=cfg.seed + 1).to_dict(),
    }
    if out is not None:
        save_judge(judge, Path(out), {"train": asdict(cfg), "metrics": metrics})
    return judge, metrics


def save_judge(judge: Judge, folder: Path, extra: dict) -> None:
    """Write judge.safetensors and judge.yaml atomically (temporary names, then rename)."""
    folder.mkdir(parents=True, exist_ok=True)
    state = {k: v.contiguous() for k, v in judge.net.state_dict().items()}
    tmp = folder / "judge.safetensors.tmp"
    save_file(state, str(tmp))
    os.replace(tmp, folder / "judge.safetensors")
    meta = {**asdict(judge.cfg), "widths": list(judge.cfg.widths), **extra}
    tmp = folder / "judge.yaml.tmp"
    tmp.write_text(yaml.safe_dump(meta, sort_keys=False))
    os.replace(tmp, folder / "judge.yaml")
