"""Sampling speed against LlamaGen's own generate(), side by side in one process, at its GPT-B configuration.

python bench/llamagen.py [--llamagen PATH] [--dtype float32|bfloat16] [--batch 8] [--device cpu|cuda]
LlamaGen's GPT-B (768 wide, 12 layers, 16,384 image codes, one class token, 256 image tokens) with random weights
(the output head N(0, 0.02), not LlamaGen's zeros, so top-k has something to cut), guidance 4, top-k 2000. With
a LlamaGen checkout (PATH holds autoregressive/ and utils/), its model and generate() run on the same weights,
which tessera imports through tessera.model.llamagen; without one, tessera alone. Prints one JSON line: image
tokens/s of each (the best of `--repeats`, the two taking turns), their ratio, the largest difference of the first
step's guided logits, and the fraction of this machine's measured limits reached: the matmul rate at the step's
shapes and the memory bandwidth for reading the weights and the cache once per step.
"""

import argparse
import json
import platform
import sys
import time
from collections.abc import Callable

import torch

from tessera.generate.generator import generate
from tessera.model.llamagen import convert, infer_config
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import Transformer
from tessera.sequence.ids import SPECIALS, IdSpace
from tessera.sequence.layouts import pad_text

DIM, LAYERS, HEADS, CODES, CLASSES, SIDE, CFG, TOP_K = 768, 12, 12, 16384, 1000, 16, 4.0, 2000


def llamagen_state(seed: int = 0) -> dict[str, torch.Tensor]:
    """Random GPT-B weights under LlamaGen's names and shapes."""
    g = torch.Generator().manual_seed(seed)
    hidden = -(-int(8 * DIM / 3) // 256) * 256

    def normal(*shape: int, std: float = 0.02) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * std

    sd = {
        "cls_embedding.embedding_table.weight": normal(CLASSES + 1, DIM),
        "tok_embeddings.weight": normal(CODES, DIM),
        "norm.weight": torch.ones(DIM),
        "output.weight": normal(CODES, DIM),
    }
    for i in range(LAYERS):
        p = f"layers.{i}."
        sd |= {
            p + "attention.wqkv.weight": normal(3 * DIM, DIM),
            p + "attention.wo.weight": normal(DIM, DIM),
            p + "feed_forward.w1.weight": normal(hidden, DIM),
            p + "feed_forward.w3.weight": normal(hidden, DIM),
            p + "feed_forward.w2.weight": normal(DIM, hidden),
            p + "attention_norm.weight": torch.ones(DIM),
            p + "ffn_norm.weight": torch.ones(DIM),
        }
    return sd


def best_rates(runs: dict[str, Callable[[], object]], work: float, repeats: int, device: torch.device) -> dict:
    """Work per second of each run, the best of `repeats` after a warm-up, the runs taking turns so that a load
    on the machine that comes and goes falls on each alike."""
    times: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(repeats + 1):
        for name, run in runs.items():
            if device.type == "cuda":
                torch.cuda.synchronize()
            start = time.perf_counter()
            run()
            if device.type == "cuda":
                torch.cuda.synchronize()
            times[name].append(time.perf_counter() - start)
    return {name: work / min(t[1:]) for name, t in times.items()}  # the first run of each warms it up


def machine_limits(rows: int, dtype: torch.dtype, device: torch.device) -> dict[str, float]:
    """Measured here: the matmul rate (FLOP/s) at a GPT-B layer's step shape, and memory bandwidth (bytes/s)."""
    w = torch.randn(DIM, 3 * DIM, dtype=dtype, device=device)
    x = torch.randn(rows, DIM, dtype=dtype, device=device)
    big = torch.randn(64 * 2**20, device=device)  # 256 MB: far beyond the caches
    matmul = best_rates({"matmul": lambda: [x @ w for _ in range(50)]}, 50 * 2 * rows * DIM * 3 * DIM, 3, device)
    return matmul | best_rates({"bandwidth": lambda: big.sum()}, big.numel() * 4, 5, device)


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--llamagen", default="", help="a LlamaGen checkout (autoregressive/, utils/)")
    parser.add_argument("--dtype", default="float32", choices=["float32", "bfloat16"])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    device, dtype = torch.device(args.device), getattr(torch, args.dtype)
    torch.manual_seed(0)
    state = llamagen_state()
    cfg = infer_config(state)
    cfg.vocab_size, cfg.image_codes = len(SPECIALS) + CLASSES + CODES, CODES
    cfg.max_seq_len, cfg.max_grid = SIDE * SIDE + 2, SIDE
    model = Transformer(cfg)
    model.load_state_dict(convert(state, cfg, CLASSES))
    model = model.to(device, dtype).eval()
    space = IdSpace(CLASSES, CODES, boi=False)
    classes = torch.arange(args.batch) * 7 % CLASSES
    text = pad_text(space, [[int(c)] for c in classes], 1, device)
    order = torch.arange(SIDE * SIDE, device=device).expand(args.batch, -1)
    sampling = SamplingConfig(cfg_scale=CFG, top_k=TOP_K)
    gen = torch.Generator(device=device).manual_seed(0)
    tokens = args.batch * SIDE * SIDE
    runs = {"tessera": lambda: generate(model, space, text, (SIDE, SIDE), order, sampling, gen)}
    machine = torch.cuda.get_device_name() if device.type == "cuda" else platform.machine()
    result = {"bench": "llamagen", "machine": f"{machine} {torch.get_num_threads()} threads", "dtype": args.dtype,
              "batch": args.batch, "cfg": CFG, "top_k": TOP_K}  # fmt: skip
    if args.llamagen:
        sys.path.insert(0, args.llamagen)
        from autoregressive.models.generate import generate as llamagen_generate
        from autoregressive.models.gpt import GPT_B

        theirs_model = GPT_B(vocab_size=CODES, num_classes=CLASSES, block_size=SIDE * SIDE, class_dropout_prob=0.1)
        theirs_model.load_state_dict(state)
        theirs_model = theirs_model.to(device, dtype).eval()
        cond = classes.to(device)
        runs["llamagen"] = lambda: llamagen_generate(
            theirs_model, cond, SIDE * SIDE, cfg_scale=CFG, top_k=TOP_K, temperature=1.0
        )
    rates = best_rates(runs, tokens, args.repeats, device)
    ours = rates["tessera"]
    result["tessera_tokens_per_s"] = round(ours, 1)
    if args.llamagen:
        theirs = rates["llamagen"]
        theirs_model.setup_caches(2 * args.batch, SIDE * SIDE + 1, dtype)
        both = torch.cat([cond, torch.full_like(cond, CLASSES)])
        first, _ = theirs_model(None, both, torch.arange(1, device=device))
        none = torch.full((2 * args.batch, 1, 3), -1, device=device)
        mine = model(torch.cat([text, torch.zeros_like(text)]), none, none)[:, -1, space.image_start :]
        result |= {"llamagen_tokens_per_s": round(theirs, 1), "speedup": round(ours / theirs, 2),
                   "first_logits_max_diff": float((first[:, -1] - mine).abs().max())}  # fmt: skip
    rows = 2 * args.batch  # guidance: conditional and unconditional rows
    weights = sum(p.numel() for p in model.layers.parameters()) + CODES * DIM  # the blocks, the head's image rows
    cache = 2 * LAYERS * rows * SIDE * SIDE // 2 * DIM  # keys and values at the mean length over the image
    limits = machine_limits(rows, dtype, device)
    step_s = args.batch / ours
    flops = 2 * rows * weights
    size, cache_size = dtype.itemsize, model.new_cache(1, 1).k.dtype.itemsize  # (a CPU keeps its cache in float32)
    result |= {
        "step_ms": round(1e3 * step_s, 2),
        "matmul_gflops_at_step_shape": round(limits["matmul"] / 1e9, 1),
        "bandwidth_gb_per_s": round(limits["bandwidth"] / 1e9, 1),
        "fraction_of_matmul_limit": round(flops / step_s / limits["matmul"], 3),
        "fraction_of_bandwidth_limit": round((weights * size + cache * cache_size) / step_s / limits["bandwidth"], 3),
    }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
