"""Lab 05 (``05_integer_only_inference``): an int8 layer computed with integers only.

    05.1  int_matmul(a_q, b_q, a_zero_point, b_zero_point)   sum_k (a - z_a)(b - z_b), exact (int32)
    05.2  quantize_multiplier(M)                              M ~= M0 * 2**-(31 + shift), 2**30 <= M0 < 2**31
    05.3  requantize(acc, M0, shift, output_zero_point, qmin, qmax)
                                                              clamp(z + round(acc * M0 / 2**(31 + shift)))

**Which rounding?** Integer kernels disagree on how to round ``acc * M`` when it is (nearly) halfway
between two integers: gemmlowp and TFLite round twice (a rounding high multiply, then a rounding
shift), TFLite's single-rounding build and an int64 ``(acc * M0 + half) >> total`` round once, ties
up; fbgemm and qnnpack round a float32 product half-to-even. All of them are correct integer
requantizations, so 05.3 accepts every one: its inputs keep only the accumulator values on which
these roundings agree (the others are replaced by 0). No wrong answer is accepted for it: each one
below is rejected on these inputs (``tests/test_lab05.py`` proves it). Likewise 05.2 has no input
where ``M * 2**(31 + shift)`` is exactly halfway between two integers (TFLite rounds that half away
from zero, numpy half-to-even).
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

from qlearn import intops
from qlearn.affine import code_dtype
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.registry import register

__all__ = ["int_matmul", "quantize_multiplier", "requantize"]

NOTEBOOK = "05_integer_only_inference"


# --- 05.1 -------------------------------------------------------------------------------------

def int_matmul(a_q: np.ndarray, b_q: np.ndarray, a_zero_point: int, b_zero_point: int) -> np.ndarray:
    """The integer product ``acc[i, j] = sum_k (a_q[i, k] - a_zero_point) * (b_q[k, j] - b_zero_point)``.

    ``a_q`` is ``(M, K)`` (uint8 or int8 codes) and ``b_q`` is ``(K, N)`` (int8 codes). The
    zero-points are subtracted after widening to int32, and the sums accumulate in int32: every
    product of two 8-bit codes fits in 16 bits, but a sum of many does not.

    >>> int_matmul(np.array([[130, 126]], np.uint8), np.array([[100], [100]], np.int8), 128, 0)
    array([[0]], dtype=int32)
    """
    return intops.int_matmul(a_q, b_q, a_zero_point, b_zero_point, acc_dtype=np.int32)


def _codes(rng, low, high, shape, dtype):
    return rng.integers(low, high, shape, endpoint=True).astype(dtype)


def _int_matmul_cases(rng: np.random.Generator) -> list[Case]:
    u8, i8 = np.uint8, np.int8
    return [
        Case("random uint8 x int8, zero-points 128 and 0",
             (_codes(rng, 0, 255, (4, 32), u8), _codes(rng, -128, 127, (32, 5), i8), 128, 0)),
        Case("random int8 x int8, both zero-points non-zero (-3 and 2)",
             (_codes(rng, -128, 127, (3, 16), i8), _codes(rng, -128, 127, (16, 6), i8), -3, 2)),
        Case("K = 576 (a 3x3 convolution over 64 channels), ReLU activations: int16 sums wrap",
             (_codes(rng, 0, 255, (4, 576), u8), _codes(rng, -128, 127, (576, 3), i8), 0, 0)),
        Case("large codes all of one sign: 256 * 255 * 127 needs 24 bits",
             (np.full((2, 256), 255, u8), _codes(rng, 100, 127, (256, 2), i8), 0, 0)),
        Case("codes below the zero-point: q - 128 must not wrap in uint8",
             (_codes(rng, 0, 40, (3, 8), u8), _codes(rng, -128, 127, (8, 4), i8), 128, 0)),
        Case("int8 activations with zero-point -128: q + 128 must not wrap in int8",
             (_codes(rng, -128, 127, (2, 12), i8), _codes(rng, -128, 127, (12, 3), i8), -128, 0)),
        Case("uint8 with zero-point 255 (a negative-only range)",
             (_codes(rng, 0, 255, (3, 10), u8), _codes(rng, -128, 127, (10, 2), i8), 255, 0)),
        Case("every activation equals its zero-point: all zeros",
             (np.full((2, 7), 37, u8), _codes(rng, -128, 127, (7, 3), i8), 37, 0)),
        Case("K = 1: an outer product", (_codes(rng, 0, 255, (5, 1), u8), _codes(rng, -128, 127, (1, 4), i8), 100, -1)),
        Case("a single row times a single column",
             (_codes(rng, 0, 255, (1, 20), u8), _codes(rng, -128, 127, (20, 1), i8), 120, 0)),
    ]


def _widened(a, b, za, zb, dtype=np.int32):
    return a.astype(dtype) - za, b.astype(dtype) - zb


def _int16_accumulator(a, b, za, zb):
    x, y = _widened(a, b, za, zb, np.int16)
    return np.matmul(x, y)  # numpy int16 matmul: products and sums wrap modulo 2**16


def _int8_accumulator(a, b, za, zb):
    x, y = _widened(a, b, za, zb)
    return np.matmul(x.astype(np.int8), y.astype(np.int8))


_INT_MATMUL_WRONG: dict[str, Callable] = {
    "accumulates in int16 (the sums wrap)": _int16_accumulator,
    "accumulates in int8 (wraps)": _int8_accumulator,
    "forgets both zero-points": lambda a, b, za, zb: a.astype(np.int32) @ b.astype(np.int32),
    "forgets the zero-point of a": lambda a, b, za, zb: a.astype(np.int32) @ (b.astype(np.int32) - zb),
    "forgets the zero-point of b": lambda a, b, za, zb: (a.astype(np.int32) - za) @ b.astype(np.int32),
    "zero-point sign flipped: q + z": lambda a, b, za, zb: (a.astype(np.int32) + za) @ (b.astype(np.int32) + zb),
    "subtracts the zero-point in uint8/int8 (wraps), then widens": lambda a, b, za, zb: (
        (a - np.asarray(za).astype(a.dtype)).astype(np.int32) @ (b - np.asarray(zb).astype(b.dtype)).astype(np.int32)),
    "subtracts only z_a * z_b, not the cross terms": lambda a, b, za, zb: (
        a.astype(np.int32) @ b.astype(np.int32) - a.shape[1] * za * zb),
    "returns float64 (np.matmul on floats)": lambda a, b, za, zb: (
        (a.astype(np.float64) - za) @ (b.astype(np.float64) - zb)),
    "element-wise product, no sum": lambda a, b, za, zb: (a.astype(np.int32) - za)[:, :1] * (b.astype(np.int32) - zb)[:1],
    "returns zeros": lambda a, b, za, zb: np.zeros((a.shape[0], b.shape[1]), np.int32),
}

register(Exercise(
    id="05.1",
    title="Integer matrix product with an int32 accumulator",
    points=3,
    reference=int_matmul,
    cases=_int_matmul_cases,
    function="int_matmul",
    hint=("Widen first, then subtract: a = a_q.astype(np.int32) - a_zero_point, "
          "b = b_q.astype(np.int32) - b_zero_point, and return a @ b (an int32 array). "
          "Subtracting 128 from a uint8 array in uint8 wraps (3 - 128 gives 131), and an int16 "
          "accumulator wraps once a sum passes 32767: 576 products of up to 255 * 128 need 25 bits."),
    notebook=NOTEBOOK,
    seed=501,
    forbidden=(
        "qlearn.intops.int_matmul", "qlearn.intops.quantized_linear", "qlearn.intops.quantized_conv2d",
        "torch._int_mm",
    ),
    wrong_answers=_INT_MATMUL_WRONG,
))


# --- 05.2 -------------------------------------------------------------------------------------

def quantize_multiplier(M: float) -> tuple[int, int]:
    """Split ``0 < M < 1`` into ``(M0, shift)`` with ``M ~= M0 * 2**-(31 + shift)``, ``2**30 <= M0 < 2**31``.

    Write ``M = q * 2**-shift`` with ``q`` in ``[0.5, 1)`` (so ``shift = -math.frexp(M)[1]``) and
    round ``q * 2**31`` to the nearest integer. If that gives ``2**31``, use ``2**30`` and one less
    shift. Both results are Python ints.

    >>> quantize_multiplier(0.5), quantize_multiplier(0.25), quantize_multiplier(0.1)
    ((1073741824, 0), (1073741824, 1), (1717986918, 3))
    """
    M0, shift = intops.quantize_multiplier(float(M))
    return int(M0), int(shift)


def _multiplier_cases(rng: np.random.Generator) -> list[Case]:
    def case(name, m):
        return Case(name, (float(m),))

    s_x, s_w, s_y = rng.uniform(0.01, 0.05), rng.uniform(0.001, 0.005), rng.uniform(0.02, 0.1)
    randoms = [float(v) for v in rng.uniform(0.0, 1.0, 3)]
    return [
        case("M = 0.5: M0 = 2**30, shift 0", 0.5),
        case("M = 0.25: M0 = 2**30, shift 1", 0.25),
        case("M = 0.75: M0 = 3 * 2**29, shift 0", 0.75),
        case("M = 2**-20 exactly", 2.0**-20),
        case("M = 0.1", 0.1),
        case("M = s_x * s_w / s_y of a random layer", s_x * s_w / s_y),
        case("random M in (0, 1)", randoms[0]),
        case("random M in (0, 1) (2)", randoms[1]),
        case("random M in (0, 1) (3)", randoms[2]),
        case("a small M = 3.7e-6 (shift 18)", 3.7e-6),
        case("M * 2**34 = 1500000000.75: round, do not truncate", 1500000000.75 * 2.0**-34),
        case("M * 2**32 = 2**31 - 0.25: M0 rounds up to 2**31, renormalise to (2**30, shift - 1)",
             (2.0**31 - 0.25) * 2.0**-32),
        case("M just below 1: M0 rounds to 2**31, so M0 = 2**30 and shift = -1", 1.0 - 2.0**-40),
        case("M = 1 / 3", 1.0 / 3.0),
    ]


def _multiplier_wrong(scale_bits=31, rnd=round, sign=1, renormalise=True, shift_offset=0, to_int=int):
    def wrong(M):
        q, e = math.frexp(M)
        m0 = rnd(q * 2.0**scale_bits)
        shift = -e
        if renormalise and m0 == 2**scale_bits:
            m0, shift = m0 / 2, shift - 1
        return to_int(m0), sign * shift + shift_offset
    return wrong


register(Exercise(
    id="05.2",
    title="The fixed-point multiplier M0 and its shift",
    points=3,
    reference=quantize_multiplier,
    cases=_multiplier_cases,
    function="quantize_multiplier",
    hint=("q, e = math.frexp(M) gives M = q * 2**e with 0.5 <= q < 1. Then M0 = round(q * 2**31) and "
          "shift = -e (a right shift). If M0 == 2**31, return (2**30, shift - 1). Return two Python ints: "
          "the check verifies M ~= M0 * 2**-(31 + shift) with 2**30 <= M0 < 2**31."),
    notebook=NOTEBOOK,
    seed=502,
    forbidden=("qlearn.intops.quantize_multiplier",),
    wrong_answers={
        "M0 scaled by 2**32: outside [2**30, 2**31), does not fit an int32": _multiplier_wrong(scale_bits=32),
        "M0 scaled by 2**30: in [2**29, 2**30), one bit of precision lost": _multiplier_wrong(scale_bits=30),
        "shift sign flipped (TFLite's left-shift convention)": _multiplier_wrong(sign=-1),
        "truncates q * 2**31 instead of rounding": _multiplier_wrong(rnd=math.floor),
        "no renormalisation when M0 rounds up to 2**31": _multiplier_wrong(renormalise=False),
        "off by one: shift + 1": _multiplier_wrong(shift_offset=1),
        "returns M0 as a float": _multiplier_wrong(to_int=float),
        "returns (M, 0)": lambda M: (M, 0),
        "returns zeros": lambda M: (0, 0),
    },
))


# --- 05.3 -------------------------------------------------------------------------------------

def requantize(acc: np.ndarray, M0: int, shift: int, output_zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """Output codes ``q = clamp(output_zero_point + round(acc * M0 / 2**(31 + shift)), qmin, qmax)``.

    Integer only: the product ``acc * M0`` in int64 (it needs up to 62 bits), a rounding right
    shift by ``31 + shift``, the zero-point, then saturation at ``qmin``/``qmax``. The reference is
    gemmlowp's two-step rounding (:func:`qlearn.intops.requantize`).

    >>> requantize(np.array([-30000, 0, 1049, 1051, 30000], np.int32), 1374389535, 6, 128, 0, 255)
    array([  0, 128, 138, 139, 255], dtype=uint8)
    """
    return intops.requantize(acc, M0, shift, output_zero_point, qmin, qmax)


def _roundings(acc: np.ndarray, M0: int, shift: int) -> list[np.ndarray]:
    """``round(acc * M0 / 2**(31 + shift))`` the ways integer kernels and learners compute it."""
    a = acc.astype(np.int64)
    total = 31 + shift
    exact = a * M0  # |acc| < 2**31, M0 < 2**31: exact in int64
    floor = exact >> total
    rem = exact - (floor << total)  # in [0, 2**total)
    half = np.int64(1) << (total - 1)
    half_even = floor + ((rem > half) | ((rem == half) & (floor % 2 == 1)))
    return [
        intops.multiply_by_quantized_multiplier(a, M0, shift),  # gemmlowp: two roundings
        intops.multiply_by_quantized_multiplier(a, M0, shift, single_rounding=True),  # ties up
        half_even,  # exact, ties to even
        floor + (rem > half) + ((rem == half) & (a > 0)),  # exact, ties away from zero
        np.rint(a * (M0 * 2.0 ** -total)).astype(np.int64),  # float64
    ]


def _agreeing(acc: np.ndarray, M0: int, shift: int) -> np.ndarray:
    """``acc`` with every value on which the roundings of :func:`_roundings` disagree replaced by 0."""
    results = _roundings(acc, M0, shift)
    same = np.logical_and.reduce([r == results[0] for r in results[1:]])
    return np.where(same, acc, 0).astype(np.int32)


def _requantize_cases(rng: np.random.Generator) -> list[Case]:
    def case(name, acc, M, zp, qmin, qmax):
        M0, shift = intops.quantize_multiplier(M)
        return Case(name, (_agreeing(np.asarray(acc, np.int64), M0, shift), M0, shift, zp, qmin, qmax))

    M_layer = 0.0231 * 0.0042 / 0.0617
    return [
        case("random accumulators of a layer, uint8 output, zero_point 120",
             rng.integers(-60_000, 60_000, 40), M_layer, 120, 0, 255),
        case("random accumulators, int8 output [-128, 127], zero_point -5",
             rng.integers(-60_000, 60_000, (4, 10)), M_layer, -5, -128, 127),
        case("M = 0.0123 (shift 6), negative and positive values",
             rng.integers(-9_000, 9_000, 30), 0.0123, 128, 0, 255),
        case("acc * M = k + 0.75 or k + 0.25 (M = 2**-10): truncating the shift fails",
             np.array([3, 7, -3, -7, 50, -50, 1, -1]) * 1024 + np.array([768, 256] * 4), 2.0**-10, 0, -128, 127),
        case("saturation: accumulators far beyond the output range clamp at qmin and qmax",
             np.array([-2_000_000, -500_000, -70_000, 70_000, 500_000, 2_000_000]), M_layer, 128, 0, 255),
        case("saturation, int8 output: values beyond 127 must clamp, not wrap",
             np.array([-1_000_000, -200_000, 200_000, 1_000_000, 0, 10]), 0.001, 3, -128, 127),
        case("large int32 accumulators: acc * M0 needs 62 bits (an int32 product wraps)",
             rng.integers(-2**31 + 1, 2**31 - 1, 12), 3.1e-8, 10, 0, 255),
        case("M in [0.5, 1): shift 0", rng.integers(-200, 200, 16), 0.6137, 0, -128, 127),
        case("a tiny M (shift 20)", rng.integers(-2**30, 2**30, 16), 2.9e-7, 128, 0, 255),
        case("zero accumulators give the zero-point", np.zeros(8, np.int64), M_layer, 77, 0, 255),
        case("4-bit output codes [0, 15]", rng.integers(-5000, 5000, 16), 0.0011, 8, 0, 15),
    ]


def _requantize_wrong(rounding="half_up", total_offset=0, sign=1, clamp=True, zp_sign=1, int32_product=False,
                      clamp_before_zp=False, multiplier=True):
    def wrong(acc, M0, shift, output_zero_point, qmin, qmax):
        a = acc.astype(np.int32 if int32_product else np.int64)
        total = 31 + sign * shift + total_offset
        with np.errstate(over="ignore"):
            p = a * np.int32(M0) if int32_product else (a * M0 if multiplier else a << 31)
        p = p.astype(np.int64)
        if rounding == "floor":
            y = p >> total
        elif rounding == "trunc":
            y = np.where(p >= 0, p >> total, -((-p) >> total))
        else:
            y = (p + (np.int64(1) << (total - 1))) >> total
        if clamp_before_zp:
            return np.clip(y, qmin, qmax) + output_zero_point
        y = y + zp_sign * output_zero_point
        return np.clip(y, qmin, qmax) if clamp else y
    return wrong


register(Exercise(
    id="05.3",
    title="Requantize: fixed-point multiply, rounding shift, saturation",
    points=4,
    reference=requantize,
    cases=_requantize_cases,
    function="requantize",
    hint=("Compute in int64: p = acc.astype(np.int64) * M0 (an int32 product wraps). Round the right "
          "shift by total = 31 + shift: (p + (1 << (total - 1))) >> total (a plain >> floors). Add "
          "output_zero_point, then np.clip to [qmin, qmax], and only then cast (an unclipped uint8 cast "
          "wraps 300 to 44)."),
    notebook=NOTEBOOK,
    seed=503,
    forbidden=(
        "qlearn.intops.requantize", "qlearn.intops.multiply_by_quantized_multiplier",
        "qlearn.intops.saturating_rounding_doubling_high_mul", "qlearn.intops.rounding_divide_by_pot",
        "qlearn.intops.quantized_linear", "qlearn.intops.quantized_conv2d",
    ),
    wrong_answers={
        "truncates the shift (>> floors) instead of rounding": _requantize_wrong(rounding="floor"),
        "rounds toward zero instead of to nearest": _requantize_wrong(rounding="trunc"),
        "missing saturation (no clamp)": _requantize_wrong(clamp=False),
        "shift sign flipped: >> (31 - shift)": _requantize_wrong(sign=-1),
        "off by one: >> (30 + shift)": _requantize_wrong(total_offset=-1),
        "off by one: >> (32 + shift)": _requantize_wrong(total_offset=1),
        "zero-point subtracted": _requantize_wrong(zp_sign=-1),
        "zero-point forgotten": _requantize_wrong(zp_sign=0),
        "clamps before adding the zero-point": _requantize_wrong(clamp_before_zp=True),
        "multiplies in int32 (the product wraps)": _requantize_wrong(int32_product=True),
        "ignores M0 (shifts only)": _requantize_wrong(multiplier=False),
        "casts to uint8/int8 instead of clamping (wraps)": lambda acc, M0, shift, zp, qmin, qmax: (
            (intops.multiply_by_quantized_multiplier(acc, M0, shift) + zp).astype(code_dtype(qmin, qmax))),
        "returns the accumulator": lambda acc, M0, shift, zp, qmin, qmax: acc,
        "returns zeros": lambda acc, M0, shift, zp, qmin, qmax: np.zeros(np.shape(acc), np.int32),
    },
))
