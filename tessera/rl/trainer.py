"""GRPO post-training of one model that draws and reads, with verifiable rewards (CoRL when it does both).

Each step: draw `prompts_per_step` prompts and sample `group_size` images for each with the KV-cached guided
sampler; and/or pose `read_per_step` questions about fresh scenes and write `group_size` answers to each. Each
rollout is scored with its rewards, given group advantages (of the weighted sum, or per reward and then weighted),
and both losses go into `mu` passes of clipped policy-gradient updates of the one shared policy, in micro-batches of
`update_batch` samples. Rescoring uses the sampling distribution (guidance, temperature, top-k/top-p), so on the
first pass the ratio is exactly 1. Every `eval_every` steps a ShapesEval subset (benchmark prompts and the second
held-out set) and, for a model that reads, question answering on held-out scenes are measured.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from tessera.config import at_least, positive, to_dict
from tessera.data.examples import condition_cases
from tessera.data.prompts import held_keys, metadata_for, prompt_pools, sample_prompts
from tessera.engine import checkpoint
from tessera.engine.distributed import Processes, Whole
from tessera.engine.loop import Engine
from tessera.errors import CheckpointError, ConfigError
from tessera.eval.conditions import EVAL_SEED
from tessera.eval.judge import Judge
from tessera.eval.shapes_eval import first_prompts
from tessera.generate.conditioned import condition_scores
from tessera.generate.images import evaluate_model
from tessera.model import bundle as bundles
from tessera.model.sampling import SamplingConfig
from tessera.rl.grpo import GRPOConfig, advantages, grpo_loss, k3_kl
from tessera.rl.rewards import ANY_PROMPT, make_reward, parse_spec
from tessera.rl.rollouts import (
    Rollout,
    condition_examples,
    draw_rollout,
    introspect_rollout,
    read_examples,
    read_rollout,
    thinking_rollout,
)
from tessera.sequence.tasks import CONDITIONED, READING, Task, reading, tasks
from tessera.text.tokenizers import ClassTokenizer
from tessera.understand.answer import ask
from tessera.understand.evaluate import evaluate_understanding
from tessera.world.language import CAPTION_QUESTION, CATEGORIES, EDIT_OPS

CONDITION_WEIGHTS = {"condition": 1.0}
FOCUS_FLOOR = 0.05  # focus: added to every category's spread, so none is left undrawn for long
PREFIXES = {"draw": "", "read": "read/", "condition": "cond/"}  # of each rollout's logged numbers


@dataclass
class RLConfig:
    init: str = ""  # the model checkpoint to start from (and the frozen reference)
    reward: str = "shapes_eval"  # a name, or weighted names: "shapes_eval:1,shapes_eval_partial:0.5"
    separate_advantages: bool = False  # each reward its own group advantage, then weighted (else: one of the sum)
    train_unconditional: bool = True  # with guidance, the exact gradient of the guided policy (both rows); false:
    # the conditional rows alone (about 20 % cheaper updates, a little worse on the quick demo: bench/RESULTS.md)
    reference: bool = True  # keep a frozen copy of the initial model to measure KL (needed when grpo.beta > 0)
    grpo: GRPOConfig = field(default_factory=GRPOConfig)
    sampling: SamplingConfig = field(default_factory=lambda: SamplingConfig(cfg_scale=3.0))
    draw: bool = True  # drawing rollouts (text-to-image)
    introspect: bool = False  # drawing rollouts are chains: draw, judge in words, draw again (Janus-Pro-R1)
    think: bool = False  # drawing rollouts are thinking chains: thoughts, bands, critiques, redraws (TwiG-GRPO)
    read: dict[str, float] = field(default_factory=dict)  # reading rollouts: task (caption|qa|judge) -> share
    read_reward: str = "answer:1,answer_format:0.25"
    read_sampling: SamplingConfig = field(default_factory=SamplingConfig)
    read_per_step: int = 8  # questions per step, each answered group_size times
    conditions: dict[str, float] = field(default_factory=dict)  # conditioned drawing: task (seg2i|edge2i|instruct)
    # -> share, rewarded against the world's truth (the condition reward)
    conditions_per_step: int = 4  # conditioned cases per step, each drawn group_size times
    edits: list[str] = field(default_factory=list)  # instruct: the edit kinds drawn (recolour|move|add|remove; []: all)
    eval_conditions: int = 8  # cases per map task and per edit kind at each evaluation (conditions given)
    read_weight: float = 1.0  # the reading loss relative to the drawing loss
    steps: int = 100
    prompts_per_step: int = 4  # a rollout is prompts_per_step x group_size samples
    focus: bool = False  # draw prompt categories by the recent spread of their groups' rewards, not in turn: a group
    # whose samples all score alike teaches GRPO nothing (each process by its own groups)
    update_batch: int = 16  # samples per backward pass (gradient accumulation up to the rollout)
    mu: int = 1  # passes over each rollout
    lr: float = 3e-5  # the quick demo's measured setting
    grad_clip: float = 1.0
    log_every: int = 1
    save_every: int = 25
    eval_every: int = 25  # ShapesEval subset every n steps, before the first and after the last (0: never)
    eval_prompts: int = 8  # the first n benchmark prompts per category, and n per category of the held-out set
    eval_per_prompt: int = 2
    eval_read: int = 50  # held-out scenes per reading task at each evaluation (a model that reads)
    fsdp: bool = False  # under torchrun, shard the policy (and the reference) across processes; no evaluations
    seed: int = 0

    def validate(self) -> None:
        if not self.init:
            raise ConfigError("no model to start from: give --init CKPT")
        at_least(self, 1, "steps", "prompts_per_step", "update_batch", "mu", "log_every", "save_every", "read_per_step",
                 "conditions_per_step")  # fmt: skip
        at_least(
            self, 0, "eval_every", "eval_prompts", "eval_per_prompt", "eval_read", "read_weight", "eval_conditions"
        )
        positive(self, "lr", "grad_clip")
        if self.grpo.beta > 0 and not self.reference:
            raise ConfigError("grpo.beta > 0 needs the reference model: set reference=true")
        if not self.draw and not self.read and not self.conditions:
            raise ConfigError("nothing to train: set draw=true, or give read tasks or conditions")
        parse_spec(self.reward), parse_spec(self.read_reward)
        tasks(self.read, READING, "read")
        tasks(self.conditions, CONDITIONED, "conditions")
        if self.edits and Task.INSTRUCT not in self.conditions:
            raise ConfigError("edits chooses the kinds of instruction edits: add instruct to conditions")
        unknown = sorted(set(self.edits) - set(EDIT_OPS))
        if unknown:
            raise ConfigError(f"unknown edit kind {unknown[0]!r}; expected one of {', '.join(EDIT_OPS)}")
        if self.introspect and self.think:
            raise ConfigError("introspect=true and think=true are two kinds of chain: choose one")
        if self.think and (self.reward != "shapes_eval" or self.separate_advantages):
            raise ConfigError(
                "think=true rewards each chain three ways (the final image by the strict rule, the last critique's "
                "honesty, the format), each with its own advantage: reward and separate_advantages would be ignored"
            )
        if self.introspect and (self.reward != "shapes_eval" or self.separate_advantages):
            raise ConfigError(
                "introspect=true rewards each chain three ways by GenEval's rule (first image, honesty of the verdict, "
                "final image), each with its own advantage: reward and separate_advantages would be ignored"
            )
        self.grpo.validate()
        self.sampling.validate()
        self.read_sampling.validate()


class RLTrainer:
    def __init__(self, cfg: RLConfig, run: str | Path, progress: bool = True, fresh: bool = False):
        cfg.validate()
        self.cfg = cfg
        self.processes = Processes.start()
        self.device = self.processes.device
        self.bundle = bundles.load(cfg.init, self.device)
        self.model = self.bundle.model  # eval mode throughout: no dropout, so scoring matches sampling
        self.ref = copy.deepcopy(self.model).requires_grad_(False) if cfg.reference else None
        self.sharded = cfg.fsdp and self.processes.count > 1
        if self.sharded and cfg.eval_every:
            raise ConfigError("fsdp=true on several processes evaluates nothing during RL: set eval_every=0 and run "
                              "tessera eval on the checkpoint")  # fmt: skip
        self.policy = self.processes.wrap(self.model, self.model.layers if cfg.fsdp else None)  # rescores with grad
        if self.sharded and self.ref is not None:
            self.processes.wrap(self.ref, self.ref.layers)
        wanted = set(cfg.read) | set(cfg.conditions) | ({Task.INTROSPECT} if cfg.introspect else set())
        missing = wanted - set(self.bundle.cfg.tasks)
        if missing:
            names = ", ".join(sorted(missing))
            raise CheckpointError(f"{cfg.init} was not trained to {names}: it cannot be rewarded for it")
        self.weights, self.read_weights = parse_spec(cfg.reward), parse_spec(cfg.read_reward)
        self.classes = isinstance(self.bundle.text_tokenizer, ClassTokenizer)  # prompts are its class names
        if self.classes and cfg.focus:
            raise ConfigError(f"{cfg.init} draws classes, not the world's prompt categories: focus=true has none")
        if self.classes and (set(self.weights) - set(ANY_PROMPT) or cfg.introspect or cfg.think):
            raise ConfigError(
                f"{cfg.init} draws classes, not the world's descriptions: reward it with a reward that needs no "
                f"scene behind the prompt ({', '.join(ANY_PROMPT)})"
            )
        self.rewards = {name: make_reward(name, **self._options(name)) for name in self.weights}
        self.read_rewards = {name: make_reward(name) for name in self.read_weights}
        self.condition_rewards = {"condition": make_reward("condition")} if cfg.conditions else {}
        self.opt = torch.optim.AdamW(self.model.parameters(), lr=cfg.lr, weight_decay=0.0)
        self.hold_out = held_keys(self.bundle.cfg.hold_out)  # what the model's data kept out, RL keeps out too
        self.pools, self.held_out = prompt_pools(self.hold_out)
        self.judge: Judge | None = None  # loaded when first needed
        rank = self.processes.rank  # each process draws its own prompts and samples
        self.rng = np.random.default_rng([cfg.seed, rank] if rank else cfg.seed)
        self.gen = torch.Generator(device=self.device).manual_seed(cfg.seed + 1000 * rank)
        self.engine = Engine(
            run, "rl", cfg.steps, self.write, to_dict(cfg), log_every=cfg.log_every, save_every=cfg.save_every,
            show=("reward_mean", "read/reward_mean"), progress=progress, fresh=fresh, inputs=[cfg.init],
            processes=self.processes,
        )  # fmt: skip
        model, opt = (Whole(self.model), Whole(self.model, self.opt)) if self.sharded else (self.model, self.opt)
        self.spread = CategorySpread().to(self.device) if cfg.focus else None
        self.engine.track(model=model, opt=opt, sampling=self.gen, prompts=self.rng, spread=self.spread)
        self.engine.every(cfg.eval_every, self.evaluate, at_start=True)

    @property
    def step(self) -> int:
        return self.engine.step

    def write(self, folder: Path, trainer: dict, state: dict) -> None:
        tokenizer_dir = checkpoint.resolve(self.cfg.init) / "tokenizer"
        bundles.save(folder, self.bundle, trainer["model"], tokenizer_dir, trainer, state)

    def _options(self, reward: str) -> dict:
        if reward != "cycle":
            return {}
        if Task.CAPTION not in self.bundle.cfg.tasks:
            raise CheckpointError(f"the cycle reward needs a model that captions; {self.cfg.init} was not trained to")
        return {
            "reader": lambda images: ask(self.bundle, images, [CAPTION_QUESTION] * len(images)),
            "seed": self.cfg.seed,
        }

    def rollouts(self) -> dict[str, Rollout]:
        """This step's samples: "draw", "read" and/or "condition"."""
        cfg, g = self.cfg, self.cfg.grpo.group_size
        out = {}
        if cfg.draw:
            metadata = [m for m in self.prompts(cfg.prompts_per_step) for _ in range(g)]
            seed = int(self.rng.integers(2**31))
            if cfg.introspect:
                judge = self._judge()
                out["draw"] = introspect_rollout(
                    self.bundle, metadata, cfg.sampling, cfg.read_sampling, judge, seed, cfg.train_unconditional
                )
            elif cfg.think:
                out["draw"] = thinking_rollout(
                    self.bundle, metadata, cfg.sampling, cfg.read_sampling, self._judge(), seed, cfg.train_unconditional
                )
            else:
                args = (cfg.sampling, self.rewards, self.weights, self.gen, seed, cfg.train_unconditional)
                out["draw"] = draw_rollout(self.bundle, metadata, *args)
            if self.spread is not None:
                self.spread.observe(metadata, out["draw"].rewards, g)
        if cfg.read:
            metadata = read_examples(cfg.read, cfg.read_per_step, g, self.rng, self.bundle.cfg.canvas, self.hold_out)
            out["read"] = read_rollout(
                self.bundle, metadata, cfg.read_sampling, self.read_rewards, self.read_weights, self.gen
            )
        if cfg.conditions:
            canvas, fits = self.bundle.cfg.canvas, self.bundle.fits
            context = self.bundle.cfg.context_frames
            metadata = condition_examples(
                cfg.conditions, cfg.conditions_per_step, g, self.rng, canvas, fits, context, cfg.edits, self.hold_out
            )
            seed = int(self.rng.integers(2**31))
            args = (cfg.sampling, self.condition_rewards, CONDITION_WEIGHTS, self.gen, seed, cfg.train_unconditional)
            out["condition"] = draw_rollout(self.bundle, metadata, *args)
        return out

    def prompts(self, n: int) -> list[dict]:
        """n prompts' metadata: the world's descriptions by category, or a class model's classes at random."""
        if not self.classes:
            return sample_prompts(self.pools, n, self.rng, None if self.spread is None else self.spread.weights())
        names = self.bundle.text_tokenizer.names
        return [{"prompt": names[i], "tag": "class"} for i in self.rng.integers(len(names), size=n)]

    def _judge(self) -> Judge:
        self.judge = self.judge or Judge.load()
        return self.judge

    def advantages(self, roll: Rollout, weights: dict[str, float]) -> torch.Tensor:
        """(B,) advantages: of the weighted reward, or the weighted sum of each reward's own advantage; (B, T) for a
        rollout whose rewards each speak for their own tokens (introspective chains)."""
        g = self.cfg.grpo
        if roll.segments is not None:
            return sum(
                advantages(roll.parts[n], g.group_size, g.scale_rewards, g.eps)[:, None] * seg.float()
                for n, seg in roll.segments.items()
            )
        if not self.cfg.separate_advantages:
            return advantages(roll.rewards, g.group_size, g.scale_rewards, g.eps)
        return sum(w * advantages(roll.parts[n], g.group_size, g.scale_rewards, g.eps) for n, w in weights.items())

    def micro_batches(self, roll: Rollout, adv: torch.Tensor) -> list[slice | torch.Tensor]:
        """The rows of each backward pass. With no KL term optimised a row of advantage 0 adds nothing to the
        gradient, so a lone process leaves such rows out (processes that shard or average must keep in step; bnpo
        divides each micro-batch by its own tokens, so it keeps its micro-batches as they were)."""
        n, b, g = len(roll.rewards), self.cfg.update_batch, self.cfg.grpo
        if roll.segments is None and g.beta == 0 and g.loss_type != "bnpo" and self.processes.count == 1:
            rows = adv.nonzero().flatten()
            return list(rows.split(b)) if len(rows) else []
        return [slice(start, start + b) for start in range(0, n, b)]

    def update(self, rolls: dict[str, Rollout]) -> dict[str, float]:
        """mu passes over every rollout; the drawing and reading losses add up in one optimizer step per pass."""
        cfg = self.cfg
        stats: dict[str, list[float]] = {}
        weights = {"draw": self.weights, "read": self.read_weights, "condition": CONDITION_WEIGHTS}
        advs = {name: self.advantages(r, weights[name]) for name, r in rolls.items()}
        for epoch in range(cfg.mu):
            rows_done = 0
            for name, roll in rolls.items():
                adv, n, mask = advs[name], len(roll.rewards), roll.mask
                scale = cfg.read_weight if name == "read" else 1.0
                prefix = PREFIXES[name]
                updated = 0
                for rows in self.micro_batches(roll, adv):
                    logp = roll.rescore(self.policy, rows)
                    ref = None
                    if self.ref is not None:
                        with torch.no_grad():
                            ref = roll.rescore(self.ref, rows)
                    loss, s = grpo_loss(
                        logp, roll.old_logp[rows], adv[rows], mask[rows], cfg.grpo, ref, active_tokens=float(mask.sum())
                    )
                    if ref is not None and "kl" not in s:  # beta = 0: measured (on the rows updated), not optimised
                        m = mask[rows].float()
                        s["kl"] = float((k3_kl(logp.detach(), ref) * m).sum() / m.sum().clamp(min=1))
                    weight = 1.0 if cfg.grpo.loss_type == "dapo" else len(logp) / n
                    (loss * weight * scale).backward()
                    updated += len(logp)
                    for k, v in s.items():
                        stats.setdefault(prefix + k, []).append(v)
                    if epoch == 0:  # on-policy: exactly 1 unless rescoring differs from sampling
                        stats.setdefault(prefix + "ratio_start", []).append(s["ratio"])
                stats.setdefault(prefix + "rows_updated", []).append(updated / n)  # the rest had advantage 0
                rows_done += updated
            if not rows_done:
                for p in self.model.parameters():  # no row to learn from: Adam still moves by its momentum
                    p.grad = torch.zeros_like(p)
            norm = torch.nn.utils.clip_grad_norm_(self.model.parameters(), cfg.grad_clip)
            self.engine.check_finite(gradient_norm=norm)
            self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        return {k: float(np.mean(v)) for k, v in stats.items()}

    @torch.no_grad()
    def evaluate(self) -> dict[str, float]:
        """ShapesEval accuracy per category on a subset of the benchmark (eval/...) and of the held-out set (none
        for a class model: its classes are not the world's descriptions)."""
        cfg = self.cfg
        if self.classes:
            return {}
        self._judge()
        n = cfg.eval_prompts
        benchmark = first_prompts(n)
        held = [m for c, pool in self.held_out.items() for m in metadata_for(pool[:n], c)]
        out = {}
        for name, metadata in (("eval", benchmark), ("held_out", held)):
            summary, _, _ = evaluate_model(
                self.bundle, metadata, self.judge, cfg.eval_per_prompt, cfg.sampling, seed=cfg.seed, batch_size=128
            )
            out |= {f"{name}/{k}": v for k, v in summary.items() if isinstance(v, float)}
        if reading(self.bundle.cfg.tasks) and cfg.eval_read:
            summary, _ = evaluate_understanding(self.bundle, cfg.eval_read)
            out |= {f"eval/{k}": v for k, v in summary.items()}
        if cfg.conditions and cfg.eval_conditions:
            bundle = self.bundle.cfg
            cases = condition_cases(cfg.eval_conditions, bundle.canvas, seed=EVAL_SEED, fits=self.bundle.fits,
                                    tasks=tuple(cfg.conditions), context=bundle.context_frames)  # fmt: skip
            scores, _ = condition_scores(self.bundle, self.judge, cases, cfg.sampling, seed=cfg.seed)
            out |= {f"cond/{t}/{m}": s["model"] for t, ms in scores.items() for m, s in ms.items()}
        return out

    def train_step(self) -> dict[str, float]:
        """One GRPO step: rollouts, their rewards and advantages, and mu clipped passes over them."""
        start = time.time()
        rolls = self.rollouts()
        updating = time.time()
        out = self.update(rolls)
        n = sum(len(r.rewards) for r in rolls.values())
        out |= {"samples_per_s": n / (time.time() - start), "update_s": time.time() - updating}
        for name, roll in rolls.items():
            out |= rollout_stats(roll, PREFIXES[name])
        if self.spread is not None:  # each category's share of the next step's prompts
            weights = self.spread.weights()
            out |= {f"focus/{c}": float(w) for c, w in zip(CATEGORIES, weights / weights.sum(), strict=True)}
        return out

    def fit(self, until: int | None = None) -> list[dict]:
        """Train to cfg.steps (or stop after step `until`, as a killed run would); returns the metrics log."""
        return self.engine.fit(self.train_step, until)


class CategorySpread(torch.nn.Module):
    """Per prompt category, a running mean of the standard deviation of its groups' rewards: how much GRPO can
    still learn there (focus draws categories by it)."""

    def __init__(self, decay: float = 0.8):
        super().__init__()
        self.decay = decay
        self.register_buffer("spread", torch.ones(len(CATEGORIES)))  # (categories,): until seen, each looks worth it
        self.register_buffer("seen", torch.zeros(len(CATEGORIES), dtype=torch.bool))

    def observe(self, metadata: list[dict], rewards: torch.Tensor, group_size: int) -> None:
        """Fold in a rollout's groups (metadata and rewards of group_size adjacent samples each)."""
        for k, group in enumerate(rewards.view(-1, group_size)):
            tag = metadata[k * group_size]["tag"]
            if tag in CATEGORIES:
                c = CATEGORIES.index(tag)
                decay = self.decay if self.seen[c] else 0.0  # the first group replaces the hopeful start
                self.spread[c] = decay * self.spread[c] + (1 - decay) * group.std()
                self.seen[c] = True

    def weights(self) -> np.ndarray:
        """(categories,) unnormalised: each spread plus FOCUS_FLOOR."""
        return self.spread.cpu().numpy() + FOCUS_FLOOR


def rollout_stats(roll: Rollout, prefix: str) -> dict[str, float]:
    """Reward mean/std, per reward and per tag, entropy (mean surprisal of the sampled tokens) and timings."""
    r, mask = roll.rewards.float(), roll.mask.float()
    out = {
        "reward_mean": float(r.mean()),
        "reward_std": float(r.std()),
        "entropy": float(-(roll.old_logp * mask).sum() / mask.sum().clamp(min=1)),
    } | roll.seconds
    if len(roll.parts) > 1:
        out |= {f"reward/{name}": float(v.mean()) for name, v in roll.parts.items()}
    for tag in sorted({m["tag"] for m in roll.metadata}):
        out[f"reward/{tag}"] = float(
            np.mean([v for m, v in zip(roll.metadata, r.tolist(), strict=True) if m["tag"] == tag])
        )
    return {prefix + k: v for k, v in out.items()}
