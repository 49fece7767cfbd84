"""Behaviour fingerprint of every trainer at smoke size, to check that a change of code changes no number.

    python scripts/fingerprint.py runs/fp-old > old.json     (at the old commit)
    python scripts/fingerprint.py runs/fp-new > new.json     (at the new one)
    python scripts/fingerprint.py --compare old.json new.json

Runs, through the CLI and at fixed seeds: the demo and `unified` smoke presets, an OmniTok with GAN and EMA, a
random-order model with dropout and EMA, GRPO with a KL term and two passes, and a few judge steps. Prints the
SHA-256 of every checkpoint's weights, every metric that is not a timing, and every results.json.
"""

import argparse
import hashlib
import json
import subprocess
import sys
from pathlib import Path

from safetensors.torch import load_file

TIMINGS = ("_s", "seconds", "timings")  # keys that measure time, not behaviour


def tessera(*args: str) -> None:
    subprocess.run([sys.executable, "-m", "tessera.cli", *args], check=True, capture_output=True, text=True)


def run_all(out: Path) -> None:
    cache = f"data.cache={out / 'cache'}"
    tessera("demo", "--preset", "smoke", "--out", str(out / "demo"), f"model.{cache}")
    tessera("unified", "--preset", "smoke", "--out", str(out / "unified"), f"model.{cache}")
    tessera("tokenizer", "train", "--arch", "omni", "--preset", "smoke", "--out", str(out / "omni"),
            "gan_start=5", "ema=0.9", "steps=12")  # fmt: skip
    tessera("train", "--tokenizer", str(out / "demo" / "tokenizer" / "checkpoint"), "--preset", "smoke",
            "--out", str(out / "t2i"), cache, "data.canvas=32", "data.examples=64", "steps=12", "ema=0.9",
            "order=random", "model.dropout=0.1")  # fmt: skip
    tessera("rl", "--init", str(out / "t2i" / "checkpoint"), "--reward", "brightness", "--out", str(out / "rl"),
            "steps=3", "eval_every=2", "eval_prompts=1", "eval_per_prompt=1", "grpo.beta=0.04", "mu=2",
            "prompts_per_step=2", "grpo.group_size=4", "update_batch=4")  # fmt: skip
    tessera("judge", "train", "--out", str(out / "judge"), "steps=6", "scenes=64", "eval_scenes=20", "batch_size=8")


def untimed(value):
    if isinstance(value, dict):
        return {k: untimed(v) for k, v in value.items() if not k.endswith(TIMINGS)}
    if isinstance(value, list):
        return [untimed(v) for v in value]
    return value


def fingerprint(out: Path) -> dict:
    found = {}
    for path in sorted(out.rglob("model.safetensors")):
        weights, digest = load_file(str(path)), hashlib.sha256()
        for name in sorted(weights):
            digest.update(name.encode())
            digest.update(weights[name].contiguous().numpy().tobytes())
        found[str(path.relative_to(out))] = digest.hexdigest()[:16]
    for path in sorted(out.rglob("metrics.jsonl")):
        found[str(path.relative_to(out))] = [untimed(json.loads(line)) for line in path.read_text().splitlines()]
    for path in sorted(out.rglob("results.json")):
        found[str(path.relative_to(out))] = untimed(json.loads(path.read_text()))
    return found


def compare(old: dict, new: dict) -> int:
    """Print what differs; the number of differences."""
    differ = 0
    for key in sorted(set(old) | set(new)):
        if old.get(key) != new.get(key):
            differ += 1
            print(
                f"differs: {key}" if key in old and key in new else f"only in {'old' if key in old else 'new'}: {key}"
            )
    print(f"{len(set(old) | set(new))} compared, {differ} differ")
    return differ


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("out", nargs="?", help="an empty folder for the runs")
    parser.add_argument("--compare", nargs=2, metavar=("OLD", "NEW"), help="two fingerprints to compare")
    args = parser.parse_args()
    if args.compare:
        old, new = (json.loads(Path(p).read_text()) for p in args.compare)
        sys.exit(1 if compare(old, new) else 0)
    out = Path(args.out)
    run_all(out)
    print(json.dumps(fingerprint(out), indent=1, sort_keys=True))


if __name__ == "__main__":
    main()
