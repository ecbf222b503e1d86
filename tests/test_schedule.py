"""qlearn.schedule: the cubic sparsity schedule of Zhu & Gupta (2017)."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qlearn.schedule import cubic_sparsity, pruning_steps


def test_golden_table():
    # s(t) = 0.8 * (1 - (1 - t/4)^3): 0, 0.8*37/64, 0.8*7/8, 0.8*63/64, 0.8
    got = [cubic_sparsity(t, 0.8, begin=0, end=4) for t in range(5)]
    assert got == pytest.approx([0.0, 0.8 * 37 / 64, 0.7, 0.8 * 63 / 64, 0.8], abs=1e-15)


def test_flat_outside_the_window():
    assert cubic_sparsity(2, 0.9, initial=0.3, begin=5, end=10) == 0.3
    assert cubic_sparsity(11, 0.9, initial=0.3, begin=5, end=10) == 0.9
    assert cubic_sparsity(10, 0.9, initial=0.3, begin=5, end=10) == 0.9


def test_one_shot_when_begin_equals_end():
    assert cubic_sparsity(4, 0.7, begin=5, end=5) == 0.0
    assert cubic_sparsity(5, 0.7, begin=5, end=5) == 0.7


@pytest.mark.parametrize(("kwargs", "words"), [
    ({"step": -1}, "step"), ({"final": 1.5}, "final"), ({"initial": -0.1}, "initial"),
    ({"begin": 5, "end": 3}, "before begin"), ({"step": 1.5}, "step"), ({"final": True}, "final"),
])
def test_errors_name_the_argument(kwargs, words):
    args = {"step": 0, "final": 0.5, "initial": 0.0, "begin": 0, "end": 10} | kwargs
    step, final = args.pop("step"), args.pop("final")
    with pytest.raises(ValueError, match=words):
        cubic_sparsity(step, final, **args)


@given(st.floats(0, 1), st.floats(0, 1), st.integers(0, 50), st.integers(0, 200))
def test_monotone_and_bounded(initial, final, begin, length):
    end = begin + length
    values = [cubic_sparsity(t, final, initial=initial, begin=begin, end=end) for t in range(0, end + 3)]
    lo, hi = min(initial, final), max(initial, final)
    assert all(lo - 1e-12 <= v <= hi + 1e-12 for v in values)
    diffs = [b - a for a, b in zip(values, values[1:])]
    if final >= initial:
        assert all(d >= -1e-12 for d in diffs)
    else:
        assert all(d <= 1e-12 for d in diffs)
    assert values[-1] == final


@given(st.integers(1, 100), st.integers(1, 30))
def test_front_loaded(length, frac_num):
    # the cubic schedule is ahead of the linear ramp everywhere inside the window
    t = min(frac_num, length)
    linear = 0.9 * t / length
    assert cubic_sparsity(t, 0.9, begin=0, end=length) >= linear - 1e-12


def test_pruning_steps():
    assert pruning_steps(0, 10, 4) == [0, 4, 8, 10]
    assert pruning_steps(0, 8, 4) == [0, 4, 8]
    with pytest.raises(ValueError, match="frequency"):
        pruning_steps(0, 8, 0)
