"""GRPO post-training of a text-to-image model with a verifiable reward.

Each step: draw `prompts_per_step` prompts, sample `group_size` images for each with the KV-cached guided
sampler (keeping each token's log-prob), decode, score with the rewards, compute group advantages (of the
weighted sum, or per reward and then weighted), then `mu` passes of clipped policy-gradient updates in
micro-batches of `update_batch` samples. Scoring reuses the sampling distribution (same guidance, temperature,
top-k/top-p), so on the first pass the ratio is exactly 1. Every `eval_every` steps a ShapesEval subset
(benchmark prompts and the second held-out set) measures per-category accuracy.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tessera import checkpoint
from tessera.config import to_dict
from tessera.data.shapes import to_uint8
from tessera.errors import UserError
from tessera.generate.generator import generate, score
from tessera.generate.sampling import SamplingConfig
from tessera.model import bundle as bundles
from tessera.model.orders import make_orders
from tessera.progress import progress_bar
from tessera.rl.grpo import GRPOConfig, advantages, grpo_loss, k3_kl
from tessera.rl.prompts import metadata_for, prompt_pools, sample_prompts
from tessera.rl.rewards import combine, make_reward, parse_spec
from tessera.runlog import RunLog
from tessera.world.language import CATEGORIES


@dataclass
class RLConfig:
    init: str = ""  # the model checkpoint to start from (and the frozen reference)
    reward: str = "shapes_eval"  # a name, or weighted names: "shapes_eval:1,shapes_eval_partial:0.5"
    separate_advantages: bool = False  # each reward its own group advantage, then weighted (else: one of the sum)
    train_unconditional: bool = False  # with guidance: also push the unconditional rows (against the conditional)
    reference: bool = True  # keep a frozen copy of the initial model to measure KL (needed when grpo.beta > 0)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(cfg_scale=3.0))
    steps: int = 100
    prompts_per_step: int = 4  # a rollout is prompts_per_step x group_size samples
    update_batch: int = 16  # samples per backward pass (gradient accumulation up to the rollout)
    mu: int = 1  # passes over each rollout
    lr: float = 1e-4
    grad_clip: float = 1.0
    log_every: int = 1
    save_every: int = 25
    eval_every: int = 25  # ShapesEval subset every n steps, before the first and after the last (0: never)
    eval_prompts: int = 8  # the first n benchmark prompts per category, and n per category of the held-out set
    eval_per_prompt: int = 2
    seed: int = 0

    def validate(self) -> None:
        if not self.init:
            raise UserError("no model to start from: give --init CKPT")
        for name in ("steps", "prompts_per_step", "update_batch", "mu", "log_every", "save_every"):
            if getattr(self, name) < 1:
                raise UserError(f"{name} must be >= 1")
        if self.grpo.beta > 0 and not self.reference:
            raise UserError("grpo.beta > 0 needs the reference model: set reference=true")
        parse_spec(self.reward)
        self.grpo.validate()
        self.sampling.validate()


class RLTrainer:
    def __init__(self, cfg: RLConfig, run: str | Path, progress: bool = True):
        cfg.validate()
        self.cfg, self.run, self.progress = cfg, Path(run), progress
        self.device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
        self.bundle = bundles.load(cfg.init, self.device)
        self.model = self.bundle.model  # eval mode throughout: no dropout, so scoring matches sampling
        self.ref = copy.deepcopy(self.model).requires_grad_(False) if cfg.reference else None
        self.weights = parse_spec(cfg.reward)
        self.rewards = {name: make_reward(name) for name in self.weights}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.pools, self.held_out = prompt_pools(cfg.seed)
        self.judge = None  # loaded on the first evaluation
        self.rng = np.random.default_rng(cfg.seed)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed)
        self.step = 0
        self.log = RunLog(self.run)

    @property
    def ckpt(self) -> Path:
        return self.run / "checkpoint"

    def save(self) -> None:
        trainer = {"opt": self.opt.state_dict(), "gen": self.gen.get_state().cpu()}
        state = {"step": self.step, "rng": self.rng.bit_generator.state, "rl": to_dict(self.cfg)}
        tokenizer_dir = checkpoint.resolve(self.cfg.init) / "tokenizer"
        bundles.save(self.ckpt, self.bundle, self.model.state_dict(), tokenizer_dir, trainer, state)

    def resume(self) -> bool:
        saved = checkpoint.resumable(self.ckpt)
        if saved is None or "rl" not in saved[1]:
            return False
        trainer, state = saved
        checkpoint.load_into(self.model, checkpoint.load_weights(self.ckpt), str(self.ckpt))
        self.opt.load_state_dict(trainer["opt"])
        self.gen.set_state(trainer["gen"].to(self.gen.device) if self.device.type == "cuda" else trainer["gen"])
        self.rng.bit_generator.state = state["rng"]
        self.step = state["step"]
        self.log.truncate(self.step)
        return True

    @torch.no_grad()
    def rollout(self) -> dict:
        """Prompts, images, tokens with their log-probs, and rewards for one step."""
        cfg, b = self.cfg, self.bundle
        metadata = sample_prompts(self.pools, cfg.prompts_per_step, self.rng)
        metadata = [m for m in metadata for _ in range(cfg.grpo.group_size)]  # each prompt's samples adjacent
        text = b.encode_prompts([m["prompt"] for m in metadata]).to(self.device)
        h, w = b.cfg.grid
        order = make_orders(
            b.cfg.order, len(metadata), h, w, torch.Generator().manual_seed(int(self.rng.integers(2**31)))
        )
        start = time.time()
        drawn = generate(self.model, b.space, text, (h, w), order, cfg.sampling, self.gen)
        images = to_uint8(b.tokenizer.decode(drawn.codes))
        drawn_at = time.time()
        texts = [""] * len(metadata)
        values = {name: fn(metadata, images, texts) for name, fn in self.rewards.items()}
        rewards = torch.tensor(combine(values, self.weights), device=self.device, dtype=torch.float32)
        seconds = {"generate_s": drawn_at - start, "reward_s": time.time() - drawn_at}
        parts = {name: torch.tensor(v, device=self.device, dtype=torch.float32) for name, v in values.items()}
        return {"metadata": metadata, "text": text, "drawn": drawn, "rewards": rewards, "parts": parts} | seconds

    def advantages(self, roll: dict) -> torch.Tensor:
        """(B,) advantages: of the weighted reward, or the weighted sum of each reward's own advantage."""
        g = self.cfg.grpo
        if not self.cfg.separate_advantages:
            return advantages(roll["rewards"], g.group_size, g.scale_rewards, g.eps)
        return sum(
            w * advantages(roll["parts"][n], g.group_size, g.scale_rewards, g.eps) for n, w in self.weights.items()
        )

    def update(self, roll: dict) -> dict[str, float]:
        cfg, b = self.cfg, self.bundle
        drawn, text = roll["drawn"], roll["text"]
        adv = self.advantages(roll)
        n = len(text)
        mask = torch.ones_like(drawn.ids, dtype=torch.bool)
        stats: dict[str, list[float]] = {}
        for epoch in range(cfg.mu):
            for start in range(0, n, cfg.update_batch):
                part = slice(start, start + cfg.update_batch)
                args = (b.space, text[part], drawn.ids[part], drawn.order[part], b.cfg.grid[1], cfg.sampling)
                logp = score(self.model, *args, train_unconditional=cfg.train_unconditional)
                ref = None
                if self.ref is not None:
                    with torch.no_grad():
                        ref = score(self.ref, *args)
                loss, s = grpo_loss(
                    logp, drawn.logprobs[part], adv[part], mask[part], cfg.grpo, ref, active_tokens=float(mask.sum())
                )
                if ref is not None and "kl" not in s:  # beta = 0: measured, not optimised
                    s["kl"] = float(k3_kl(logp.detach(), ref).mean())
                weight = 1.0 if cfg.grpo.loss_type == "dapo" else len(logp) / n
                (loss * weight).backward()
                for k, v in s.items():
                    stats.setdefault(k, []).append(v)
                if epoch == 0:  # on-policy: exactly 1 unless scoring differs from sampling
                    stats.setdefault("ratio_start", []).append(s["ratio"])
            torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        return {k: float(np.mean(v)) for k, v in stats.items()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """ShapesEval accuracy per category on a subset of the benchmark (eval/...) and of the held-out set."""
        from tessera.eval.judge import Judge
        from tessera.eval.shapes_eval import load_metadata
        from tessera.generate.images import evaluate_model

        cfg = self.cfg
        self.judge = self.judge or Judge.load()
        n = cfg.eval_prompts
        benchmark = [m for c in CATEGORIES for m in [x for x in load_metadata() if x["tag"] == c][:n]]
        held = [m for c, pool in self.held_out.items() for m in metadata_for(pool[:n], c)]
        out = {}
        for name, metadata in (("eval", benchmark), ("held_out", held)):
            summary, _, _ = evaluate_model(
                self.bundle, metadata, self.judge, cfg.eval_per_prompt, cfg.sampling, seed=cfg.seed, batch_size=128
            )
            out |= {f"{name}/{k}": v for k, v in summary.items() if isinstance(v, float)}
        return out

    def fit(self, stop_at: int | None = None) -> list[dict]:
        cfg = self.cfg
        end = min(cfg.steps, stop_at or cfg.steps)
        if cfg.eval_every and self.step == 0 and end > 0:
            self.log.log(0, **self.evaluate())
        with progress_bar(self.progress) as bar:
            task = bar.add_task("rl", total=cfg.steps, completed=self.step)
            while self.step < end:
                start = time.time()
                roll = self.rollout()
                updating = time.time()
                out = self.update(roll)
                self.step += 1
                r = roll["rewards"].float()
                out |= {
                    "reward_mean": float(r.mean()),
                    "reward_std": float(r.std()),
                    "entropy": float(-roll["drawn"].logprobs.mean()),  # mean surprisal of the sampled tokens
                    "samples_per_s": len(r) / (time.time() - start),
                    "generate_s": roll["generate_s"],
                    "reward_s": roll["reward_s"],
                    "update_s": time.time() - updating,
                }
                if len(roll["parts"]) > 1:
                    out |= {f"reward/{name}": float(v.mean()) for name, v in roll["parts"].items()}
                for tag in sorted({m["tag"] for m in roll["metadata"]}):
                    hits = [float(v) for m, v in zip(roll["metadata"], r.tolist(), strict=True) if m["tag"] == tag]
                    out[f"reward/{tag}"] = float(np.mean(hits))
                if cfg.eval_every and (self.step % cfg.eval_every == 0 or self.step == cfg.steps):
                    out |= self.evaluate()
                if self.step % cfg.log_every == 0 or self.step == cfg.steps or "eval/overall" in out:
                    self.log.log(self.step, **out)
                if self.step % cfg.save_every == 0 or self.step == cfg.steps:
                    self.save()
                bar.update(task, completed=self.step, description=f"rl  reward {out['reward_mean']:.3f}")
        return self.log.read()
