"""Lab 00 (``00_welcome``): three tiny exercises that walk through the exercise / check loop.

This module is the worked example for lab authors. Each exercise has

- a reference function, with its formula in the docstring and a doctest;
- a ``cases(rng)`` function: a few seeded random cases and the edge cases that catch the usual bugs;
- a hint that the feedback prints after a failure;
- ``wrong_answers``: the typical buggy versions, which ``tests/test_grading.py`` proves are rejected.
"""

from __future__ import annotations

import math

import numpy as np

from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.registry import register

__all__ = ["clamp", "num_codes", "relative_error"]

NOTEBOOK = "00_welcome"


# --- 00.1 -------------------------------------------------------------------------------------

def clamp(x: np.ndarray, lo, hi) -> np.ndarray:
    """Clamp every value of ``x`` into ``[lo, hi]``: ``clamp(x) = min(max(x, lo), hi)``.

    The result keeps ``x``'s dtype (integer codes stay integers), like ``torch.clamp``.

    >>> clamp(np.array([-3.0, 0.5, 9.0], dtype=np.float32), -1.0, 1.0)
    array([-1. ,  0.5,  1. ], dtype=float32)
    """
    return np.minimum(np.maximum(np.asarray(x), lo), hi)


def _clamp_cases(rng: np.random.Generator) -> list[Case]:
    f32 = np.float32
    return [
        Case("random values in [-4, 4], range [-1, 1]", (rng.uniform(-4, 4, 10).astype(f32), -1.0, 1.0)),
        Case("random 2-D values, range [-0.5, 2]", (rng.normal(0, 2, (3, 4)).astype(f32), -0.5, 2.0)),
        Case("every value inside: nothing changes", (np.array([-0.9, 0.0, 0.25, 0.9], f32), -1.0, 1.0)),
        Case("every value below lo saturates at lo", (np.array([-7.0, -2.5, -1.5], f32), -1.0, 1.0)),
        Case("every value above hi saturates at hi", (np.array([1.5, 2.0, 300.0], f32), -1.0, 1.0)),
        Case("values exactly on the bounds stay", (np.array([-1.0, 1.0, -1.0, 1.0], f32), -1.0, 1.0)),
        Case("a negative range [-5, -2]", (np.array([-6.0, -3.5, 0.0, 4.0], f32), -5.0, -2.0)),
        Case("lo == hi: every value becomes that value", (np.array([-2.0, 0.0, 3.0], f32), 0.5, 0.5)),
        Case("a constant tensor above the range", (np.full(5, 3.0, f32), -1.0, 1.0)),
        Case("integer codes into the 4-bit range [-8, 7]",
             (rng.integers(-20, 21, 8).astype(np.int32), -8, 7)),
    ]


register(Exercise(
    id="00.1",
    title="Clamp values into [lo, hi]",
    points=1,
    reference=clamp,
    cases=_clamp_cases,
    function="clamp",
    hint=("Raise the values below lo up to lo, then lower the values above hi down to hi: "
          "np.maximum and np.minimum (or np.clip) do it for a whole array at once. "
          "Keep x's dtype: integer codes must stay integers."),
    notebook=NOTEBOOK,
    seed=1,
    forbidden=("torch.clamp", "torch.clip", "torch.Tensor.clamp", "torch.Tensor.clip",),
    wrong_answers={
        "missing lower clamp": lambda x, lo, hi: np.minimum(x, hi),
        "missing upper clamp": lambda x, lo, hi: np.maximum(x, lo),
        "min and max swapped": lambda x, lo, hi: np.maximum(np.minimum(x, lo), hi),
        "rounds as well": lambda x, lo, hi: np.rint(np.clip(x, lo, hi)),
        "always returns float32": lambda x, lo, hi: np.clip(x, lo, hi).astype(np.float32),
        "returns a list": lambda x, lo, hi: np.clip(x, lo, hi).tolist(),
    },
))


# --- 00.2 -------------------------------------------------------------------------------------

def num_codes(qmin: int, qmax: int) -> int:
    """The number of integer codes in ``[qmin, qmax]``, both ends included: ``qmax - qmin + 1``.

    >>> num_codes(-128, 127), num_codes(0, 15), num_codes(-2**31, 2**31 - 1)
    (256, 16, 4294967296)
    """
    return int(qmax) - int(qmin) + 1


def _num_codes_cases(rng: np.random.Generator) -> list[Case]:
    lo = int(rng.integers(-1000, 1000))
    return [
        Case("int8: [-128, 127]", (-128, 127)),
        Case("uint8: [0, 255]", (0, 255)),
        Case("int4: [-8, 7]", (-8, 7)),
        Case("narrow int8: [-127, 127]", (-127, 127)),
        Case("a single code: [5, 5]", (5, 5)),
        Case("binary: [0, 1]", (0, 1)),
        Case("a negative range: [-10, -3]", (-10, -3)),
        Case("int32: 2**32 codes, more than an int32 can count", (-(2**31), 2**31 - 1)),
        Case("random range", (lo, lo + int(rng.integers(0, 5000)))),
        Case("random range with numpy ints", (np.int64(lo), np.int64(lo + int(rng.integers(0, 99))))),
    ]


def _int32_count(qmin, qmax):
    # the count computed in int32: wraps around for the full int32 range
    return int((np.array([qmax], np.int32) - np.array([qmin], np.int32) + np.int32(1))[0])


register(Exercise(
    id="00.2",
    title="Count the integer codes in [qmin, qmax]",
    points=1,
    reference=num_codes,
    cases=_num_codes_cases,
    function="num_codes",
    hint=("Both ends are codes: [0, 3] holds the 4 codes 0, 1, 2 and 3. Return a Python int, and "
          "compute with Python ints (int(qmax)), which never overflow: the int32 range holds 2**32 "
          "codes, a number too large for an int32."),
    notebook=NOTEBOOK,
    seed=2,
    forbidden=("qlearn.qparams.qrange",),
    wrong_answers={
        "off by one": lambda qmin, qmax: qmax - qmin,
        "returns a float": lambda qmin, qmax: float(qmax - qmin + 1),
        "int32 arithmetic that wraps": _int32_count,
        "counts from zero": lambda qmin, qmax: qmax + 1,
    },
))


# --- 00.3 -------------------------------------------------------------------------------------

def relative_error(x: np.ndarray, x_hat: np.ndarray) -> float:
    """How far ``x_hat`` is from ``x``, relative to the size of ``x``: ``||x - x_hat|| / ||x||``.

    Norms are Euclidean (over all elements) and computed in float64. An all-zero ``x`` has no
    size to compare with: the error is then 0.0 if ``x_hat`` is all zeros too, else infinity.

    >>> relative_error(np.array([3.0, 4.0]), np.array([3.0, 3.0]))
    0.2
    >>> relative_error(np.zeros(3), np.zeros(3)), relative_error(np.zeros(3), np.ones(3))
    (0.0, inf)
    """
    x = np.asarray(x, dtype=np.float64)
    x_hat = np.asarray(x_hat, dtype=np.float64)
    error = float(np.linalg.norm(x - x_hat))
    size = float(np.linalg.norm(x))
    if size == 0.0:
        return 0.0 if error == 0.0 else math.inf
    return error / size


def _relative_error_cases(rng: np.random.Generator) -> list[Case]:
    f32 = np.float32
    x = rng.normal(0, 1, 16).astype(f32)
    x2 = rng.uniform(-3, 3, (4, 5)).astype(f32)
    return [
        Case("random x, x_hat = x + small noise", (x, (x + rng.normal(0, 0.01, 16)).astype(f32))),
        Case("random 2-D x, x_hat = x rounded to a 0.25 grid", (x2, (np.rint(x2 * 4) / 4).astype(f32))),
        Case("x_hat == x: no error", (x, x.copy())),
        Case("x_hat = 0: everything lost, error 1", (x, np.zeros_like(x))),
        Case("x_hat = 2 x: error 1", (x2, 2 * x2)),
        Case("x_hat = -x: the sign flipped, error 2", (x, -x)),
        Case("a constant tensor: x = 3, x_hat = 3.5", (np.full(6, 3.0, f32), np.full(6, 3.5, f32))),
        Case("x and x_hat all zeros: error 0", (np.zeros(4, f32), np.zeros(4, f32))),
        Case("x all zeros, x_hat not: error inf", (np.zeros(4, f32), np.array([0, 0.5, 0, 0], f32))),
    ]


register(Exercise(
    id="00.3",
    title="Relative error",
    points=1,
    reference=relative_error,
    cases=_relative_error_cases,
    function="relative_error",
    hint=("np.linalg.norm(x - x_hat) / np.linalg.norm(x), computed in float64 and returned as a "
          "Python float. When x is all zeros, return 0.0 if x_hat is all zeros too and "
          "math.inf otherwise."),
    notebook=NOTEBOOK,
    seed=3,
    forbidden=("qlearn.metrics.sqnr_db", "qlearn.metrics.mse",),
    rtol=1e-6,
    wrong_answers={
        "divides by the norm of x_hat": lambda x, x_hat: float(
            np.linalg.norm(np.float64(x) - x_hat) / np.linalg.norm(np.float64(x_hat))),
        "forgets the square root": lambda x, x_hat: float(
            np.sum((np.float64(x) - x_hat) ** 2) / np.sum(np.float64(x) ** 2)),
        "mean absolute error": lambda x, x_hat: float(np.mean(np.abs(np.float64(x) - x_hat))),
        "no rule for an all-zero x": lambda x, x_hat: float(np.linalg.norm(np.float64(x) - x_hat))
        / float(np.linalg.norm(np.float64(x))),
        "one error per element": lambda x, x_hat: np.abs(np.float64(x) - x_hat) / np.abs(x),
    },
))
