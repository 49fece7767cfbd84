"""Spanning-tree orders: Wilson's trees are uniform, and their breadth-first orders grow one connected region."""

import random
from collections import Counter

import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.stats import chisquare

from tessera.model.orders import lattice, make_orders, spanning_tree, tree_order


def edges_of(tree: list[list[int]]) -> frozenset[tuple[int, int]]:
    return frozenset((a, b) for a, near in enumerate(tree) for b in near if a < b)


def test_wilson_draws_every_spanning_tree_of_3x3_equally_often():
    rng = random.Random(0)
    counts = Counter(edges_of(spanning_tree(lattice(3, 3), rng)) for _ in range(192 * 40))
    assert len(counts) == 192  # the 3 x 3 lattice has 192 spanning trees, and each was drawn
    assert all(len(tree) == 8 for tree in counts)  # n - 1 edges
    assert chisquare(list(counts.values())).pvalue > 1e-3, sorted(counts.values())


def test_a_biased_sampler_fails_the_same_uniformity_check():
    """The check can fail: trees grown breadth-first from a corner (not uniform) are rejected."""
    rng = random.Random(0)
    grid = lattice(3, 3)

    def grown(rng: random.Random) -> frozenset:
        seen, edges, frontier = {0}, set(), [0]
        while frontier:
            cell = frontier.pop(rng.randrange(len(frontier)))
            for near in grid[cell]:
                if near not in seen:
                    seen.add(near)
                    edges.add((min(cell, near), max(cell, near)))
                    frontier.append(near)
        return frozenset(edges)

    counts = Counter(grown(rng) for _ in range(192 * 40))
    observed = list(counts.values()) + [0] * (192 - len(counts))
    assert chisquare(observed).pvalue < 1e-6


@settings(max_examples=60, deadline=None)
@given(h=st.integers(1, 9), w=st.integers(1, 9), seed=st.integers(0, 2**31))
def test_every_tree_order_is_a_permutation_that_stays_connected(h, w, seed):
    orders = make_orders("spanning-tree", 3, h, w, torch.Generator().manual_seed(seed))
    assert orders.shape == (3, h * w)
    for order in orders.tolist():
        assert sorted(order) == list(range(h * w))
        drawn = {order[0]}
        for cell in order[1:]:
            assert set(lattice(h, w)[cell]) & drawn, (order, cell)  # touches a cell drawn before it
            drawn.add(cell)


def test_orders_are_breadth_first_over_the_tree():
    rng = random.Random(3)
    tree = spanning_tree(lattice(6, 7), rng)
    order = tree_order(tree, 17, rng)
    depth = {17: 0}
    for cell in order[1:]:
        parent = next(p for p in tree[cell] if p in depth)  # the one tree neighbour already drawn
        depth[cell] = depth[parent] + 1
    assert order[0] == 17 and [depth[c] for c in order] == sorted(depth[c] for c in order)


def test_spanning_tree_orders_follow_the_generator():
    def draw(seed: int) -> torch.Tensor:
        return make_orders("spanning-tree", 4, 5, 6, torch.Generator().manual_seed(seed))

    assert torch.equal(draw(1), draw(1)) and not torch.equal(draw(1), draw(2))
    rows = draw(1)
    assert len({tuple(r) for r in rows.tolist()}) == 4  # a fresh tree and root per row
