"""Teach a text-to-image model to judge its own images and draw again (Janus-Pro-R1's supervised stage).

Chains come from the model's own samples: each first image is read by the judge, whose verdict in words is the
target; after "no" the target is a true scene for the prompt, encoded by the visual tokenizer. Then a short
fine-tuning on whole chains (the loss on verdicts and second images, see `sequence.chains.introspection_batch`).
The chains are built again, the same, when a run resumes.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tessera.config import at_least, positive, to_dict, within
from tessera.data.prompts import held_keys, prompt_pools, sample_prompts
from tessera.engine import checkpoint
from tessera.engine.loop import Engine
from tessera.engine.schedule import WarmupCosine
from tessera.errors import ConfigError
from tessera.eval.judge import Judge
from tessera.eval.shapes_eval import UNSEEN_PAIRS
from tessera.eval.verdicts import is_yes, verdict
from tessera.generate.generator import generate
from tessera.model import bundle as bundles
from tessera.model.orders import make_orders
from tessera.pictures import to_tensor, to_uint8
from tessera.sequence.chains import VERDICT_LEN, chain_length, introspection_batch
from tessera.sequence.tasks import Task
from tessera.train.trainer import masked_loss, param_groups
from tessera.world.constraints import from_geneval, sample_scene_for
from tessera.world.render import render_image


@dataclass
class IntrospectConfig:
    init: str = ""  # a text-to-image checkpoint
    chains: int = 512  # chains built from the model's own samples (prompts from the RL pools)
    steps: int = 200
    batch_size: int = 16
    lr: float = 3e-4
    warmup: int = 20
    min_lr_ratio: float = 0.1
    weight_decay: float = 0.0
    grad_clip: float = 1.0
    log_every: int = 10
    save_every: int = 50
    seed: int = 0

    def validate(self) -> None:
        if not self.init:
            raise ConfigError("no model to start from: give --init CKPT")
        at_least(self, 1, "chains", "steps", "batch_size", "log_every", "save_every")
        at_least(self, 0, "warmup", "weight_decay")
        positive(self, "lr", "grad_clip")
        within(self, 0, 1, "min_lr_ratio")


@torch.no_grad()
def build_chains(bundle: bundles.Bundle, judge: Judge, n: int, seed: int, batch_size: int = 64) -> dict:
    """n first images of the model with the judge's verdicts, and a true image for each prompt."""
    device = bundle.model.output.weight.device
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    pools, _ = prompt_pools(held_keys(bundle.cfg.hold_out))
    metadata = sample_prompts(pools, n, rng)
    h, w = bundle.cfg.grid
    out: dict[str, list] = {"text": [], "ids": [], "order": [], "verdicts": [], "second": [], "second_order": []}
    for i in range(0, n, batch_size):
        meta = metadata[i : i + batch_size]
        text = bundle.encode_prompts([m["prompt"] for m in meta]).to(device)
        order = make_orders(bundle.cfg.order, len(meta), h, w, torch.Generator().manual_seed(seed + i))
        first = generate(bundle.model, bundle.space, text, (h, w), order, bundle.cfg.sampling, gen)
        found = judge.read(to_uint8(bundle.image_tokenizer.decode(first.codes)))
        scenes = [sample_scene_for(from_geneval(m), rng, bundle.cfg.canvas, avoid=UNSEEN_PAIRS) for m in meta]
        truth = np.stack([render_image(s) for s in scenes])
        out["text"].append(text.cpu())
        out["ids"].append(first.ids.cpu())
        out["order"].append(first.order.cpu())
        out["verdicts"] += [verdict(d, m) for d, m in zip(found, meta, strict=True)]
        out["second"].append(bundle.image_tokenizer.encode(to_tensor(truth).to(device)).cpu())
        out["second_order"].append(
            make_orders(bundle.cfg.order, len(meta), h, w, torch.Generator().manual_seed(seed - i - 1))
        )
    return {k: v if k == "verdicts" else torch.cat(v) for k, v in out.items()} | {"metadata": metadata}


class IntrospectionTrainer:
    def __init__(self, cfg: IntrospectConfig, run: str | Path, progress: bool = True, fresh: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        start = bundles.load(cfg.init, self.device)
        self.engine = Engine(
            run, "introspection", cfg.steps, self.write, to_dict(cfg), log_every=cfg.log_every,
            save_every=cfg.save_every, show=("loss", "acc"), progress=progress, fresh=fresh, inputs=[cfg.init],
        )  # fmt: skip
        self.chains = build_chains(start, Judge.load(), cfg.chains, cfg.seed)
        self.verdicts = [start.text_tokenizer.encode(v) for v in self.chains["verdicts"]]
        if max(len(v) for v in self.verdicts) > VERDICT_LEN:
            raise ConfigError(f"a verdict is longer than {VERDICT_LEN} tokens")
        self.redraw = [not is_yes(v) for v in self.chains["verdicts"]]
        h, w = start.cfg.grid
        longest = max(chain_length(start.cfg.text_len, h * w), start.cfg.model.max_seq_len)
        model_cfg = dataclasses.replace(start.cfg.model, max_seq_len=longest)
        self.model = type(start.model)(model_cfg).to(self.device)
        self.model.load_state_dict(start.model.state_dict())
        tasks = (*start.cfg.tasks, Task.INTROSPECT)
        bundle_cfg = dataclasses.replace(start.cfg, model=model_cfg, tasks=tasks)
        self.bundle = bundles.Bundle(bundle_cfg, self.model, start.text_tokenizer, start.image_tokenizer)
        self.opt = torch.optim.AdamW(param_groups(self.model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
        self.gen = torch.Generator().manual_seed(cfg.seed)
        self.engine.track(model=self.model, opt=self.opt, data=self.gen)
        self.engine.schedule(self.opt, WarmupCosine(cfg.lr, cfg.warmup, cfg.steps, cfg.min_lr_ratio))

    @property
    def step(self) -> int:
        return self.engine.step

    def write(self, folder: Path, trainer: dict, state: dict) -> None:
        tokenizer_dir = checkpoint.resolve(self.cfg.init) / "tokenizer"
        bundles.save(folder, self.bundle, self.model.state_dict(), tokenizer_dir, trainer, state)

    def train_step(self) -> dict[str, float]:
        """One step on a batch of whole chains."""
        rows = torch.randint(len(self.verdicts), (self.cfg.batch_size,), generator=self.gen)
        chains, space = self.chains, self.bundle.space
        batch = introspection_batch(
            space,
            chains["text"][rows],
            chains["ids"][rows],
            chains["order"][rows],
            [self.verdicts[i] for i in rows],
            [self.redraw[i] for i in rows],
            chains["second"][rows],
            chains["second_order"][rows],
            self.bundle.cfg.grid,
        )
        ids, pos, tpos = (t.to(self.device) for t in batch.inputs())
        targets, slots, mask = (t.to(self.device) for t in batch.targets())
        self.model.train()
        loss, acc = masked_loss(self.model(ids, pos, tpos, select=mask), targets, slots, mask, space)
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.grad_clip)
        self.engine.check_finite(loss=loss, gradient_norm=norm)
        self.opt.step()
        self.opt.zero_grad(set_to_none=True)
        return {"loss": loss.item(), "acc": acc.item()}

    def fit(self, until: int | None = None) -> list[dict]:
        """Train to cfg.steps (or stop after step `until`, as a killed run would); returns the metrics log."""
        if self.step == 0:
            self.engine.note(chains=self.cfg.chains, said_no=float(np.mean(self.redraw)))
        rows = self.engine.fit(self.train_step, until)
        self.model.eval()
        return rows
