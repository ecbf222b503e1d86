"""Lab 01 (``01_number_formats``): integer ranges, saturation, and small floating-point formats.

Four exercises, each with a reference (formula in the docstring, a doctest), seeded cases that
include the edge cases where the usual bugs show (the largest value, subnormals, exact ties, the
inf/NaN patterns), a hint, and the typical wrong answers that the checks must reject:

- 01.1 ``qrange(bits, signed)``: the code range of a ``bits``-bit integer;
- 01.2 ``saturate_cast(x, dtype)``: clamp into an integer dtype's range, then cast;
- 01.3 ``decode_float(sign, exponent, mantissa, fmt)``: the value of a floating-point bit pattern;
- 01.4 ``round_to_format(x, fmt)``: round to the nearest value of a format, ties to even, saturating;
- 01.5 ``encode_float(x, fmt)``: the bit fields of the nearest value of a format (the encoder that
  01.3 decodes), checked against PyTorch's FP8/FP16/BF16 bit patterns in the notebook.

Hints come in tiers, from the idea to a specific pointer, and never contain code.
"""

from __future__ import annotations

import math

import numpy as np

from qlearn import formats, qparams
from qlearn.formats import FloatFormat
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register

__all__ = ["decode_float", "encode_float", "qrange", "round_to_format", "saturate_cast"]

NOTEBOOK = "01_number_formats"


# --- 01.1 -------------------------------------------------------------------------------------

def qrange(bits: int, signed: bool = True) -> tuple[int, int]:
    """The range ``(qmin, qmax)`` of a ``bits``-bit integer, as Python ints.

    unsigned: ``[0, 2^bits - 1]``;  signed (two's complement): ``[-2^(bits-1), 2^(bits-1) - 1]``.

    >>> qrange(8), qrange(8, signed=False), qrange(4), qrange(1, signed=False)
    ((-128, 127), (0, 255), (-8, 7), (0, 1))
    """
    return qparams.qrange(bits, signed=signed)


def _qrange_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case("int8", (8, True)),
        Case("uint8", (8, False)),
        Case("int4", (4, True)),
        Case("uint4", (4, False)),
        Case("1 bit, signed: {-1, 0}", (1, True)),
        Case("1 bit, unsigned: {0, 1}", (1, False)),
        Case("int16", (16, True)),
        Case("uint32: 2**32 - 1 does not fit in an int32", (32, False)),
        Case("int32", (32, True)),
        Case("signed left at its default", (3,), {}),
    ]
    for bits in rng.choice(np.arange(2, 32), size=3, replace=False):
        signed = bool(rng.integers(0, 2))
        cases.append(Case(f"random: {int(bits)} bits, signed={signed}", (int(bits), signed)))
    return cases


def _qrange_int32(bits, signed=True):
    # powers of two computed in numpy int32: 2**31 and 2**32 wrap around
    two = np.int32(2)
    with np.errstate(over="ignore"):
        if signed:
            return int(-two ** (bits - 1)), int(two ** (bits - 1) - 1)
        return 0, int(two**bits - 1)


register(Exercise(
    id="01.1",
    title="The range of an n-bit integer",
    points=1,
    reference=qrange,
    cases=_qrange_cases,
    function="qrange",
    hint=(
        "bits bits name 2 to the power bits different patterns, and every pattern is one code. Count the "
        "codes of each kind of integer, then place them: unsigned codes start at zero; two's complement "
        "gives half of the patterns to the negative numbers.",
        "Zero takes one of the non-negative patterns, so a signed range has one more negative code than "
        "positive ones (int8: -128 to 127). Compute with Python integers, which never overflow: 32-bit "
        "ranges do not fit in a numpy int32.",
    ),
    notebook=NOTEBOOK,
    seed=11,
    forbidden=("qlearn.qparams.qrange",),
    wrong_answers={
        "unsigned max 2**bits": lambda bits, signed=True: (
            (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits)),
        "signed range symmetric (-127..127)": lambda bits, signed=True: (
            (-(2 ** (bits - 1)) + 1, 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)),
        "signed max 2**(bits-1)": lambda bits, signed=True: (
            (-(2 ** (bits - 1)), 2 ** (bits - 1)) if signed else (0, 2**bits - 1)),
        "signed and unsigned swapped": lambda bits, signed=True: qrange(bits, not signed),
        "floats instead of ints": lambda bits, signed=True: tuple(float(v) for v in qrange(bits, signed)),
        "numpy int32 arithmetic that wraps": _qrange_int32,
        "unsigned by default": lambda bits, signed=False: qrange(bits, signed),
    },
))


# --- 01.2 -------------------------------------------------------------------------------------

def saturate_cast(x: np.ndarray, dtype) -> np.ndarray:
    """``x`` (whole numbers) as an array of the integer ``dtype``, saturating at the dtype's range.

    Values below the range become its smallest value, values above it its largest, the others keep
    their value; a plain cast would wrap around instead (``200 -> -56`` in int8). ``dtype`` is any
    numpy integer type, given as a type, a name or an ``np.dtype``; the result has exactly that dtype.

    >>> saturate_cast(np.array([-300, -5, 200, 255]), np.int8)
    array([-128,   -5,  127,  127], dtype=int8)
    >>> np.array([-300, -5, 200, 255]).astype(np.int8)        # what saturation prevents
    array([-44,  -5, -56,  -1], dtype=int8)
    """
    info = np.iinfo(dtype)
    return np.clip(np.asarray(x), info.min, info.max).astype(dtype)


def _saturate_cast_cases(rng: np.random.Generator) -> list[Case]:
    i32, f32 = np.int32, np.float32
    codes = np.array([0, 1, 100, 127, 128, 200, 254, 255], dtype=i32)
    return [
        Case("int32 accumulators to int8", (rng.integers(-2000, 2000, 12).astype(i32), np.int8)),
        Case("codes 0..255 stored in int8: the classic trap", (codes, np.int8)),
        Case("the same codes in uint8: nothing to clamp", (codes, np.uint8)),
        Case("negative values to uint8 become 0", (np.array([-1, -128, -300, 0, 5], i32), np.uint8)),
        Case("int64 values beyond int16", (np.array([-40000, -32769, -32768, 0, 32767, 32768, 70000]), np.int16)),
        Case("beyond uint16", (np.array([-1, 0, 65535, 65536, 100000], np.int64), np.uint16)),
        Case("int64 to int32", (np.array([-(2**40), -(2**31) - 1, 2**31 - 1, 2**31, 2**40], np.int64), np.int32)),
        Case("rounded float32 values to int8", (np.rint(rng.normal(0, 150, 10)).astype(f32), np.int8)),
        Case("float32 values far out of range to uint8", (np.array([-1e6, -0.0, 17.0, 255.0, 256.0, 1e6], f32), np.uint8)),
        Case("every value inside the range: unchanged", (np.array([-128, -1, 0, 1, 127], i32), np.int8)),
        Case("a 2-D tensor", (rng.integers(-400, 400, (3, 4)).astype(np.int16), np.int8)),
        Case("dtype given as a string", (np.array([-200, 0, 200], i32), "int8")),
        Case("dtype given as np.dtype", (np.array([-200, 0, 200], i32), np.dtype(np.uint8))),
    ]


def _cast_then_clamp(x, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.asarray(x).astype(dtype), info.min, info.max)


register(Exercise(
    id="01.2",
    title="A saturating cast to an integer type",
    points=1,
    reference=saturate_cast,
    cases=_saturate_cast_cases,
    function="saturate_cast",
    hint=(
        "Saturation is a clamp into the range of the target type. The order matters: a value that is "
        "cast before it is clamped has already wrapped around, and the clamp cannot undo that.",
        "numpy describes the range of every integer type (its iinfo). Clamp while the values still have their "
        "wide type, cast last, and return exactly the requested dtype, not the input's.",
    ),
    notebook=NOTEBOOK,
    seed=12,
    forbidden=(
        "qlearn.affine.quantize", "qlearn.affine._codes", "qlearn.affine._per_tensor_blocked", "torch.clamp",
        "torch.clip",
    ),
    strict_dtype=True,
    wrong_answers={
        "plain cast that wraps": lambda x, dtype: np.asarray(x).astype(dtype),
        "cast first, then clamp": _cast_then_clamp,
        "clamp to the narrow range (-127..127)": lambda x, dtype: np.clip(
            x, np.iinfo(dtype).min + (np.iinfo(dtype).min < 0), np.iinfo(dtype).max).astype(dtype),
        "always the int8 range": lambda x, dtype: np.clip(x, -128, 127).astype(dtype),
        "clamp without the cast": lambda x, dtype: np.clip(x, np.iinfo(dtype).min, np.iinfo(dtype).max),
        "only the upper end clamped": lambda x, dtype: np.minimum(x, np.iinfo(dtype).max).astype(dtype),
    },
))


# --- 01.3 -------------------------------------------------------------------------------------

def decode_float(sign: int, exponent: int, mantissa: int, fmt: FloatFormat) -> float:
    """The value, as a Python float, that the bit fields ``(sign, exponent, mantissa)`` encode in ``fmt``.

    Every pattern of the format is valid input: normals, subnormals, zeros of both signs, and the
    inf and NaN patterns of the format (``fmt.ieee`` says which convention it follows; the formulas
    are those of ``qlearn.formats``). ``fmt.bias`` is used as given.

    >>> e4m3 = FloatFormat(4, 3, ieee=False)
    >>> decode_float(1, 7, 6, e4m3), decode_float(0, 15, 6, e4m3), decode_float(0, 0, 1, e4m3)
    (-1.75, 448.0, 0.001953125)
    >>> decode_float(0, 31, 0, FloatFormat(5, 10)), decode_float(0, 15, 7, e4m3)
    (inf, nan)
    """
    top = 2**fmt.exp_bits - 1
    s = -1.0 if sign else 1.0
    if fmt.ieee and exponent == top:
        return s * math.inf if mantissa == 0 else math.nan
    if not fmt.ieee and exponent == top and mantissa == 2**fmt.man_bits - 1:
        return math.nan
    if exponent == 0:
        return s * 2.0 ** (1 - fmt.bias) * (mantissa / 2**fmt.man_bits)
    return s * 2.0 ** (exponent - fmt.bias) * (1 + mantissa / 2**fmt.man_bits)


def _decode_float_cases(rng: np.random.Generator) -> list[Case]:
    F = formats.FORMATS
    fp32, fp16, bf16, e4m3, e5m2 = F["fp32"], F["fp16"], F["bf16"], F["fp8_e4m3"], F["fp8_e5m2"]
    e3m2 = FloatFormat(3, 2, ieee=False)
    biased = FloatFormat(4, 3, bias=11, ieee=False)
    cases = [
        Case("fp32: 1.0", (0, 127, 0, fp32)),
        Case("fp32: -2.5", (1, 128, 2**21, fp32)),
        Case("fp16: its largest value 65504", (0, 30, 1023, fp16)),
        Case("fp16: smallest subnormal 2**-24", (0, 0, 1, fp16)),
        Case("fp16: largest subnormal", (0, 0, 1023, fp16)),
        Case("fp16: smallest normal 2**-14", (0, 1, 0, fp16)),
        Case("fp16: +inf", (0, 31, 0, fp16)),
        Case("fp16: -inf", (1, 31, 0, fp16)),
        Case("fp16: NaN", (0, 31, 512, fp16)),
        Case("bf16: -3.0", (1, 128, 64, bf16)),
        Case("bf16: its largest value", (0, 254, 127, bf16)),
        Case("fp8 e4m3fn: -1.75", (1, 7, 6, e4m3)),
        Case("fp8 e4m3fn: its largest value 448", (0, 15, 6, e4m3)),
        Case("fp8 e4m3fn: top exponent, an ordinary number", (1, 15, 0, e4m3)),
        Case("fp8 e4m3fn: the only NaN pattern", (0, 15, 7, e4m3)),
        Case("fp8 e4m3fn: subnormal 3 * 2**-9", (0, 0, 3, e4m3)),
        Case("fp8 e5m2: its largest value 57344", (0, 30, 3, e5m2)),
        Case("fp8 e5m2: NaN", (1, 31, 2, e5m2)),
        Case("fp8 e5m2: -inf", (1, 31, 0, e5m2)),
        Case("fp8 e5m2: subnormal", (1, 0, 2, e5m2)),
        Case("zero", (0, 0, 0, e4m3)),
        Case("negative zero", (1, 0, 0, fp16)),
        Case("custom fp6 e3m2fn: largest value", (0, 7, 2, e3m2)),
        Case("custom fp6 e3m2fn: subnormal", (0, 0, 1, e3m2)),
        Case("custom bias 11 (not 7): normal", (0, 9, 5, biased)),
        Case("custom bias 11 (not 7): subnormal", (1, 0, 5, biased)),
    ]
    for name, fmt in (("fp16", fp16), ("bf16", bf16), ("fp8_e4m3", e4m3), ("fp8_e5m2", e5m2)):
        for i in range(2):
            s = int(rng.integers(0, 2))
            e = int(rng.integers(1, 2**fmt.exp_bits - 1))  # a normal exponent, never the top one
            m = int(rng.integers(0, 2**fmt.man_bits))
            cases.append(Case(f"random normal {name} #{i + 1}", (s, e, m, fmt)))
    return cases


def _decode_variant(*, implicit_one_subnormal=False, subnormal_exp_minus_bias=False, specials=True,
                    fn_like_ieee=False, signed=True, biased=True, implicit_one=True):
    """A decode_float with one typical mistake switched on."""
    def decode(sign, exponent, mantissa, fmt):
        top = 2**fmt.exp_bits - 1
        s = -1.0 if (sign and signed) else 1.0
        frac = mantissa / 2**fmt.man_bits
        bias = fmt.bias if biased else 0
        ieee = fmt.ieee or fn_like_ieee
        if specials and ieee and exponent == top:
            return s * math.inf if mantissa == 0 else math.nan
        if specials and not ieee and exponent == top and mantissa == 2**fmt.man_bits - 1:
            return math.nan
        if exponent == 0 and not implicit_one_subnormal:
            e = -bias if subnormal_exp_minus_bias else 1 - bias
            return s * 2.0**e * frac
        return s * 2.0 ** (exponent - bias) * ((1 if implicit_one else 0) + frac)
    return decode


register(Exercise(
    id="01.3",
    title="Decode the bit fields of a float",
    points=2,
    reference=decode_float,
    cases=_decode_float_cases,
    function="decode_float",
    hint=(
        "Sort the patterns into their kinds before computing anything: the special patterns of the top "
        "exponent, the subnormals of exponent 0, and the normal numbers in between. Each kind has its own "
        "formula in section 3.",
        "IEEE formats give the whole top exponent to inf and NaN; fn formats keep only the all-ones pattern "
        "for NaN and use the rest of that binade for numbers. Subnormals have no implicit leading 1 and "
        "share the exponent of the smallest normal.",
        "Read the bias from the format (custom formats choose their own) and apply the sign last, so that "
        "a negative zero and a negative infinity come out right.",
    ),
    notebook=NOTEBOOK,
    seed=13,
    # not qlearn.formats._decode: FloatFormat.max uses it, and 01.4 may use fmt.max
    forbidden=("qlearn.formats.representable_values",),
    wrong_answers={
        "subnormals with an implicit 1": _decode_variant(implicit_one_subnormal=True),
        "subnormal exponent -bias instead of 1 - bias": _decode_variant(subnormal_exp_minus_bias=True),
        "no inf/NaN patterns": _decode_variant(specials=False),
        "fn format read as IEEE (448 becomes NaN)": _decode_variant(fn_like_ieee=True),
        "sign ignored": _decode_variant(signed=False),
        "bias forgotten": _decode_variant(biased=False),
        "no implicit 1 for normals": _decode_variant(implicit_one=False),
        "default bias instead of fmt.bias": lambda s, e, m, fmt: decode_float(
            s, e, m, FloatFormat(fmt.exp_bits, fmt.man_bits, ieee=fmt.ieee)),
    },
))


# --- 01.4 -------------------------------------------------------------------------------------

def round_to_format(x: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    """Round every value of ``x`` to the nearest value of ``fmt``, ties to even, saturating at max.

    For ``|x|`` in the binade ``[2^k, 2^(k+1))``, or below the smallest normal (``k = 1 - bias``,
    where the subnormals keep the spacing of the lowest binade), the values of the format are
    ``ulp = 2^(max(k, 1 - bias) - M)`` apart, so

        round(x) = sign(x) * min(rint(|x| / ulp) * ulp, fmt.max)        (rint: half to even)

    Overflow saturates at ``+-fmt.max`` (the FP8 training convention); ``x`` is finite. The result
    is float32 (the formats checked here all fit in it). This is ``qlearn.formats.round_to_format``
    with its default ``overflow="saturate"``.

    >>> round_to_format(np.array([0.3, 1.0625, 1.1875, 500.0, -2**-10]), FloatFormat(4, 3, ieee=False)).tolist()
    [0.3125, 1.0, 1.25, 448.0, -0.0]
    """
    return formats.round_to_format(x, fmt)


def _ties(fmt: FloatFormat, lo: float, hi: float) -> np.ndarray:
    """The midpoints between consecutive positive values of ``fmt`` inside ``[lo, hi]``."""
    v = formats.representable_values(fmt).astype(np.float64)
    mid = (v[:-1] + v[1:]) / 2
    return mid[(mid >= lo) & (mid <= hi)]


def _round_cases(rng: np.random.Generator) -> list[Case]:
    f32 = np.float32
    F = formats.FORMATS
    e4m3, e5m2, fp16, bf16 = F["fp8_e4m3"], F["fp8_e5m2"], F["fp16"], F["bf16"]
    e3m2 = FloatFormat(3, 2, ieee=False, name="fp6_e3m2")
    e2m1 = FloatFormat(2, 1, ieee=False, name="fp4_e2m1")
    biased = FloatFormat(4, 3, bias=11, ieee=False)

    def signs(n):
        return rng.choice(np.array([-1.0, 1.0]), n)

    def log_uniform(lo, hi, n):  # magnitudes spread evenly over the decades, random signs
        return (signs(n) * 2.0 ** rng.uniform(np.log2(lo), np.log2(hi), n)).astype(f32)

    e4m3_ties = _ties(e4m3, 0, e4m3.max)
    sub = e4m3.smallest_subnormal
    bf16_ties = _ties(bf16, 0.25, 4.0)
    fp16_ties = _ties(fp16, 0.25, 4.0)
    return [
        Case("e4m3: values already in the format stay",
             (np.concatenate([formats.representable_values(e4m3), -formats.representable_values(e4m3)]), e4m3)),
        Case("e4m3: random normal values", (rng.normal(0, 40, 64).astype(f32), e4m3)),
        Case("e4m3: every tie between two neighbours (to even)",
             (np.concatenate([e4m3_ties, -e4m3_ties]).astype(f32), e4m3)),
        Case("e4m3: just off the ties", (np.concatenate([e4m3_ties * (1 + 2.0**-12),
                                                         e4m3_ties * (1 - 2.0**-12)]).astype(f32), e4m3)),
        Case("e4m3: subnormals and their ties",
             ((np.array([0.5, 0.75, 1.0, 1.25, 1.5, 2.5, 3.5, 6.5, 7.5, 7.75, -1.5, -0.5, -0.25]) * sub)
              .astype(f32), e4m3)),
        Case("e4m3: around the largest value 448 (saturates)",
             (np.array([416, 440, 448, 450, 463.99, 464, 470, 480, 1e4, 3e38, -464, -1e6], f32), e4m3)),
        Case("e4m3: zeros and tiny values", (np.array([0.0, -0.0, 1e-30, -1e-30, 2.0**-11], f32), e4m3)),
        Case("e5m2: magnitudes across the whole range", (log_uniform(2.0**-18, 2.0**17, 64), e5m2)),
        Case("e5m2: ties, subnormals, largest value",
             (np.array([1.125, 1.375, 2.0**-16 * 1.5, 2.0**-17, 2.0**-16 * 2.5, 57344.0, 61439.0, 61440.0, 1e5],
                       f32), e5m2)),
        Case("fp16: ties between 0.25 and 4 (to even)", (np.concatenate([fp16_ties, -fp16_ties]).astype(f32), fp16)),
        Case("fp16: random values, subnormals, overflow",
             (np.concatenate([log_uniform(2.0**-26, 2.0**17, 40), [65504.0, 65519.0, 65520.0, 2.0**-25]])
              .astype(f32), fp16)),
        Case("bf16: ties around 1 (to even)", (np.concatenate([bf16_ties, -bf16_ties]).astype(f32), bf16)),
        Case("bf16: float32 values of every size", (log_uniform(2.0**-130, 2.0**120, 48), bf16)),
        Case("fp6 e3m2fn: every value on a fine grid", (np.arange(-30.0, 30.0, 0.0625).astype(f32), e3m2)),
        Case("fp4 e2m1fn: every value on a fine grid", (np.arange(-8.0, 8.0, 0.125).astype(f32), e2m1)),
        Case("e4m3 with bias 11 (not 7)", (log_uniform(2.0**-15, 2.0**6, 48), biased)),
        Case("a 2-D tensor", (rng.normal(0, 3, (4, 5)).astype(f32), e4m3)),
    ]


def _rounder(*, mode="half_even", ftz=False, subnormal_floor=True, overflow="saturate", fixed_max=None,
             default_bias=False, keep_sign=True):
    """A round_to_format with one typical mistake switched on."""
    def round_fn(x, fmt):
        if default_bias:
            fmt = FloatFormat(fmt.exp_bits, fmt.man_bits, ieee=fmt.ieee)
        x = np.asarray(x, dtype=np.float64)
        a = np.abs(x)
        _, k = np.frexp(a)
        e = np.maximum(k - 1, 1 - fmt.bias) if subnormal_floor else k - 1
        ulp = np.ldexp(1.0, e - fmt.man_bits)
        q = a / ulp
        if mode == "half_even":
            q = np.rint(q)
        elif mode == "trunc":
            q = np.trunc(q)
        elif mode == "half_away":
            q = np.floor(q + 0.5)
        r = q * ulp
        if ftz:
            r = np.where(r < fmt.smallest_normal, 0.0, r)
        big = fmt.max if fixed_max is None else fixed_max(fmt)
        if overflow == "saturate":
            r = np.minimum(r, big)
        elif overflow == "inf":
            r = np.where(r > big, np.inf, r)
        r = r * np.sign(x) if keep_sign else r
        return r.astype(np.float32)
    return round_fn


def _ieee_style_max(fmt: FloatFormat) -> float:
    return FloatFormat(fmt.exp_bits, fmt.man_bits, fmt.bias, ieee=True).max if fmt.exp_bits >= 2 else fmt.max


register(Exercise(
    id="01.4",
    title="Round to a small float format",
    points=3,
    reference=round_to_format,
    cases=_round_cases,
    function="round_to_format",
    hint=(
        "Rounding to a float format is rounding to a grid whose spacing depends on the binade: find the "
        "spacing (the ulp) of each value's binade, round to the nearest multiple of it, then deal with the "
        "values beyond the largest one.",
        "Work on magnitudes in float64, where every step is exact. Below the smallest normal the spacing "
        "stops shrinking: the subnormals keep the spacing of the lowest binade. numpy's frexp tells you "
        "the binade of every value at once.",
        "numpy's rint already rounds ties to even, and an even multiple of the ulp is a mantissa ending "
        "in 0. Saturate at fmt.max, and put the sign back at the end so that -0.0 stays negative.",
    ),
    notebook=NOTEBOOK,
    seed=14,
    forbidden=("qlearn.formats.round_to_format", "qlearn.formats.decompose",),
    allowed=("qlearn.formats.FloatFormat",),
    wrong_answers={
        "truncation instead of round to nearest": _rounder(mode="trunc"),
        "ties away from zero": _rounder(mode="half_away"),
        "subnormals flushed to zero": _rounder(ftz=True),
        "no subnormal floor (too many digits below the smallest normal)": _rounder(subnormal_floor=False),
        "overflow to inf instead of saturating": _rounder(overflow="inf"),
        "no clamp at the largest value": _rounder(overflow="none"),
        "max of the IEEE-style format (240 for e4m3)": _rounder(fixed_max=_ieee_style_max),
        "default bias instead of fmt.bias": _rounder(default_bias=True),
        "sign lost": _rounder(keep_sign=False),
    },
))


# --- 01.5 -------------------------------------------------------------------------------------

def encode_float(x: float, fmt: FloatFormat) -> tuple[int, int, int]:
    """The bit fields ``(sign, exponent, mantissa)`` of the value of ``fmt`` nearest to ``x``.

    The inverse of :func:`decode_float` on the finite values: ``x`` (a finite number, a float32 value)
    is rounded to the nearest value of ``fmt``, ties to even, saturating at ``+-fmt.max``; the fields
    are Python ints that :func:`decode_float` reads back as that value. A value that rounds to zero
    keeps the sign of ``x`` (``-0.0`` is ``(1, 0, 0)``). This is ``qlearn.formats.decompose`` without
    its ``code``, ``bits`` and ``value``.

    >>> e4m3 = FloatFormat(4, 3, ieee=False)
    >>> encode_float(-1.75, e4m3), encode_float(1.97, e4m3), encode_float(1000.0, e4m3)
    ((1, 7, 6), (0, 8, 0), (0, 15, 6))
    >>> encode_float(2.0**-8, e4m3), encode_float(-0.0, e4m3)
    ((0, 0, 2), (1, 0, 0))
    """
    fields = formats.decompose(x, fmt)
    return int(fields.sign), int(fields.exponent), int(fields.mantissa)


def _encode_cases(rng: np.random.Generator) -> list[Case]:
    F = formats.FORMATS
    fp32, fp16, bf16, e4m3, e5m2 = F["fp32"], F["fp16"], F["bf16"], F["fp8_e4m3"], F["fp8_e5m2"]
    e3m2 = FloatFormat(3, 2, ieee=False, name="fp6_e3m2")
    e2m1 = FloatFormat(2, 1, ieee=False, name="fp4_e2m1")
    biased = FloatFormat(4, 3, bias=11, ieee=False)

    def case(name, x, fmt):
        return Case(name, (float(np.float32(x)), fmt))

    cases = [
        case("e4m3: -1.75, a normal value", -1.75, e4m3),
        case("e4m3: 1.0", 1.0, e4m3),
        case("e4m3: 1.97 rounds up to 2.0, into the next binade", 1.97, e4m3),
        case("e4m3: a tie, 1.0625, goes to the even mantissa (1.0)", 1.0625, e4m3),
        case("e4m3: a tie, 1.1875, goes to the even mantissa (1.25)", 1.1875, e4m3),
        case("e4m3: its largest value 448", 448.0, e4m3),
        case("e4m3: 1000 saturates at 448", 1000.0, e4m3),
        case("e4m3: -500 saturates at -448", -500.0, e4m3),
        case("e4m3: a subnormal, 2**-8", 2.0**-8, e4m3),
        case("e4m3: 0.0155 rounds up from the subnormals to the smallest normal", 0.0155, e4m3),
        case("e4m3: 2**-10 is half the smallest subnormal: a tie, to 0", 2.0**-10, e4m3),
        case("zero", 0.0, e4m3),
        case("negative zero keeps its sign", -0.0, e4m3),
        case("a tiny negative value rounds to -0.0", -1e-6, e4m3),
        case("e5m2: its largest value 57344", 57344.0, e5m2),
        case("e5m2: 1e6 saturates at 57344", 1e6, e5m2),
        case("e5m2: a subnormal", -3 * 2.0**-16, e5m2),
        case("fp16: its largest value 65504", 65504.0, fp16),
        case("fp16: 70000 saturates", 70000.0, fp16),
        case("fp16: the smallest subnormal 2**-24", 2.0**-24, fp16),
        case("fp16: 3 * 2**-25, a subnormal tie, goes to even (2**-23)", 3 * 2.0**-25, fp16),
        case("fp16: 0.1", 0.1, fp16),
        case("bf16: pi", 3.14159, bf16),
        case("bf16: 1e-40, a bf16 subnormal", 1e-40, bf16),
        case("bf16: -3e38", -3e38, bf16),
        case("fp32: 0.1 (already a float32 value)", 0.1, fp32),
        case("fp6 e3m2fn: largest value 28", 28.0, e3m2),
        case("fp6 e3m2fn: 0.3", 0.3, e3m2),
        case("fp4 e2m1fn: 2.5 is a tie between 2 and 3 (to 2)", 2.5, e2m1),
        case("fp4 e2m1fn: 5.0 saturates at its largest value", 5.0, e2m1),
        case("custom bias 11 (not 7): normal", 0.02, biased),
        case("custom bias 11 (not 7): subnormal", -2.0**-12, biased),
    ]
    for name, fmt, lo, hi in (("fp16", fp16, -14, 15), ("bf16", bf16, -100, 100), ("fp8_e4m3", e4m3, -6, 8),
                              ("fp8_e5m2", e5m2, -14, 15)):
        for i in range(2):
            magnitude = 2.0 ** rng.uniform(lo, hi)
            cases.append(case(f"random normal {name} #{i + 1}", float(rng.choice([-1.0, 1.0])) * magnitude, fmt))
    return cases


def _encoder(*, round_first=True, mode="half_even", subnormals=True, saturate=True, signed_zero=True,
             default_bias=False):
    """An encode_float with one typical mistake switched on."""
    def encode(x, fmt):
        if default_bias:
            fmt = FloatFormat(fmt.exp_bits, fmt.man_bits, ieee=fmt.ieee)
        sign = int(math.copysign(1.0, x) < 0) if signed_zero else int(x < 0)
        a = abs(float(x))
        if round_first:
            a = float(_rounder(mode=mode, overflow="saturate" if saturate else "none")(np.array([a]), fmt)[0])
        if a == 0.0:
            return sign, 0, 0
        k = math.frexp(a)[1] - 1
        if subnormals and k < 1 - fmt.bias:
            step = 2.0 ** (1 - fmt.bias - fmt.man_bits)
            return sign, 0, int(np.rint(a / step)) if mode == "half_even" else int(a / step)
        frac = (a / 2.0**k - 1) * 2**fmt.man_bits
        return sign, k + fmt.bias, int(np.rint(frac)) if mode == "half_even" else int(frac)
    return encode


register(Exercise(
    id="01.5",
    title="Encode a value as sign, exponent and mantissa",
    points=3,
    reference=encode_float,
    cases=_encode_cases,
    function="encode_float",
    hint=(
        "Decide which value of the format x becomes before you split anything into fields: the fields of "
        "the rounded value are what the format stores. Splitting first can leave a mantissa too large "
        "for its field (1.97 in E4M3 becomes 2.0, the first value of the next binade).",
        "You already wrote the rounding (01.4) and the decoding (01.3). After rounding, the magnitude is "
        "either zero, a subnormal (below the smallest normal: exponent field 0, no implicit 1) or a normal "
        "value, whose binade gives the exponent field once the bias is added.",
        "The sign comes from x itself, so that -0.0 and tiny negatives that round to zero keep sign 1 "
        "(a copysign function tells them apart). Return three Python ints; decode_float on them must give back "
        "the rounded value.",
    ),
    notebook=NOTEBOOK,
    seed=15,
    forbidden=("qlearn.formats.decompose", "qlearn.formats.round_to_format", "qlearn.formats.representable_values"),
    allowed=("qlearn.formats.FloatFormat",),
    wrong_answers={
        "fields split before rounding (mantissa overflows its field)": _encoder(round_first=False),
        "mantissa truncated instead of rounded": _encoder(mode="trunc"),
        "ties away from zero": _encoder(mode="half_away"),
        "subnormals given a normal exponent (no exponent-0 case)": _encoder(subnormals=False),
        "no saturation: the exponent runs past the format": _encoder(saturate=False),
        "sign taken from x < 0 (loses the sign of -0.0)": _encoder(signed_zero=False),
        "default bias instead of fmt.bias": _encoder(default_bias=True),
        "the rounded value instead of its fields": lambda x, fmt: float(formats.round_to_format(x, fmt)),
    },
))


# --- questions: predict, then run --------------------------------------------------------------

register(Question(
    id="01.Q1",
    title="How many of FP8 E5M2's 256 bit patterns are finite numbers?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_answer",
    answer=248,
    explanation=("E5M2 follows IEEE: its all-ones exponent 11111 is reserved for inf (mantissa 0) and NaN "
                 "(the 3 other mantissas), for both signs: 2 x 4 = 8 patterns. The other 248 are numbers, "
                 "+0 and -0 among them. E4M3fn gives up only its 2 all-ones patterns (NaN) and keeps 254."),
    hint=("Only the patterns of the top exponent can be special. Which of them are special depends on "
          "whether the format is IEEE-style or fn.",
          "Count the patterns with the all-ones exponent: two signs times every mantissa of 2 bits."),
))

register(Question(
    id="01.Q2",
    title="1.0 plus ten thousand additions of 0.0001, every sum rounded to FP16",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_answer",
    choices={"a": "2.0, the exact answer, up to FP16 rounding", "b": "about 1.5: part of each addition is lost",
             "c": "1.0: every addition is lost", "d": "inf: the sum overflows"},
    answer="c",
    explanation=("Next to 1.0, FP16's values are 2**-10 (about 0.00098) apart. 1 + 0.0001 lies less than half "
                 "a gap above 1.0, so it rounds back to 1.0, and so does every later sum: the running sum "
                 "stalls at its first value. That is why accumulators stay in FP32."),
    hint=("Each addition is rounded to the nearest FP16 value before the next one. What is the gap between "
          "1.0 and the next FP16 value?",
          "A change smaller than half of that gap rounds away completely."),
))
