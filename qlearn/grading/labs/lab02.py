"""Lab 02 (``02_affine_quantization``): quantize, dequantize, and choose scale and zero-point.

    02.1  quantize_tensor(x, scale, zero_point, qmin, qmax)   q = clamp(round(x / scale) + zp, qmin, qmax)
    02.2  fake_quantize_tensor(x, scale, zero_point, qmin, qmax)  (x_hat, clipped): the round trip, and
                                                             where the clamp changed the code
    02.3  compute_qparams(xmin, xmax, qmin, qmax)            asymmetric (scale, zero_point), like torch
    02.4  symmetric_qparams(xmin, xmax, qmin, qmax)          symmetric (scale, 0) for a signed range

**Division or reciprocal?** PyTorch's kernels (and ``qlearn.quantize``) compute
``rint(x * float32(1 / scale))``; the textbook writes ``round(x / scale)``. The two differ only when
``x / scale`` lands on an exact tie ``k + 1/2`` (or within one float32 rounding of it). The checks
accept both: every input of 02.1 is built so that ``x / scale`` and ``x * (1 / scale)``, in float32
and in float64, give the same codes (ties use power-of-two scales, where both are exact), and the
random ranges of 02.3 and 02.4 are kept only where a float64 computation rounded to float32 at
the end agrees with the float32 one. No wrong answer is accepted for it: every wrong answer below
is rejected on these inputs (``tests/test_lab02.py`` proves it).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qlearn.affine import dequantize, quantize
from qlearn.grading.compare import compare_values, tie_note
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register
from qlearn.qparams import EPS, calc_qparams
from qlearn.rounding import round_to_int

__all__ = ["compute_qparams", "fake_quantize_tensor", "quantize_pow2", "quantize_tensor", "symmetric_qparams"]

NOTEBOOK = "02_affine_quantization"
f32 = np.float32


# --- 02.1 -------------------------------------------------------------------------------------

def quantize_tensor(x: np.ndarray, scale, zero_point: int, qmin: int, qmax: int) -> np.ndarray:
    """Integer codes of ``x``: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    Rounding is half-to-even (``np.rint``, like ``torch.round``); the clamp happens on the rounded
    float value, and only then the cast, so nothing wraps around. The codes come back in an integer
    dtype that holds ``[qmin, qmax]``.

    >>> quantize_tensor(np.array([-1.0, 0.25, 0.75, 100.0], np.float32), np.float32(0.5), 0, -128, 127)
    array([ -2,   0,   2, 127], dtype=int8)
    """
    return quantize(x, scale, zero_point, qmin, qmax)


def _agreeing(x: np.ndarray, scale: np.float32) -> np.ndarray:
    """``x`` with every value whose code depends on how ``x / scale`` is computed replaced by 0.

    Four ways a learner may compute ``x / scale`` (float32 division, float32 reciprocal as in
    torch, and both in float64) round to the same integer everywhere else.
    """
    x64, s64 = x.astype(np.float64), np.float64(scale)
    ways = [x * (f32(1) / scale), x / scale, x64 / s64, x64 * (1.0 / s64)]
    codes = [np.rint(v) for v in ways]
    same = np.logical_and.reduce([c == codes[0] for c in codes[1:]])
    return np.where(same, x, f32(0)).astype(f32)


def _random_case(name: str, x: np.ndarray, qmin: int, qmax: int, symmetric: bool = False) -> Case:
    x = x.astype(f32)
    scale, zero_point = calc_qparams(x.min(), x.max(), qmin, qmax, symmetric=symmetric)
    return Case(name, (_agreeing(x, scale), scale, zero_point, qmin, qmax))


def _quantize_cases(rng: np.random.Generator) -> list[Case]:
    half = f32(0.5)
    ties = np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5], f32) * half  # x / scale = k + 1/2
    const = np.full(6, 0.7, f32)
    s_const, z_const = calc_qparams(const.min(), const.max(), 0, 255)
    zeros = np.zeros((2, 3), f32)
    s_zero, z_zero = calc_qparams(f32(0), f32(0), -128, 127)
    neg = rng.uniform(-3.0, -0.5, 10).astype(f32)
    pos = rng.uniform(0.5, 3.0, 10).astype(f32)
    s_neg, z_neg = calc_qparams(neg.min(), neg.max(), 0, 255)
    s_pos, z_pos = calc_qparams(pos.min(), pos.max(), -128, 127)
    return [
        _random_case("random normal values, int8 codes [-128, 127]", rng.normal(0, 1, 16), -128, 127),
        _random_case("random uniform values, uint8 codes [0, 255]", rng.uniform(-1, 3, 16), 0, 255),
        _random_case("random 2-D values, symmetric 4-bit codes [-8, 7]",
                     rng.normal(0, 0.1, (3, 5)), -8, 7, symmetric=True),
        Case("ties: x / scale = k + 1/2 rounds half-to-even (0.5 -> 0, 1.5 -> 2, 2.5 -> 2)",
             (ties, half, 0, -128, 127)),
        Case("ties with an odd zero_point 3: round first, then add the zero-point",
             (ties, half, 3, -128, 127)),
        Case("saturation: values far outside [qmin, qmax] clamp to the ends",
             (np.array([-1000.0, -200.0, -64.5, 63.5, 200.0, 1000.0], f32), half, 0, -128, 127)),
        Case("saturation, uint8: codes 200..300 must clamp to 255, not wrap",
             (np.array([-50.0, -1.0, 100.0, 127.5, 150.0, 50.0], f32), half, 0, 0, 255)),
        Case("codes exactly at qmin and qmax stay", (np.array([-8.0, 7.0, -8.0, 7.0], f32), f32(1.0), 0, -8, 7)),
        Case("a constant tensor (0.7 everywhere)", (const, s_const, z_const, 0, 255)),
        Case("an all-zero tensor: every code is the zero-point", (zeros, s_zero, z_zero, -128, 127)),
        Case("negative-only values, uint8: zero_point = 255", (neg, s_neg, z_neg, 0, 255)),
        Case("positive-only values, int8: zero_point = -128", (pos, s_pos, z_pos, -128, 127)),
    ]


def _codes(v, zero_point, qmin, qmax, dtype=np.int32):
    return np.clip(v + zero_point, qmin, qmax).astype(dtype)


def _inv(scale):
    return f32(1) / f32(scale)


def _explain_quantize(case: Case, got, expected) -> str | None:
    """When the first wrong code sits on a tie, show ``x / scale`` there (the feedback's note)."""
    x, scale = case.args[0], case.args[1]
    return tie_note(x, scale, got, expected, name="x")


_QUANTIZE_WRONG: dict[str, Callable] = {
    "rounds half away from zero": lambda x, s, zp, qmin, qmax: _codes(
        round_to_int(x * _inv(s), "half_away"), zp, qmin, qmax),
    "missing clamp": lambda x, s, zp, qmin, qmax: (np.rint(x * _inv(s)) + zp).astype(np.int32),
    "zero-point sign flipped: round(x / scale) - zero_point": lambda x, s, zp, qmin, qmax: _codes(
        np.rint(x * _inv(s)), -zp, qmin, qmax),
    "int8 cast before the clamp (wraps around)": lambda x, s, zp, qmin, qmax: np.clip(
        (np.rint(x * _inv(s)) + zp).astype(np.int32).astype(np.int8), qmin, qmax),
    "adds the zero-point before rounding": lambda x, s, zp, qmin, qmax: _codes(
        np.rint(x * _inv(s) + zp), 0, qmin, qmax),
    "truncates instead of rounding": lambda x, s, zp, qmin, qmax: _codes(np.trunc(x * _inv(s)), zp, qmin, qmax),
    "floor instead of round": lambda x, s, zp, qmin, qmax: _codes(np.floor(x * _inv(s)), zp, qmin, qmax),
    "multiplies by the scale": lambda x, s, zp, qmin, qmax: _codes(np.rint(x * s), zp, qmin, qmax),
    "off by one: clamps to qmax - 1": lambda x, s, zp, qmin, qmax: _codes(np.rint(x * _inv(s)), zp, qmin, qmax - 1),
    "returns float codes (no cast)": lambda x, s, zp, qmin, qmax: np.clip(np.rint(x * _inv(s)) + zp, qmin, qmax),
    "returns the input unchanged": lambda x, s, zp, qmin, qmax: x,
    "returns zeros": lambda x, s, zp, qmin, qmax: np.zeros(np.shape(x), np.int32),
}

register(Exercise(
    id="02.1",
    title="Quantize a tensor",
    points=3,
    reference=quantize_tensor,
    cases=_quantize_cases,
    function="quantize_tensor",
    hint=(
        "Follow the formula from the inside out: scale, round, shift by the zero-point, clamp. The order "
        "of the last three matters: the zero-point is an integer added to an integer, and the clamp must "
        "see every value before anything can wrap around.",
        "Rounding is half-to-even, as in torch and as numpy's rint does. Clamp while the values are still "
        "floats, and cast last, to an integer type wide enough for every code of [qmin, qmax].",
        "An int8 cannot hold 200: a cast before the clamp turns it into -56, and the clamp never sees it.",
    ),
    notebook=NOTEBOOK,
    seed=201,
    forbidden=(
        "qlearn.affine.quantize", "qlearn.affine.fake_quantize", "qlearn.group.quantize_per_group",
        "qlearn.group.fake_quantize_per_group", "qlearn.affine._codes", "qlearn.affine._per_tensor_blocked",
        "torch.quantize_per_tensor",
        "torch.quantize_per_channel", "torch.fake_quantize_per_tensor_affine",
        "torch.fake_quantize_per_channel_affine",
    ),
    allowed=("qlearn.qparams.qrange", "qlearn.affine.code_dtype",),
    wrong_answers=_QUANTIZE_WRONG,
    explain=_explain_quantize,
))


# --- 02.2 -------------------------------------------------------------------------------------

def fake_quantize_tensor(x: np.ndarray, scale, zero_point: int, qmin: int, qmax: int):
    """The round trip of ``x`` through the codes, and where the clamp acted: ``(x_hat, clipped)``.

    ``x_hat`` (float32, the shape of ``x``) is what the codes of :func:`quantize_tensor` stand for,
    ``(q - zero_point) * scale``. ``clipped`` (bool, the shape of ``x``) is True exactly where the clamp
    changed the code: where ``round(x / scale) + zero_point`` lies outside ``[qmin, qmax]``. A value a
    little beyond the end of the grid that still rounds to the end code is not clipped.

    >>> x = np.array([-1.0, 0.3, 63.7, 63.8, 100.0], np.float32)
    >>> x_hat, clipped = fake_quantize_tensor(x, np.float32(0.5), 0, -128, 127)
    >>> x_hat.tolist(), clipped.tolist()
    ([-1.0, 0.5, 63.5, 63.5, 63.5], [False, False, False, True, True])
    """
    codes = np.rint(np.asarray(x, np.float32) * (f32(1) / f32(scale))) + zero_point
    q = quantize(x, scale, zero_point, qmin, qmax)
    return dequantize(q, scale, zero_point), (codes < qmin) | (codes > qmax)


def _compare_float32(got, expected) -> str | None:
    """Equal as float32: a float64 result that rounds to the expected float32 values passes.

    ``(q - zp) * scale`` with an int32 ``q - zp`` and a float32 ``scale`` is float64 in numpy (the
    exact product); rounded to float32 it is exactly what float32 arithmetic gives.
    """
    if isinstance(got, np.ndarray) and got.dtype.kind == "f" and got.shape == expected.shape:
        with np.errstate(over="ignore"):
            got = got.astype(f32)
    return compare_values(got, expected)


def _compare_round_trip(got, expected) -> str | None:
    """``got`` must be the pair ``(x_hat, clipped)``: float32-equal values and the exact bool mask."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        what = f"{len(got)} items" if isinstance(got, (tuple, list)) else f"{type(got).__name__}"
        return f"expected a pair (x_hat, clipped), got {what}"
    reason = _compare_float32(got[0], expected[0])
    if reason is not None:
        return f"x_hat: {reason}"
    reason = compare_values(got[1], expected[1], strict_dtype=True)
    return None if reason is None else f"clipped: {reason}"


def _round_trip_cases(rng: np.random.Generator) -> list[Case]:
    half = f32(0.5)
    edge = np.array([63.3, 63.5, 63.75, 64.0, -64.2, -64.25, -64.5, -64.75], f32)  # around both ends of the grid
    return _quantize_cases(rng) + [
        Case("just past the grid's ends: 63.75 / 0.5 = 127.5 is a tie that rounds to 128 (clipped), "
             "-64.25 rounds to -128 (not clipped)", (edge, half, 0, -128, 127)),
        Case("uint8 with zero_point 128: the ends of the grid are -64 and 63.5",
             (np.array([-64.5, -64.0, 0.0, 63.5, 63.9, 64.0], f32), half, 128, 0, 255)),
    ]


def _round_trip(codes_of, clipped_of=None, x_hat_of=None):
    """A fake_quantize_tensor built from pieces, one of which may be wrong."""
    def wrong(x, s, zp, qmin, qmax):
        v = codes_of(x, s, zp)
        q = np.clip(v, qmin, qmax)
        x_hat = ((q - zp) * s).astype(f32) if x_hat_of is None else x_hat_of(x, v, q, s, zp)
        clipped = (v < qmin) | (v > qmax) if clipped_of is None else clipped_of(x, v, q, s, zp, qmin, qmax)
        return x_hat, clipped
    return wrong


def _codes_even(x, s, zp):
    return np.rint(x * _inv(s)) + zp


def _codes_away(x, s, zp):
    return round_to_int(x * _inv(s), "half_away") + zp


register(Exercise(
    id="02.2",
    title="Fake-quantize, and find what the clamp clipped",
    points=2,
    reference=fake_quantize_tensor,
    cases=_round_trip_cases,
    function="fake_quantize_tensor",
    hint=(
        "A round trip goes from real values to codes and back. Whether a value was clipped is decided "
        "on its code before the clamp, not on the code after it, and not on the real value.",
        "A value a little past the end of the grid can still round to the end code: that is rounding, "
        "not clipping. Compare the unclamped code with the code range.",
        "Dequantize from the clamped codes with the zero-point taken off first, and return float32 "
        "values and a boolean mask, both with the shape of x.",
    ),
    notebook=NOTEBOOK,
    seed=202,
    forbidden=(
        "qlearn.affine.quantize", "qlearn.affine.dequantize", "qlearn.affine.fake_quantize",
        "qlearn.group.quantize_per_group", "qlearn.group.dequantize_per_group",
        "qlearn.group.fake_quantize_per_group", "qlearn.affine._codes", "qlearn.affine._per_tensor_blocked",
        "torch.quantize_per_tensor", "torch.fake_quantize_per_tensor_affine", "torch.dequantize",
        "torch.Tensor.dequantize",
    ),
    allowed=("qlearn.qparams.qrange", "qlearn.affine.code_dtype",),
    compare=_compare_round_trip,
    wrong_answers={
        "clipped where the code sits at qmin or qmax": _round_trip(
            _codes_even, clipped_of=lambda x, v, q, s, zp, qmin, qmax: (q == qmin) | (q == qmax)),
        "clipped where x lies beyond the grid's real ends": _round_trip(
            _codes_even, clipped_of=lambda x, v, q, s, zp, qmin, qmax: (x < (qmin - zp) * s) | (x > (qmax - zp) * s)),
        "no values ever clipped": _round_trip(
            _codes_even, clipped_of=lambda x, v, q, s, zp, qmin, qmax: np.zeros(np.shape(x), bool)),
        "x_hat from the unclamped codes": _round_trip(
            _codes_even, x_hat_of=lambda x, v, q, s, zp: ((v - zp) * s).astype(f32)),
        "x_hat forgets the zero-point": _round_trip(
            _codes_even, x_hat_of=lambda x, v, q, s, zp: (q * s).astype(f32)),
        "returns the codes instead of x_hat": _round_trip(
            _codes_even, x_hat_of=lambda x, v, q, s, zp: q.astype(np.int32)),
        "rounds half away from zero": _round_trip(_codes_away),
        "clipped as 0/1 integers, not booleans": _round_trip(
            _codes_even, clipped_of=lambda x, v, q, s, zp, qmin, qmax: ((v < qmin) | (v > qmax)).astype(np.int32)),
        "returns x unchanged": lambda x, s, zp, qmin, qmax: (x, np.zeros(np.shape(x), bool)),
    },
))


# --- 02.3 -------------------------------------------------------------------------------------

def compute_qparams(xmin, xmax, qmin: int, qmax: int) -> tuple[np.float32, int]:
    """Asymmetric ``(scale, zero_point)`` for the range ``[xmin, xmax]`` (torch's MinMaxObserver).

    In float32, with the range widened to contain 0: ``lo = min(xmin, 0)``, ``hi = max(xmax, 0)``,
    ``scale = max((hi - lo) / (qmax - qmin), eps)`` (``eps`` = float32 machine epsilon) and
    ``zero_point = clamp(qmin - round(lo / scale), qmin, qmax)``, rounded half-to-even.

    >>> compute_qparams(np.float32(-1.0), np.float32(3.0), 0, 255)
    (np.float32(0.015686275), 64)
    """
    return calc_qparams(xmin, xmax, qmin, qmax)


def _textbook64_qparams(xmin, xmax, qmin, qmax, symmetric=False):
    """The same formulas in float64, rounded to float32 at the end (a correct solution too)."""
    lo, hi = min(float(xmin), 0.0), max(float(xmax), 0.0)
    if symmetric:
        scale = max(max(-lo, hi) / ((qmax - qmin) / 2), float(EPS))
        return f32(scale), 0
    scale = max((hi - lo) / (qmax - qmin), float(EPS))
    zero_point = int(np.clip(qmin - round(lo / scale), qmin, qmax))
    return f32(scale), zero_point


def _random_ranges(rng: np.random.Generator, n: int, qmin: int, qmax: int, symmetric: bool,
                   low: float, high: float) -> list[tuple[np.float32, np.float32]]:
    """``n`` random ranges on which float32 and float64 computations give the same answer."""
    found = []
    while len(found) < n:
        a, b = np.sort(rng.uniform(low, high, 2)).astype(f32)
        if calc_qparams(a, b, qmin, qmax, symmetric=symmetric) == _textbook64_qparams(a, b, qmin, qmax, symmetric):
            found.append((a, b))
    return found


def _compare_qparams(got, expected) -> str | None:
    """``got`` must be a pair: a scale equal to the float32 scale, and an integer zero-point."""
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        what = f"{len(got)} items" if isinstance(got, (tuple, list)) else f"{type(got).__name__}"
        return f"expected a pair (scale, zero_point), got {what}"
    scale, zero_point = got
    exp_scale, exp_zero_point = expected
    if isinstance(scale, np.ndarray) and scale.ndim == 0:
        scale = scale[()]
    try:
        as32 = float(f32(scale))
    except (TypeError, ValueError):
        as32 = None
    reason = compare_values(scale, exp_scale)
    if reason is not None:
        if as32 == float(exp_scale):
            return (f"the scale {float(scale)!r} is right but is not a float32 number: compute in float32 "
                    f"or return np.float32(scale) ({float(exp_scale)!r})")
        return f"scale: {reason}"
    if isinstance(zero_point, (float, np.floating)):
        return f"the zero-point must be an integer, got the float {zero_point!r}: use int(...)"
    reason = compare_values(zero_point, exp_zero_point)
    return None if reason is None else f"zero_point: {reason}"


def _qparams_cases(rng: np.random.Generator) -> list[Case]:
    def case(name, xmin, xmax, qmin, qmax):
        return Case(name, (f32(xmin), f32(xmax), qmin, qmax))

    r8 = _random_ranges(rng, 2, -128, 127, False, -4.0, 4.0)
    ru8 = _random_ranges(rng, 2, 0, 255, False, -2.0, 6.0)
    r4 = _random_ranges(rng, 1, 0, 15, False, -1.0, 1.0)
    return [
        case("random range, int8 codes", *r8[0], -128, 127),
        case("random range, int8 codes (2)", *r8[1], -128, 127),
        case("random range, uint8 codes", *ru8[0], 0, 255),
        case("random range, uint8 codes (2)", *ru8[1], 0, 255),
        case("random range, 4-bit codes [0, 15]", *r4[0], 0, 15),
        case("positive-only range [0.5, 3]: widen it to [0, 3]", 0.5, 3.0, 0, 255),
        case("positive-only range, int8: zero_point = qmin", 0.25, 6.0, -128, 127),
        case("negative-only range [-3, -0.5]: widen it to [-3, 0]", -3.0, -0.5, 0, 255),
        case("negative-only range, int8: zero_point = qmax", -5.0, -1.0, -128, 127),
        case("a constant tensor (xmin == xmax == 2)", 2.0, 2.0, 0, 255),
        case("a constant negative tensor (xmin == xmax == -1.5)", -1.5, -1.5, -128, 127),
        case("an all-zero tensor: the eps floor keeps scale > 0", 0.0, 0.0, -128, 127),
        case("a tiny range: scale floored at eps, zero_point not at qmin", -1e-6, 1e-8, -128, 127),
        case("lo / scale = -126.5 exactly: round half-to-even", -126.5, 128.5, 0, 255),
        case("lo / scale = -2.5 exactly, 4-bit: round half-to-even", -2.5, 12.5, 0, 15),
        case("1-bit codes [0, 1]", -0.8, 2.6, 0, 1),
        case("a wide range [-1000, 3000]", -1000.0, 3000.0, -128, 127),
    ]


def _asym_wrong(widen=True, eps=True, steps=lambda qmin, qmax: qmax - qmin, rnd=np.rint,
                sign=1, to_int=int, float64=False):
    def wrong(xmin, xmax, qmin, qmax):
        lo, hi = (min(xmin, f32(0)), max(xmax, f32(0))) if widen else (xmin, xmax)
        if float64:
            lo, hi = float(lo), float(hi)
        scale = (hi - lo) / steps(qmin, qmax)
        if eps:
            scale = max(scale, EPS)
        with np.errstate(divide="ignore", invalid="ignore"):
            zero_point = qmin - sign * rnd(lo / scale)
        return scale, to_int(np.clip(zero_point, qmin, qmax))
    return wrong


def _half_away(v):
    return round_to_int(np.asarray(v, dtype=f32), "half_away")[()]


#: What chooses a scale and zero-point for 02.3 and 02.4: the library's chooser and observers, torch's.
_QPARAMS_FORBIDDEN = (
    "qlearn.qparams.calc_qparams", "qlearn.qparams._minmax_qparams", "qlearn.group._group_qparams",
    "qlearn.observers.MinMaxObserver", "qlearn.observers.MovingAverageMinMaxObserver",
    "torch.ao.quantization.observer.MinMaxObserver",
    "torch.ao.quantization.observer.MovingAverageMinMaxObserver",
    "torch.ao.quantization.observer.PerChannelMinMaxObserver",
    "torch.ao.quantization.observer.MovingAveragePerChannelMinMaxObserver",
    "torch.ao.quantization.observer.UniformQuantizationObserverBase", "torch._choose_qparams_per_tensor",
)

register(Exercise(
    id="02.3",
    title="Choose scale and zero-point (asymmetric)",
    points=3,
    reference=compute_qparams,
    cases=_qparams_cases,
    function="compute_qparams",
    hint=(
        "Three rules make the grid safe: the range always contains 0, the scale never drops to 0, and the "
        "zero-point is a whole code inside [qmin, qmax]. Section 6's traps show what each rule prevents.",
        "The scale spreads the widened range over the qmax - qmin steps, with float32's machine epsilon as "
        "its floor. The zero-point is the code that the low end of the range must move to qmin: round it "
        "half-to-even, then clamp it.",
        "Compute in float32 (xmin and xmax arrive as float32 numbers), or compute in float64 and return "
        "the scale as a float32 number; return the zero-point as a Python int.",
    ),
    notebook=NOTEBOOK,
    seed=203,
    forbidden=_QPARAMS_FORBIDDEN,
    allowed=("qlearn.qparams.EPS",),
    compare=_compare_qparams,
    wrong_answers={
        "range not widened to contain 0": _asym_wrong(widen=False),
        "no eps floor on the scale": _asym_wrong(eps=False),
        "off by one: (hi - lo) / (qmax - qmin + 1)": _asym_wrong(steps=lambda qmin, qmax: qmax - qmin + 1),
        "zero-point rounded half away from zero": _asym_wrong(rnd=_half_away),
        "zero-point sign flipped: qmin + round(lo / scale)": _asym_wrong(sign=-1),
        "zero-point truncated with int() instead of rounded": _asym_wrong(rnd=np.trunc),
        "zero-point returned as a float": _asym_wrong(to_int=float),
        "scale computed in float64, not rounded to float32": _asym_wrong(float64=True),
        "returns the range unchanged": lambda xmin, xmax, qmin, qmax: (xmin, xmax),
        "returns zeros": lambda xmin, xmax, qmin, qmax: (f32(0), 0),
    },
))


# --- 02.4 -------------------------------------------------------------------------------------

def symmetric_qparams(xmin, xmax, qmin: int, qmax: int) -> tuple[np.float32, int]:
    """Symmetric ``(scale, 0)`` for a signed code range ``[qmin, qmax]`` (torch's ``qint8`` observers).

    In float32: ``m = max(-min(xmin, 0), max(xmax, 0))`` (the largest magnitude),
    ``scale = max(m / ((qmax - qmin) / 2), eps)`` and ``zero_point = 0``: the range ``[-m, m]`` is
    spread over the ``qmax - qmin`` steps of the code range, and 0 maps to code 0.

    >>> symmetric_qparams(np.float32(-1.0), np.float32(0.5), -127, 127)
    (np.float32(0.007874016), 0)
    """
    if qmin >= 0:
        raise ValueError(f"symmetric_qparams needs a signed code range (qmin < 0), got qmin={qmin}")
    return calc_qparams(xmin, xmax, qmin, qmax, symmetric=True)


def _symmetric_cases(rng: np.random.Generator) -> list[Case]:
    def case(name, xmin, xmax, qmin, qmax):
        return Case(name, (f32(xmin), f32(xmax), qmin, qmax))

    r8 = _random_ranges(rng, 2, -128, 127, True, -3.0, 3.0)
    rn = _random_ranges(rng, 1, -127, 127, True, -1.0, 2.0)
    r4 = _random_ranges(rng, 1, -8, 7, True, -0.5, 0.5)
    return [
        case("random range, int8 codes [-128, 127]: m / 127.5", *r8[0], -128, 127),
        case("random range, int8 codes (2)", *r8[1], -128, 127),
        case("random range, narrow int8 codes [-127, 127]: m / 127", *rn[0], -127, 127),
        case("random range, 4-bit codes [-8, 7]: m / 7.5", *r4[0], -8, 7),
        case("narrow 4-bit codes [-7, 7]", -0.3, 0.9, -7, 7),
        case("2-bit codes [-2, 1]", -1.2, 0.6, -2, 1),
        case("the negative side is larger: m = |xmin|", -5.0, 1.0, -128, 127),
        case("the positive side is larger: m = xmax", -0.5, 4.0, -128, 127),
        case("positive-only range [0.5, 3]", 0.5, 3.0, -128, 127),
        case("negative-only range [-3, -0.5]", -3.0, -0.5, -128, 127),
        case("a constant tensor (xmin == xmax == -2)", -2.0, -2.0, -128, 127),
        case("an all-zero tensor: the eps floor keeps scale > 0", 0.0, 0.0, -128, 127),
        case("a tiny range: scale floored at eps", -1e-6, 1e-6, -128, 127),
    ]


def _sym_wrong(magnitude=None, steps=lambda qmin, qmax: (qmax - qmin) / 2, eps=True, zp=None, float64=False):
    def wrong(xmin, xmax, qmin, qmax):
        lo, hi = min(xmin, f32(0)), max(xmax, f32(0))
        if float64:
            lo, hi = float(lo), float(hi)
        m = max(-lo, hi) if magnitude is None else magnitude(lo, hi)
        scale = m / steps(qmin, qmax)
        if eps:
            scale = max(scale, EPS)
        return scale, (0 if zp is None else zp(lo, scale, qmin))
    return wrong


register(Exercise(
    id="02.4",
    title="Choose the scale of a symmetric quantizer",
    points=2,
    reference=symmetric_qparams,
    cases=_symmetric_cases,
    function="symmetric_qparams",
    hint=(
        "A symmetric grid is centred on 0, so only the largest magnitude on either side of 0 matters, "
        "and the zero-point is fixed.",
        "Spread [-m, m] over all qmax - qmin steps of the code range (half of them on each side of 0), "
        "with the same epsilon floor as in 02.3, in float32.",
    ),
    notebook=NOTEBOOK,
    seed=204,
    forbidden=_QPARAMS_FORBIDDEN,
    allowed=("qlearn.qparams.EPS",),
    compare=_compare_qparams,
    wrong_answers={
        "divides by qmax (the narrow-range formula) on every range": _sym_wrong(steps=lambda qmin, qmax: qmax),
        "divides by -qmin = 2**(bits - 1)": _sym_wrong(steps=lambda qmin, qmax: -qmin),
        "uses xmax only": _sym_wrong(magnitude=lambda lo, hi: hi),
        "asymmetric width: (hi - lo) / (qmax - qmin)": _sym_wrong(
            magnitude=lambda lo, hi: hi - lo, steps=lambda qmin, qmax: qmax - qmin),
        "no eps floor on the scale": _sym_wrong(eps=False),
        "asymmetric zero-point: qmin - round(lo / scale)": _sym_wrong(
            zp=lambda lo, scale, qmin: int(qmin - np.rint(lo / scale))),
        "zero-point qmin instead of 0": _sym_wrong(zp=lambda lo, scale, qmin: qmin),
        "scale computed in float64, not rounded to float32": _sym_wrong(float64=True),
        "returns zeros": lambda xmin, xmax, qmin, qmax: (f32(0), 0),
    },
))


# --- 02.5 -------------------------------------------------------------------------------------

def quantize_pow2(x: np.ndarray, qmin: int, qmax: int):
    """Quantize ``x`` with a power-of-two scale, from its range to its codes: ``(q, scale, zero_point)``.

    The scheme of fixed-point hardware, where multiplying by the scale is a bit shift: the range of
    ``x`` is widened to contain 0, as in 02.3; ``scale`` is the **smallest power of two** that is at
    least ``(hi - lo) / (qmax - qmin)`` and at least float32's machine epsilon, so the grid never is
    finer than 02.3's; ``zero_point`` is the integer code of 0, rounded half-to-even and clamped into
    ``[qmin, qmax]``; the codes are those of 02.1 with this scale and zero-point. ``scale`` is a float32
    number, ``zero_point`` a Python int, ``q`` an integer array with the shape of ``x``.

    >>> q, scale, zero_point = quantize_pow2(np.array([-1.0, 0.3, 2.0], np.float32), 0, 255)
    >>> q.tolist(), scale, zero_point
    ([0, 83, 192], np.float32(0.015625), 64)
    """
    x = np.asarray(x, f32)
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    step = max((hi - lo) / (qmax - qmin), float(EPS))
    mantissa, exponent = np.frexp(step)  # step = mantissa * 2**exponent, 0.5 <= mantissa < 1
    scale = f32(2.0 ** (int(exponent) - 1 if mantissa == 0.5 else int(exponent)))  # the power of two at or above
    zero_point = int(np.clip(qmin - np.rint(lo / float(scale)), qmin, qmax))
    return quantize(x, scale, zero_point, qmin, qmax), scale, zero_point


def _pow2_exponents(x: np.ndarray, qmin: int, qmax: int) -> set[int]:
    """The exponents a learner may compute: the step in float32 or float64, log2 in float32 or float64."""
    lo32, hi32 = min(x.min(), f32(0)), max(x.max(), f32(0))
    step32 = max((hi32 - lo32) / f32(qmax - qmin), EPS)
    step64 = max((float(hi32) - float(lo32)) / (qmax - qmin), float(EPS))
    return {int(np.ceil(np.log2(step32))), int(np.ceil(np.log2(np.float64(step32)))),
            int(np.ceil(np.log2(step64))), int(np.ceil(np.log2(f32(step64))))}


def _pow2_tensor(rng: np.random.Generator, draw, qmin: int, qmax: int) -> np.ndarray:
    """A tensor from ``draw`` whose scale does not depend on how the exponent is computed."""
    while True:
        x = np.asarray(draw(rng), f32)
        if len(_pow2_exponents(x, qmin, qmax)) == 1:
            return x


def _pow2_cases(rng: np.random.Generator) -> list[Case]:
    def normal(scale, shape):
        return lambda g: g.normal(0.0, scale, shape)

    exact = np.array([-1.0, 0.25, 0.875], f32)          # (hi - lo) / 15 = 0.125 exactly: scale 0.125
    return [
        Case("random weights, int8 codes [-128, 127]", (_pow2_tensor(rng, normal(0.05, 64), -128, 127), -128, 127)),
        Case("random values, uint8 codes [0, 255]", (_pow2_tensor(rng, lambda g: g.uniform(-1, 3, 50), 0, 255), 0, 255)),
        Case("random 2-D values, 4-bit codes [-8, 7]", (_pow2_tensor(rng, normal(1.0, (4, 6)), -8, 7), -8, 7)),
        Case("ReLU outputs (>= 0), uint8: zero_point 0",
             (_pow2_tensor(rng, lambda g: np.maximum(g.normal(0.2, 1.0, 40), 0), 0, 255), 0, 255)),
        Case("negative-only values, uint8: the range is widened to contain 0",
             (_pow2_tensor(rng, lambda g: g.uniform(-3.0, -0.5, 20), 0, 255), 0, 255)),
        Case("the step is exactly a power of two (0.125): that power itself, not the next", (exact, 0, 15)),
        Case("a step just above a power of two: the next power", (np.array([-1.0, 0.9], f32), 0, 15)),
        Case("a constant tensor (0.7 everywhere)", (np.full(5, 0.7, f32), 0, 255)),
        Case("an all-zero tensor: the epsilon floor, scale 2**-23", (np.zeros((2, 3), f32), -128, 127)),
        Case("values of 1000 and more: scales above 1", (np.array([-1500.0, 3.0, 2500.0], f32), -128, 127)),
        Case("lo / scale = -2.5 exactly: the zero-point is rounded half-to-even",
             (np.array([-0.625, 3.0], f32), 0, 15)),
        Case("the zero-point's rounding pushes the largest value to code 16: the clamp keeps it at 15",
             (np.array([-0.4375, 0.5, 1.4375], f32), 0, 15)),
    ]


def _compare_pow2(got, expected) -> str | None:
    """``got`` must be ``(q, scale, zero_point)``: the codes, the float32 power-of-two scale, an int."""
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        what = f"{len(got)} items" if isinstance(got, (tuple, list)) else f"{type(got).__name__}"
        return f"expected a triple (q, scale, zero_point), got {what}"
    q, scale, zero_point = got
    reason = compare_values(scale, expected[1])
    if reason is not None:
        return f"scale: {reason}"
    if isinstance(zero_point, (float, np.floating)):
        return f"the zero-point must be an integer, got the float {zero_point!r}: use int(...)"
    reason = compare_values(zero_point, expected[2])
    if reason is not None:
        return f"zero_point: {reason}"
    reason = compare_values(q, expected[0])
    return None if reason is None else f"q: {reason}"


def _pow2_wrong(scale_of=None, zp_sign=1, widen=True, clamp=True, rnd=np.rint, eps=True):
    def wrong(x, qmin, qmax):
        x = np.asarray(x, f32)
        lo, hi = (min(float(x.min()), 0.0), max(float(x.max()), 0.0)) if widen else (float(x.min()), float(x.max()))
        step = (hi - lo) / (qmax - qmin)
        if eps:
            step = max(step, float(EPS))
        with np.errstate(divide="ignore"):
            scale = f32(2.0 ** np.ceil(np.log2(step))) if scale_of is None else f32(scale_of(step))
        zero_point = int(np.clip(qmin - zp_sign * rnd(lo / float(scale)), qmin, qmax))
        v = np.rint(x / scale) + zero_point
        q = (np.clip(v, qmin, qmax) if clamp else v).astype(np.int32)
        return q, scale, zero_point
    return wrong


register(Exercise(
    id="02.5",
    title="A new scheme from range to codes: power-of-two scales",
    points=3,
    reference=quantize_pow2,
    cases=_pow2_cases,
    function="quantize_pow2",
    hint=(
        "This is the whole pipeline of this lab with one rule changed: observe the range, choose the scale "
        "and the zero-point, then compute the codes. Only the scale is new: round 02.3's step up to a power "
        "of two, so that the grid is never finer than the range needs.",
        "The smallest power of two at or above a positive number comes from its base-2 logarithm, rounded "
        "up. A step that is already a power of two stays as it is. The epsilon floor comes before the "
        "rounding up, so an all-zero tensor gets 2 to the power -23.",
        "With the new scale, the zero-point and the codes follow the rules of 02.3 and 02.1 unchanged: "
        "round half-to-even, clamp, return an int zero-point and a float32 scale.",
    ),
    notebook=NOTEBOOK,
    seed=205,
    forbidden=_QPARAMS_FORBIDDEN + (
        "qlearn.affine.quantize", "qlearn.affine.fake_quantize", "qlearn.affine._codes",
        "qlearn.affine._per_tensor_blocked", "qlearn.group.quantize_per_group",
        "torch.quantize_per_tensor", "torch.fake_quantize_per_tensor_affine",
    ),
    allowed=("qlearn.qparams.EPS", "qlearn.qparams.qrange"),
    compare=_compare_pow2,
    wrong_answers={
        "rounds the step to the nearest power of two (can clip)": _pow2_wrong(
            scale_of=lambda step: 2.0 ** np.rint(np.log2(step))),
        "rounds the step down to a power of two": _pow2_wrong(scale_of=lambda step: 2.0 ** np.floor(np.log2(step))),
        "always the next power of two, even when the step is one": _pow2_wrong(
            scale_of=lambda step: 2.0 ** (np.floor(np.log2(step)) + 1)),
        "keeps 02.3's scale (not a power of two)": _pow2_wrong(scale_of=lambda step: step),
        "range not widened to contain 0": _pow2_wrong(widen=False),
        "zero-point sign flipped": _pow2_wrong(zp_sign=-1),
        "zero-point rounded half away from zero": _pow2_wrong(rnd=_half_away),
        "missing clamp on the codes": _pow2_wrong(clamp=False),
        "no epsilon floor (an all-zero tensor breaks)": _pow2_wrong(eps=False),
    },
))


# --- questions: predict, then run --------------------------------------------------------------

register(Question(
    id="02.Q1",
    title="The code of x = 0.625 with scale 0.25, zero-point 3 and codes 0..7",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_answer",
    answer=5,
    explanation=("0.625 / 0.25 = 2.5 is an exact tie. Half-to-even rounds it to 2, the even neighbour "
                 "(half away from zero would give 3); then the zero-point shifts it to 2 + 3 = 5, inside [0, 7]."),
    hint=("Divide by the scale first, then round, then add the zero-point, then clamp.",
          "2.5 lies exactly between two integers: which way does half-to-even go?"),
))

register(Question(
    id="02.Q2",
    title="How much SQNR can a power-of-two scale cost?",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_answer",
    choices={"a": "nothing: the codes are the same", "b": "up to about 3 dB", "c": "up to about 6 dB",
             "d": "up to about 12 dB"},
    answer="c",
    explanation=("The power-of-two scale is r times the scale of 02.3, with 1 <= r < 2. The rounding noise "
                 "power grows with the square of the step, r**2 < 4, so the SQNR drops by 20 log10(r) dB: "
                 "less than 20 log10(2) = 6.02 dB, one bit's worth."),
    hint=("Rounding up to the next power of two makes the step larger by a factor between 1 and 2.",
          "The noise power of rounding is proportional to the square of the step; how many dB is a factor 4?"),
))
