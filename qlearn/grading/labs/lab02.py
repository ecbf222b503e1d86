"""Lab 02 (``02_affine_quantization``): quantize, dequantize, and choose scale and zero-point.

    02.1  quantize_tensor(x, scale, zero_point, qmin, qmax)   q = clamp(round(x / scale) + zp, qmin, qmax)
    02.2  dequantize_tensor(q, scale, zero_point)            x_hat = (q - zp) * scale
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
from qlearn.grading.registry import register
from qlearn.qparams import EPS, calc_qparams
from qlearn.rounding import round_to_int

__all__ = ["compute_qparams", "dequantize_tensor", "quantize_tensor", "symmetric_qparams"]

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
    hint=("q = clamp(round(x / scale) + zero_point, qmin, qmax). Round with np.rint (half-to-even, like "
          "torch.round), add the zero-point after rounding, clamp with np.clip while the values are still "
          "floats, and only then cast to an integer type that holds [qmin, qmax], e.g. np.int32 "
          "(an int8 cannot hold 200: it wraps to -56)."),
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

def dequantize_tensor(q: np.ndarray, scale, zero_point: int) -> np.ndarray:
    """Real values of the codes ``q``: ``x_hat = (q - zero_point) * scale``, in float32.

    The subtraction happens in a wide integer type: with uint8 codes, ``q - 128`` computed in
    uint8 wraps around (``3 - 128 = 131``).

    >>> dequantize_tensor(np.array([0, 3, 128, 255], np.uint8), np.float32(0.5), 128)
    array([-64. , -62.5,   0. ,  63.5], dtype=float32)
    """
    return dequantize(q, scale, zero_point)


def _compare_float32(got, expected) -> str | None:
    """Equal as float32: a float64 result that rounds to the expected float32 values passes.

    ``(q - zp) * scale`` with an int32 ``q - zp`` and a float32 ``scale`` is float64 in numpy (the
    exact product); rounded to float32 it is exactly what float32 arithmetic gives.
    """
    if isinstance(got, np.ndarray) and got.dtype.kind == "f" and got.shape == expected.shape:
        with np.errstate(over="ignore"):
            got = got.astype(f32)
    return compare_values(got, expected)


def _dequantize_cases(rng: np.random.Generator) -> list[Case]:
    def codes(qmin, qmax, shape, dtype):
        return rng.integers(qmin, qmax, shape, endpoint=True).astype(dtype)

    s = f32(0.0213)
    return [
        Case("random int8 codes, zero_point 0 (symmetric)", (codes(-128, 127, 12, np.int8), s, 0)),
        Case("random uint8 codes, zero_point 128: q - 128 must not wrap in uint8",
             (codes(0, 255, 12, np.uint8), f32(0.0078125), 128)),
        Case("uint8 codes, zero_point 255 (a negative-only range)", (codes(0, 255, 10, np.uint8), s, 255)),
        Case("int8 codes, zero_point -128 (a positive-only range): q + 128 must not wrap in int8",
             (codes(-128, 127, 10, np.int8), s, -128)),
        Case("random 2-D int8 codes, zero_point -7", (codes(-128, 127, (3, 4), np.int8), f32(0.37), -7)),
        Case("every code equals the zero-point: all zeros", (np.full(5, 37, np.uint8), s, 37)),
        Case("codes at both ends, 0 and 255", (np.array([0, 255, 0, 255], np.uint8), f32(0.1), 37)),
        Case("int32 codes", (codes(-3000, 3000, 8, np.int32), f32(1e-3), 250)),
        Case("4-bit codes stored in int8", (codes(-8, 7, 8, np.int8), f32(0.25), 2)),
        Case("a single code", (np.array([200], np.uint8), f32(0.05), 100)),
    ]


def _same_dtype_diff(q, zero_point):
    # the subtraction done in the codes' own dtype, as numpy does for q - zero_point with a Python int
    return (q - np.asarray(zero_point).astype(q.dtype)).astype(f32)


register(Exercise(
    id="02.2",
    title="Dequantize integer codes",
    points=2,
    reference=dequantize_tensor,
    cases=_dequantize_cases,
    function="dequantize_tensor",
    hint=("x_hat = (q - zero_point) * scale. Convert q to a wide integer type first "
          "(q.astype(np.int32)): with uint8 codes, q - 128 is computed in uint8 and wraps around "
          "(3 - 128 gives 131). Return floats (float32 like torch; float64 values are accepted "
          "when they round to the same float32)."),
    notebook=NOTEBOOK,
    seed=202,
    forbidden=(
        "qlearn.affine.dequantize", "qlearn.group.dequantize_per_group", "qlearn.affine.fake_quantize",
        "qlearn.group.fake_quantize_per_group", "torch.dequantize", "torch.Tensor.dequantize",
    ),
    compare=_compare_float32,
    wrong_answers={
        "forgets the zero-point": lambda q, s, zp: q.astype(f32) * s,
        "adds the zero-point": lambda q, s, zp: (q.astype(np.int32) + zp).astype(f32) * s,
        "subtracts in uint8/int8 (wraps around)": lambda q, s, zp: _same_dtype_diff(q, zp) * s,
        "divides by the scale": lambda q, s, zp: (q.astype(np.int32) - zp).astype(f32) / s,
        "returns the codes unchanged": lambda q, s, zp: q,
        "returns zeros": lambda q, s, zp: np.zeros(q.shape, f32),
        "rounds the result to integers": lambda q, s, zp: np.rint((q.astype(np.int32) - zp) * s),
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
    hint=("Widen the range to contain 0 (lo = min(xmin, 0), hi = max(xmax, 0)); "
          "scale = max((hi - lo) / (qmax - qmin), eps) with eps = np.finfo(np.float32).eps, in float32; "
          "zero_point = qmin - round(lo / scale), rounded half-to-even (np.rint or round()), clamped to "
          "[qmin, qmax] and returned as a Python int. Return (scale, zero_point)."),
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
    hint=("m = max(-min(xmin, 0), max(xmax, 0)) is the largest magnitude; spread [-m, m] over the "
          "qmax - qmin steps: scale = max(m / ((qmax - qmin) / 2), eps) in float32, with "
          "eps = np.finfo(np.float32).eps. The zero-point of a signed symmetric quantizer is 0. "
          "Return (scale, 0)."),
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
