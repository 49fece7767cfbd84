"""Training throughput: tokens/s and MFU against the fp32 (or bf16 on GPU) matmul peak measured in this process.

python bench/train.py [--device cuda] [--preset quick|full|gpt-b] [--colour-head] [--batch 32] [--steps 10]
    [--amp auto|bf16|off]
Prints one JSON line. FLOPs per token = 6 x (non-embedding parameters) + 12 x layers x width x context
(the attention scores), as in the PaLM paper's MFU. The step is the trainer's: it scores only the targets where the
loss needs them (`select` and `targets`; with colour_head, a mask then its colour); `full_logits_speedup` is its
speed over logits of every id at every position, timed in the same run.
"""

import argparse
import json
import platform
import resource
import time
from importlib import resources
from pathlib import Path

import torch

from tessera.config import load
from tessera.model.orders import make_orders
from tessera.model.transformer import Transformer
from tessera.sequence.ids import IdSpace
from tessera.sequence.layouts import pad_text, text_to_image
from tessera.train.trainer import TrainConfig, masked_loss, param_groups, slot_loss

N_TEXT = 120
# codes, code_dim, grid, colours: PatchVQ 4x4 codes, or (--colour-head, as the demo) 8x8 patches as 1,024 masks x 8
# colours
CODES = {False: (2048, 48, 16, 0), True: (1024 * 8, 192, 8, 8)}


def sync(device):
    if device.type == "cuda":
        torch.cuda.synchronize()


def matmul_peak(device, dtype, n: int = 2048, repeats: int = 10) -> float:
    """FLOP/s of a square matmul, the best of a few runs."""
    a, b = torch.randn(n, n, device=device, dtype=dtype), torch.randn(n, n, device=device, dtype=dtype)
    a @ b
    best = float("inf")
    for _ in range(repeats):
        sync(device)
        start = time.perf_counter()
        a @ b
        sync(device)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--preset", default="quick")
    parser.add_argument("--colour-head", action="store_true", help="over mask x colour codes, as the quick demo")
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--amp", default="auto", choices=["auto", "bf16", "off"], help="bf16 autocast (auto: on GPU)")
    args = parser.parse_args()
    device = torch.device(args.device)
    amp = args.amp == "bf16" or (args.amp == "auto" and device.type == "cuda")
    cfg = load(TrainConfig(), Path(str(resources.files("tessera") / "configs" / "model" / f"{args.preset}.yaml")))
    cfg.model.colour_head = args.colour_head
    codebook, code_dim, grid, cfg.model.code_colours = CODES[args.colour_head]
    space = IdSpace(N_TEXT, codebook)
    cfg.model.vocab_size, cfg.model.image_codes = space.size, space.n_image
    cfg.model.code_dim = code_dim if cfg.code_vectors else 0
    torch.manual_seed(0)
    model = Transformer(cfg.model).to(device)
    opt = torch.optim.AdamW(param_groups(model, cfg.weight_decay), lr=1e-4, fused=device.type == "cuda")
    text = pad_text(space, [[i % N_TEXT for i in range(10)]] * args.batch, cfg.data.text_len)
    batch = text_to_image(
        space, text, torch.randint(codebook, (args.batch, grid, grid)), make_orders("raster", args.batch, grid, grid)
    )
    ids, pos, tpos = (t.to(device) for t in batch.inputs())
    targets, slots, mask = (t.to(device) for t in batch.targets())

    def step(select: bool):
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=amp):
            if select:
                logp, _ = model(ids, pos, tpos, select=mask, targets=targets[mask])
                loss = slot_loss(-logp, slots[mask])
            else:
                loss, _ = masked_loss(model(ids, pos, tpos), targets, slots, mask, space)
        loss.backward()
        opt.step()
        opt.zero_grad(set_to_none=True)

    def timed(select: bool) -> float:
        """Seconds per step, after two untimed ones."""
        step(select)
        step(select)
        sync(device)
        start = time.perf_counter()
        for _ in range(args.steps):
            step(select)
        sync(device)
        return (time.perf_counter() - start) / args.steps

    full = timed(False)
    seconds = timed(True)
    tokens = ids.numel()
    m = cfg.model
    flops_per_token = 6 * model.num_params(embeddings=False) + 12 * m.n_layer * m.dim * ids.shape[1]
    achieved = flops_per_token * tokens / seconds
    peak = matmul_peak(device, torch.bfloat16 if amp else torch.float32)
    cuda = device.type == "cuda"
    machine = torch.cuda.get_device_name() if cuda else f"{platform.machine()} {torch.get_num_threads()} threads"
    result = {
        "bench": "train",
        "machine": machine,
        "preset": args.preset + (" colour head" if args.colour_head else ""),
        "params_m": round(model.num_params() / 1e6, 2),
        "batch": args.batch,
        "seq_len": ids.shape[1],
        "dtype": "bf16 autocast" if amp else "fp32",
        "tokens_per_s": round(tokens / seconds, 1),
        "achieved_tflops": round(achieved / 1e12, 4),
        "matmul_peak_tflops": round(peak / 1e12, 4),
        "mfu": round(achieved / peak, 3),
        "full_logits_speedup": round(full / seconds, 2),
    }
    if cuda:
        result["peak_memory_mb"] = round(torch.cuda.max_memory_allocated() / 2**20, 1)
    else:
        result["peak_rss_mb"] = round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
