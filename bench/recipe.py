"""Find the recipe by measurement: at a fixed wall time on this machine, how well does a tokenizer or a model do on a
fixed set of training-distribution prompts (never the benchmark's, the held-out or the compositional ones)?

    python bench/recipe.py tokenizer f8-1024 --minutes 3      # one JSON line: PSNR, code use, ceilings
    python bench/recipe.py model f8-d256 --minutes 8          # one JSON line: GenEval, strict, the nats read
    python bench/recipe.py sampling patch4-d256 --minutes 8   # that trained model under other samplers
    python bench/recipe.py sampling patch4-d256 --minutes 8 --samplers t1-cfg1.5,t1-cfg3   # under these two only
    python bench/recipe.py sampling demo --ckpt runs/demo/model/checkpoint --samplers t1-cfg1.5   # any checkpoint
    python bench/recipe.py model patch4-d128-codes-tree --steps 500   # exactly 500 steps (the order ablation)
    python bench/recipe.py nats patch4-d128-codes --minutes 40        # that model's prompt_nats and binding_nats
    python bench/recipe.py rl lr1e-4 --init runs/demo/model/checkpoint  # the demo's GRPO, changed; before and after

A variant is a name in TOKENIZERS, MODELS or RL: key=value overrides of the quick presets. A model variant names its
tokenizer variant, trained first (or reused from runs/recipe/). Steps are set so that training ends at the wall
time given: a short run measures the time of a step first. A `-held` model variant keeps some training prompts out
of its data (`data.hold_out`) and is scored on them too: its `unseen_` keys measure what carries to prompts it has
not seen, without the benchmark.
"""

import argparse
import json
import platform
import re
import time
from functools import partial
from importlib import resources
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tessera.config import load
from tessera.data.prompts import held_keys, metadata_for, prompt_pools
from tessera.data.shapes import ShapesSource
from tessera.engine.loop import finish
from tessera.eval.judge import Judge
from tessera.eval.shapes_eval import UNSEEN_PAIRS
from tessera.generate.images import evaluate_model
from tessera.model.bundle import load as load_bundle
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.pictures import to_tensor
from tessera.pipelines.demo import DemoConfig, tokenizer_ceiling
from tessera.rl.trainer import RLTrainer
from tessera.sequence.layouts import text_to_image, unconditional
from tessera.tokenizer import build as visual
from tessera.tokenizer.evaluate import evaluate as evaluate_tokenizer
from tessera.tokenizer.train import TokenizerTrainConfig, TokenizerTrainer
from tessera.train.trainer import TrainConfig, Trainer
from tessera.world.constraints import from_geneval, sample_scene_for
from tessera.world.language import CATEGORIES
from tessera.world.render import render_image

PRESETS = Path(str(resources.files("tessera") / "configs"))
F4 = "tokenizer.conv={ch: 32, ch_mult: [1, 2, 2], z_channels: 64, num_res_blocks: 1, norm_groups: 8, encoder: patch}"
F8 = "tokenizer.conv={ch: 32, ch_mult: [1, 2, 2, 4], z_channels: 64, num_res_blocks: 1, norm_groups: 8, encoder: patch}"
MASK8 = ["tokenizer.patch.patch=8", "tokenizer.patch.colours=8"]  # 8 x 8 patches: coverage masks times colours
TOKENIZERS = {  # a preset of configs/tokenizer/, then overrides
    "f4-512-uniform": ("conv-quick", [F4, "tokenizer.conv.quantizer={codebook_size: 512, dim: 8, restart: uniform}"]),
    "f4-512": ("conv-quick", [F4, "tokenizer.conv.quantizer={codebook_size: 512, dim: 8}"]),
    "f8-1024": ("conv-quick", [F8, "tokenizer.conv.quantizer={codebook_size: 1024, dim: 8}"]),
    "f8-4096": ("conv-quick", [F8, "tokenizer.conv.quantizer={codebook_size: 4096, dim: 8}"]),
    "f8-1024-conv": ("conv-quick", [F8.replace("patch", "conv"), "tokenizer.conv.quantizer.codebook_size=1024"]),
    "patch4-512": ("patch-quick", ["tokenizer.patch.quantizer.codebook_size=512"]),
    "patch4-2048": ("patch-quick", []),
    "patch4-2048-c32": ("patch-quick", ["canvas=32"]),  # 32 x 32 scenes: 8 x 8 codes (bench/conditions.py)
    "patch4-4096": ("patch-quick", ["tokenizer.patch.quantizer.codebook_size=4096"]),
    "patch8-4096": ("patch-quick", ["tokenizer.patch.patch=8", "tokenizer.patch.quantizer={codebook_size: 4096, dim: 192}"]),  # noqa: E501
    "mask8-2048": ("patch-quick", [*MASK8, "tokenizer.patch.quantizer={codebook_size: 2048, dim: 64}"]),
    "mask8-1024": ("patch-quick", [*MASK8, "tokenizer.patch.quantizer={codebook_size: 1024, dim: 64}"]),
    "seq32": ("seq-quick", ["tokenizer.seq.proxy_init=runs/recipe/tokenizer-patch4-2048/checkpoint"]),  # 1D: 32 tokens
}  # fmt: skip
BASE = [
    "model.dim=256",
    "model.n_head=8",
    "model.n_kv_head=4",
    "lr=0.002",
    "code_vectors=false",
    "data.prompt_share=0.8",
    "model.text_pool=false",
    "sampling.cfg_scale=3.0",  # the measuring set is drawn at guidance 3 (`sampling` compares others)
]
D128 = ["model.dim=128", "model.n_head=4", "model.n_kv_head=2"]
# the quick preset's model before captions came back: prompts only, image tokens add the prompt's mean word embedding
POOL = [*D128, "lr=0.003", "data.prompt_share=1.0", "code_vectors=true", "model.text_pool=true"]
HELD_SEED, HELD = 54321, {"colors": 3, "position": 6, "color_attr": 24}  # prompts per category


def held_prompts() -> dict[str, list[str]]:
    """The recipe's own unseen prompts, per category: training prompts of the categories with held-out splits,
    drawn with a seed of their own, that `-held` variants keep out of their data (`data.hold_out`)."""
    rng = np.random.default_rng(HELD_SEED)
    pools, _ = prompt_pools()
    return {c: [pools[c][i] for i in rng.permutation(len(pools[c]))[:n]] for c, n in HELD.items()}


HELD_PROMPTS = held_prompts()
HELD_TEXTS = [p for ps in HELD_PROMPTS.values() for p in ps]
HELD_OUT = f"data.hold_out={json.dumps(HELD_TEXTS)}"
# -held variants: the quick preset with the recipe's unseen prompts kept out, sampled at the preset's guidance
HOLD = [*POOL, HELD_OUT, "sampling.cfg_scale=1.5"]
# the -held recipe with a fifth of captions, over mask x colour codes scored by the colour head
COLOUR_HEAD = [*HOLD, "data.prompt_share=0.8", "model.colour_head=true"]
PAIRS = [*COLOUR_HEAD, "model.text_pool_pairs=true"]  # and the products of adjacent words (binding)
MODELS = {  # tokenizer variant, then overrides of BASE: the quick model preset (model/quick.yaml) as it was at first
    "patch4-d256": ("patch4-2048", []),
    "patch4-d256-codes": ("patch4-2048", ["code_vectors=true"]),
    "patch4-d384": ("patch4-2048", ["model.dim=384", "model.n_layer=6", "model.n_head=6", "model.n_kv_head=3"]),
    "patch4-d256-b64": ("patch4-2048", ["batch_size=64", "lr=0.001"]),
    "patch4-d256-prompts": ("patch4-2048", ["data.prompt_share=1.0"]),
    "patch4-512-d256": ("patch4-512", []),
    "patch4-d128": ("patch4-2048", [*D128, "lr=0.003"]),
    "patch4-d128-codes": ("patch4-2048", [*D128, "lr=0.003", "code_vectors=true"]),
    "patch4-d128-codes-b16": ("patch4-2048", [*D128, "lr=0.002", "batch_size=16", "code_vectors=true"]),
    "patch4-d128-codes-b64": ("patch4-2048", [*D128, "lr=0.004", "batch_size=64", "code_vectors=true"]),
    "patch4-d128-codes-lr6": ("patch4-2048", [*D128, "lr=0.006", "code_vectors=true"]),
    "patch4-d128-codes-lr15": ("patch4-2048", [*D128, "lr=0.0015", "code_vectors=true"]),
    "patch4-d128-codes-ema": ("patch4-2048", [*D128, "lr=0.003", "ema=0.99", "code_vectors=true"]),
    "patch4-d128-codes-bf16": ("patch4-2048", [*D128, "lr=0.003", "amp=bf16", "code_vectors=true"]),
    "patch4-d128-codes-random": ("patch4-2048", [*D128, "lr=0.003", "order=random", "code_vectors=true"]),
    "patch4-d128-codes-tree": ("patch4-2048", [*D128, "lr=0.003", "order=spanning-tree", "code_vectors=true"]),
    "patch4-d128-codes-prompts": ("patch4-2048", [*D128, "lr=0.003", "data.prompt_share=1.0", "code_vectors=true"]),
    "patch4-d128-codes-seed1": ("patch4-2048", [*D128, "lr=0.003", "code_vectors=true", "seed=1"]),
    "patch4-d128-codes-prompts-seed1": (
        "patch4-2048",
        [*D128, "lr=0.003", "data.prompt_share=1.0", "code_vectors=true", "seed=1"],
    ),
    "patch4-d128-codes-b16-prompts": (
        "patch4-2048",
        [*D128, "lr=0.002", "batch_size=16", "data.prompt_share=1.0", "code_vectors=true"],
    ),
    "patch4-d128-codes-pool": ("patch4-2048", POOL),
    "patch4-d128-codes-pool-seed1": ("patch4-2048", [*POOL, "seed=1"]),
    "patch4-d128-codes-pool-grid": ("patch4-2048", [*POOL, "model.rope=grid"]),  # 2D rotary positions
    "patch4-d128-codes-pool-held": ("patch4-2048", HOLD),
    "patch4-d128-codes-pool-held-seed1": ("patch4-2048", [*HOLD, "seed=1"]),
    "patch4-d128-codes-pool-captions-held": ("patch4-2048", [*HOLD, "data.prompt_share=0.8"]),
    "patch4-d128-codes-pool-captions-held-seed1": ("patch4-2048", [*HOLD, "data.prompt_share=0.8", "seed=1"]),
    "patch4-d128-codes-pool-captions-held-sqrt": (
        "patch4-2048",
        [*HOLD, "data.prompt_share=0.8", "data.prompt_weights=sqrt"],
    ),
    "patch4-d128-codes-pool-captions-held-sqrt-seed1": (
        "patch4-2048",
        [*HOLD, "data.prompt_share=0.8", "data.prompt_weights=sqrt", "seed=1"],
    ),
    "patch4-d128-codes-pairs": ("patch4-2048", [*POOL, "model.text_pool_pairs=true"]),
    "patch4-d128-codes-pairs-seed1": ("patch4-2048", [*POOL, "model.text_pool_pairs=true", "seed=1"]),
    "patch4-d128-codes-zero": ("patch4-2048", [*D128, "lr=0.003", "code_vectors=true", "cond_dropout=1.0"]),  # no text
    "seq32-d128-codes": ("seq32", [*D128, "lr=0.003", "code_vectors=true"]),  # 1D codes, else patch4-d128-codes
    "mask8-d128-codes-pool-captions-held": ("mask8-1024", [*HOLD, "data.prompt_share=0.8"]),
    "mask8-d128-codes-pool-captions-held-seed1": ("mask8-1024", [*HOLD, "data.prompt_share=0.8", "seed=1"]),
    "mask8-d128-codes-pool-captions-held-colourhead": ("mask8-1024", COLOUR_HEAD),
    "mask8-d128-codes-pool-captions-held-colourhead-seed1": ("mask8-1024", [*COLOUR_HEAD, "seed=1"]),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs": ("mask8-1024", PAIRS),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs-40k": ("mask8-1024", [*PAIRS, "data.examples=40000"]),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs-80k": ("mask8-1024", [*PAIRS, "data.examples=80000"]),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs-40k-colours": (  # half the prompts' objects coloured
        "mask8-1024",
        [*PAIRS, "data.examples=40000", "data.prompt_colours=0.5"],
    ),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs-40k-l6": (  # six layers in place of four
        "mask8-1024",
        [*PAIRS, "data.examples=40000", "model.n_layer=6"],
    ),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs-40k-drawn": (  # what has been drawn, at every image token
        "mask8-1024",
        [*PAIRS, "data.examples=40000", "model.drawn_pool=codes"],
    ),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs-40k-drawn-masks": (  # the pool without the codes' colours
        "mask8-1024",
        [*PAIRS, "data.examples=40000", "model.drawn_pool=masks"],
    ),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs-40k-drawn-masks-named": (  # the first named drawn first
        "mask8-1024",
        [*PAIRS, "data.examples=40000", "model.drawn_pool=masks", "data.named_order=true"],
    ),
    "mask8-d128-codes-pool-captions-held-colourhead-pairs-40k-drawn-seed1": (
        "mask8-1024",
        [*PAIRS, "data.examples=40000", "model.drawn_pool=codes", "seed=1"],
    ),
    "f4-d256": ("f4-512", []),
    "patch8-d256": ("patch8-4096", []),
}
SAMPLERS = {  # name -> sampling of the measured images (the presets sample at temperature 1, guidance 3)
    "t1-cfg3": SamplingConfig(cfg_scale=3.0),
    "t0.6-cfg3": SamplingConfig(temperature=0.6, cfg_scale=3.0),
    "top20-cfg3": SamplingConfig(top_k=20, cfg_scale=3.0),
    "t0.6-cfg6": SamplingConfig(temperature=0.6, cfg_scale=6.0),
    "t1-cfg1.5": SamplingConfig(cfg_scale=1.5),
    "t1-cfg1": SamplingConfig(cfg_scale=1.0),
    "t0.6-cfg1.5": SamplingConfig(temperature=0.6, cfg_scale=1.5),
    "t0.8-cfg1.5": SamplingConfig(temperature=0.8, cfg_scale=1.5),
    "t1-cfg2": SamplingConfig(cfg_scale=2.0),
    "t0.8-cfg2": SamplingConfig(temperature=0.8, cfg_scale=2.0),
    "t1-cfg2.5": SamplingConfig(cfg_scale=2.5),
    "t0.9-cfg1.5": SamplingConfig(temperature=0.9, cfg_scale=1.5),
    "t0.7-cfg1.5": SamplingConfig(temperature=0.7, cfg_scale=1.5),
    "t0.8-cfg1.75": SamplingConfig(temperature=0.8, cfg_scale=1.75),
    "t0.9-cfg1.75": SamplingConfig(temperature=0.9, cfg_scale=1.75),
}
RL = {  # name -> overrides of the quick demo's GRPO (configs/demo/quick.yaml, rl)
    "demo": [],
    "lr1e-4": ["lr=0.0001"],
    "lr3e-4": ["lr=0.0003"],
    "strict": ["reward=strict"],
    "exact-sq": ["reward=shapes_eval_exact_sq"],
    "steps160": ["steps=160"],  # four times the demo's GRPO steps
    "focus": ["focus=true"],  # categories drawn by their groups' spread
}
SUBSET_SEED, PER_CATEGORY = 12345, 24


def subset(hold_out: frozenset[tuple] = frozenset()) -> list[dict]:
    """The fixed measuring set: PER_CATEGORY training prompts of each category (of those a run does not hold
    out), drawn with a seed of its own."""
    rng = np.random.default_rng(SUBSET_SEED)
    pools, _ = prompt_pools(hold_out)
    return [
        m
        for c in CATEGORIES
        for m in metadata_for([pools[c][i] for i in rng.integers(len(pools[c]), size=PER_CATEGORY)], c)
    ]


def with_steps(base, steps: int):
    """A trainer config of `steps` steps: warmup at most a tenth of them, samples at the end."""
    return load(base, options={"steps": steps, "warmup": min(base.warmup, steps // 10), "sample_every": steps})


def timed_steps(make, minutes: float, probe: int = 10) -> int:
    """How many steps a trainer made by make(steps, run) takes in `minutes`, from a probe of `probe` steps."""
    trainer = make(probe, Path("runs/recipe/probe"))  # (building it, and its token cache, is not timed)
    start = time.time()
    trainer.fit()
    per_step = (time.time() - start) / probe
    return max(probe, int(minutes * 60 / per_step))


def tokenizer_run(name: str, minutes: float) -> Path:
    """Train (or reuse) a tokenizer variant for `minutes`; its checkpoint folder."""
    run = Path("runs/recipe") / f"tokenizer-{name}"
    if (run / "checkpoint" / "model.safetensors").exists():
        return run / "checkpoint"
    preset, pairs = TOKENIZERS[name]
    base = load(TokenizerTrainConfig(), PRESETS / "tokenizer" / f"{preset}.yaml", pairs=pairs)

    def make(steps: int, out: Path) -> TokenizerTrainer:
        return TokenizerTrainer(with_steps(base, steps), out, progress=False, fresh=True)

    finish(make(timed_steps(make, minutes), run))
    return run / "checkpoint"


def bench_tokenizer(name: str, minutes: float) -> dict:
    ckpt = tokenizer_run(name, minutes)
    model, _ = visual.load(ckpt)
    judge = Judge.load()
    metrics = evaluate_tokenizer(model, ShapesSource(64), n=256, seed=1, judge=judge, progress=False)
    ceiling = tokenizer_ceiling(model, judge, subset(), seed=0)
    steps = json.loads((ckpt / "state.json").read_text())["step"]
    return {
        "variant": name, "steps": steps, "psnr": round(metrics["psnr"], 2),
        "codebook_usage": round(metrics["codebook_usage"], 3), "perplexity": round(metrics["perplexity"], 1),
        "ceiling": round(ceiling["overall"], 3), "ceiling_strict": round(ceiling["strict"], 3),
    }  # fmt: skip


def bench_model(name: str, minutes: float, tokenizer_minutes: float, steps: int | None = None) -> dict:
    """Train a model variant for `minutes` (or exactly `steps` steps) and score it on the measuring set."""
    tok_name, pairs = MODELS[name]
    tok = tokenizer_run(tok_name, tokenizer_minutes)
    base = load(TrainConfig(), PRESETS / "model" / "quick.yaml", {"tokenizer": str(tok)}, BASE + pairs)
    run = model_run(name, minutes, steps)

    def make(steps: int, out: Path) -> Trainer:
        return Trainer(with_steps(base, steps), out, progress=False, fresh=True)

    steps = steps or timed_steps(make, minutes)
    start = time.time()
    finish(make(steps, run))
    trained = time.time() - start
    bundle, judge = load_bundle(run / "checkpoint"), Judge.load()
    score = per_set(measuring_sets(name), lambda prompts: scored(bundle, judge, prompts) | reading(bundle, prompts))
    return {"variant": name, "tokenizer": tok_name, "steps": steps, "train_s": round(trained)} | score


def unseen() -> list[dict]:
    """The recipe's unseen prompts as a measuring set: each category's prompts in turn, PER_CATEGORY of them."""
    return [
        m for c, ps in HELD_PROMPTS.items() for m in metadata_for([ps[i % len(ps)] for i in range(PER_CATEGORY)], c)
    ]


def measuring_sets(name: str) -> dict[str, list[dict]]:
    """A model variant's measuring sets: its training prompts ("") and, for a -held variant, the prompts it keeps
    out ("unseen_")."""
    if HELD_OUT not in MODELS[name][1]:
        return {"": subset()}
    return {"": subset(held_keys(HELD_TEXTS)), "unseen_": unseen()}


def per_set(sets: dict[str, list[dict]], score) -> dict:
    """score(measuring set) -> dict, for each of a variant's sets, its keys prefixed with the set's name."""
    return {part + k: v for part, prompts in sets.items() for k, v in score(prompts).items()}


def scored(bundle, judge: Judge, metadata: list[dict], sampling: SamplingConfig | None = None) -> dict:
    """A measuring set, two samples per prompt: GenEval's rule, strict, per category, objects per image."""
    summary, _, _ = evaluate_model(bundle, metadata, judge, per_prompt=2, sampling=sampling, seed=0)
    return {
        "geneval": round(summary["overall"], 3), "strict": round(summary["strict"], 3),
        **{c: round(summary[c], 3) for c in CATEGORIES if c in summary},
        "objects_per_image": round(summary["objects_per_image"], 2),
        "asked": round(summary["objects_asked_per_image"], 2),
    }  # fmt: skip


def true_codes(bundle, metadata: list[dict], seed: int) -> torch.Tensor:
    """(N, h, w) codes of one true scene of each prompt, drawn with `seed`."""
    rng = np.random.default_rng(seed)
    scenes = [sample_scene_for(from_geneval(m), rng, bundle.cfg.canvas, avoid=UNSEEN_PAIRS) for m in metadata]
    return bundle.image_tokenizer.encode(to_tensor(np.stack([render_image(s) for s in scenes])))


@torch.no_grad()
def image_nats(bundle, text: torch.Tensor, codes: torch.Tensor, seed: int) -> float:
    """The image tokens' summed negative log-likelihood, teacher-forced, each image after its (N, L) text."""
    space, model = bundle.space, bundle.model.eval()
    order = make_orders(bundle.cfg.order, len(codes), *codes.shape[1:], torch.Generator().manual_seed(seed))
    batch = text_to_image(space, text, codes, order)
    targets, _, mask = batch.targets()
    logits = model(*batch.inputs(), select=mask)[:, space.image_start :]  # (M, n_image): image targets only
    return float(F.cross_entropy(logits, targets[mask] - space.image_start, reduction="sum"))


def prompt_nats(bundle, metadata: list[dict], seed: int = 0) -> float:
    """Nats per image the prompt explains: the image tokens' negative log-likelihood under the empty prompt minus
    under the prompt, teacher-forced on a true scene of each prompt (how far the model has learnt to read it)."""
    codes, text = true_codes(bundle, metadata, seed), bundle.encode_prompts([m["prompt"] for m in metadata])
    empty = image_nats(bundle, unconditional(bundle.space, text), codes, seed)
    return (empty - image_nats(bundle, text, codes, seed)) / len(codes)


def swap_colours(m: dict) -> str:
    """A two-colour prompt with its colours swapped: "a red circle and a blue square" -> "a blue circle and ..."."""
    a, b = (o["color"] for o in m["include"])
    return re.sub(rf"\b({a}|{b})\b", lambda w: b if w[0] == a else a, m["prompt"])


def binding_nats(bundle, metadata: list[dict], seed: int = 0, per_prompt: int = 4) -> float:
    """Nats per image by which the model prefers a color_attr scene's own prompt to the same words with the colours
    swapped, teacher-forced on `per_prompt` true scenes of each: 0 for a model that reads the words as a bag,
    positive once it knows which colour goes with which shape."""
    pairs = [m for m in metadata if m["tag"] == "color_attr"] * per_prompt
    codes = true_codes(bundle, pairs, seed)
    own, swapped = (bundle.encode_prompts(p) for p in ([m["prompt"] for m in pairs], [swap_colours(m) for m in pairs]))
    return (image_nats(bundle, swapped, codes, seed) - image_nats(bundle, own, codes, seed)) / len(codes)


def reading(bundle, prompts: list[dict]) -> dict:
    """How much of a measuring set's prompts the model reads (prompt_nats) and binds (binding_nats)."""
    read, bound = prompt_nats(bundle, prompts), binding_nats(bundle, prompts)
    return {"prompt_nats": round(read, 2), "binding_nats": round(bound, 2)}


def model_run(name: str, minutes: float, steps: int | None = None) -> Path:
    return Path("runs/recipe") / (f"model-{name}-{steps}steps" if steps else f"model-{name}-{minutes:g}min")


def bench_sampling(name: str, minutes: float, steps: int | None, samplers: list[str], ckpt: str | None) -> list[dict]:
    """A model variant trained by `model` for `minutes`, scored under each of `samplers` (names in SAMPLERS); or
    any checkpoint `ckpt` (a demo's), on the training-distribution subset alone."""
    bundle, judge = load_bundle(ckpt or model_run(name, minutes, steps) / "checkpoint"), Judge.load()
    sets = {"": subset()} if ckpt else measuring_sets(name)
    return [
        {"variant": name, "sampler": s} | per_set(sets, partial(scored, bundle, judge, sampling=SAMPLERS[s]))
        for s in samplers
    ]


def bench_rl(name: str, init: str) -> list[dict]:
    """The quick demo's GRPO from `init` with a variant's overrides; the measuring set scored before and after, at
    the GRPO's sampling."""
    cfg = load(DemoConfig(), PRESETS / "demo" / "quick.yaml").rl
    cfg = load(cfg, options={"init": init, "eval_every": 0}, pairs=RL[name])
    run = Path("runs/recipe") / f"rl-{name}"
    start = time.time()
    finish(RLTrainer(cfg, run, progress=False, fresh=True))
    trained = time.time() - start
    judge = Judge.load()
    return [
        {"variant": name, "model": label, "rl_s": round(trained)}
        | scored(load_bundle(ckpt), judge, subset(), cfg.sampling)
        for label, ckpt in (("before", init), ("after", run / "checkpoint"))
    ]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=["tokenizer", "model", "sampling", "nats", "rl"])
    parser.add_argument("variant")
    parser.add_argument("--minutes", type=float, default=8.0)
    parser.add_argument("--tokenizer-minutes", type=float, default=3.0)
    parser.add_argument("--steps", type=int, help="model: train exactly this many steps (equal compute across orders)")
    parser.add_argument("--init", help="rl: the model checkpoint to start from")
    parser.add_argument("--samplers", default=",".join(SAMPLERS), help="sampling: which of them, comma-separated")
    parser.add_argument("--ckpt", help="sampling: score this checkpoint (the variant is then only its label)")
    args = parser.parse_args()
    samplers = args.samplers.split(",")
    if unknown := [s for s in samplers if s not in SAMPLERS]:
        parser.error(f"unknown sampler {unknown[0]!r}; expected some of {', '.join(SAMPLERS)}")
    known = TOKENIZERS if args.what == "tokenizer" else RL if args.what == "rl" else MODELS
    if args.variant not in known and not (args.what == "sampling" and args.ckpt):
        parser.error(f"unknown {args.what} variant {args.variant!r}; expected one of {', '.join(known)}")
    torch.manual_seed(0)
    if args.what == "tokenizer":
        results = [bench_tokenizer(args.variant, args.minutes)]
    elif args.what == "model":
        results = [bench_model(args.variant, args.minutes, args.tokenizer_minutes, args.steps)]
    elif args.what == "rl":
        if not args.init:
            parser.error("rl needs --init CKPT")
        results = bench_rl(args.variant, args.init)
    elif args.what == "sampling":
        results = bench_sampling(args.variant, args.minutes, args.steps, samplers, args.ckpt)
    else:
        bundle = load_bundle(model_run(args.variant, args.minutes, args.steps) / "checkpoint")
        results = [{"variant": args.variant} | per_set(measuring_sets(args.variant), partial(reading, bundle))]
    machine = {"bench": "recipe", "machine": f"{platform.machine()} {torch.get_num_threads()} threads"}
    for result in results:
        print(json.dumps(machine | result))


if __name__ == "__main__":
    main()
