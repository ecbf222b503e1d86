"""qlearn.mixed_precision: the knapsack is exact (brute force), the greedy is within budget, the
Pareto front is right; properties with Hypothesis."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from qlearn.mixed_precision import allocate_dp, allocate_greedy, pareto_front, total_bits, uniform_allocation

CHOICES = (2, 4, 8)


@st.composite
def problems(draw):
    layers = draw(st.integers(1, 5))
    sizes = np.array(draw(st.lists(st.integers(1, 40), min_size=layers, max_size=layers))) * 16
    sens = np.array([sorted(draw(st.lists(st.floats(0, 1), min_size=3, max_size=3)), reverse=True)
                     for _ in range(layers)])
    avg = draw(st.floats(2.0, 8.0))
    return sizes, sens, int(avg * sizes.sum())


def _brute(sizes, sens, budget):
    best = None
    for combo in itertools.product(range(len(CHOICES)), repeat=len(sizes)):
        bits = [CHOICES[j] for j in combo]
        if total_bits(sizes, bits) <= budget:
            cost = sum(sens[layer, j] for layer, j in enumerate(combo))
            if best is None or cost < best[0] - 1e-12:
                best = (cost, bits)
    return best


@settings(max_examples=80, deadline=None, derandomize=True)
@given(problems())
def test_dp_is_optimal_and_greedy_within_budget(problem):
    sizes, sens, budget = problem
    dp = allocate_dp(sizes, sens, CHOICES, budget)
    greedy = allocate_greedy(sizes, sens, CHOICES, budget)
    for bits in (dp, greedy):
        assert total_bits(sizes, bits) <= budget
        assert set(bits.tolist()) <= set(CHOICES)
    cost = lambda bits: sum(sens[i, CHOICES.index(b)] for i, b in enumerate(bits))  # noqa: E731
    assert cost(dp) <= _brute(sizes, sens, budget)[0] + 1e-9
    assert cost(dp) <= cost(greedy) + 1e-9


def test_golden_small_layer_gets_the_bits():
    sizes = np.array([1000, 10])
    sens = np.array([[0.01, 0.0, 0.0], [0.5, 0.1, 0.0]])
    assert allocate_dp(sizes, sens, CHOICES, 2 * 1000 + 8 * 10).tolist() == [2, 8]
    assert allocate_greedy(sizes, sens, CHOICES, 2 * 1000 + 8 * 10).tolist() == [2, 8]


def test_budget_too_small_and_bad_arguments():
    with pytest.raises(ValueError, match="budget"):
        allocate_dp([10], [[0, 0, 0]], CHOICES, 5)
    with pytest.raises(ValueError, match="budget"):
        allocate_greedy([10], [[0, 0, 0]], CHOICES, 5)
    with pytest.raises(ValueError, match="sensitivity"):
        allocate_dp([10], [[0, 0]], CHOICES, 100)
    with pytest.raises(ValueError, match="choices"):
        allocate_dp([10], [[0, 0, 0]], (4, 2, 8), 100)


def test_pareto_front_and_uniform():
    assert pareto_front([1, 2, 3, 4, 2], [0.5, 0.4, 0.9, 0.9, 0.6]).tolist() == [0, 4, 2]
    assert uniform_allocation([3, 4], 6).tolist() == [6, 6]
