"""Tokenizer training: reconstruction + quantizer loss, optional perceptual and PatchGAN terms, EMA, resume.

OmniTok trains progressively: `image_steps` on images alone, then images and clips in turn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tessera.config import at_least, positive, to_dict, within
from tessera.data.folders import source_for
from tessera.engine.ema import EMA
from tessera.engine.loop import Engine
from tessera.engine.schedule import WarmupCosine
from tessera.errors import ConfigError
from tessera.eval.shapes_eval import UNSEEN_PAIRS
from tessera.pictures import grid, save_gif, save_png, to_uint8
from tessera.tokenizer import build as tok
from tessera.tokenizer.losses import (
    PatchDiscriminator,
    Perceptual,
    adaptive_weight,
    hinge_d_loss,
    hinge_g_loss,
    reconstruction,
)
from tessera.tokenizer.masks import MaskColourQuantizer
from tessera.world.scene import check_canvas


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

    def validate(self) -> None:
        self.tokenizer.validate()
        at_least(self, 1, "steps", "batch_size", "video_batch_size", "video_every", "log_every", "sample_every")
        at_least(self, 1, "save_every")
        at_least(self, 0, "image_steps", "warmup", "weight_decay", "perceptual_weight", "gan_weight")
        at_least(self, -1, "gan_start")
        positive(self, "lr", "disc_lr", "grad_clip")
        within(self, 0, 1, "min_lr_ratio")
        check_canvas(self.canvas)
        if self.crop and not 16 <= self.crop <= self.canvas:
            raise ConfigError(f"crop must be 0 or from 16 to the canvas ({self.canvas}), got {self.crop}")
        if self.tokenizer.arch == "seq" and self.tokenizer.seq.canvas != self.canvas:
            raise ConfigError(f"tokenizer.seq.canvas ({self.tokenizer.seq.canvas}) must be the canvas ({self.canvas})")
        if self.tokenizer.arch == "seq" and not self.tokenizer.seq.proxy_init:
            raise ConfigError("a seq tokenizer trains against a patch tokenizer's codes: set tokenizer.seq.proxy_init")
        if self.tokenizer.arch == "patch" and (self.gan_start >= 0 or self.perceptual_weights):
            raise ConfigError("a patch tokenizer has no decoder to train: leave gan_start and perceptual_weights unset")
        if self.recon not in ("l1", "l2"):
            raise ConfigError(f"recon must be l1 or l2, got {self.recon!r}")
        if not 0 <= self.ema < 1 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"ema and betas must lie in [0, 1), got ema={self.ema}, betas={list(self.betas)}")

    @property
    def uses_video(self) -> bool:
        return self.video or self.data == "shapes-video"


def psnr(recon: torch.Tensor, target: torch.Tensor) -> float:
    """PSNR in dB for pixels in [-1, 1] (peak-to-peak 2)."""
    mse = (recon.clamp(-1, 1) - target).pow(2).mean().item()
    return 10 * math.log10(4 / max(mse, 1e-12))


class TokenizerTrainer:
    def __init__(self, cfg: TokenizerTrainConfig, run: str | Path, progress: bool = True, fresh: bool = False):
        cfg.validate()
        self.cfg = cfg
        torch.manual_seed(cfg.seed)
        self.rng = np.random.default_rng(cfg.seed)
        self.model = tok.build(cfg.tokenizer)
        if cfg.tokenizer.arch == "seq":  # the proxy whose codes it learns to predict (a resumed run's weights match)
            self.model.start_from(tok.load(cfg.tokenizer.seq.proxy_init)[0])
        self.ema = EMA(self.model, cfg.ema) if cfg.ema > 0 else None
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, betas=cfg.betas, weight_decay=cfg.weight_decay)
        image_data = "shapes" if cfg.data == "shapes-video" else cfg.data  # never the compositional split's pairs
        self.images = source_for(image_data, cfg.canvas, video=False, avoid=UNSEEN_PAIRS)
        self.clips = source_for(cfg.data, cfg.canvas, video=True, avoid=UNSEEN_PAIRS) if cfg.uses_video else None
        self.perceptual = Perceptual(cfg.perceptual_weights) if cfg.perceptual_weights else None
        self.discs = torch.nn.ModuleDict()
        self.disc_opt = None
        if cfg.gan_start >= 0:
            self.discs["image"] = PatchDiscriminator(2)
            if cfg.uses_video:
                self.discs["video"] = PatchDiscriminator(3, layers=2)
            self.disc_opt = torch.optim.AdamW(self.discs.parameters(), lr=cfg.disc_lr, betas=(0.5, 0.9))
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        for module in (self.model, self.ema.module if self.ema else None, self.perceptual, self.discs):
            if module is not None:
                module.to(self.device)
        self.engine = Engine(
            run, "tokenizer", cfg.steps, self.write, to_dict(cfg), log_every=cfg.log_every,
            save_every=cfg.save_every, show=("loss", "psnr", "usage", "colours"), progress=progress, fresh=fresh,
            inputs=[cfg.data, cfg.perceptual_weights],
        )  # fmt: skip
        self.engine.track(model=self.model, opt=self.opt, ema=self.ema, rng=self.rng)
        if len(self.discs):
            self.engine.track(discs=self.discs, disc_opt=self.disc_opt)
        self.engine.schedule(self.opt, WarmupCosine(cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio))
        self.engine.every(cfg.sample_every, self.samples)

    @property
    def step(self) -> int:
        return self.engine.step

    def write(self, folder: Path, trainer: dict, state: dict) -> None:
        tok.save(folder, self.ema.module if self.ema else self.model, self.cfg.tokenizer, trainer, state)

    # -- one step --------------------------------------------------------------------------------
    def is_video_step(self, step: int) -> bool:
        cfg = self.cfg
        return self.clips is not None and step >= cfg.image_steps and (step - cfg.image_steps) % cfg.video_every == 0

    def train_step(self) -> dict[str, float]:
        """One step: reconstruction (+ perceptual, + GAN once it starts) on a batch of images or clips."""
        cfg, step = self.cfg, self.step
        video = self.is_video_step(step)
        x = self.clips.sample(cfg.video_batch_size, self.rng) if video else self.images.sample(cfg.batch_size, self.rng)
        x = x.to(self.device)
        if cfg.crop and not video:  # a random window, the same for the whole batch (conv tokenizers only)
            top, left = (int(v) for v in self.rng.integers(0, x.shape[-1] - cfg.crop + 1, size=2))
            x = x[..., top : top + cfg.crop, left : left + cfg.crop]
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
        self.engine.check_finite(loss=loss)
        if loss.requires_grad:  # (a patch codebook is fitted by its EMA alone: nothing to step)
            self.opt.zero_grad(set_to_none=True)
            loss.backward()
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.engine.check_finite(gradient_norm=norm)
            self.opt.step()
        if gan:
            disc.train()
            d_loss = hinge_d_loss(disc(x), disc(recon.detach()))
            self.disc_opt.zero_grad(set_to_none=True)
            d_loss.backward()
            self.engine.check_finite(discriminator_loss=d_loss)
            self.disc_opt.step()
            out["d_loss"] = d_loss.item()
        out |= {"loss": loss.item(), "perplexity": float(q.perplexity), "video": float(video)}
        if q.codes is not None:
            out["usage"] = self.model.quantize.usage()
        if isinstance(self.model.quantize, MaskColourQuantizer):  # the colours it has found so far
            out["colours"] = int(self.model.quantize.found)
        return out

    # -- pictures --------------------------------------------------------------------------------
    @torch.no_grad()
    def samples(self) -> None:
        """original | reconstruction pairs: samples/step<N>.png, and a side-by-side GIF for clips."""
        model = (self.ema.module if self.ema else self.model).eval()
        name, folder = f"step{self.step:06d}", self.engine.run / "samples"
        rng = np.random.default_rng(12345)  # the same originals every time, so pictures compare across steps
        x = self.images.sample(16, rng).to(self.device)
        pairs = np.concatenate([to_uint8(x), to_uint8(model(x)[0])], axis=2)  # (16, H, 2W, 3)
        save_png(grid(list(pairs), cols=4), folder / f"{name}.png", scale=2)
        if self.clips is not None:
            clip = self.clips.sample(2, rng).to(self.device)
            both = np.concatenate([to_uint8(clip), to_uint8(model(clip)[0])], axis=3)  # (2, T, H, 2W, 3)
            save_gif(np.concatenate(list(both), axis=1), folder / f"{name}.gif")

    def fit(self, until: int | None = None) -> list[dict]:
        """Train to cfg.steps (or stop after step `until`, as a killed run would); returns the metrics log."""
        return self.engine.fit(self.train_step, until)
