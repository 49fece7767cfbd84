"""Generation orders over an h x w token grid, as raster indices in the order they are drawn.

raster: row by row. random: a fresh uniform permutation per row of the batch. spanning-tree (STAR): a uniform
spanning tree of the 4-neighbour lattice (Wilson's algorithm: loop-erased random walks), traversed breadth-first
from a uniformly drawn root, each node's children queued in a random order; every token after the first touches
one drawn before it.
"""

from __future__ import annotations

import random

import torch

from tessera.errors import ConfigError

ORDERS = ("raster", "random", "spanning-tree")


def make_orders(kind: str, batch: int, h: int, w: int, generator: torch.Generator | None = None) -> torch.Tensor:
    """(batch, h*w) raster indices in drawing order, one order per row."""
    n = h * w
    if kind == "raster":
        return torch.arange(n).expand(batch, n).clone()
    if kind == "random":
        return torch.rand(batch, n, generator=generator).argsort(dim=1)
    if kind == "spanning-tree":
        seed = int(torch.randint(2**62, (1,), generator=generator))
        rng = random.Random(seed)
        return torch.tensor([tree_order(spanning_tree(h, w, rng), rng.randrange(n), rng) for _ in range(batch)])
    raise ConfigError(f"unknown order {kind!r}; expected one of {', '.join(ORDERS)}")


def lattice(h: int, w: int) -> list[list[int]]:
    """The 4-neighbours of each cell of an h x w grid, by raster index."""
    return [
        [(r + dr) * w + c + dc for dr, dc in ((-1, 0), (0, -1), (0, 1), (1, 0)) if 0 <= r + dr < h and 0 <= c + dc < w]
        for r in range(h)
        for c in range(w)
    ]


def spanning_tree(h: int, w: int, rng: random.Random) -> list[list[int]]:
    """A uniformly random spanning tree of the h x w lattice (Wilson's algorithm), as each cell's tree neighbours."""
    neighbours = lattice(h, w)
    n = h * w
    in_tree, step = [False] * n, [-1] * n
    in_tree[rng.randrange(n)] = True
    for start in range(n):
        cell = start
        while not in_tree[cell]:  # random walk until the tree; step[] keeps the last exit, which erases the loops
            step[cell] = rng.choice(neighbours[cell])
            cell = step[cell]
        cell = start
        while not in_tree[cell]:  # add the loop-erased path
            in_tree[cell] = True
            cell = step[cell]
    edges: list[list[int]] = [[] for _ in range(n)]
    for cell, parent in enumerate(step):
        if parent >= 0:
            edges[cell].append(parent)
            edges[parent].append(cell)
    return edges


def tree_order(edges: list[list[int]], root: int, rng: random.Random) -> list[int]:
    """Breadth-first traversal of a tree from `root`, each node's children queued in a random order."""
    order, seen = [root], {root}
    for cell in order:  # the list grows while it is read: a queue
        children = [c for c in edges[cell] if c not in seen]
        rng.shuffle(children)
        seen.update(children)
        order.extend(children)
    return order
