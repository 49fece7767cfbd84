"""Supervised training of the autoregressive model: next-token loss on image tokens, on one process or many.

AdamW (weight decay on matrices only), warmup + cosine, gradient clipping, condition dropout for CFG,
optional EMA, bf16 autocast on GPU, DDP under `torchrun` (gloo on CPU, nccl on GPU). A checkpoint holds the
optimizer, EMA and random-generator state, so a resumed run on CPU continues exactly.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import os
import time
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.distributed as dist
import torch.nn.functional as F

from tessera import checkpoint
from tessera.config import to_dict
from tessera.data.shapes import to_uint8
from tessera.errors import ConfigError
from tessera.generate.generator import generate
from tessera.generate.sampling import SamplingConfig
from tessera.model import bundle as bundles
from tessera.model.orders import ORDERS, make_orders
from tessera.model.transformer import ModelConfig, Transformer
from tessera.pictures import grid, save_png
from tessera.progress import progress_bar
from tessera.runlog import RunLog
from tessera.sequence.ids import IMAGE, TEXT, IdSpace
from tessera.sequence.layouts import image_to_text, pad_answer, pad_text, stack, text_to_image, unconditional
from tessera.tokenizer import build as visual
from tessera.train.data import DataConfig, extract
from tessera.train.schedule import lr_at

SAMPLE_PROMPTS = (
    "a red circle",
    "a blue star and a yellow square",
    "three triangles",
    "a green diamond left of a white circle",
    "a purple square above an orange star",
    "two circles",
    "a black triangle and a red diamond",
    "a star below a square",
)


@dataclass
class TrainConfig:
    model: ModelConfig = field(default_factory=ModelConfig)
    data: DataConfig = field(default_factory=DataConfig)
    tokenizer: str = ""  # a visual tokenizer checkpoint folder
    order: str = "raster"  # raster | random (a fresh order per example)
    steps: int = 3000
    batch_size: int = 64  # per process, per micro-step
    grad_accum: int = 1
    lr: float = 1e-3
    min_lr_ratio: float = 0.1
    warmup: int = 100
    weight_decay: float = 0.05
    betas: tuple[float, float] = (0.9, 0.95)
    grad_clip: float = 1.0
    cond_dropout: float = 0.1  # share of examples trained with the empty prompt (for guidance)
    text_weight: float = 1.0  # multi-task: the text tokens' mean loss relative to the image tokens' (see masked_loss)
    ema: float = 0.0  # EMA decay of the weights; 0: off
    amp: str = "auto"  # auto (bf16 on GPU) | bf16 | off
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(cfg_scale=3.0))
    log_every: int = 25
    sample_every: int = 500
    save_every: int = 250
    seed: int = 0

    def validate(self) -> None:
        if not self.tokenizer:
            raise ConfigError("no visual tokenizer: give --tokenizer CKPT (or tokenizer=CKPT)")
        if self.order not in ORDERS:
            raise ConfigError(f"unknown order {self.order!r}; expected one of {', '.join(ORDERS)}")
        if self.amp not in ("auto", "bf16", "off"):
            raise ConfigError(f"amp must be auto, bf16 or off, got {self.amp!r}")
        for name in ("steps", "batch_size", "grad_accum", "log_every", "sample_every", "save_every"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")
        self.sampling.validate()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (linear layers) only; none on embeddings, norms and biases."""
    decay = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def masked_loss(logits, targets, slots, mask, space, text_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over the ids each slot may emit at the masked positions: the mean over image tokens plus
    text_weight x the mean over text tokens (a short answer weighs as much as a 256-token image); (loss, accuracy)."""
    allowed = torch.stack([space.allowed(TEXT, logits.device), space.allowed(IMAGE, logits.device)])  # (2, V)
    kind = slots[mask]  # (M,)
    logits = logits[mask].masked_fill(~allowed[kind], float("-inf"))  # (M, V)
    target = targets[mask]
    each = F.cross_entropy(logits, target, reduction="none")  # (M,)
    image, text = kind == IMAGE, kind == TEXT
    loss = each[image].mean() if image.any() else each.new_zeros(())
    if text.any():
        loss = loss + text_weight * each[text].mean()
    return loss, (logits.argmax(-1) == target).float().mean()


class Trainer:
    def __init__(self, cfg: TrainConfig, run: str | Path, progress: bool = True):
        cfg.validate()
        self.run, self.progress = Path(run), progress
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        cuda = torch.cuda.is_available()
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if cuda else "gloo")
        local = int(os.environ.get("LOCAL_RANK", "0"))
        self.device = torch.device(f"cuda:{local}" if cuda else "cpu")
        if cuda:
            torch.cuda.set_device(self.device)
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and cuda)

        self.tokenizer, _ = visual.load(cfg.tokenizer)
        self.tokenizer.to(self.device)
        if self.world > 1 and not self.is_main:
            dist.barrier()  # rank 0 tokenizes and caches the examples first; the others read its cache
        examples = extract(cfg.data, self.tokenizer, cfg.tokenizer, seed=cfg.seed, progress=progress and self.is_main)
        if self.world > 1 and self.is_main:
            dist.barrier()
        self.skipped = examples.skipped
        h, w = examples.codes.shape[1:]
        space_cfg = bundles.BundleConfig(
            n_text=examples.text_tokenizer.vocab_size,
            n_image=self.tokenizer.codebook_size,
            text_len=cfg.data.text_len,
            grid=(h, w),
            canvas=cfg.data.canvas,
            order=cfg.order,
            sampling=cfg.sampling,
            tasks=tuple(t for t in cfg.data.tasks if cfg.data.tasks[t] > 0),
            question_len=cfg.data.question_len,
            answer_len=cfg.data.answer_len,
        )
        longest = max(
            cfg.data.text_len + h * w + 2 if "t2i" in space_cfg.tasks else 0,
            cfg.data.question_len + h * w + 4 + cfg.data.answer_len if set(space_cfg.tasks) - {"t2i"} else 0,
        )
        if longest > cfg.model.max_seq_len:
            raise ConfigError(f"sequences of {longest} tokens need model.max_seq_len >= {longest}")
        vocab = IdSpace(space_cfg.n_text, space_cfg.n_image).size
        space_cfg.model = dataclasses.replace(cfg.model, vocab_size=vocab)
        self.cfg = dataclasses.replace(cfg, model=space_cfg.model)
        torch.manual_seed(cfg.seed)
        model = Transformer(space_cfg.model)
        self.bundle = bundles.Bundle(space_cfg, model, examples.text_tokenizer, self.tokenizer)
        self.model = model.to(self.device)
        self.ddp = (
            torch.nn.parallel.DistributedDataParallel(model, device_ids=[local] if cuda else None)
            if self.world > 1
            else model
        )
        self.ema = copy.deepcopy(model).requires_grad_(False) if cfg.ema > 0 else None
        self.opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, fused=cuda)
        space, tasks = self.bundle.space, examples.tasks or ["t2i"] * len(examples.texts)
        self.is_t2i = torch.tensor([t == "t2i" for t in tasks])  # (N,)
        texts = [t if task == "t2i" else [] for t, task in zip(examples.texts, tasks, strict=True)]
        self.texts = pad_text(space, texts, cfg.data.text_len)  # (N, L) prompts of t2i examples
        if not self.is_t2i.all():
            questions = [[] if task == "t2i" else t for t, task in zip(examples.texts, tasks, strict=True)]
            self.questions = pad_text(space, questions, cfg.data.question_len)  # (N, Q)
            self.answers = pad_answer(space, examples.answers, cfg.data.answer_len)  # (N, A + 1)
        self.codes = examples.codes  # (N, h, w)
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.rank)
        self.step = 0
        self.log = RunLog(self.run) if self.is_main else None

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def ckpt(self) -> Path:
        return self.run / "checkpoint"

    # -- checkpointing -----------------------------------------------------------------------------
    def save(self) -> None:
        if not self.is_main:
            return
        trainer = {"model": self.model.state_dict(), "opt": self.opt.state_dict(), "gen": self.gen.get_state()}
        weights = (self.ema if self.ema is not None else self.model).state_dict()
        state = {"step": self.step, "train": to_dict(self.cfg), "world": self.world}
        bundles.save(self.ckpt, self.bundle, weights, self.cfg.tokenizer, trainer, state)

    def resume(self) -> bool:
        """Continue from the run's checkpoint if there is one; True if it did."""
        saved = checkpoint.resumable(self.ckpt)
        if saved is None:
            return False
        trainer, state = saved
        self.model.load_state_dict(trainer["model"])
        self.opt.load_state_dict(trainer["opt"])
        if self.rank == 0:
            self.gen.set_state(trainer["gen"])
        else:  # other ranks' streams are not saved: move them on by the step count, deterministically
            self.gen.manual_seed(self.cfg.seed * 1000 + self.rank + 7919 * state["step"])
        if self.ema is not None:
            checkpoint.load_into(self.ema, checkpoint.load_weights(self.ckpt), str(self.ckpt))
        self.step = state["step"]
        if self.log is not None:
            self.log.truncate(self.step)
        return True

    # -- one step --------------------------------------------------------------------------------
    def batch(self):
        cfg, space = self.cfg, self.bundle.space
        index = torch.randint(len(self.codes), (cfg.batch_size,), generator=self.gen)
        draw, read = index[self.is_t2i[index]], index[~self.is_t2i[index]]
        parts = []
        if len(draw):
            text, codes = self.texts[draw], self.codes[draw]
            drop = torch.rand(len(draw), generator=self.gen) < cfg.cond_dropout
            text = torch.where(drop[:, None], unconditional(space, text), text)
            h, w = codes.shape[1:]
            parts.append(text_to_image(space, text, codes, make_orders(cfg.order, len(draw), h, w, self.gen)))
        if len(read):
            parts.append(image_to_text(space, self.questions[read], self.codes[read], self.answers[read]))
        return parts[0] if len(parts) == 1 else stack(parts, space)

    def train_step(self) -> dict[str, float]:
        cfg = self.cfg
        for g in self.opt.param_groups:
            g["lr"] = lr_at(cfg, self.step)
        self.ddp.train()
        losses, accs, tokens = [], [], 0
        for micro in range(cfg.grad_accum):
            b = self.batch()
            ids, pos, tpos = (t.to(self.device) for t in b.inputs())
            targets, slots, mask = (t.to(self.device) for t in b.targets())
            sync = micro == cfg.grad_accum - 1 or self.world == 1
            ctx = contextlib.nullcontext() if sync else self.ddp.no_sync()
            with ctx, torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp):
                logits = self.ddp(ids, pos, tpos)
                loss, acc = masked_loss(logits, targets, slots, mask, self.bundle.space, cfg.text_weight)
                (loss / cfg.grad_accum).backward()
            losses.append(loss.detach())
            accs.append(acc.detach())
            tokens += ids.numel()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        if self.ema is not None:
            with torch.no_grad():
                for e, p in zip(self.ema.parameters(), self.model.parameters(), strict=True):
                    e.lerp_(p, 1 - cfg.ema)
        out = {"loss": float(torch.stack(losses).mean()), "acc": float(torch.stack(accs).mean())}
        return out | {"grad_norm": float(norm), "lr": lr_at(cfg, self.step), "tokens": tokens * self.world}

    @torch.no_grad()
    def samples(self, name: str) -> None:
        """A grid of images for fixed prompts (the world's, or the first texts of user data)."""
        model = self.ema if self.ema is not None else self.model
        model.eval()
        world = self.cfg.data.source == "shapes"
        text = self.bundle.encode_prompts(list(SAMPLE_PROMPTS)) if world else self.texts[:8]
        h, w = self.bundle.cfg.grid
        order = make_orders(self.cfg.order, len(text), h, w, torch.Generator().manual_seed(0))
        drawn = generate(model, self.bundle.space, text, (h, w), order, self.cfg.sampling, _generator(self.device))
        images = to_uint8(self.tokenizer.decode(drawn.codes))
        save_png(grid(images, cols=8), self.run / "samples" / f"{name}.png", scale=2)

    def fit(self, stop_at: int | None = None) -> list[dict]:
        """Train to cfg.steps (or stop early at `stop_at`, as a killed run would after its last save)."""
        cfg = self.cfg
        end = min(cfg.steps, stop_at or cfg.steps)
        start, started, tokens = time.time(), self.step, 0
        with progress_bar(self.progress and self.is_main) as bar:
            task = bar.add_task("train", total=cfg.steps, completed=self.step)
            while self.step < end:
                out = self.train_step()
                self.step += 1
                tokens += out.pop("tokens")
                if self.is_main and (self.step % cfg.log_every == 0 or self.step == cfg.steps):
                    self.log.log(self.step, **out, tokens_per_s=tokens / (time.time() - start))
                if self.is_main and (self.step % cfg.sample_every == 0 or self.step == cfg.steps):
                    self.samples(f"step{self.step:06d}")
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                desc = f"train  loss {out['loss']:.3f}  acc {out['acc']:.2f}"
                bar.update(task, completed=self.step, description=desc)
        self.elapsed = time.time() - start
        self.steps_run = self.step - started
        return self.log.read() if self.log is not None else []


def _generator(device: torch.device) -> torch.Generator:
    return torch.Generator(device=device).manual_seed(0)


def train(cfg: TrainConfig, run: str | Path, resume: bool = True, progress: bool = True) -> Trainer:
    """Train (or continue) a model in `run`; returns the trainer."""
    trainer = Trainer(cfg, run, progress)
    if resume:
        trainer.resume()
    trainer.fit()
    if trainer.world > 1:
        dist.barrier()
    return trainer
