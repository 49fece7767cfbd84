"""Sampling speed: KV-cached + CFG against the same model recomputing the whole sequence each step.

python bench/sampling.py [--device cuda] [--gpt-b-batches 1]
Prints one JSON line: images/s cached and uncached at 64 image tokens (8x8), their ratio, the same at 256
tokens (16x16), and the cached sampler at LlamaGen's GPT-B size (768 wide, 12 layers, 256 tokens, batch 8, CFG).
"""

import argparse
import functools
import json
import platform
import resource
import time

import torch

from tessera.generate.generator import generate
from tessera.generate.sampling import log_distribution, sample_token
from tessera.model.orders import make_orders
from tessera.model.sampling import SamplingConfig
from tessera.model.transformer import ModelConfig, Transformer
from tessera.sequence.ids import IMAGE, IdSpace
from tessera.sequence.layouts import NO_POS, grid_positions, pad_text, prefix, unconditional

TEXT_LEN, N_TEXT, CODEBOOK = 16, 120, 512


def uncached(model, space, text, grid, order, cfg, generator):
    """The same sampler without a cache: every step runs the whole sequence so far."""
    b, (h, w) = text.shape[0], grid
    rows = torch.cat([prefix(space, text), prefix(space, unconditional(space, text))])
    pos = torch.full((2 * b, rows.shape[1] + h * w, 3), NO_POS, dtype=torch.long, device=text.device)
    pos[:, rows.shape[1] :] = grid_positions(order, w).repeat(2, 1, 1)
    allowed = space.allowed(IMAGE, text.device)
    for i in range(h * w):
        t = rows.shape[1]
        logits = model(rows, pos[:, :t], pos[:, 1 : t + 1])[:, -1]
        logp = log_distribution(logits[:b], logits[b:], allowed, cfg, cfg.guides(i, h * w))
        rows = torch.cat([rows, sample_token(logp, generator).repeat(2)[:, None]], dim=1)
    return rows


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def images_per_s(fn, batch, device) -> float:
    fn()  # warm-up
    sync(device)
    start = time.perf_counter()
    fn()
    sync(device)
    return batch / (time.perf_counter() - start)


def measure(sampler, model, space, text, grid, order, sampling, device) -> float:
    gen = torch.Generator(device=device).manual_seed(0)
    run = functools.partial(sampler, model, space, text, (grid, grid), order, sampling, gen)
    return images_per_s(run, len(text), device)


def setup(dim, layers, heads, kv, grid, batch, device):
    space = IdSpace(N_TEXT, CODEBOOK)
    cfg = ModelConfig(vocab_size=space.size, dim=dim, n_layer=layers, n_head=heads, n_kv_head=kv, max_seq_len=320)
    model = Transformer(cfg).to(device).eval()
    torch.nn.init.normal_(model.output.weight, std=0.02)
    text = pad_text(space, [[i % N_TEXT for i in range(8)]] * batch, TEXT_LEN, device)
    order = make_orders("raster", batch, grid, grid).to(device)
    return model, space, text, order


@torch.no_grad()
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--batch", type=int, default=16)
    args = parser.parse_args()
    device = torch.device(args.device)
    torch.manual_seed(0)
    sampling = SamplingConfig(cfg_scale=3.0, top_k=100)
    machine = (
        torch.cuda.get_device_name()
        if device.type == "cuda"
        else f"{platform.machine()} {torch.get_num_threads()} threads"
    )
    result = {"bench": "sampling", "machine": machine, "model": "d256 L4 H8 KV4", "batch": args.batch, "cfg": 3.0}
    for grid in (8, 16):
        model, space, text, order = setup(256, 4, 8, 4, grid, args.batch, device)
        cached = measure(generate, model, space, text, grid, order, sampling, device)
        plain = measure(uncached, model, space, text, grid, order, sampling, device)
        n = grid * grid
        result |= {f"cached_images_per_s_{n}": round(cached, 2), f"uncached_images_per_s_{n}": round(plain, 2)}
        result[f"speedup_{n}"] = round(cached / plain, 2)
    model, space, text, order = setup(768, 12, 12, 12, 16, 8, device)
    gpt_b = measure(generate, model, space, text, 16, order, sampling, device)
    result["gpt_b_params_m"] = round(model.num_params() / 1e6, 1)
    result["gpt_b_images_per_s_256_tokens_batch8_cfg"] = round(gpt_b, 3)
    if device.type == "cuda":
        result["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
