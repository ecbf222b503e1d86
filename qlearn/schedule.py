"""Gradual pruning: the cubic sparsity schedule of Zhu & Gupta (2017), "To prune, or not to prune".

Instead of removing the final fraction of weights at once (one-shot), the sparsity rises from
``initial`` to ``final`` between steps ``begin`` and ``end``, fast at first (many redundant weights)
and slowly at the end (the network has fewer weights left to recover with):

    s(t) = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0)) ** 3     for t_0 <= t <= t_1

with ``s(t) = s_i`` before ``t_0`` and ``s(t) = s_f`` after ``t_1``. The masks are recomputed every
``frequency`` steps (``pruning_steps``), and the network trains in between so that it can recover.
Used in lab 07, section 3.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["cubic_sparsity", "pruning_steps"]


def _check_fraction(value: object, name: str) -> float:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real) or not 0.0 <= float(value) <= 1.0:
        raise ValueError(f"{name} must be a sparsity in [0, 1], got {value!r}")
    return float(value)


def _check_step(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or int(value) < 0:
        raise ValueError(f"{name} must be a non-negative int (a training step), got {value!r}")
    return int(value)


def cubic_sparsity(step: int, final: float, *, initial: float = 0.0, begin: int = 0, end: int) -> float:
    """Target sparsity at ``step``: ``s_f + (s_i - s_f) * (1 - (t - begin) / (end - begin)) ** 3``.

    ``initial`` before ``begin``, ``final`` from ``end`` on; ``begin == end`` is a one-shot jump at
    ``begin``. Needs ``begin <= end`` and sparsities in [0, 1].

    >>> [round(cubic_sparsity(t, 0.8, begin=0, end=4), 4) for t in range(6)]
    [0.0, 0.4625, 0.7, 0.7875, 0.8, 0.8]
    >>> cubic_sparsity(3, 0.9, initial=0.5, begin=5, end=5), cubic_sparsity(5, 0.9, initial=0.5, begin=5, end=5)
    (0.5, 0.9)
    """
    step, begin, end = _check_step(step, "step"), _check_step(begin, "begin"), _check_step(end, "end")
    final, initial = _check_fraction(final, "final"), _check_fraction(initial, "initial")
    if end < begin:
        raise ValueError(f"end={end} comes before begin={begin}; the schedule needs begin <= end")
    if step < begin:
        return initial
    if step >= end:
        return final
    progress = (step - begin) / (end - begin)
    return final + (initial - final) * (1.0 - progress) ** 3


def pruning_steps(begin: int, end: int, frequency: int) -> list[int]:
    """The steps at which masks are recomputed: ``begin, begin + frequency, ...`` and always ``end``.

    >>> pruning_steps(0, 10, 4)
    [0, 4, 8, 10]
    >>> pruning_steps(3, 3, 5)
    [3]
    """
    begin, end = _check_step(begin, "begin"), _check_step(end, "end")
    if isinstance(frequency, (bool, np.bool_)) or not isinstance(frequency, numbers.Integral) or frequency < 1:
        raise ValueError(f"frequency must be a positive int (steps between mask updates), got {frequency!r}")
    if end < begin:
        raise ValueError(f"end={end} comes before begin={begin}; the schedule needs begin <= end")
    steps = list(range(begin, end, int(frequency)))
    return steps + [end]
