"""Teach a text-to-image model to judge its own images and draw again (Janus-Pro-R1's supervised stage).

Chains come from the model's own samples: each first image is read by the judge, whose verdict in words is the
target; after "no" the target is a true scene for the prompt, encoded by the visual tokenizer. Then a short
fine-tuning on whole chains (the loss on verdicts and second images, see `introspection_batch`).
"""

from __future__ import annotations

import dataclasses
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from tessera import checkpoint
from tessera.config import to_dict
from tessera.data.shapes import to_tensor, to_uint8
from tessera.errors import ConfigError
from tessera.eval.judge import Judge
from tessera.generate.generator import generate
from tessera.generate.introspect import VERDICT_LEN, introspection_batch
from tessera.model import bundle as bundles
from tessera.model.orders import make_orders
from tessera.progress import progress_bar
from tessera.rl.prompts import prompt_pools, sample_prompts
from tessera.runlog import RunLog
from tessera.train.schedule import lr_at
from tessera.train.trainer import masked_loss, param_groups
from tessera.understand.texts import is_yes, verdict
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
    max_seq_len: int = 640  # the chain is about twice a text-to-image sequence
    log_every: int = 10
    seed: int = 0

    def validate(self) -> None:
        if not self.init:
            raise ConfigError("no model to start from: give --init CKPT")
        for name in ("chains", "steps", "batch_size"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1")


@torch.no_grad()
def build_chains(bundle: bundles.Bundle, judge: Judge, n: int, seed: int, batch_size: int = 64) -> dict:
    """n first images of the model with the judge's verdicts, and a true image for each prompt."""
    b, device = bundle, bundle.model.output.weight.device
    rng = np.random.default_rng(seed)
    gen = torch.Generator(device=device).manual_seed(seed)
    pools, _ = prompt_pools(seed)
    metadata = sample_prompts(pools, n, rng)
    h, w = b.cfg.grid
    out: dict[str, list] = {"text": [], "ids": [], "order": [], "verdicts": [], "second": [], "second_order": []}
    for i in range(0, n, batch_size):
        meta = metadata[i : i + batch_size]
        text = b.encode_prompts([m["prompt"] for m in meta]).to(device)
        order = make_orders(b.cfg.order, len(meta), h, w, torch.Generator().manual_seed(seed + i))
        first = generate(b.model, b.space, text, (h, w), order, b.cfg.sampling, gen)
        found = judge.read(to_uint8(b.tokenizer.decode(first.codes)))
        truth = np.stack([render_image(sample_scene_for(from_geneval(m), rng, b.cfg.canvas)) for m in meta])
        out["text"].append(text.cpu())
        out["ids"].append(first.ids.cpu())
        out["order"].append(first.order.cpu())
        out["verdicts"] += [verdict(d, m) for d, m in zip(found, meta, strict=True)]
        out["second"].append(b.tokenizer.encode(to_tensor(truth).to(device)).cpu())
        out["second_order"].append(
            make_orders(b.cfg.order, len(meta), h, w, torch.Generator().manual_seed(seed - i - 1))
        )
    return {k: v if k == "verdicts" else torch.cat(v) for k, v in out.items()} | {"metadata": metadata}


def train_introspection(cfg: IntrospectConfig, run: str | Path, progress: bool = True) -> bundles.Bundle:
    """Build chains, fine-tune on them, save run/checkpoint (tasks + introspect); returns the tuned bundle."""
    cfg.validate()
    run = Path(run)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    b = bundles.load(cfg.init, device)
    chains = build_chains(b, Judge.load(), cfg.chains, cfg.seed)
    verdict_ids = [b.text.encode(v) for v in chains["verdicts"]]
    if max(len(v) for v in verdict_ids) > VERDICT_LEN:
        raise ConfigError(f"a verdict is longer than {VERDICT_LEN} tokens")
    redraw = [not is_yes(v) for v in chains["verdicts"]]
    model_cfg = dataclasses.replace(b.cfg.model, max_seq_len=max(cfg.max_seq_len, b.cfg.model.max_seq_len))
    model = type(b.model)(model_cfg).to(device)
    model.load_state_dict(b.model.state_dict())
    tuned = bundles.Bundle(
        dataclasses.replace(b.cfg, model=model_cfg, tasks=(*b.cfg.tasks, "introspect")), model, b.text, b.tokenizer
    )
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=cfg.lr, betas=(0.9, 0.95))
    gen = torch.Generator().manual_seed(cfg.seed)
    log = RunLog(run)
    log.log(0, chains=cfg.chains, said_no=float(np.mean(redraw)))
    model.train()
    start = time.time()
    with progress_bar(progress) as bar:
        task = bar.add_task("introspection", total=cfg.steps)
        for step in range(cfg.steps):
            for g in opt.param_groups:
                g["lr"] = lr_at(cfg, step)
            rows = torch.randint(len(verdict_ids), (cfg.batch_size,), generator=gen)
            batch = introspection_batch(
                b.space,
                chains["text"][rows],
                chains["ids"][rows],
                chains["order"][rows],
                [verdict_ids[i] for i in rows],
                [redraw[i] for i in rows],
                chains["second"][rows],
                chains["second_order"][rows],
                b.cfg.grid[1],
            )
            ids, pos, tpos = (t.to(device) for t in batch.inputs())
            targets, slots, mask = (t.to(device) for t in batch.targets())
            loss, acc = masked_loss(model(ids, pos, tpos), targets, slots, mask, b.space)
            loss.backward()
            torch.nn.utils.clip_grad_norm_(model.parameters(), cfg.grad_clip)
            opt.step()
            opt.zero_grad(set_to_none=True)
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                log.log(step + 1, loss=loss.item(), acc=acc.item(), seconds=time.time() - start)
            bar.update(task, advance=1, description=f"introspection  loss {loss.item():.3f}")
    model.eval()
    tokenizer_dir = checkpoint.resolve(cfg.init) / "tokenizer"
    state = {"step": cfg.steps, "introspect": to_dict(cfg)}
    bundles.save(run / "checkpoint", tuned, model.state_dict(), tokenizer_dir, None, state)
    return tuned
