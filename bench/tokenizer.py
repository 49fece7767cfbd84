"""Encode and decode throughput of both tokenizers at their quick-preset sizes; prints one JSON line.

python bench/tokenizer.py
"""

import json
import platform
import time
from importlib import resources
from pathlib import Path

import torch

from tessera.config import load
from tessera.tokenizer import build as tok
from tessera.tokenizer.train import TokenizerTrainConfig


def rate(fn, items: int, repeats: int = 3) -> float:
    fn()  # warm-up
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return items / best


def main() -> None:
    torch.manual_seed(0)
    presets = Path(str(resources.files("tessera") / "configs" / "tokenizer"))
    images = torch.rand(64, 3, 64, 64) * 2 - 1
    clips = torch.rand(8, 3, 9, 64, 64) * 2 - 1
    result = {"bench": "tokenizer", "machine": f"{platform.machine()} {torch.get_num_threads()} threads", "batch": 64}
    for arch in ("conv", "omni"):
        model = tok.build(load(TokenizerTrainConfig(), presets / f"{arch}-quick.yaml").tokenizer).eval()
        codes = model.encode(images)
        result[f"{arch}_params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
        result[f"{arch}_encode_images_per_s"] = round(rate(lambda m=model: m.encode(images), len(images)), 1)
        result[f"{arch}_decode_images_per_s"] = round(rate(lambda m=model, c=codes: m.decode(c), len(images)), 1)
        clip_codes = model.encode(clips)
        result[f"{arch}_encode_clips_per_s"] = round(rate(lambda m=model: m.encode(clips), len(clips)), 2)
        result[f"{arch}_decode_clips_per_s"] = round(rate(lambda m=model, c=clip_codes: m.decode(c), len(clips)), 2)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
