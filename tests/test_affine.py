"""Unit and property tests for qrange, calc_qparams, rounding and affine quantize/dequantize."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn import (
    calc_qparams,
    code_dtype,
    dequantize,
    fake_quantize,
    qrange,
    quantize,
    round_to_int,
)
from qlearn.affine import _CHUNK

# ---------------------------------------------------------------- golden tables (by hand)


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        ((8,), (-128, 127)),
        ((8, True, True), (-127, 127)),
        ((8, False), (0, 255)),
        ((8, False, True), (0, 254)),
        ((4,), (-8, 7)),
        ((4, False), (0, 15)),
        ((2,), (-2, 1)),
        ((1,), (-1, 0)),
        ((1, False), (0, 1)),
        ((32,), (-(2**31), 2**31 - 1)),
        ((32, False), (0, 2**32 - 1)),
    ],
)
def test_qrange_table(args, expected):
    assert qrange(*args) == expected


@pytest.mark.parametrize(
    ("xmin", "xmax", "qmin", "qmax", "symmetric", "scale", "zero_point"),
    [
        # (hi - lo) / 255 and qmin - round(lo / scale); 0.0 is always inside the range.
        (-1.0, 3.0, 0, 255, False, 4 / 255, 64),
        (0.0, 2.55, 0, 255, False, 0.01, 0),
        (1.0, 2.0, 0, 255, False, 2 / 255, 0),  # the range is widened to [0, 2]
        (-2.0, -1.0, 0, 255, False, 2 / 255, 255),  # ... and to [-2, 0]
        (-1.0, 3.0, -128, 127, False, 4 / 255, -64),
        # symmetric: max(|lo|, hi) / ((qmax - qmin) / 2); zero-point 0 (signed) or 128 (0..255)
        (-1.0, 3.0, -128, 127, True, 3 / 127.5, 0),
        (-1.0, 3.0, 0, 255, True, 3 / 127.5, 128),
        (-4.0, 1.0, -8, 7, True, 4 / 7.5, 0),
        (-4.0, 1.0, 0, 15, True, 4 / 7.5, 7),  # a customized unsigned range: (qmin + qmax) // 2
    ],
)
def test_calc_qparams_table(xmin, xmax, qmin, qmax, symmetric, scale, zero_point):
    s, z = calc_qparams(xmin, xmax, qmin, qmax, symmetric=symmetric)
    assert s.dtype == np.float32 and s == np.float32(scale)
    assert isinstance(z, int) and z == zero_point


@pytest.mark.parametrize("value", [0.0, 5.0, -3.0, 1e-30])
def test_calc_qparams_constant_tensor_never_divides_by_zero(value):
    scale, zp = calc_qparams(value, value, -128, 127)
    assert np.isfinite(scale) and scale > 0
    codes = quantize(np.full(4, value, dtype=np.float32), scale, zp, -128, 127)
    assert np.isfinite(dequantize(codes, scale, zp)).all()


def test_calc_qparams_per_channel():
    scale, zp = calc_qparams(np.array([-1.0, 0.0, -2.0]), np.array([1.0, 2.55, 0.0]), 0, 255)
    assert scale.dtype == np.float32 and zp.dtype == np.int64
    np.testing.assert_array_equal(scale, np.float32([2 / 255, 0.01, 2 / 255]))
    # -1 / float32(2/255) = -127.49999 in float32 (not the tie -127.5), so zero_point 127, as in torch
    np.testing.assert_array_equal(zp, [127, 0, 255])


@pytest.mark.parametrize(
    ("rounding", "expected"),
    [
        ("half_even", [-2, -2, -1, 0, 0, 0, 1, 2, 2, 2]),
        ("half_away", [-3, -2, -1, -1, 0, 1, 1, 2, 3, 2]),
        ("floor", [-3, -2, -2, -1, 0, 0, 1, 1, 2, 2]),
        ("ceil", [-2, -1, -1, 0, 0, 1, 2, 2, 3, 3]),
    ],
)
def test_rounding_table(rounding, expected):
    v = np.array([-2.5, -1.5, -1.2, -0.5, 0.0, 0.5, 1.2, 1.5, 2.5, 2.4999998], dtype=np.float32)
    assert round_to_int(v, rounding).tolist() == expected


def test_half_away_is_exact_just_below_one_half():
    # floor(|v| + 0.5) would give 1 here: 0.49999997 + 0.5 rounds to 1.0 in float32.
    v = np.float32([0.49999997, -0.49999997])
    assert round_to_int(v, "half_away").tolist() == [0.0, 0.0]


def test_quantize_table():
    x = np.float32([-300.0, -1.0, -0.25, 0.0, 0.25, 0.75, 1.25, 300.0])
    # scale 0.5: x / scale = -600, -2, -0.5, 0, 0.5, 1.5, 2.5, 600; ties go to even; saturate.
    assert quantize(x, 0.5, 0, -128, 127).tolist() == [-128, -2, 0, 0, 0, 2, 2, 127]
    assert quantize(x, 0.5, 10, 0, 255).tolist() == [0, 8, 10, 10, 10, 12, 12, 255]


def test_quantize_saturates_instead_of_wrapping():
    # The trap: codes 0..255 cast to int8 wrap (200 -> -56). qlearn clamps first, then casts.
    codes = quantize(np.float32([2.0, 1e6]), 0.01, 0, 0, 255)
    assert codes.dtype == np.uint8 and codes.tolist() == [200, 255]
    assert quantize(np.float32([1e6, -1e6]), 0.01, 0, -128, 127).tolist() == [127, -128]


def test_code_dtype_holds_range():
    for bits in range(1, 33):
        for signed in (True, False):
            qmin, qmax = qrange(bits, signed)
            info = np.iinfo(code_dtype(qmin, qmax))
            assert info.min <= qmin and qmax <= info.max


def test_dequantize_table_and_no_wrap():
    q = np.array([0, 128, 255], dtype=np.uint8)
    np.testing.assert_array_equal(dequantize(q, 0.5, 128), np.float32([-64.0, 0.0, 63.5]))
    q8 = np.array([-128, 127], dtype=np.int8)  # -128 - 100 would wrap in int8
    np.testing.assert_array_equal(dequantize(q8, 1.0, 100), np.float32([-228.0, 27.0]))


def test_per_channel_axis():
    x = np.arange(12, dtype=np.float32).reshape(3, 4)
    scale = np.float32([1.0, 2.0, 4.0])
    q = quantize(x, scale, [0, 0, 0], -128, 127, axis=0)
    np.testing.assert_array_equal(q, np.rint(x / scale[:, None]))
    q1 = quantize(x.T, scale, [0, 0, 0], -128, 127, axis=-1)
    np.testing.assert_array_equal(q1, q.T)
    np.testing.assert_array_equal(dequantize(q, scale, [0, 0, 0], axis=0), q * scale[:, None])


def test_blocked_path_equals_plain_path():
    rng = np.random.default_rng(1)
    x = (rng.standard_normal(3 * _CHUNK + 17) * 4).astype(np.float32)
    blocked = quantize(x, 0.03, -5, -128, 127)
    plain = np.concatenate([quantize(part, 0.03, -5, -128, 127) for part in np.array_split(x, 50)])
    np.testing.assert_array_equal(blocked, plain)


def test_empty_arrays():
    assert quantize(np.zeros((0, 3), np.float32), 0.1, 0, -128, 127).shape == (0, 3)
    assert dequantize(np.zeros(0, np.int8), 0.1, 0).shape == (0,)
    assert fake_quantize([], 0.1, 0, -128, 127).shape == (0,)
    assert quantize(np.zeros((2, 0)), np.float32([1, 1]), [0, 0], -128, 127, axis=0).shape == (2, 0)


def test_stochastic_rounding_is_unbiased_and_reproducible():
    v = np.full(200_000, 0.3, dtype=np.float32)
    r1 = round_to_int(v, "stochastic", np.random.default_rng(0))
    r2 = round_to_int(v, "stochastic", np.random.default_rng(0))
    np.testing.assert_array_equal(r1, r2)
    assert set(np.unique(r1).tolist()) == {0.0, 1.0}
    # mean of Bernoulli(0.3) over 2e5 draws: standard error ~0.001
    assert abs(r1.mean() - 0.3) < 0.005


# ---------------------------------------------------------------- errors


@pytest.mark.parametrize(
    ("call", "exc", "match"),
    [
        (lambda: qrange(0), ValueError, "bits must be between 1 and 32, got 0"),
        (lambda: qrange(33), ValueError, "bits"),
        (lambda: qrange(8.0), TypeError, "bits must be an integer"),
        (lambda: qrange(1, narrow=True), ValueError, "narrow"),
        (lambda: calc_qparams(2.0, 1.0, 0, 255), ValueError, "xmin must not exceed xmax"),
        (lambda: calc_qparams(np.nan, 1.0, 0, 255), ValueError, "finite"),
        (lambda: calc_qparams(-np.inf, 1.0, 0, 255), ValueError, "finite"),
        (lambda: calc_qparams(-3e38, 3e38, 0, 255), ValueError, "too wide"),
        (lambda: calc_qparams(0.0, 1.0, 5, 5), ValueError, "qmin and qmax must differ"),
        (lambda: calc_qparams(0.0, 1.0, 255, 0), ValueError, "qmin must not exceed qmax"),
        (lambda: quantize([np.nan], 0.1, 0, -128, 127), ValueError, "non-finite"),
        (lambda: quantize([np.inf], 0.1, 0, -128, 127), ValueError, "non-finite"),
        (lambda: quantize(np.r_[np.zeros(_CHUNK * 2), np.inf], 0.1, 0, -128, 127), ValueError, "non-finite"),
        (lambda: quantize([1.0], 0.0, 0, -128, 127), ValueError, "scale must be positive"),
        (lambda: quantize([1.0], -0.1, 0, -128, 127), ValueError, "scale must be positive"),
        (lambda: quantize([1.0], np.nan, 0, -128, 127), ValueError, "scale must be positive"),
        (lambda: quantize([1.0], 0.1, 300, 0, 255), ValueError, r"zero_point must lie in \[qmin, qmax\]"),
        (lambda: quantize([1.0], 0.1, 0.5, 0, 255), TypeError, "zero_point must be an integer"),
        (lambda: quantize([1.0], 0.1, 0, 0, 255, rounding="nearest"), ValueError, "rounding must be one of"),
        (lambda: quantize([1.0], 0.1, 0, 0, 255, rounding="stochastic"), TypeError, "rng="),
        (lambda: quantize("abc", 0.1, 0, 0, 255), TypeError, "x must be an array of real numbers"),
        (lambda: quantize([1 + 2j], 0.1, 0, 0, 255), TypeError, "dtype complex"),
        (lambda: quantize(np.ones((2, 3)), [0.1, 0.1], [0, 0], 0, 255, axis=1), ValueError, "one entry per channel"),
        (lambda: quantize(np.ones((2, 3)), [0.1, 0.1], [0, 0], 0, 255), ValueError, "pass axis="),
        (lambda: quantize(np.ones((2, 3)), [0.1, 0.1], [0, 0], 0, 255, axis=2), ValueError, "axis=2 is out of range"),
        (lambda: dequantize(np.float32([1.0]), 0.1, 0), TypeError, "q must hold integer codes"),
    ],
)
def test_bad_input_gets_a_clear_error(call, exc, match):
    with pytest.raises(exc, match=match):
        call()


# ---------------------------------------------------------------- properties

finite_f32 = st.floats(-1e6, 1e6, allow_nan=False, width=32)
bits_st = st.integers(1, 16)


@st.composite
def quant_setup(draw):
    bits = draw(bits_st)
    signed = draw(st.booleans())
    qmin, qmax = qrange(bits, signed)
    x = draw(hnp.arrays(np.float32, draw(st.integers(1, 40)), elements=finite_f32))
    symmetric = draw(st.booleans())
    scale, zp = calc_qparams(x.min(), x.max(), qmin, qmax, symmetric=symmetric)
    return x, scale, zp, qmin, qmax


@given(quant_setup())
def test_codes_stay_in_range(setup):
    x, scale, zp, qmin, qmax = setup
    q = quantize(x, scale, zp, qmin, qmax)
    assert q.min() >= qmin and q.max() <= qmax


@given(quant_setup())
def test_round_trip_error_at_most_half_a_step_inside_the_range(setup):
    x, scale, zp, qmin, qmax = setup
    x_hat = dequantize(quantize(x, scale, zp, qmin, qmax), scale, zp).astype(np.float64)
    lo, hi = (qmin - zp) * float(scale), (qmax - zp) * float(scale)
    inside = (x >= lo) & (x <= hi)
    err = np.abs(x.astype(np.float64) - x_hat)[inside]
    # half a step, plus float32 rounding of x * (1/scale) and of the dequantized value
    tol = float(scale) / 2 + 4 * np.spacing(np.float32(np.abs(x).max() + float(scale)))
    assert (err <= tol).all()


@given(quant_setup())
def test_fake_quantize_is_idempotent(setup):
    x, scale, zp, qmin, qmax = setup
    once = fake_quantize(x, scale, zp, qmin, qmax)
    twice = fake_quantize(once, scale, zp, qmin, qmax)
    np.testing.assert_array_equal(once, twice)


@given(quant_setup())
def test_fake_quantize_equals_dequantize_of_quantize(setup):
    x, scale, zp, qmin, qmax = setup
    np.testing.assert_array_equal(
        fake_quantize(x, scale, zp, qmin, qmax), dequantize(quantize(x, scale, zp, qmin, qmax), scale, zp)
    )


@given(
    st.floats(-1e4, 1e4, allow_nan=False, width=32),
    st.floats(-1e4, 1e4, allow_nan=False, width=32),
    bits_st,
    st.booleans(),
    st.booleans(),
)
def test_zero_is_exactly_representable(a, b, bits, signed, symmetric):
    xmin, xmax = min(a, b), max(a, b)
    qmin, qmax = qrange(bits, signed)
    assume(qmax - qmin >= 2 or not symmetric)
    scale, zp = calc_qparams(xmin, xmax, qmin, qmax, symmetric=symmetric)
    assert qmin <= zp <= qmax
    assert fake_quantize(np.float32([0.0]), scale, zp, qmin, qmax)[0] == 0.0


@given(hnp.arrays(np.float32, st.integers(1, 30), elements=st.floats(-1e3, 1e3, width=32)))
def test_rounding_modes_bracket_the_value(v):
    floor, ceil = round_to_int(v, "floor"), round_to_int(v, "ceil")
    for mode in ("half_even", "half_away"):
        r = round_to_int(v, mode)
        assert ((r == floor) | (r == ceil)).all()
        assert (np.abs(r - v) <= 0.5).all()
    r = round_to_int(v, "stochastic", np.random.default_rng(3))
    assert ((r == floor) | (r == ceil)).all()


@given(st.integers(-1000, 1000).map(lambda k: np.float32(k + 0.5)))
def test_half_even_ties_go_to_the_even_neighbour(v):
    assert round_to_int(np.float32([v]))[0] % 2 == 0


def test_blocked_fake_quantize_equals_plain_path():
    rng = np.random.default_rng(2)
    x = (rng.standard_normal(2 * _CHUNK + 5) * 4).astype(np.float32)
    blocked = fake_quantize(x, 0.03, 7, 0, 255)
    plain = np.concatenate([fake_quantize(part, 0.03, 7, 0, 255) for part in np.array_split(x, 40)])
    np.testing.assert_array_equal(blocked.view(np.int32), plain.view(np.int32))


def test_zero_dimensional_input():
    assert quantize(0.5, 0.1, 0, -128, 127) == 5
    assert quantize(np.float32(0.5), 0.1, 0, -128, 127).shape == ()
    assert fake_quantize(0.26, 0.5, 0, -128, 127) == np.float32(0.5)
