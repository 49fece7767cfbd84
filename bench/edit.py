"""Editing orders: how often STAR's rejection draws a tree whose order starts with the kept region, by region size.

python bench/edit.py [--grid 16] [--orders 10] [--tries 2000]
Prints one JSON line per kept region (a centred square kept for outpainting, everything but a centred square kept for
inpainting): the kept tokens, the acceptance rate (orders found / trees drawn), and ms per order for rejection
and for the contracted root (`orders.prefix_order`), which always takes one tree.
"""

import argparse
import json
import platform
import random
import time

from tessera.model.orders import prefix_order, rejected_order


def region(n: int, side: int, inside: bool) -> list[bool]:
    """A centred side x side square of an n x n grid: kept (inside) or redrawn (the rest kept)."""
    lo = (n - side) // 2
    return [(lo <= r < lo + side and lo <= c < lo + side) == inside for r in range(n) for c in range(n)]


def measure(keep: list[bool], n: int, orders: int, tries: int) -> dict:
    rng = random.Random(0)
    start, found, drawn = time.perf_counter(), 0, 0
    for _ in range(orders):
        order, used = rejected_order(keep, n, n, rng, tries)
        found, drawn = found + (order is not None), drawn + used
    reject_ms = (time.perf_counter() - start) * 1000 / orders
    start = time.perf_counter()
    for _ in range(orders):
        prefix_order(keep, n, n, rng)
    root_ms = (time.perf_counter() - start) * 1000 / orders
    return {"kept": sum(keep), "acceptance": round(found / drawn, 5), "found": f"{found}/{orders}",
            "reject_ms": round(reject_ms, 1), "root_ms": round(root_ms, 2)}  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--grid", type=int, default=16)
    parser.add_argument("--orders", type=int, default=10)
    parser.add_argument("--tries", type=int, default=2000)
    args = parser.parse_args()
    n = args.grid
    for kind, inside in (("outpaint", True), ("inpaint", False)):
        for side in (1, 2, 4, 8, 12):
            row = {"bench": "edit", "machine": f"{platform.machine()} {args.grid}x{args.grid}", "kind": kind,
                   "square": side} | measure(region(n, side, inside), n, args.orders, args.tries)  # fmt: skip
            print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
