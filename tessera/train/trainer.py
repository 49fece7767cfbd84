"""Supervised training of the autoregressive model: next-token loss on image tokens, on one process or many.

AdamW (weight decay on matrices only), warmup + cosine, gradient clipping, condition dropout for CFG,
optional EMA, bf16 autocast on GPU, DDP or FSDP (`fsdp=true`) under `torchrun` (gloo on CPU, nccl on GPU). A
checkpoint holds the optimizer, EMA and random-generator state, so a resumed run on CPU continues exactly.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

import torch

from tessera.config import at_least, positive, to_dict, within
from tessera.data.examples import WORLD_SOURCES, DataConfig
from tessera.engine.distributed import Processes, Whole, gradient_sync
from tessera.engine.ema import EMA
from tessera.engine.loop import Engine
from tessera.engine.schedule import WarmupCosine
from tessera.errors import ConfigError
from tessera.generate.generator import generate
from tessera.model import bundle as bundles
from tessera.model.orders import ORDERS, make_orders
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer, target_scores
from tessera.pictures import grid, save_png, to_uint8
from tessera.sequence.bands import Bands, BandStep, thinking_batch
from tessera.sequence.bands import chain_length as thinking_length
from tessera.sequence.ids import IMAGE, TEXT, IdSpace
from tessera.sequence.layouts import (
    TEXT_PART,
    Batch,
    Conditions,
    blank,
    conditioned,
    conditioned_length,
    i2t_length,
    image_to_text,
    pad_answer,
    pad_text,
    stack,
    t2i_length,
    text_to_image,
    unconditional,
)
from tessera.sequence.tasks import CONDITIONED, Task, reading
from tessera.sequence.tasks import conditioned as conditioned_tasks
from tessera.tokenizer import build as visual
from tessera.tokenizer.masks import MaskColourQuantizer
from tessera.train.token_cache import extract

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
    order: str = "raster"  # raster | random | spanning-tree (a fresh order per example)
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
    code_vectors: bool = False  # image codes embedded from the visual tokenizer's code vectors too
    ema: float = 0.0  # EMA decay of the weights; 0: off
    amp: str = "auto"  # auto (bf16 on GPU) | bf16 | off
    fsdp: bool = False  # under torchrun, shard weights, gradients and optimizer moments across processes (no EMA)
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
        at_least(self, 1, "steps", "batch_size", "grad_accum", "log_every", "sample_every", "save_every")
        at_least(self, 0, "warmup", "weight_decay", "text_weight")
        positive(self, "lr", "grad_clip")
        within(self, 0, 1, "min_lr_ratio", "cond_dropout")
        if self.fsdp and self.ema:
            raise ConfigError("fsdp=true keeps no EMA of the weights: set ema=0")
        if not 0 <= self.ema < 1 or not all(0 <= b < 1 for b in self.betas):
            raise ConfigError(f"ema and betas must lie in [0, 1), got ema={self.ema}, betas={list(self.betas)}")
        self.data.validate()
        self.sampling.validate()


def param_groups(model: torch.nn.Module, weight_decay: float) -> list[dict]:
    """Weight decay on matrices (linear layers) only; none on embeddings, norms and biases."""
    decay = [m.weight for m in model.modules() if isinstance(m, torch.nn.Linear)]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    return [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}]


def masked_loss(logits, targets, slots, mask, space, text_weight: float = 1.0) -> tuple[torch.Tensor, torch.Tensor]:
    """Cross-entropy over the ids each slot may emit at the masked positions, weighed by `slot_loss`; (loss,
    accuracy). logits: (B, T, V), or (M, V) at the masked positions only (the model's `select`)."""
    if logits.dim() == 3:
        logits = logits[mask]  # (M, V)
    allowed = torch.stack([space.allowed(TEXT, logits.device), space.allowed(IMAGE, logits.device)])  # (2, V)
    kind = slots[mask]  # (M,)
    logp, hit = target_scores(logits, targets[mask], allowed[kind])
    return slot_loss(-logp, kind, text_weight), hit.float().mean()


def slot_loss(nll: torch.Tensor, kind: torch.Tensor, text_weight: float = 1.0) -> torch.Tensor:
    """(M,) losses and slot kinds -> the mean over image tokens plus text_weight x the mean over text tokens (a short
    answer weighs as much as a 256-token image)."""
    image, text = kind == IMAGE, kind == TEXT
    loss = nll[image].mean() if image.any() else nll.new_zeros(())
    return loss + text_weight * nll[text].mean() if text.any() else loss


def drop_conditions(space: IdSpace, batch: Batch, p: float, gen: torch.Generator) -> Batch:
    """Conditioned rows with, for guidance per condition, a share p of each with the text dropped, p with the
    visual condition dropped, and p with both."""
    u = torch.rand(len(batch.ids), generator=gen)
    visual = tuple(range(2, int(batch.parts().max()) + 1))
    for lo, parts in ((0, (TEXT_PART,)), (p, visual), (2 * p, (TEXT_PART, *visual))):
        batch = blank(space, batch, parts, rows=(u >= lo) & (u < lo + p))
    return batch


class Trainer:
    def __init__(self, cfg: TrainConfig, run: str | Path, progress: bool = True, fresh: bool = False):
        cfg.validate()
        self.processes = Processes.start()
        self.device = self.processes.device
        self.amp = cfg.amp == "bf16" or (cfg.amp == "auto" and self.device.type == "cuda")
        self.image_tokenizer, _ = visual.load(cfg.tokenizer)
        self.image_tokenizer.to(self.device)
        source = [cfg.data.source] if cfg.data.source not in WORLD_SOURCES else []
        self.engine = Engine(
            run, "train", cfg.steps, self.write, to_dict(cfg), log_every=cfg.log_every, save_every=cfg.save_every,
            show=("loss", "acc"), counts=("tokens",), progress=progress, processes=self.processes, fresh=fresh,
            inputs=[cfg.tokenizer, *source],
        )  # fmt: skip
        main = self.processes.main
        if not main:
            self.processes.barrier()  # the main process tokenizes and caches the examples first; the others read it
        examples = extract(cfg.data, self.image_tokenizer, cfg.tokenizer, seed=cfg.seed, progress=progress and main)
        if main:
            self.processes.barrier()
        self.skipped = examples.skipped
        h, w = examples.codes.shape[1:]
        tasks = tuple(t for t in cfg.data.tasks if cfg.data.tasks[t] > 0)
        self.bands = Bands.equal(h, cfg.data.bands) if Task.THINK in tasks else None  # (a 1 x n grid has no bands)
        longest = max(
            t2i_length(cfg.data.text_len, h * w) if Task.T2I in tasks else 0,
            i2t_length(cfg.data.question_len, h * w, cfg.data.answer_len) if reading(tasks) else 0,
            conditioned_length(cfg.data.text_len, h * w, cfg.data.context_frames if Task.PREDICT in tasks else 1)
            if conditioned_tasks(tasks)
            else 0,
            t2i_length(cfg.data.text_len, examples.clips[0].numel()) if Task.T2V in tasks else 0,
            thinking_length(cfg.data.text_len, w, self.bands, cfg.data.thought_len, cfg.data.thought_len)
            if self.bands is not None else 0,
        )  # fmt: skip
        if longest > cfg.model.max_seq_len:
            raise ConfigError(f"sequences of {longest} tokens need model.max_seq_len >= {longest}")
        if max(h, w) > cfg.model.max_grid:
            raise ConfigError(f"images of {h}x{w} tokens need model.max_grid >= {max(h, w)}")
        video_grid = tuple(examples.clips.shape[1:]) if Task.T2V in tasks else None  # (t, h, w)
        if video_grid and video_grid[0] > cfg.model.max_frames:
            raise ConfigError(f"clips of {video_grid[0]} code frames need model.max_frames >= {video_grid[0]}")
        space = IdSpace(examples.text_tokenizer.vocab_size, self.image_tokenizer.codebook_size)
        vectors = visual.code_vectors(self.image_tokenizer) if cfg.code_vectors else None  # (n_image, code_dim)
        code_dim = 0 if vectors is None else vectors.shape[1]
        quantizer = getattr(self.image_tokenizer, "quantize", None)
        model_cfg = dataclasses.replace(
            cfg.model,
            vocab_size=space.size,
            image_codes=space.n_image,
            code_dim=code_dim,
            code_colours=len(quantizer.palette) if isinstance(quantizer, MaskColourQuantizer) else 0,
        )
        self.cfg = dataclasses.replace(cfg, model=model_cfg)
        bundle_cfg = bundles.BundleConfig(
            model=self.cfg.model,
            n_text=space.n_text,
            n_image=space.n_image,
            text_len=cfg.data.text_len,
            grid=(h, w),
            canvas=cfg.data.canvas,
            order=cfg.order,
            sampling=cfg.sampling,
            tasks=tasks,
            question_len=cfg.data.question_len,
            answer_len=cfg.data.answer_len,
            context_frames=cfg.data.context_frames,
            video_grid=video_grid,
            bands=cfg.data.bands,
            hold_out=cfg.data.hold_out,
        )
        torch.manual_seed(cfg.seed)
        self.model = Transformer(self.cfg.model).to(self.device)
        if vectors is not None:
            self.model.code_vectors.copy_(vectors)
        self.bundle = bundles.Bundle(bundle_cfg, self.model, examples.text_tokenizer, self.image_tokenizer)
        self.ddp = self.processes.wrap(self.model, self.model.layers if cfg.fsdp else None)
        self.sharded = cfg.fsdp and self.processes.count > 1
        self.ema = EMA(self.model, cfg.ema) if cfg.ema > 0 else None
        fused = self.device.type == "cuda"
        self.opt = torch.optim.AdamW(
            param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=cfg.betas, fused=fused
        )
        example_tasks = examples.tasks or [Task.T2I] * len(examples.texts)
        self.is_t2i = torch.tensor([t == Task.T2I for t in example_tasks])  # (N,)
        self.is_conditioned = torch.tensor([t in CONDITIONED for t in example_tasks])  # (N,)
        self.is_video = torch.tensor([t == Task.T2V for t in example_tasks])  # (N,)
        self.is_think = torch.tensor([t == Task.THINK for t in example_tasks])  # (N,)
        is_read = ~(self.is_t2i | self.is_conditioned | self.is_video | self.is_think)
        self.is_read = is_read
        self.chains, self.drafts = examples.chains, examples.drafts  # thinking: texts per example, (N, h, w)
        texts = [[] if read else t for t, read in zip(examples.texts, is_read.tolist(), strict=True)]
        self.texts = pad_text(space, texts, cfg.data.text_len)  # (N, L) prompts and instructions of drawn images
        self.conditions = examples.conditions  # (N, K, h, w) or None
        self.task_index = torch.tensor([CONDITIONED.index(t) if t in CONDITIONED else -1 for t in example_tasks])
        if is_read.any():
            questions = [t if read else [] for t, read in zip(examples.texts, is_read.tolist(), strict=True)]
            self.questions = pad_text(space, questions, cfg.data.question_len)  # (N, Q)
            self.answers = pad_answer(space, examples.answers, cfg.data.answer_len)  # (N, A + 1)
        self.codes = examples.codes  # (N, h, w)
        self.clips = examples.clips  # (N, t, h, w) or None
        self.gen = torch.Generator().manual_seed(cfg.seed * 1000 + self.processes.rank)  # this process's data order
        if self.sharded:  # saved whole, by every process; sampling a sharded model needs them all, so no samples
            self.engine.track(model=Whole(self.model), opt=Whole(self.model, self.opt), data=self.gen)
        else:
            self.engine.track(model=self.model, opt=self.opt, ema=self.ema, data=self.gen)
            self.engine.every(cfg.sample_every, self.samples)
        self.engine.schedule(self.opt, WarmupCosine(cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio))

    @property
    def step(self) -> int:
        return self.engine.step

    def write(self, folder: Path, trainer: dict, state: dict) -> None:
        weights = self.ema.module.state_dict() if self.ema is not None else trainer["model"]
        bundles.save(folder, self.bundle, weights, self.cfg.tokenizer, trainer, state)

    # -- one step --------------------------------------------------------------------------------
    def batch(self) -> Batch:
        """A batch of examples drawn with this process's generator: text-to-image and text-to-video rows (a share
        with the empty prompt, for guidance), conditioned rows (shares with the text, the visual condition, or both
        dropped) and image-to-text rows."""
        cfg, space = self.cfg, self.bundle.space
        index = torch.randint(len(self.codes), (cfg.batch_size,), generator=self.gen)
        cond_rows, read_rows = index[self.is_conditioned[index]], index[self.is_read[index]]
        parts = []
        for is_task, codes in ((self.is_t2i, self.codes), (self.is_video, self.clips)):
            rows = index[is_task[index]]
            if len(rows):
                text = self.texts[rows]
                drop = torch.rand(len(rows), generator=self.gen) < cfg.cond_dropout
                text = torch.where(drop[:, None], unconditional(space, text), text)
                *t, h, w = codes.shape[1:]
                order = make_orders(cfg.order, len(rows), math.prod(t) * h, w, self.gen)  # a clip's frames stacked
                parts.append(text_to_image(space, text, codes[rows], order))
        think_rows = index[self.is_think[index]]
        if len(think_rows):
            parts.append(self.thinking_rows(think_rows))
        for i, task in enumerate(CONDITIONED):  # one part per conditioned task: each has its own conditions
            rows = cond_rows[self.task_index[cond_rows] == i]
            if len(rows):
                parts.append(self.conditioned_rows(task, rows))
        if len(read_rows):
            parts.append(
                image_to_text(space, self.questions[read_rows], self.codes[read_rows], self.answers[read_rows])
            )
        return parts[0] if len(parts) == 1 else stack(parts, space)

    def thinking_rows(self, rows: torch.Tensor) -> Batch:
        """Thinking chains: per band its thought, the band, its critique; a draft band is kept as context (no loss)
        and drawn again after its critique. A share cond_dropout keeps only the bands (every text made <pad>), as
        guidance's unconditional rows see them."""
        w = self.codes.shape[2]
        chains = []
        for i in rows.tolist():
            chain, steps = self.chains[i], []
            for b, (thought, critique) in enumerate(zip(chain["thoughts"], chain["critiques"], strict=True)):
                cells = self.bands.cells(b, w)
                true = self.codes[i].flatten()[cells]
                if b == chain["draft"]:
                    steps.append(BandStep(thought, self.drafts[i].flatten()[cells], False, critique, true))
                else:
                    steps.append(BandStep(thought, true, critique=critique))
            chains.append(steps)
        space = self.bundle.space
        batch = thinking_batch(space, self.texts[rows], chains, self.bands, w)
        drop = torch.rand(len(rows), generator=self.gen) < self.cfg.cond_dropout  # guidance: text gone, bands kept
        return blank(space, batch, rows=drop, keep_images=True)

    def conditioned_rows(self, task: str, rows: torch.Tensor) -> Batch:
        """Examples of one conditioned task, with the text, the visual conditions or both dropped for guidance."""
        cfg, space = self.cfg, self.bundle.space
        h, w = self.codes.shape[1:]
        given = self.conditions[rows]  # (b, K, h, w)
        conditions = Conditions.clip(given[:, : cfg.data.context_frames]) if task == Task.PREDICT else given[:, :1]
        order = make_orders(cfg.order, len(rows), h, w, self.gen)
        batch = conditioned(space, self.texts[rows], conditions, self.codes[rows], order)
        return drop_conditions(space, batch, cfg.cond_dropout, self.gen)

    def accumulate(self) -> dict[str, float]:
        """Gradients of grad_accum micro-batches (averaged over them, and over processes by DDP); not applied."""
        cfg = self.cfg
        self.ddp.train()
        losses, accs, tokens = [], [], 0
        for micro in range(cfg.grad_accum):
            batch = self.batch()
            ids, pos, tpos = (t.to(self.device) for t in batch.inputs())
            part = None if batch.part is None else batch.part[:, :-1].to(self.device)  # DCA's parts of the inputs
            targets, slots, mask = (t.to(self.device) for t in batch.targets())
            with (
                gradient_sync(self.ddp, micro == cfg.grad_accum - 1),
                torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.amp),
            ):
                logp, hit = self.ddp(ids, pos, tpos, segment=part, select=mask, targets=targets[mask])  # (M,) x 2
                loss, acc = slot_loss(-logp, slots[mask], cfg.text_weight), hit.float().mean()
                (loss / cfg.grad_accum).backward()
            losses.append(loss.detach())
            accs.append(acc.detach())
            tokens += ids.numel()
        out = {"loss": float(torch.stack(losses).mean()), "acc": float(torch.stack(accs).mean())}
        return out | {"tokens": tokens * self.processes.count}

    def train_step(self) -> dict[str, float]:
        out = self.accumulate()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.engine.check_finite(loss=out["loss"], gradient_norm=norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return out | {"grad_norm": float(norm)}

    @torch.no_grad()
    def samples(self) -> None:
        """samples/step<N>.png: images for fixed prompts (the world's, or the first texts of user data)."""
        model = (self.ema.module if self.ema is not None else self.model).eval()
        world = self.cfg.data.source == "shapes"
        text = self.bundle.encode_prompts(list(SAMPLE_PROMPTS)) if world else self.texts[:8]
        h, w = self.bundle.cfg.grid
        order = make_orders(self.cfg.order, len(text), h, w, torch.Generator().manual_seed(0))
        gen = torch.Generator(device=self.device).manual_seed(0)
        drawn = generate(model, self.bundle.space, text, (h, w), order, self.cfg.sampling, gen)
        images = to_uint8(self.image_tokenizer.decode(drawn.codes))
        save_png(grid(images, cols=8), self.engine.run / "samples" / f"step{self.step:06d}.png", scale=2)

    def fit(self, until: int | None = None) -> list[dict]:
        """Train to cfg.steps (or stop after step `until`, as a killed run would); returns the metrics log."""
        return self.engine.fit(self.train_step, until)
