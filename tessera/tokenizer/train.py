"""Tokenizer training: reconstruction + quantizer loss, optional perceptual and PatchGAN terms, EMA, resume.

OmniTok trains progressively: `image_steps` on images alone, then images and clips in turn.
"""

from __future__ import annotations

import copy
import math
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tessera import checkpoint
from tessera.config import to_dict
from tessera.data.folders import source_for
from tessera.data.shapes import to_uint8
from tessera.pictures import grid, save_gif, save_png
from tessera.progress import progress_bar
from tessera.runlog import RunLog
from tessera.tokenizer import build as tok
from tessera.tokenizer.losses import (
    PatchDiscriminator,
    Perceptual,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    reconstruction,
)
from tessera.train.schedule import lr_at


@dataclass
class TokenizerTrainConfig:
    tokenizer: tok.TokenizerConfig = field(default_factory=tok.TokenizerConfig)
    data: str = "shapes"  # shapes | shapes-video | a folder of images (or of videos for shapes-video-like runs)
    video: bool = False  # train on clips too (omni); implied by data=shapes-video
    canvas: int = 64
    steps: int = 2000
    image_steps: int = 0  # progressive training: image-only steps before the joint image+video stage
    video_every: int = 2  # joint stage: every k-th step is a clip batch
    batch_size: int = 32
    crop: int = 0  # train on random crops of this side (conv tokenizers; 0: whole images)
    video_batch_size: int = 4
    lr: float = 1e-3
    betas: tuple[float, float] = (0.9, 0.95)
    weight_decay: float = 0.0
    warmup: int = 100
    min_lr_ratio: float = 0.1
    grad_clip: float = 1.0
    recon: str = "l1"  # l1 | l2
    perceptual_weights: str = ""  # a local LPIPS-VGG16 safetensors file; empty: no perceptual loss
    perceptual_weight: float = 1.0
    gan_start: int = -1  # step at which the discriminator starts; -1: no GAN
    gan_weight: float = 0.1
    disc_lr: float = 1e-4
    ema: float = 0.0  # EMA decay of the weights (e.g. 0.999); 0: off
    log_every: int = 25
    sample_every: int = 500
    save_every: int = 500
    seed: int = 0

    @property
    def uses_video(self) -> bool:
        return self.video or self.data == "shapes-video"


def psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB for pixels in [-1, 1] (peak-to-peak 2)."""
    mse = (recon.clamp(-1, 1) - target).pow(2).mean().item()
    return 10 * math.log10(4 / max(mse, 1e-12))


class Trainer:
    def __init__(self, cfg: TokenizerTrainConfig, run: str | Path):
        self.cfg, self.run = cfg, Path(run)
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.model = tok.build(cfg.tokenizer)
        self.ema = copy.deepcopy(self.model).requires_grad_(False) if cfg.ema > 0 else None
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        self.images = source_for("shapes" if cfg.data == "shapes-video" else cfg.data, cfg.canvas, video=False)
        self.clips = source_for(cfg.data, cfg.canvas, video=True) if cfg.uses_video else None
        self.perceptual = Perceptual(cfg.perceptual_weights) if cfg.perceptual_weights else None
        self.discs = torch.nn.ModuleDict()
        if cfg.gan_start >= 0:
            self.discs["image"] = PatchDiscriminator(2)
            if cfg.uses_video:
                self.discs["video"] = PatchDiscriminator(3, layers=2)
            self.disc_opt = torch.optim.AdamW(self.discs.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for module in (self.model, self.ema, self.perceptual, self.discs):
            if module is not None:
                module.to(self.device)
        self.step = 0
        self.log = RunLog(self.run)

    # -- checkpointing -----------------------------------------------------------------------------
    @property
    def ckpt(self) -> Path:
        return self.run / "checkpoint"

    def save(self) -> None:
        trainer = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "torch_rng": torch.get_rng_state()}
        if len(self.discs):
            trainer |= {"discs": self.discs.state_dict(), "disc_opt": self.disc_opt.state_dict()}
        state = {"step": self.step, "rng": self.rng.bit_generator.state, "train": to_dict(self.cfg)}
        weights = self.ema if self.ema is not None else self.model
        tok.save(self.ckpt, weights, self.cfg.tokenizer, trainer, state)

    def resume(self) -> bool:
        """Continue from the run's checkpoint, if there is one; True if it did."""
        saved = checkpoint.resumable(self.ckpt)
        if saved is None:
            return False
        trainer, state = saved
        self.model.load_state_dict(trainer["model"])
        self.opt.load_state_dict(trainer["opt"])
        torch.set_rng_state(trainer["torch_rng"])
        if len(self.discs):
            self.discs.load_state_dict(trainer["discs"])
            self.disc_opt.load_state_dict(trainer["disc_opt"])
        if self.ema is not None:
            checkpoint.load_into(self.ema, checkpoint.load_weights(self.ckpt), str(self.ckpt))
        self.rng.bit_generator.state = state["rng"]
        self.step = state["step"]
        self.log.truncate(self.step)
        return True

    # -- one step --------------------------------------------------------------------------------
    def is_video_step(self, step: int) -> bool:
        cfg = self.cfg
        return self.clips is not None and step >= cfg.image_steps and (step - cfg.image_steps) % cfg.video_every == 0

    def train_step(self) -> dict[str, float]:
        cfg, step = self.cfg, self.step
        video = self.is_video_step(step)
        x = self.clips.sample(cfg.video_batch_size, self.rng) if video else self.images.sample(cfg.batch_size, self.rng)
        x = x.to(self.device)
        if cfg.crop and not video:  # a random window, the same for the whole batch (conv tokenizers only)
            top, left = (int(v) for v in self.rng.integers(0, x.shape[-1] - cfg.crop + 1, size=2))
            x = x[..., top : top + cfg.crop, left : left + cfg.crop]
        for g in self.opt.param_groups:
            g["lr"] = lr_at(cfg, step)
        self.model.train()
        recon, q = self.model(x)
        rec = reconstruction(recon, x, cfg.recon)
        if self.perceptual is not None:
            rec = rec + cfg.perceptual_weight * self.perceptual(recon, x)
        loss = rec + q.loss
        out = {"rec": rec.item(), "q_loss": float(q.loss.detach()), "psnr": psnr(recon.detach(), x)}
        gan = len(self.discs) and step >= cfg.gan_start
        if gan:
            disc = self.discs["video" if video else "image"].eval()
            g_loss = hinge_g_loss(disc(recon))
            weight = adaptive_weight(rec, g_loss, self.model.last_layer()) * cfg.gan_weight
            loss = loss + weight * g_loss
            out |= {"g_loss": g_loss.item(), "gan_weight": float(weight)}
        self.opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        if gan:
            disc.train()
            d_loss = hinge_d_loss(disc(x), disc(recon.detach()))
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.disc_opt.step()
            out["d_loss"] = d_loss.item()
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    e.lerp_(p, 1 - cfg.ema)
                for e, b in zip(self.ema.buffers(), self.model.buffers(), strict=True):
                    e.copy_(b)
        out |= {"loss": loss.item(), "perplexity": float(q.perplexity), "lr": lr_at(cfg, step), "video": float(video)}
        if q.codes is not None:
            out["usage"] = self.model.quantize.usage()
        return out

    # -- pictures --------------------------------------------------------------------------------
    @torch.no_grad()
    def samples(self, name: str) -> None:
        """original | reconstruction pairs: samples/<name>.png, and a side-by-side GIF for clips."""
        model = (self.ema or self.model).eval()
        rng = np.random.default_rng(12345)  # the same originals every time, so pictures compare across steps
        x = self.images.sample(16, rng).to(self.device)
        pairs = np.concatenate([to_uint8(x), to_uint8(model(x)[0])], axis=2)  # (16, H, 2W, 3)
        save_png(grid(list(pairs), cols=4), self.run / "samples" / f"{name}.png", scale=2)
        if self.clips is not None:
            clip = self.clips.sample(2, rng).to(self.device)
            both = np.concatenate([to_uint8(clip), to_uint8(model(clip)[0])], axis=3)  # (2, T, H, 2W, 3)
            save_gif(np.concatenate(list(both), axis=1), self.run / "samples" / f"{name}.gif")

    def fit(self, progress: bool = True, stop_at: int | None = None) -> list[dict]:
        """Train to cfg.steps (or stop early at `stop_at`, as a killed run would after its last save)."""
        cfg = self.cfg
        end = min(cfg.steps, stop_at or cfg.steps)
        start, started = time.time(), self.step
        with progress_bar(progress) as bar:
            task = bar.add_task("tokenizer", total=cfg.steps, completed=self.step)
            while self.step < end:
                out = self.train_step()
                self.step += 1
                if self.step % cfg.log_every == 0 or self.step == cfg.steps:
                    rate = (self.step - started) / (time.time() - start)
                    self.log.log(self.step, **out, steps_per_s=rate)
                if self.step % cfg.sample_every == 0 or self.step == cfg.steps:
                    self.samples(f"step{self.step:06d}")
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                desc = f"tokenizer  loss {out['loss']:.4f}  psnr {out['psnr']:.1f}"
                if "usage" in out:
                    desc += f"  usage {out['usage']:.0%}"
                bar.update(task, completed=self.step, description=desc)
        return self.log.read()


def train_tokenizer(cfg: TokenizerTrainConfig, run: str | Path, resume: bool = True, progress: bool = True):
    """Train (or continue) a tokenizer in `run`; returns (trainer, metrics rows)."""
    trainer = Trainer(cfg, run)
    if resume:
        trainer.resume()
    rows = trainer.fit(progress)
    return trainer, rows
