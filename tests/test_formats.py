"""Unit and property tests for qlearn.formats (the torch oracle tests are in test_formats_torch.py)."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from qlearn.formats import (
    FORMATS,
    OVERFLOW_MODES,
    FloatFields,
    FloatFormat,
    decompose,
    representable_values,
    round_to_format,
)

F32_MAX = float(np.finfo(np.float32).max)

# Small custom formats: E2M1fn (an fp4), E3M2 both ways (fp6), E2M3fn, IEEE-style E4M3, a biased E5M2,
# the smallest legal ones (E1M1fn, E2M1 ieee) and a wide-mantissa E3M9.
CUSTOM = [
    FloatFormat(2, 1, ieee=False),
    FloatFormat(3, 2),
    FloatFormat(3, 2, ieee=False),
    FloatFormat(2, 3, ieee=False),
    FloatFormat(4, 3),
    FloatFormat(5, 2, 16),
    FloatFormat(1, 1, ieee=False),
    FloatFormat(2, 1),
    FloatFormat(3, 9, ieee=False),
]
SMALL = [FORMATS[n] for n in ("fp16", "bf16", "fp8_e4m3", "fp8_e5m2")] + CUSTOM


def bits_equal(a, b) -> bool:
    """Same values including the sign of zero (NaN never appears where this is used)."""
    a, b = np.asarray(a), np.asarray(b)
    return a.shape == b.shape and bool(np.all((a == b) & (np.signbit(a) == np.signbit(b))))


def nearest_even(x, fmt: FloatFormat) -> np.ndarray:
    """Independent oracle: search the table of values for the nearest one, ties to the even code.

    Returns float64 magnitudes rounded without any overflow rule: a value can land on the
    "virtual" pattern just after max (inf for ieee formats, the NaN slot for fn formats), or on
    inf when it is beyond even that.
    """
    vals = representable_values(fmt).astype(np.float64)  # index == bit pattern (sign bit 0)
    vals = np.append(vals, fmt.max + 2.0 ** (fmt.emax - fmt.man_bits))  # the virtual next pattern
    a = np.abs(np.asarray(x, dtype=np.float32).astype(np.float64))
    i = np.clip(np.searchsorted(vals, a, side="right") - 1, 0, len(vals) - 2)
    lo, hi = vals[i], vals[i + 1]
    pick_hi = (hi - a < a - lo) | ((hi - a == a - lo) & (i % 2 == 1))  # tie: even code wins
    r = np.where(pick_hi, hi, lo)
    r = np.where(a > vals[-1], np.inf, r)
    return np.copysign(r, np.asarray(x, dtype=np.float32))


def saturate(r: np.ndarray, fmt: FloatFormat) -> np.ndarray:
    return np.where(np.abs(r) > fmt.max, np.copysign(fmt.max, r), r)


# ---------------------------------------------------------------------------------------------
# FloatFormat: golden tables computed by hand
# ---------------------------------------------------------------------------------------------

GOLDEN = {  # name: (bits, max, smallest_normal, smallest_subnormal, eps)
    "fp32": (32, (2 - 2**-23) * 2.0**127, 2.0**-126, 2.0**-149, 2.0**-23),
    "fp16": (16, 65504.0, 2.0**-14, 2.0**-24, 2.0**-10),
    "bf16": (16, (2 - 2**-7) * 2.0**127, 2.0**-126, 2.0**-133, 2.0**-7),
    "fp8_e4m3": (8, 448.0, 2.0**-6, 2.0**-9, 0.125),
    "fp8_e5m2": (8, 57344.0, 2.0**-14, 2.0**-16, 0.25),
}


@pytest.mark.parametrize("name", list(GOLDEN))
def test_named_format_properties(name):
    fmt = FORMATS[name]
    got = (fmt.bits, fmt.max, fmt.smallest_normal, fmt.smallest_subnormal, fmt.eps)
    assert got == GOLDEN[name]
    assert (fmt.min_normal, fmt.min_subnormal) == (fmt.smallest_normal, fmt.smallest_subnormal)
    assert fmt.name == name


def test_named_formats_agree_with_numpy_finfo():
    for name, dtype in (("fp32", np.float32), ("fp16", np.float16)):
        info, fmt = np.finfo(dtype), FORMATS[name]
        assert (fmt.max, fmt.smallest_normal, fmt.smallest_subnormal, fmt.eps) == (
            float(info.max), float(info.smallest_normal), float(info.smallest_subnormal), float(info.eps))
    f64, info = FloatFormat(11, 52), np.finfo(np.float64)
    assert (f64.max, f64.smallest_normal, f64.smallest_subnormal, f64.eps) == (
        info.max, info.smallest_normal, info.smallest_subnormal, info.eps)


def test_custom_formats_by_hand():
    assert FloatFormat(4, 3).max == 240.0  # IEEE-style: 2^7 * 1.875
    assert FloatFormat(4, 3, 7, ieee=False).max == 448.0  # bias passed positionally
    assert FloatFormat(3, 2).max == 14.0  # bias 3: 2^3 * 1.75
    assert FloatFormat(3, 2, ieee=False).max == 24.0  # 2^4 * 1.5: 0.111.11 is NaN
    assert FloatFormat(5, 2, 16).max == 28672.0  # a larger bias halves every value
    assert FloatFormat(4, 3).bias == 7 and FloatFormat(5, 2, 16).bias == 16
    assert FloatFormat(4, 3, ieee=False).emin == -6 and FloatFormat(4, 3, ieee=False).emax == 8


def test_format_names_and_equality():
    assert FloatFormat(4, 3, ieee=False).name == "e4m3fn"
    assert FloatFormat(5, 2).name == "e5m2"
    assert FloatFormat(4, 3, 8).name == "e4m3_bias8"
    assert FloatFormat(4, 3, ieee=False) == FORMATS["fp8_e4m3"]  # the name is only a label
    assert FloatFormat(4, 3) != FORMATS["fp8_e4m3"]
    with pytest.raises(dataclasses.FrozenInstanceError):
        FORMATS["fp16"].man_bits = 3


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"exp_bits": 0, "man_bits": 3}, ValueError, "exp_bits must be between 1 and 11.*got 0"),
        ({"exp_bits": 12, "man_bits": 3}, ValueError, "exp_bits must be between 1 and 11.*got 12"),
        ({"exp_bits": 4, "man_bits": 0}, ValueError, "man_bits must be between 1 and 52.*got 0"),
        ({"exp_bits": 4, "man_bits": 53}, ValueError, "man_bits must be between 1 and 52.*got 53"),
        ({"exp_bits": 1, "man_bits": 3}, ValueError, "ieee=True format needs exp_bits >= 2"),
        ({"exp_bits": 8, "man_bits": 23, "bias": -900}, ValueError, "outside float64"),
        ({"exp_bits": 8, "man_bits": 23, "bias": 1100}, ValueError, "outside float64"),
        ({"exp_bits": 4.0, "man_bits": 3}, TypeError, "exp_bits must be an integer"),
        ({"exp_bits": 4, "man_bits": "3"}, TypeError, "man_bits must be an integer"),
        ({"exp_bits": 4, "man_bits": 3, "bias": 7.5}, TypeError, "bias must be an integer"),
        ({"exp_bits": 4, "man_bits": 3, "ieee": "no"}, TypeError, "ieee must be True or False"),
        ({"exp_bits": 4, "man_bits": 3, "name": 8}, TypeError, "name must be a string"),
    ],
)
def test_format_validation(kwargs, error, match):
    with pytest.raises(error, match=match):
        FloatFormat(**kwargs)


# ---------------------------------------------------------------------------------------------
# round_to_format: golden values
# ---------------------------------------------------------------------------------------------

ROUNDING_GOLDEN = [  # (format, x, expected)  -- ties marked; all by hand
    ("fp16", 1 + 2**-11, 1.0),  # tie between 1 and 1 + 2^-10: 1 has the even mantissa
    ("fp16", 1 + 3 * 2**-11, 1 + 2**-9),  # tie: up to the even mantissa ...10
    ("fp16", 1 + 2**-11 + 2**-23, 1 + 2**-10),  # one float32 step above the tie
    ("fp16", 2048 + 1, 2048.0),  # ulp is 2 at 2^11: tie 2049 -> 2048
    ("fp16", 2048 + 3, 2052.0),  # tie 2051 -> 2052
    ("fp16", 65519.0, 65504.0),  # below the overflow tie 65520
    ("fp16", 2.0**-25, 0.0),  # tie between 0 and the smallest subnormal 2^-24
    ("fp16", 3 * 2.0**-25, 2.0**-23),  # subnormal tie 1.5 ulp -> 2 ulp
    ("fp16", 5 * 2.0**-25, 2.0**-23),  # subnormal tie 2.5 ulp -> 2 ulp
    ("fp16", 2.0**-14 - 2.0**-25, 2.0**-14),  # the last subnormal tie goes up to the smallest normal
    ("fp16", -(2.0**-26), -0.0),  # underflow keeps the sign
    ("bf16", 1 + 2**-8, 1.0),
    ("bf16", 1 + 3 * 2**-8, 1 + 2**-6),
    ("bf16", 2.0**-133 / 2, 0.0),
    ("bf16", 3 * 2.0**-134, 2.0**-132),  # float32 subnormal input
    ("fp8_e4m3", 0.3, 0.3125),
    ("fp8_e4m3", 17.0, 16.0),  # ulp 2 in [16, 32): tie -> 16
    ("fp8_e4m3", 19.0, 20.0),  # tie -> 20
    ("fp8_e4m3", 464.0, 448.0),  # tie between 448 and the NaN slot 480: 448 is even
    ("fp8_e4m3", 2.0**-10, 0.0),
    ("fp8_e4m3", 3 * 2.0**-10, 2.0**-8),
    ("fp8_e4m3", -(2.0**-9), -(2.0**-9)),
    ("fp8_e5m2", 1.125, 1.0),  # tie between 1 and 1.25
    ("fp8_e5m2", 1.375, 1.5),  # tie between 1.25 and 1.5
    ("fp8_e5m2", 61439.0, 57344.0),
    ("fp32", 1.1, np.float32(1.1)),
]


@pytest.mark.parametrize(("name", "x", "expected"), ROUNDING_GOLDEN)
def test_round_to_format_golden(name, x, expected):
    assert bits_equal(round_to_format(np.float32(x), name), np.float32(expected))
    assert bits_equal(round_to_format(-np.float32(x), name), -np.float32(expected))


def test_signed_zero_and_shapes():
    out = round_to_format(np.array([[0.0, -0.0]], dtype=np.float32), "fp8_e4m3")
    assert out.shape == (1, 2) and out.dtype == np.float32
    assert np.signbit(out).tolist() == [[False, True]]
    assert round_to_format(1.0, "fp16").shape == ()
    assert round_to_format([1, 2, 3], "fp16").tolist() == [1.0, 2.0, 3.0]  # ints are accepted
    assert round_to_format(np.array([], dtype=np.float32), "fp16").shape == (0,)


def test_alias_and_formatfloat_arguments():
    x = np.linspace(-500, 500, 1001, dtype=np.float32)
    by_name = round_to_format(x, "fp8_e4m3")
    assert bits_equal(round_to_format(x, "fp8_e4m3fn"), by_name)
    assert bits_equal(round_to_format(x, FloatFormat(4, 3, ieee=False)), by_name)


def test_result_dtype():
    for name in FORMATS:
        assert round_to_format([1.0], name).dtype == np.float32
    wide = FloatFormat(9, 7)  # bf16 with one more exponent bit: its max does not fit float32
    out = round_to_format(np.float32(F32_MAX), wide)
    assert out.dtype == np.float64 and out == 2.0**128  # representable in the format, not in float32


def test_fp32_format_is_identity_on_float32(rng):
    x = rng.integers(0, 2**32, size=2**16, dtype=np.uint32).view(np.float32)
    x = x[np.isfinite(x)]
    assert bits_equal(round_to_format(x, "fp32"), x)


def test_float64_input_goes_through_float32_first():
    x = np.array([1 + 2**-11 + 2**-40, 0.1])  # float32(x[0]) is the tie 1 + 2^-11
    assert round_to_format(x, "fp16").tolist() == round_to_format(x.astype(np.float32), "fp16").tolist()
    assert round_to_format(x, "fp16")[0] == 1.0


# ---------------------------------------------------------------------------------------------
# overflow, NaN and inf
# ---------------------------------------------------------------------------------------------

OVERFLOW_GOLDEN = [  # (format, x, saturate, ieee)
    ("fp16", 65520.0, 65504.0, np.inf),  # the tie above max rounds to the even 2^16: overflow
    ("fp16", 1e6, 65504.0, np.inf),
    ("bf16", F32_MAX, GOLDEN["bf16"][1], np.inf),
    ("fp8_e5m2", 61440.0, 57344.0, np.inf),
    ("fp8_e4m3", 465.0, 448.0, 448.0),  # PyTorch saturates e4m3fn (see test_formats_torch.py)
    ("fp8_e4m3", 1e30, 448.0, 448.0),
]


@pytest.mark.parametrize(("name", "x", "sat", "ieee"), OVERFLOW_GOLDEN)
def test_overflow_modes(name, x, sat, ieee):
    x = np.array([x, -x], dtype=np.float32)
    assert round_to_format(x, name).tolist() == [sat, -sat]
    assert round_to_format(x, name, overflow="saturate").tolist() == [sat, -sat]
    assert round_to_format(x, name, overflow="ieee").tolist() == [ieee, -ieee]
    with pytest.raises(ValueError, match=rf"2 value\(s\) whose rounded magnitude exceeds {name}.max"):
        round_to_format(x, name, overflow="error")


def test_overflow_error_names_count_and_largest():
    x = np.array([1.0, 70000.0, -1e6, 65504.0], dtype=np.float32)
    with pytest.raises(ValueError, match=r"2 value\(s\).*65504\.0.*largest \|x\| being 1000000\.0"):
        round_to_format(x, "fp16", overflow="error")
    assert round_to_format(x[[0, 3]], "fp16", overflow="error").tolist() == [1.0, 65504.0]


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("overflow", ["saturate", "error"])
def test_nan_and_inf_are_errors_unless_ieee(bad, overflow):
    with pytest.raises(ValueError, match=r"1 non-finite value.*overflow='ieee'"):
        round_to_format([1.0, bad], "fp16", overflow=overflow)


def test_nan_and_inf_pass_through_with_ieee():
    x = np.array([np.nan, np.inf, -np.inf, 1.0], dtype=np.float32)
    out = round_to_format(x, "fp16", overflow="ieee")
    assert np.isnan(out[0]) and out[1:].tolist() == [np.inf, -np.inf, 1.0]
    out = round_to_format(x, "fp8_e4m3", overflow="ieee")  # no inf in e4m3fn
    assert np.isnan(out[0]) and out[1:].tolist() == [448.0, -448.0, 1.0]


def test_argument_errors():
    with pytest.raises(ValueError, match=r"unknown format fmt='fp8'.*'fp16'.*'fp8_e4m3fn'.*FloatFormat"):
        round_to_format([1.0], "fp8")
    with pytest.raises(TypeError, match="fmt must be a format name"):
        round_to_format([1.0], 16)
    with pytest.raises(TypeError, match="fmt must be a format name"):
        round_to_format([1.0], np.float16)
    with pytest.raises(ValueError, match=r"overflow must be one of 'saturate', 'ieee', 'error'; got 'clip'"):
        round_to_format([1.0], "fp16", overflow="clip")
    with pytest.raises(ValueError, match="overflow must be one of"):
        round_to_format([1.0], "fp16", overflow=None)
    with pytest.raises(TypeError, match="x must"):
        round_to_format("1.0", "fp16")
    with pytest.raises(TypeError, match="x must hold real numbers"):
        round_to_format([True, False], "fp16")
    with pytest.raises(TypeError, match="x must hold real numbers"):
        round_to_format([1 + 2j], "fp16")
    assert OVERFLOW_MODES == ("saturate", "ieee", "error")


# ---------------------------------------------------------------------------------------------
# representable_values and decompose
# ---------------------------------------------------------------------------------------------


def test_representable_values_by_hand():
    assert representable_values(FloatFormat(2, 1, ieee=False)).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    assert representable_values(FloatFormat(2, 1)).tolist() == [0.0, 0.5, 1.0, 1.5, 2.0, 3.0]  # e=3: inf, NaN
    assert representable_values(FloatFormat(1, 1, ieee=False)).tolist() == [0.0, 1.0, 2.0]
    assert representable_values(FloatFormat(3, 2)).tolist()[:6] == [0.0, 0.0625, 0.125, 0.1875, 0.25, 0.3125]
    lengths = {name: len(representable_values(name)) for name in ("fp8_e4m3", "fp8_e5m2", "fp16", "bf16")}
    assert lengths == {"fp8_e4m3": 127, "fp8_e5m2": 124, "fp16": 31744, "bf16": 32640}


@pytest.mark.parametrize("fmt", SMALL, ids=lambda f: f.name)
def test_representable_values_structure(fmt):
    v = representable_values(fmt)
    assert v[0] == 0 and not np.signbit(v[0]) and v[-1] == fmt.max
    assert (np.diff(v) > 0).all()
    assert v[1] == fmt.smallest_subnormal and fmt.smallest_normal in v and 1.0 in v
    assert bits_equal(round_to_format(v, fmt), v)  # every value is a fixed point of rounding


def test_representable_values_refuses_wide_formats():
    with pytest.raises(ValueError, match="at most 16 bits; fp32 has 32"):
        representable_values("fp32")


DECOMPOSE_GOLDEN = [  # (format, x, sign, exponent, mantissa, code, bits, value)
    ("fp16", 1.0, 0, 15, 0, 0x3C00, "0 01111 0000000000", 1.0),
    ("fp16", -65504.0, 1, 30, 1023, 0xFBFF, "1 11110 1111111111", -65504.0),
    ("fp16", 2.0**-24, 0, 0, 1, 0x0001, "0 00000 0000000001", 2.0**-24),
    ("bf16", 1 / 3, 0, 125, 0x2B, 0x3EAB, "0 01111101 0101011", 0.333984375),
    ("fp8_e4m3", 448.0, 0, 15, 6, 0x7E, "0 1111 110", 448.0),
    ("fp8_e4m3", -0.0, 1, 0, 0, 0x80, "1 0000 000", -0.0),
    ("fp8_e4m3", 0.3, 0, 5, 2, 0x2A, "0 0101 010", 0.3125),
    ("fp8_e5m2", -2.0, 1, 16, 0, 0xC0, "1 10000 00", -2.0),
    ("fp8_e5m2", 3 * 2.0**-16, 0, 0, 3, 0x03, "0 00000 11", 3 * 2.0**-16),
]


@pytest.mark.parametrize(("name", "x", "s", "e", "m", "code", "bits", "value"), DECOMPOSE_GOLDEN)
def test_decompose_golden(name, x, s, e, m, code, bits, value):
    got = decompose(x, name)
    assert isinstance(got, FloatFields)
    assert tuple(got) == (s, e, m, code, bits, value)
    assert np.signbit(got.value) == bool(s)


def test_decompose_specials_and_errors():
    assert decompose(1e6, "fp8_e4m3").bits == "0 1111 110"  # saturated to max
    assert decompose(np.inf, "fp16", overflow="ieee")[:4] == (0, 31, 0, 0x7C00)
    assert decompose(np.nan, "fp16", overflow="ieee")[:4] == (0, 31, 512, 0x7E00)  # the quiet NaN
    assert decompose(np.nan, "fp8_e4m3", overflow="ieee")[:4] == (0, 15, 7, 0x7F)
    with pytest.raises(TypeError, match="single number"):
        decompose([1.0, 2.0], "fp16")
    with pytest.raises(TypeError, match="value must be"):
        decompose("1.0", "fp16")
    with pytest.raises(ValueError, match="unknown format"):
        decompose(1.0, "fp4")
    with pytest.raises(ValueError, match="exceeds fp16.max"):
        decompose(1e6, "fp16", overflow="error")
    with pytest.raises(ValueError, match="non-finite"):
        decompose(np.nan, "fp16")


# ---------------------------------------------------------------------------------------------
# Every tie of every binade, in each small format, against the table-lookup oracle
# ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", SMALL, ids=lambda f: f.name)
def test_all_ties_against_table_oracle(fmt):
    v = representable_values(fmt).astype(np.float64)
    v = np.append(v, fmt.max + 2.0 ** (fmt.emax - fmt.man_bits))
    mid = ((v[:-1] + v[1:]) / 2)
    x = np.concatenate([v, mid])
    x = x[x <= F32_MAX].astype(np.float32)  # exact for these formats
    x = np.concatenate([x, np.nextafter(x, np.float32(0)), np.nextafter(x, np.float32(np.inf))])
    x = np.concatenate([x, -x])
    x = x[np.isfinite(x)]
    expected = nearest_even(x, fmt)
    assert bits_equal(round_to_format(x, fmt), saturate(expected, fmt))
    ieee = round_to_format(x, fmt, overflow="ieee")
    over = np.abs(expected) > fmt.max
    assert over.any() and bits_equal(ieee[~over], expected[~over])
    assert (ieee[over] == np.copysign(np.inf if fmt.ieee else fmt.max, x[over])).all()


# ---------------------------------------------------------------------------------------------
# Hypothesis properties
# ---------------------------------------------------------------------------------------------

formats = st.sampled_from(list(FORMATS.values()) + CUSTOM) | st.builds(
    FloatFormat,
    exp_bits=st.integers(2, 8),
    man_bits=st.integers(1, 10),
    bias=st.none() | st.integers(-5, 20),
    ieee=st.booleans(),
)


@st.composite
def format_and_values(draw):
    """A format and a float32 array spread over its whole range, plus some extreme values."""
    fmt = draw(formats)
    top = min(1.5 * fmt.max, F32_MAX)
    scaled = st.floats(-top, top, width=32) | st.floats(width=32, allow_nan=False, allow_infinity=False)
    tiny = st.floats(-8 * fmt.smallest_normal, 8 * fmt.smallest_normal, width=32)
    xs = draw(st.lists(scaled | tiny, min_size=1, max_size=40))
    return fmt, np.array(xs, dtype=np.float32)


@given(format_and_values())
def test_idempotent(case):
    fmt, x = case
    r = round_to_format(x, fmt)
    assert bits_equal(round_to_format(r, fmt), r)


@given(format_and_values())
def test_monotonic(case):
    fmt, x = case
    x = np.sort(x)
    assert (np.diff(round_to_format(x, fmt).astype(np.float64)) >= 0).all()


@given(format_and_values())
def test_error_at_most_half_ulp_inside_range(case):
    fmt, x = case
    x = x.astype(np.float64)
    x = x[np.abs(x) <= fmt.max]
    r = round_to_format(x, fmt).astype(np.float64)
    binade = np.floor(np.log2(np.maximum(np.abs(x), fmt.smallest_subnormal)))
    ulp = 2.0 ** (np.maximum(binade, fmt.emin) - fmt.man_bits)
    assert (np.abs(r - x) <= ulp / 2).all()
    assert (np.abs(r) <= fmt.max).all()


@given(format_and_values())
def test_matches_table_oracle(case):
    fmt, x = case
    assume(fmt.bits <= 16)
    assert bits_equal(round_to_format(x, fmt), saturate(nearest_even(x, fmt), fmt))


@given(format_and_values())
def test_results_are_representable(case):
    fmt, x = case
    assume(fmt.bits <= 16)
    r = round_to_format(x, fmt)
    assert np.isin(np.abs(r), representable_values(fmt)).all()


@given(st.sampled_from(SMALL), st.floats(width=32, allow_nan=False, allow_infinity=False))
def test_decompose_fields_rebuild_the_value(fmt, x):
    f = decompose(x, fmt)
    M = fmt.man_bits
    if f.exponent == 0:
        rebuilt = 2.0 ** (1 - fmt.bias) * (f.mantissa / 2**M)
    else:
        rebuilt = 2.0 ** (f.exponent - fmt.bias) * (1 + f.mantissa / 2**M)
    assert (-1) ** f.sign * rebuilt == f.value == round_to_format(x, fmt)
    assert f.code == int(f.bits.replace(" ", ""), 2)
    assert 0 <= f.mantissa < 2**M and 0 <= f.exponent < 2**fmt.exp_bits
