"""Lab 05 (``05_integer_only_inference``): an int8 layer computed with integers only.

    05.1  int_matmul(a_q, b_q, a_zero_point, b_zero_point)   sum_k (a - z_a)(b - z_b), exact (int32)
    05.2  quantize_multiplier(M)                              M ~= M0 * 2**-(31 + shift), 2**30 <= M0 < 2**31
    05.3  requantize(acc, M0, shift, output_zero_point, qmin, qmax)
                                                              clamp(z + round(acc * M0 / 2**(31 + shift)))
    05.4  conv2d_int8(x_q, s_x, z_x, w_q, s_w, bias, s_y, z_y, stride, padding)
                                                              an int8 convolution, per-channel weights,
                                                              zero-point terms folded per channel (Jacob
                                                              et al. 2018, eq. 7-8)
    05.Q1-05.Q3                                               graded "predict, then run" questions

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
from qlearn.grading.compare import compare_values
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register

__all__ = ["conv2d_int8", "int_matmul", "quantize_multiplier", "requantize"]

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
    hint=("Integer types wrap around: work out what 3 - 128 is in uint8, and how large a sum of a few hundred "
          "products of 8-bit codes can grow. Which integer type holds every step?",
          "Convert both code arrays to a wide signed integer type first; only then subtract each zero-point. "
          "A 32-bit accumulator holds every sum the check builds, a 16-bit one does not.",
          "The result is one matrix product of the two widened, zero-point-free arrays, and it must come back "
          "as an integer array, not a float one."),
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
    hint=("Write M as a mantissa in [1/2, 1) times a power of two, as a float is stored; the mantissa becomes "
          "the integer M0 once it is scaled by 2 to the power 31, and the power of two becomes the shift.",
          "The standard library splits a float into that mantissa and exponent for you (the math module). The "
          "shift is a right shift, so it is positive for M < 1/2. Round the scaled mantissa to the nearest "
          "integer, do not truncate it.",
          "A mantissa just below 1 can round up to exactly 2 to the power 31, which no int32 holds: then "
          "halve M0 and shift one place less. Return two Python ints."),
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
    hint=("The value to round is the accumulator times M0, divided by a power of two: a product of two "
          "31-bit numbers. How many bits does that product need, and what does a right shift do with the "
          "fraction it drops?",
          "Form the product in a 64-bit integer type. A plain right shift rounds toward minus infinity (every "
          "output drops by half a code on average); add half of the divisor before shifting to round to "
          "nearest instead.",
          "Add the output zero-point, then saturate to [qmin, qmax] while the values are still wide integers; "
          "casting to uint8 before the clamp wraps 300 around to 44."),
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


# --- 05.4 -------------------------------------------------------------------------------------

#: A correct integer convolution may round ``acc * M`` once or twice, in fixed point or in float
#: (section 8): its codes differ from the reference by one on a few values that sit on a tie.
CONV_MIN_IDENTICAL = 0.99


def conv2d_int8(x_q: np.ndarray, s_x: float, z_x: int, w_q: np.ndarray, s_w: np.ndarray, bias: np.ndarray,
                s_y: float, z_y: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """An integer-only 2-D convolution with per-channel weights, as PyTorch's quantized ``Conv2d``.

    ``x_q`` is ``(N, C, H, W)`` uint8 activation codes ``(s_x, z_x)``; ``w_q`` is
    ``(C_out, C, kh, kw)`` int8 weight codes, symmetric (zero-point 0), one scale ``s_w[c]`` per
    output channel; ``bias`` is float32 ``(C_out,)``; ``(s_y, z_y)`` are the output's. The input is
    padded with the code of 0.0. Returns the uint8 output codes ``(N, C_out, H_out, W_out)``:
    Jacob et al. (2018), eq. 7-8 with ``z_w = 0``: the term ``z_x * sum(w_q[c])`` and the int32 bias
    ``round(bias / (s_x * s_w[c]))`` are folded into one int32 per channel before any input is
    seen, and the accumulator ``sum q_x * q_w`` is requantized with one fixed-point multiplier per
    channel, ``M_c = s_x * s_w[c] / s_y``, then saturated to ``[0, 255]``.

    >>> x_q = np.full((1, 1, 2, 2), 130, np.uint8)              # x = 0.1 * (130 - 128) = 0.2
    >>> w_q = np.full((1, 1, 2, 2), 25, np.int8)                # w = 0.01 * 25 = 0.25
    >>> conv2d_int8(x_q, 0.1, 128, w_q, np.array([0.01], np.float32), np.zeros(1, np.float32),
    ...             0.05, 128, padding=1)[0, 0]
    array([[129, 130, 129],
           [130, 132, 130],
           [129, 130, 129]], dtype=uint8)
    """
    s_w = np.asarray(s_w, np.float32).reshape(-1)
    bias_q = intops.quantize_bias(np.asarray(bias, np.float32), s_x, s_w)
    return intops.quantized_conv2d(x_q, s_x, z_x, w_q, s_w, 0, bias_q, s_y, z_y, 0, 255, stride=stride,
                                   padding=padding, single_rounding=True)


def _float_conv(x: np.ndarray, w: np.ndarray, bias: np.ndarray, stride: int, padding: int) -> np.ndarray:
    cols = intops.im2col(x.astype(np.float64), w.shape[2:], stride, padding)  # (N, C*kh*kw, L)
    y = np.einsum("ok,nkl->nol", w.reshape(len(w), -1).astype(np.float64), cols) + bias[:, None]
    h_out = (x.shape[2] + 2 * padding - w.shape[2]) // stride + 1
    return y.reshape(len(x), len(w), h_out, -1)


def _conv_case(rng: np.random.Generator, name: str, n: int, c_in: int, c_out: int, size: int, kernel: int,
               stride: int, padding: int, *, x_range=(-1.0, 3.0), channel_spread: float = 4.0,
               act_qmax: int = 127, out_squeeze: float = 1.0) -> Case:
    """A layer built from float tensors, quantized the way a calibration would (7-bit inputs)."""
    from qlearn.qparams import calc_qparams

    lo, hi = x_range
    x = rng.uniform(lo, hi, (n, c_in, size, size)).astype(np.float32)
    x[rng.random(x.shape) < 0.2] = 0.0  # exact zeros, as after a ReLU
    spread = np.exp(rng.uniform(0, np.log(channel_spread), c_out)).astype(np.float32)
    w = (rng.normal(0, 0.1, (c_out, c_in, kernel, kernel)) * spread[:, None, None, None]).astype(np.float32)
    bias = rng.normal(0, 0.3, c_out).astype(np.float32)
    s_x, z_x = calc_qparams(np.float32(min(x.min(), 0)), np.float32(max(x.max(), 0)), 0, act_qmax)
    s_w = (np.abs(w.reshape(c_out, -1)).max(axis=1) / np.float32(127.5)).astype(np.float32)
    x_q = np.clip(np.rint(x * (np.float32(1) / s_x)) + z_x, 0, act_qmax).astype(np.uint8)
    w_q = np.clip(np.rint(w * (np.float32(1) / s_w[:, None, None, None])), -128, 127).astype(np.int8)
    y = _float_conv(x, w, bias, stride, padding)
    lo_y, hi_y = np.quantile(y, [0.5 - out_squeeze / 2, 0.5 + out_squeeze / 2])
    s_y, z_y = calc_qparams(np.float32(min(lo_y, 0)), np.float32(max(hi_y, 0)), 0, 255)
    return Case(name, (x_q, float(s_x), int(z_x), w_q, s_w, bias, float(s_y), int(z_y), stride, padding))


def _conv_cases(rng: np.random.Generator) -> list[Case]:
    return [
        _conv_case(rng, "3x3, padding 1, inputs of both signs (z_x in the middle): pad with z_x", 2, 6, 8, 12, 3, 1, 1),
        _conv_case(rng, "3x3, stride 2, padding 1 (a downsampling block)", 3, 4, 8, 14, 3, 2, 1),
        _conv_case(rng, "1x1, stride 2, no padding (a shortcut)", 2, 8, 16, 10, 1, 2, 0),
        _conv_case(rng, "ReLU inputs, z_x = 0: zero padding agrees", 2, 5, 8, 12, 3, 1, 1, x_range=(0.0, 4.0)),
        _conv_case(rng, "negative-only inputs: z_x at the top of the range", 2, 4, 8, 12, 3, 1, 1,
                   x_range=(-3.0, -0.5)),
        _conv_case(rng, "per-channel scales 100x apart: one multiplier per channel", 2, 4, 12, 10, 3, 1, 1,
                   channel_spread=100.0),
        _conv_case(rng, "2x2 kernel, no padding", 2, 3, 8, 13, 2, 1, 0),
        _conv_case(rng, "outputs beyond the calibrated range saturate at 0 and 255", 2, 6, 8, 12, 3, 1, 1,
                   out_squeeze=0.5),
        _conv_case(rng, "8-bit inputs [0, 255]", 2, 6, 8, 12, 3, 1, 1, act_qmax=255),
        _conv_case(rng, "random layer", 2, int(rng.integers(2, 7)), int(rng.integers(4, 12)), 12, 3,
                   int(rng.integers(1, 3)), 1),
    ]


def _compare_conv(got, expected) -> str | None:
    problem = compare_values(got, expected) if np.shape(got) != np.shape(expected) else None
    if problem is not None:
        return problem
    from qlearn.grading.compare import plain_problem

    problem = plain_problem(got)
    if problem is not None:
        return problem
    got = np.asarray(got)
    if got.dtype.kind not in "iu":
        return f"expected integer output codes, got an array of {got.dtype}"
    diff = np.abs(got.astype(np.int64) - expected.astype(np.int64))
    if diff.max(initial=0) > 1:
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(diff)), diff.shape))
        return (f"{int(np.sum(diff > 1))} of {diff.size} codes are more than one code away from the expected ones; "
                f"the worst at index {index}: returned {int(got[index])}, expected {int(expected[index])}")
    identical = float(np.mean(diff == 0))
    if identical < CONV_MIN_IDENTICAL:
        index = tuple(int(i) for i in np.argwhere(diff)[0])
        return (f"only {identical:.1%} of the codes are identical (a correct rounding differs on a few ties, "
                f"well under 1%); the first difference at index {index}: returned {int(got[index])}, "
                f"expected {int(expected[index])}")
    return None


def _conv_wrong(pad_with_zero=False, no_zx=False, one_multiplier=False, floor=False, no_clamp=False,
                zx_sign=1, bias_scale_y=False, no_bias=False, flip=False, no_zy=False, window_sum=False):
    def wrong(x_q, s_x, z_x, w_q, s_w, bias, s_y, z_y, stride=1, padding=0):
        c_out, _, kh, kw = w_q.shape
        w = w_q[:, :, ::-1, ::-1] if flip else w_q
        w = w.reshape(c_out, -1).astype(np.int64)
        cols = intops.im2col(x_q.astype(np.int64), (kh, kw), stride, padding, pad_value=0 if pad_with_zero else z_x)
        acc = np.einsum("ok,nkl->nol", w, cols)
        if window_sum:
            acc = acc - z_x * cols.sum(axis=1, keepdims=True)
        elif not no_zx:
            acc = acc - zx_sign * z_x * w.sum(axis=1)[None, :, None]
        s_wc = np.full(c_out, s_w.max(), np.float32) if one_multiplier else np.asarray(s_w, np.float32)
        if not no_bias:
            scale = np.full(c_out, np.float32(s_y)) if bias_scale_y else np.float32(s_x) * s_wc
            acc = acc + np.rint(bias / scale).astype(np.int64)[None, :, None]
        M = s_x * s_wc.astype(np.float64) / s_y
        v = acc * M[None, :, None]
        y = np.floor(v) if floor else np.rint(v)
        y = y + (0 if no_zy else z_y)
        y = y.astype(np.int64).astype(np.uint8) if no_clamp else np.clip(y, 0, 255).astype(np.uint8)
        h_out = (x_q.shape[2] + 2 * padding - kh) // stride + 1
        return y.reshape(len(x_q), c_out, h_out, -1)
    return wrong


register(Exercise(
    id="05.4",
    title="An integer-only convolution with per-channel weights",
    points=5,
    reference=conv2d_int8,
    cases=_conv_cases,
    function="conv2d_int8",
    hint=("Write the real values as scale times (code minus zero-point) and expand the product of the "
          "sums: which of the four terms depend on the input, and which can you compute once per output "
          "channel before any image arrives?",
          "With symmetric weights only two terms remain: the sum of the products of the raw codes, and the "
          "input's zero-point times the sum of each filter's codes. Fold the second one, with the int32 bias "
          "(whose scale differs per channel), into one integer per channel; every output channel also has its "
          "own multiplier and shift.",
          "The windows that hang over the border read the padding: it holds the code of the real value 0. "
          "Widen the codes before multiplying, requantize with your fixed-point functions of 05.2 and 05.3 "
          "(they work element by element, so arrays of multipliers and shifts broadcast over the channels), "
          "and saturate before the cast to uint8."),
    notebook=NOTEBOOK,
    seed=504,
    forbidden=(
        "qlearn.intops.quantized_conv2d", "qlearn.intops.quantized_linear", "qlearn.intops.int_matmul",
        "qlearn.intops.requantize", "qlearn.intops.multiply_by_quantized_multiplier",
        "qlearn.intops.saturating_rounding_doubling_high_mul", "qlearn.intops.rounding_divide_by_pot",
    ),
    allowed=("qlearn.intops.im2col", "qlearn.intops.quantize_bias"),
    compare=_compare_conv,
    wrong_answers={
        "pads with code 0 instead of the zero-point z_x": _conv_wrong(pad_with_zero=True),
        "forgets the input zero-point term z_x * sum(w)": _conv_wrong(no_zx=True),
        "adds the zero-point term instead of subtracting it": _conv_wrong(zx_sign=-1),
        "subtracts z_x times the window's sum of input codes (the wrong cross term)": _conv_wrong(window_sum=True),
        "one multiplier for every channel (per-tensor requantization)": _conv_wrong(one_multiplier=True),
        "bias quantized with the output scale s_y": _conv_wrong(bias_scale_y=True),
        "forgets the bias": _conv_wrong(no_bias=True),
        "floors instead of rounding (a plain >> shift)": _conv_wrong(floor=True),
        "casts to uint8 without saturating (wraps)": _conv_wrong(no_clamp=True),
        "forgets the output zero-point": _conv_wrong(no_zy=True),
        "flips the kernel (a true convolution; PyTorch correlates)": _conv_wrong(flip=True),
    },
))


# --- 05.4's check, in words: why "within one code on under 1%" --------------------------------
# A correct convolution may round once or twice, in fixed point or float32 (section 8). On the
# check's layers (800 to 2400 outputs each) those roundings differ on about 0.1-0.4% of the codes, by
# one; every wrong answer above moves far more than 1% of them (tests/test_lab05.py proves both, on
# the visible seed and on other seeds).


# --- graded questions ("predict, then run") ------------------------------------------------------

register(Question(
    id="05.Q1",
    title="How many bits does the accumulator of a 3x3 convolution over 64 channels need?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_bits",
    choices=None,
    answer=26,
    explanation=("K = 576 products, each at most 255 * 128 = 32,640 in magnitude: the worst sum is "
                 "18,800,640, which needs 25 bits of magnitude and one more for the sign, 26 bits. An int16 "
                 "accumulator overflows after two products; int32 holds about 65,000 of them."),
    hint=("Count the products one output adds up, and bound the largest one: the largest uint8 code "
          "times the largest int8 magnitude.",
          "The magnitude of the worst sum needs as many bits as its binary length; a signed accumulator "
          "needs one bit more for the sign."),
))

register(Question(
    id="05.Q2",
    title="What does a plain right shift (a floor) do to the requantized outputs on average?",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_floor",
    choices={"a": "nothing on average: it errs both ways and the errors cancel",
             "b": "every output is half a code too low on average",
             "c": "every output is half a code too high on average",
             "d": "every output is one code too low"},
    answer="b",
    explanation=("A right shift drops the fraction, so it rounds toward minus infinity: the error lies in "
                 "(-1, 0] and, with fractions spread evenly, averages -1/2. That is a bias, not noise: the "
                 "next layer adds thousands of these outputs and the shift does not cancel."),
    hint=("Which way does a right shift round a negative number, and a positive one?",
          "The dropped fraction is always between 0 and 1, and always subtracted."),
))

register(Question(
    id="05.Q3",
    title="Padding with code 0 instead of the zero-point: which output codes can change?",
    points=1,
    notebook=NOTEBOOK,
    variable="q3_padding",
    choices={"a": "every output code",
             "b": "only the outputs whose window overlaps the padding (the border of each feature map)",
             "c": "none: padding holds zeros either way",
             "d": "only the outputs of the first channel"},
    answer="b",
    explanation=("Only a window that reaches into the padding reads it. There, code 0 stands for the real "
                 "value -z_x * s_x, a large negative input instead of 0.0, so most border outputs change; "
                 "inside, nothing does. With z_x = 0 (ReLU inputs) the two paddings are the same."),
    hint=("Which windows of a 3x3 convolution with padding 1 read a padded value at all?",
          "Dequantize code 0 with the input's scale and zero-point: is it the real value 0?"),
))
