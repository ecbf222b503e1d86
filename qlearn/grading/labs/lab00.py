"""Lab 00 (``00_welcome``): three tiny exercises that walk through the exercise / check loop, and one
that puts them together (00.4: the fewest bits that reach a target error).

This module is the worked example for lab authors. Each exercise has

- a reference function, with its formula in the docstring and a doctest;
- a ``cases(rng)`` function: a few seeded random cases and the edge cases that catch the usual bugs;
- a hint in tiers, from the idea to a specific pointer, never code: the first failure prints tier 1,
  ``check(id, fn, hint=2)`` the next;
- ``wrong_answers``: the typical buggy versions, which ``tests/test_grading.py`` proves are rejected.
"""

from __future__ import annotations

import math

import numpy as np

from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register

__all__ = ["bits_for_error", "clamp", "num_codes", "relative_error"]

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
    hint=(
        "Two things happen to the values outside the range: the ones below lo are raised to lo, the ones "
        "above hi are lowered to hi. The ones inside stay as they are.",
        "numpy has elementwise minimum and maximum functions (and a clip) that treat a whole array at once, "
        "without a loop. The result must keep the dtype of x: integer codes stay integers.",
    ),
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
    hint=(
        "Both ends are codes: [0, 3] holds the four codes 0, 1, 2 and 3, one more than the "
        "difference of its ends.",
        "Compute with Python integers, which never overflow, and return one: the 32-bit range holds 2 to "
        "the power 32 codes, a number too large for any 32-bit integer.",
    ),
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
    hint=(
        "The error is the size of the difference divided by the size of x, both measured with the "
        "Euclidean norm over all elements.",
        "Compute in float64 (numpy's linalg module has the norm) and return a Python float. An all-zero x "
        "has no size to divide by: the edge case in the exercise text says what to return then.",
    ),
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


# --- 00.4 -------------------------------------------------------------------------------------

def _grid_error(x: np.ndarray, bits: int) -> float:
    """The relative error of ``x`` on the symmetric ``bits``-bit grid of 00.4."""
    x = np.asarray(x, dtype=np.float64)
    n = 2 ** (bits - 1) - 1
    m = float(np.max(np.abs(x)))
    step = m / n if m > 0 else 1.0
    return relative_error(x, clamp(np.rint(x / step), -n, n) * step)


def bits_for_error(x: np.ndarray, target: float) -> int | None:
    """The fewest bits, from 2 to 16, whose symmetric grid quantizes ``x`` with relative error <= ``target``.

    The grid of ``b`` bits has the ``2n + 1`` values ``k * step`` for the integers ``k`` in ``[-n, n]``,
    with ``n = 2^(b-1) - 1`` and ``step = max|x| / n`` (``step = 1`` for an all-zero ``x``); every value
    goes to the nearest one (``round(x / step)``, half-to-even, clamped to ``[-n, n]``). The error is
    00.3's relative error. ``None`` if even 16 bits do not reach ``target``.

    >>> x = np.array([-1.0, -0.3, 0.2, 0.7, 1.0])
    >>> bits_for_error(x, 0.1), bits_for_error(x, 0.01), bits_for_error(x, 0.0)
    (3, 6, None)
    """
    for bits in range(2, 17):
        if _grid_error(x, bits) <= target:
            return bits
    return None


def _between(x: np.ndarray, bits: int) -> float:
    """A target halfway (geometrically) between the errors of ``bits - 1`` and ``bits`` bits."""
    return float(np.sqrt(_grid_error(x, bits - 1) * _grid_error(x, bits)))


def _bits_cases(rng: np.random.Generator) -> list[Case]:
    f32 = np.float32
    normal = rng.normal(0, 1, 200).astype(f32)
    uniform = rng.uniform(-3, 3, (8, 16)).astype(f32)
    negative = (rng.uniform(-0.2, 1.0, 50) * np.where(np.arange(50) == 7, -8.0, 1.0)).astype(f32)
    on_grid = (np.array([-3, -1, 0, 2, 3, 1], f32) * f32(0.5))  # exactly on the 3-bit grid (n = 3)
    return [
        Case("random normal values, a target between the 4- and 5-bit errors", (normal, _between(normal, 5))),
        Case("random uniform 2-D values, a target between the 7- and 8-bit errors", (uniform, _between(uniform, 8))),
        Case("a loose target: 2 bits are enough", (normal, 0.9)),
        Case("the largest magnitude is negative (-8 x): max |x|, not max x", (negative, _between(negative, 6))),
        Case("values exactly on the 3-bit grid: error 0 at 3 bits", (on_grid, 0.0)),
        Case("an unreachable target: None", (normal, 1e-6)),
        Case("target 0 with random data: None", (uniform, 0.0)),
        Case("an all-zero tensor: 2 bits reach any target", (np.zeros(5, f32), 0.0)),
        Case("a single value", (np.array([0.37], f32), 0.01)),
    ]


def _bits_wrong(*, first=2, offset=0, magnitude="abs", levels="symmetric", none_as=None):
    def wrong(x, target):
        x = np.asarray(x, dtype=np.float64)
        for bits in range(first, 17):
            n = 2 ** (bits - 1) - 1 if levels == "symmetric" else 2 ** (bits - 1)
            m = float(np.max(np.abs(x))) if magnitude == "abs" else float(np.max(x))
            with np.errstate(divide="ignore", invalid="ignore"):
                step = m / n if m != 0 else 1.0
                x_hat = np.clip(np.rint(x / step), -n, n) * step
            if relative_error(x, x_hat) <= target:
                return bits + offset
        return none_as
    return wrong


register(Exercise(
    id="00.4",
    title="Put the pieces together: the fewest bits for a target error",
    points=2,
    reference=bits_for_error,
    cases=_bits_cases,
    function="bits_for_error",
    hint=(
        "Try the bit widths in order, from 2 up to 16: for each one build its grid, move every value to "
        "the nearest grid value, measure the relative error, and stop at the first width that is good enough.",
        "Your clamp and relative_error from this lab do two of the steps. The step of the grid comes from "
        "the largest magnitude, whatever its sign, and n grows with the bits.",
        "Two edge cases: an all-zero x has no largest magnitude, so its step is 1; a target that no width "
        "reaches gives None, not 16.",
    ),
    notebook=NOTEBOOK,
    seed=4,
    forbidden=("qlearn.affine.quantize", "qlearn.affine.fake_quantize", "qlearn.affine.dequantize",
               "qlearn.qparams.calc_qparams", "qlearn.metrics.sqnr_db", "qlearn.metrics.mse"),
    wrong_answers={
        "off by one: one bit too many": _bits_wrong(offset=1),
        "starts at 1 bit (a grid with no step)": _bits_wrong(first=1),
        "max x instead of max |x|": _bits_wrong(magnitude="max"),
        "n = 2**(bits - 1): the top value clipped": _bits_wrong(levels="wide"),
        "16 instead of None when no width is enough": _bits_wrong(none_as=16),
        "returns the error, not the bits": lambda x, target: _grid_error(x, 8),
    },
))


# --- questions: predict, then run --------------------------------------------------------------

register(Question(
    id="00.Q1",
    title="From 7 to 8 bits, what happens to the relative error?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_answer",
    choices={"a": "it stays about the same", "b": "it is about halved", "c": "it is divided by about 4",
             "d": "it is divided by about 256"},
    answer="b",
    explanation=("One more bit doubles the number of levels over the same range, so the step, and with it "
                 "the largest rounding error of each value (half a step), is halved. The relative error "
                 "follows: 0.0168 at 7 bits, 0.0083 at 8."),
    hint=("How does one more bit change the number of levels, and the step between them?",
          "Rounding moves each value by at most half a step."),
))
