"""Mixed precision: choose a bit width per layer under a size budget, from a sensitivity table.

A model's weight storage is ``size = sum_l n_l * b_l`` bits (``n_l`` weights in layer ``l`` at
``b_l`` bits; scales and biases are ignored: a few hundred numbers). Layers are not equally
fragile: the **sensitivity** ``S[l, j]`` is the accuracy drop when only layer ``l`` is quantized
to ``choices[j]`` bits and every other layer stays float. Assuming the drops add up, the best
allocation solves a multiple-choice knapsack::

    minimise  sum_l S[l, j_l]     subject to   sum_l n_l * choices[j_l] <= budget

:func:`allocate_dp` solves it exactly by dynamic programming over the budget (in units of the
greatest common divisor of the layer sizes); :func:`allocate_greedy` starts from the widest
choice everywhere and repeatedly narrows the layer whose next step down costs the least
sensitivity per bit saved. :func:`pareto_front` keeps the (size, accuracy) points no other point
beats on both. Used in lab 08, section 6.
"""

from __future__ import annotations

import math
from functools import reduce

import numpy as np

__all__ = ["allocate_dp", "allocate_greedy", "pareto_front", "total_bits", "uniform_allocation"]


def _check(sizes, sensitivity, choices) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    n = np.asarray(sizes)
    if n.ndim != 1 or n.size == 0 or not np.issubdtype(n.dtype, np.integer) or (n < 1).any():
        raise ValueError(f"sizes must be a 1-D array of positive ints (weights per layer), got {sizes!r}")
    c = np.asarray(choices)
    if c.ndim != 1 or c.size == 0 or not np.issubdtype(c.dtype, np.integer) or (np.diff(c) <= 0).any() or (c < 1).any():
        raise ValueError(f"choices must be strictly increasing positive ints such as (2, 4, 8), got {choices!r}")
    s = np.asarray(sensitivity, dtype=np.float64)
    if s.shape != (n.size, c.size):
        raise ValueError(f"sensitivity must have shape (len(sizes), len(choices)) = {(n.size, c.size)}, got {s.shape}")
    return n.astype(np.int64), s, c.astype(np.int64)


def total_bits(sizes, bits) -> int:
    """Storage of the weights in bits: ``sum_l sizes[l] * bits[l]``.

    >>> total_bits([100, 10], [4, 8])
    480
    """
    n, b = np.asarray(sizes, dtype=np.int64), np.asarray(bits, dtype=np.int64)
    if n.shape != b.shape:
        raise ValueError(f"sizes and bits must have the same shape, got {n.shape} and {b.shape}")
    return int((n * b).sum())


def uniform_allocation(sizes, bits: int) -> np.ndarray:
    """Every layer at ``bits``.

    >>> uniform_allocation([5, 7, 9], 4)
    array([4, 4, 4])
    """
    return np.full(len(sizes), int(bits), dtype=np.int64)


def allocate_greedy(sizes, sensitivity, choices, budget: int) -> np.ndarray:
    """Greedy allocation (see the module docstring). Raises ``ValueError`` if even the narrowest
    choice everywhere exceeds ``budget``.

    >>> allocate_greedy([100, 10], [[5.0, 0.1], [9.0, 0.0]], (2, 8), 100 * 2 + 10 * 8)
    array([2, 8])
    """
    n, s, c = _check(sizes, sensitivity, choices)
    if int((n * c[0]).sum()) > budget:
        raise ValueError(f"budget {budget} bits is below the smallest model, {int((n * c[0]).sum())} bits")
    j = np.full(n.size, c.size - 1)
    while int((n * c[j]).sum()) > budget:
        best, best_cost = -1, math.inf
        for layer in range(n.size):
            if j[layer] == 0:
                continue
            saved = n[layer] * (c[j[layer]] - c[j[layer] - 1])
            cost = (s[layer, j[layer] - 1] - s[layer, j[layer]]) / saved
            if cost < best_cost:
                best, best_cost = layer, cost
        j[best] -= 1
    return c[j]


def allocate_dp(sizes, sensitivity, choices, budget: int) -> np.ndarray:
    """Exact minimum of the summed sensitivity within ``budget`` (multiple-choice knapsack).

    >>> allocate_dp([100, 10], [[5.0, 0.1], [9.0, 0.0]], (2, 8), 100 * 2 + 10 * 8)
    array([2, 8])
    """
    n, s, c = _check(sizes, sensitivity, choices)
    unit = reduce(math.gcd, [int(v) for v in n])
    cap = budget // unit
    weights = (n // unit)[:, None] * c[None, :]            # [layers, choices] in units
    if int(weights[:, 0].sum()) > cap:
        raise ValueError(f"budget {budget} bits is below the smallest model, {int((n * c[0]).sum())} bits")
    best = np.zeros(cap + 1)                               # best[u]: min sensitivity using <= u units
    picks = np.zeros((n.size, cap + 1), dtype=np.int64)
    for layer in range(n.size):
        new = np.full(cap + 1, np.inf)
        for j in range(c.size):
            w = int(weights[layer, j])
            if w > cap:
                continue
            cand = np.full(cap + 1, np.inf)
            cand[w:] = best[: cap + 1 - w] + s[layer, j]
            better = cand < new
            new[better] = cand[better]
            picks[layer, better] = j
        best = new
    u = int(np.argmin(best))
    out = np.empty(n.size, dtype=np.int64)
    for layer in range(n.size - 1, -1, -1):
        j = int(picks[layer, u])
        out[layer] = c[j]
        u -= int(weights[layer, j])
    return out


def pareto_front(size, accuracy) -> np.ndarray:
    """Indices of the points that no other point beats: no smaller-or-equal size with a higher
    accuracy (nor equal accuracy at a smaller size). Sorted by size.

    >>> pareto_front([1, 2, 3, 4], [0.5, 0.4, 0.9, 0.9])
    array([0, 2])
    """
    size, acc = np.asarray(size, dtype=np.float64), np.asarray(accuracy, dtype=np.float64)
    if size.shape != acc.shape or size.ndim != 1:
        raise ValueError(f"size and accuracy must be 1-D of the same length, got {size.shape} and {acc.shape}")
    order = np.lexsort((-acc, size))
    keep, best = [], -np.inf
    for i in order:
        if acc[i] > best:
            keep.append(int(i))
            best = acc[i]
    return np.asarray(keep, dtype=np.int64)
