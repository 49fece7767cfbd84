"""Generation orders over an h x w token grid, as raster indices in the order they are drawn.

raster: row by row. random: a fresh uniform permutation per row of the batch. spanning-tree (STAR): a uniform
spanning tree of the 4-neighbour lattice (Wilson's algorithm: loop-erased random walks), traversed breadth-first
from a uniformly drawn root, each node's children queued in a random order; every token after the first touches
one drawn before it. For editing, `prefix_order` puts a kept region first and grows the rest from it.
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
        near = lattice(h, w)
        return torch.tensor([spanning_tree_order(near, rng) for _ in range(batch)])
    raise ConfigError(f"unknown order {kind!r}; expected one of {', '.join(ORDERS)}")


def lattice(h: int, w: int) -> list[list[int]]:
    """The 4-neighbours of each cell of an h x w grid, by raster index."""
    return [
        [(r + dr) * w + c + dc for dr, dc in ((-1, 0), (0, -1), (0, 1), (1, 0)) if 0 <= r + dr < h and 0 <= c + dc < w]
        for r in range(h)
        for c in range(w)
    ]


def spanning_tree(neighbours: list[list[int]], rng: random.Random) -> list[list[int]]:
    """A uniformly random spanning tree of a connected graph (Wilson's algorithm), as each node's tree neighbours.
    `neighbours` lists each node's neighbours, once per edge (a multigraph repeats them)."""
    n = len(neighbours)
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


def spanning_tree_order(near: list[list[int]], rng: random.Random) -> list[int]:
    """One STAR order: a uniform spanning tree of a lattice (`lattice(h, w)`), breadth-first from a uniform root."""
    return tree_order(spanning_tree(near, rng), rng.randrange(len(near)), rng)


def prefix_order(keep: list[bool], h: int, w: int, rng: random.Random) -> list[int]:
    """A tree order whose prefix is exactly the kept cells (raster among themselves): the kept region, connected or
    not, is contracted to one root node, and the rest is the breadth-first traversal of a uniform spanning tree of
    the contracted lattice from that root. With nothing kept, a plain spanning-tree order."""
    near = lattice(h, w)
    kept, free = _split(keep)
    if not kept:
        return spanning_tree_order(near, rng)
    node = {c: i + 1 for i, c in enumerate(free)}  # the kept region is node 0
    contracted: list[list[int]] = [[] for _ in range(len(free) + 1)]
    for cell, cells in enumerate(near):
        for other in cells:
            a, b = node.get(cell, 0), node.get(other, 0)
            if a != b:
                contracted[a].append(b)
    drawn = tree_order(spanning_tree(contracted, rng), 0, rng)[1:]
    return kept + [free[i - 1] for i in drawn]


def rejected_order(keep: list[bool], h: int, w: int, rng: random.Random, tries: int) -> tuple[list[int] | None, int]:
    """STAR's editing by rejection: spanning-tree orders drawn until the kept cells are exactly a prefix;
    (the order or None, the draws it took). A kept region that is not connected is never a prefix."""
    n_kept, near = sum(keep), lattice(h, w)
    for attempt in range(1, tries + 1):
        order = spanning_tree_order(near, rng)
        if all(keep[c] for c in order[:n_kept]):
            return order, attempt
    return None, tries


def raster_prefix_order(keep: list[bool]) -> list[int]:
    """The kept cells, then the rest, each in raster order: the only edit order a raster-trained model knows."""
    kept, free = _split(keep)
    return kept + free


def _split(keep: list[bool]) -> tuple[list[int], list[int]]:
    """(kept cells, the rest), each in raster order."""
    return [c for c, k in enumerate(keep) if k], [c for c, k in enumerate(keep) if not k]
