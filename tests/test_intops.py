"""Unit and property tests of qlearn.intops: integer matmul, bias, fixed-point requantization, layers.

Golden tables are computed by hand in the comments; properties are checked against exact rational
arithmetic (Python ints and fractions), never against qlearn itself. The oracle tests against
PyTorch's quantized kernels are in ``test_intops_torch.py``.
"""

from __future__ import annotations

from fractions import Fraction

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qlearn import intops
from qlearn.intops import (
    im2col,
    int_matmul,
    multiply_by_quantized_multiplier,
    quantize_bias,
    quantize_multiplier,
    quantized_conv2d,
    quantized_linear,
    requantize,
    rounding_divide_by_pot,
    saturating_rounding_doubling_high_mul,
)

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
int32s = st.integers(INT32_MIN, INT32_MAX)
multipliers = st.floats(2.0**-40, 1.0, exclude_max=True, allow_subnormal=False)


def _round_half_up(f: Fraction) -> int:
    return int((f + Fraction(1, 2)).__floor__())


def _round_half_away(f: Fraction) -> int:
    r = int((abs(f) + Fraction(1, 2)).__floor__())
    return r if f >= 0 else -r


def _round_half_even(f: Fraction) -> int:
    return round(f)  # Fraction.__round__ rounds half to even


# --- int_matmul -----------------------------------------------------------------------------------

def test_int_matmul_golden():
    # (130-128)*1 + (131-128)*(-2) + (129-128)*127 = 2 - 6 + 127 = 123
    a = np.array([[130, 131, 129], [128, 128, 128]], np.uint8)
    b = np.array([[1, 0], [-2, 5], [127, -128]], np.int8)
    acc = int_matmul(a, b, 128, 0)
    assert acc.dtype == np.int32
    # second column, first row: 2*0 + 3*5 + 1*(-128) = -113; second row: all zeros (codes = zero-point)
    assert acc.tolist() == [[123, -113], [0, 0]]


def test_int_matmul_subtracts_zero_points_in_a_wide_type():
    a = np.array([[3, 200]], np.uint8)  # 3 - 128 = -125 (in uint8 it would be 131)
    b = np.array([[2], [1]], np.int8)
    assert int_matmul(a, b, 128, 0).tolist() == [[-125 * 2 + 72 * 1]]
    a8 = np.array([[-128, 127]], np.int8)  # - (-128): 0 and 255 (in int8, 127 + 128 wraps)
    assert int_matmul(a8, b, -128, 0).tolist() == [[0 * 2 + 255 * 1]]


def test_int_matmul_matches_int64_and_per_column_zero_points(rng):
    a = rng.integers(0, 256, (5, 40)).astype(np.uint8)
    b = rng.integers(-128, 128, (40, 7)).astype(np.int8)
    zb = rng.integers(-10, 10, 7)
    expected = (a.astype(np.int64) - 17) @ (b.astype(np.int64) - zb)
    assert np.array_equal(int_matmul(a, b, 17, zb), expected)
    assert int_matmul(a, b, 17, zb, acc_dtype=np.int64).dtype == np.int64


def test_int16_accumulator_wraps_modulo_2_16(rng):
    a = rng.integers(0, 256, (6, 576)).astype(np.uint8)
    b = rng.integers(-128, 128, (576, 4)).astype(np.int8)
    exact = a.astype(np.int64) @ b.astype(np.int64)
    wrapped = int_matmul(a, b, acc_dtype=np.int16)
    assert wrapped.dtype == np.int16
    assert np.array_equal((exact - wrapped) % 2**16, np.zeros_like(exact))
    assert (wrapped != exact).mean() > 0.5  # most sums of 576 products do not fit in 16 bits
    assert np.array_equal(int_matmul(a, b, acc_dtype=np.int8), ((exact + 128) % 256 - 128).astype(np.int8))


def test_int_matmul_int32_never_wraps_silently():
    k = 66_000  # 66000 * 255 * 128 > 2**31 - 1
    a = np.full((1, k), 255, np.uint8)
    b = np.full((k, 1), -128, np.int8)
    with pytest.raises(OverflowError, match="int32"):
        int_matmul(a, b)
    assert int_matmul(a, b, acc_dtype=np.int64).item() == -k * 255 * 128
    assert int_matmul(a[:, :65_000], b[:65_000]).item() == -65_000 * 255 * 128  # fits


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "match"),
    [
        ((np.ones((2, 3), np.float32), np.ones((3, 2), np.int8)), {}, TypeError, "a_q must hold integer codes"),
        ((np.ones((2, 3), np.uint8), np.ones((4, 2), np.int8)), {}, ValueError, "same K"),
        ((np.ones((2, 3), np.uint8), np.ones((3, 2), np.int8), 0.5), {}, TypeError, "a_zero_point"),
        ((np.ones((2, 3), np.uint8), np.ones((3, 2), np.int8), 0, np.zeros(3, np.int64)), {}, ValueError, "b_zero_point"),
        ((np.ones((2, 3), np.uint8), np.ones((3, 2), np.int8)), {"acc_dtype": np.float32}, TypeError, "acc_dtype"),
    ],
)
def test_int_matmul_rejects_bad_input(args, kwargs, error, match):
    with pytest.raises(error, match=match):
        int_matmul(*args, **kwargs)


# --- quantize_bias -----------------------------------------------------------------------------------

def test_quantize_bias_golden():
    # scale = float32(0.1) * float32(0.01) ~= 0.001: 0.5 -> 500, -0.25 -> -250, 0.0009 -> 1
    assert quantize_bias(np.array([0.5, -0.25, 0.0009], np.float32), 0.1, 0.01).tolist() == [500, -250, 1]
    # ties to even on the accumulator grid: scale 2**-4 * 2**-4 = 2**-8; 2.5 and 3.5 steps
    q = quantize_bias(np.array([2.5, 3.5, -2.5], np.float32) * 2.0**-8, 2.0**-4, 2.0**-4)
    assert q.tolist() == [2, 4, -2]
    assert q.dtype == np.int32


def test_quantize_bias_per_channel_and_saturation():
    q = quantize_bias(np.array([0.5, 0.5, 0.5], np.float32), 0.5, np.array([0.25, 0.5, 2.0**-40]))
    assert q.tolist() == [4, 2, INT32_MAX]  # 0.5 / 2**-41 = 2**40: saturates at the int32 maximum
    with pytest.raises(ValueError, match="bias must have shape"):
        quantize_bias(np.zeros(2, np.float32), 0.5, np.array([0.25, 0.5, 1.0]))
    with pytest.raises(ValueError, match="weight_scale must be positive"):
        quantize_bias(np.zeros(2, np.float32), 0.5, 0.0)


# --- quantize_multiplier ------------------------------------------------------------------------------

@pytest.mark.parametrize(
    ("M", "expected"),
    [
        (0.5, (2**30, 0)),  # 0.5 = 0.5 * 2**0: M0 = 0.5 * 2**31
        (0.25, (2**30, 1)),  # 0.25 = 0.5 * 2**-1
        (0.75, (3 * 2**29, 0)),  # 0.75 * 2**31 = 1610612736
        (0.1, (1717986918, 3)),  # 0.1 = 0.8 * 2**-3; 0.8 * 2**31 = 1717986918.4
        (2.0**-20, (2**30, 19)),
        (1 / 3, (1431655765, 1)),  # 2/3 * 2**31 = 1431655765.33
        ((2.0**31 - 0.25) * 2.0**-32, (2**30, 0)),  # q * 2**31 rounds up to 2**31: renormalised
        (1.0 - 2.0**-40, (2**30, -1)),  # rounds up to 1.0: M0 = 2**30 and a left shift
    ],
)
def test_quantize_multiplier_golden(M, expected):
    assert quantize_multiplier(M) == expected
    assert all(type(v) is int for v in quantize_multiplier(M))


@given(multipliers)
def test_quantize_multiplier_is_within_2_pow_minus_31_relative(M):
    M0, shift = quantize_multiplier(M)
    assert 2**30 <= M0 < 2**31
    approx = Fraction(M0, 2 ** (31 + shift)) if shift >= -31 else None
    assert abs(approx - Fraction(M)) <= Fraction(M) * Fraction(1, 2**31)


def test_quantize_multiplier_per_channel_matches_scalars(rng):
    M = rng.uniform(1e-6, 0.9, 16)
    M0, shift = quantize_multiplier(M)
    assert M0.dtype == np.int32 and shift.dtype == np.int32
    assert [quantize_multiplier(float(m)) for m in M] == list(zip(M0.tolist(), shift.tolist(), strict=True))


@pytest.mark.parametrize(
    ("M", "error"),
    [(0.0, ValueError), (-0.5, ValueError), (1.0, ValueError), (3.0, ValueError), (float("nan"), ValueError),
     (True, TypeError), ("0.5", TypeError)],
)
def test_quantize_multiplier_rejects_bad_input(M, error):
    with pytest.raises(error, match="M must"):
        quantize_multiplier(M)


# --- the two gemmlowp steps -------------------------------------------------------------------------

def test_srdhm_golden():
    # times 0.5 (b = 2**30): 1.5 -> 2, -1.5 -> -1 (ties up), 0.5 -> 1, -0.5 -> 0, 2.5 -> 3, -2.5 -> -2
    got = saturating_rounding_doubling_high_mul(np.array([3, -3, 1, -1, 5, -5]), 2**30)
    assert got.tolist() == [2, -1, 1, 0, 3, -2]
    assert saturating_rounding_doubling_high_mul(INT32_MIN, INT32_MIN).item() == INT32_MAX
    assert saturating_rounding_doubling_high_mul(INT32_MAX, INT32_MAX).item() == INT32_MAX - 1  # (2**31-1)**2 / 2**31


@given(int32s, int32s)
def test_srdhm_is_round_half_up_of_a_b_over_2_pow_31(a, b):
    got = int(saturating_rounding_doubling_high_mul(a, b))
    if a == b == INT32_MIN:
        assert got == INT32_MAX
    else:
        assert got == _round_half_up(Fraction(a * b, 2**31))


def test_rounding_divide_by_pot_golden():
    # / 4: 1.25 -> 1, -1.25 -> -1, 1.5 -> 2, -1.5 -> -2 (ties away from zero), 1.75 -> 2, -1.75 -> -2
    assert rounding_divide_by_pot(np.array([5, -5, 6, -6, 7, -7]), 2).tolist() == [1, -1, 2, -2, 2, -2]
    assert rounding_divide_by_pot(np.array([5, -5]), 0).tolist() == [5, -5]
    with pytest.raises(ValueError, match="exponent"):
        rounding_divide_by_pot(5, -1)


@given(int32s, st.integers(0, 31))
def test_rounding_divide_by_pot_is_round_half_away(x, e):
    assert int(rounding_divide_by_pot(x, e)) == _round_half_away(Fraction(x, 2**e))


@given(st.integers(-(2**24), 2**24), multipliers.filter(lambda m: m < 1 - 2.0**-30))
def test_multiply_by_quantized_multiplier_is_within_one_of_round_acc_m(acc, M):
    M0, shift = quantize_multiplier(M)
    exact = Fraction(acc) * Fraction(M0, 2 ** (31 + shift))
    got = int(multiply_by_quantized_multiplier(acc, M0, shift))
    single = int(multiply_by_quantized_multiplier(acc, M0, shift, single_rounding=True))
    assert single == _round_half_up(exact)  # one rounding: exact
    # two roundings: the first moves the value by at most half of 2**-shift
    assert abs(got - exact) <= Fraction(1, 2) + Fraction(1, 2 ** (shift + 1))
    distance_to_tie = abs(exact - exact.__floor__() - Fraction(1, 2))
    if distance_to_tie > Fraction(1, 2 ** (shift + 1)):
        assert got == _round_half_even(exact)
    # and round(acc * M) with the real M: the M0 approximation moves acc * M by < 2**-31 |acc M|
    true = Fraction(acc) * Fraction(M)
    if abs(true - true.__floor__() - Fraction(1, 2)) > Fraction(1, 2 ** (shift + 1)) + abs(true) / 2**30:
        assert got == _round_half_even(true)


def test_double_rounding_differs_from_single_rounding_only_near_ties(rng):
    M0, shift = quantize_multiplier(0.0123)
    acc = rng.integers(-(2**20), 2**20, 200_000)
    double = multiply_by_quantized_multiplier(acc, M0, shift)
    single = multiply_by_quantized_multiplier(acc, M0, shift, single_rounding=True)
    differ = double != single
    assert 0 < differ.mean() < 2.0 ** -(shift)  # rare, but it happens
    exact = acc[differ] * (M0 / 2.0 ** (31 + shift))
    assert np.all(np.abs(exact - np.floor(exact) - 0.5) <= 2.0 ** -(shift + 1))
    assert np.all(np.abs(double - single) <= 1)


def test_negative_shift_means_m_rounded_up_to_one():
    M0, shift = quantize_multiplier(1.0 - 2.0**-40)  # (2**30, -1): M0 * 2**-30 = 1
    acc = np.array([5, -7, 2**30 + 5, INT32_MAX, INT32_MIN])
    assert np.array_equal(multiply_by_quantized_multiplier(acc, M0, shift), acc)
    assert np.array_equal(multiply_by_quantized_multiplier(acc, M0, shift, single_rounding=True), acc)


# --- requantize ---------------------------------------------------------------------------------------

def test_requantize_golden():
    # M = 0.01: -1000 -> -10 -> 118; 1049 -> 10.49 -> 10 -> 138; 1051 -> 10.51 -> 11 -> 139; +-30000 saturate
    M0, shift = quantize_multiplier(0.01)
    got = requantize(np.array([-30000, -1000, 0, 1049, 1051, 30000]), M0, shift, 128, 0, 255)
    assert got.tolist() == [0, 118, 128, 138, 139, 255]
    assert got.dtype == np.uint8
    signed = requantize(np.array([-30000, -1000, 30000]), M0, shift, -3, -128, 127)
    assert signed.dtype == np.int8 and signed.tolist() == [-128, -13, 127]


@given(st.lists(st.integers(-(2**31) + 1, 2**31 - 1), min_size=1, max_size=20),
       st.floats(1e-6, 0.9), st.integers(0, 255))
def test_requantize_saturates_and_matches_round_acc_m_within_one(acc, M, zp):
    M0, shift = quantize_multiplier(M)
    got = requantize(np.array(acc, np.int64), M0, shift, zp, 0, 255).astype(np.int64)
    assert got.min() >= 0 and got.max() <= 255
    for a, q in zip(acc, got.tolist(), strict=True):
        exact = Fraction(a) * Fraction(M0, 2 ** (31 + shift))
        expected = min(max(_round_half_even(exact) + zp, 0), 255)
        assert abs(q - expected) <= 1
        if abs(exact - exact.__floor__() - Fraction(1, 2)) > Fraction(1, 2 ** (shift + 1)):
            assert q == expected


def test_requantize_per_channel_broadcasts_along_the_last_axis(rng):
    acc = rng.integers(-50_000, 50_000, (6, 3))
    M = np.array([0.001, 0.002, 0.0005])
    M0, shift = quantize_multiplier(M)
    got = requantize(acc, M0, shift, 128, 0, 255)
    for j in range(3):
        m0, s = quantize_multiplier(float(M[j]))
        assert np.array_equal(got[:, j], requantize(acc[:, j], m0, s, 128, 0, 255))


def test_requantize_rejects_bad_input():
    with pytest.raises(TypeError, match="acc must hold integer codes"):
        requantize(np.array([1.5]), 2**30, 0, 0, 0, 255)
    with pytest.raises(ValueError, match="acc must hold int32 values"):
        requantize(np.array([2**40]), 2**30, 0, 0, 0, 255)
    with pytest.raises(ValueError, match="qmin must not exceed qmax"):
        requantize(np.array([1]), 2**30, 0, 0, 10, 5)


# --- whole layers ------------------------------------------------------------------------------------

def _layer(rng, k=64, n=8, batch=5):
    x_q = rng.integers(0, 256, (batch, k)).astype(np.uint8)
    w_q = rng.integers(-127, 128, (n, k)).astype(np.int8)
    bias = rng.normal(0, 0.5, n).astype(np.float32)
    return x_q, np.float32(0.02), 120, w_q, np.float32(0.003), bias


def test_quantized_linear_is_within_one_code_of_the_real_computation(rng):
    x_q, s_x, z_x, w_q, s_w, bias = _layer(rng)
    s_y, z_y = np.float32(0.05), 100
    bias_q = quantize_bias(bias, s_x, s_w)
    y_q = quantized_linear(x_q, s_x, z_x, w_q, s_w, 0, bias_q, s_y, z_y, 0, 255)
    assert y_q.dtype == np.uint8 and y_q.shape == (5, 8)
    # the same layer in float64 from the same codes: y = s_x s_w (acc + bias_q) / s_y
    acc = (x_q.astype(np.int64) - z_x) @ w_q.astype(np.int64).T + bias_q
    real = np.clip(np.rint(acc * (float(s_x) * float(s_w) / float(s_y))) + z_y, 0, 255)
    assert np.abs(y_q - real).max() <= 1
    assert (y_q != real).mean() < 0.05


def test_quantized_linear_per_channel_equals_one_channel_at_a_time(rng):
    x_q, s_x, z_x, w_q, _, bias = _layer(rng, n=4)
    s_w = np.array([0.001, 0.004, 0.002, 0.003], np.float32)
    bias_q = quantize_bias(bias, s_x, s_w)
    y = quantized_linear(x_q, s_x, z_x, w_q, s_w, 0, bias_q, 0.05, 100, 0, 255)
    for j in range(4):
        one = quantized_linear(x_q, s_x, z_x, w_q[j:j + 1], s_w[j], 0, bias_q[j:j + 1], 0.05, 100, 0, 255)
        assert np.array_equal(y[:, j:j + 1], one)


def test_quantized_linear_rejects_m_at_least_one(rng):
    x_q, s_x, z_x, w_q, s_w, _ = _layer(rng)
    with pytest.raises(ValueError, match="M must lie in"):
        quantized_linear(x_q, s_x, z_x, w_q, s_w, 0, None, 1e-6, 0, 0, 255)


def test_im2col_matches_a_loop(rng):
    x = rng.integers(0, 10, (2, 3, 5, 6))
    cols = im2col(x, (2, 3), stride=(2, 1), padding=1, pad_value=7)
    xp = np.pad(x, ((0, 0), (0, 0), (1, 1), (1, 1)), constant_values=7)
    h_out, w_out = (5 + 2 - 2) // 2 + 1, (6 + 2 - 3) // 1 + 1
    assert cols.shape == (2, 3 * 2 * 3, h_out * w_out)
    for i in range(h_out):
        for j in range(w_out):
            window = xp[:, :, 2 * i:2 * i + 2, j:j + 3].reshape(2, -1)
            assert np.array_equal(cols[:, :, i * w_out + j], window)


def _direct_conv_acc(x_q, z_x, w_q, stride, padding):
    x = np.pad(x_q.astype(np.int64) - z_x, ((0, 0), (0, 0), (padding, padding), (padding, padding)))
    n, _, h, w = x.shape
    c_out, _, kh, kw = w_q.shape
    h_out, w_out = (h - kh) // stride + 1, (w - kw) // stride + 1
    acc = np.zeros((n, c_out, h_out, w_out), np.int64)
    for i in range(h_out):
        for j in range(w_out):
            window = x[:, :, i * stride:i * stride + kh, j * stride:j * stride + kw]
            acc[:, :, i, j] = np.einsum("nckl,ockl->no", window, w_q.astype(np.int64))
    return acc


@pytest.mark.parametrize(("stride", "padding"), [(1, 0), (1, 1), (2, 1), (3, 2)])
def test_quantized_conv2d_matches_a_direct_convolution(rng, stride, padding):
    x_q = rng.integers(0, 256, (2, 3, 7, 6)).astype(np.uint8)
    w_q = rng.integers(-127, 128, (4, 3, 3, 3)).astype(np.int8)
    bias_q = rng.integers(-5000, 5000, 4).astype(np.int32)
    s_x, z_x, s_w, s_y, z_y = 0.02, 118, 0.004, 0.06, 90
    got = quantized_conv2d(x_q, s_x, z_x, w_q, s_w, 0, bias_q, s_y, z_y, 0, 255, stride=stride, padding=padding)
    acc = _direct_conv_acc(x_q, z_x, w_q, stride, padding) + bias_q.reshape(1, -1, 1, 1)
    M0, shift = quantize_multiplier(s_x * s_w / s_y)
    assert np.array_equal(got, requantize(acc, M0, shift, z_y, 0, 255))


def test_conv_padding_is_the_zero_point():
    # every input code is the zero-point (real 0.0): the output is the bias alone, also at the borders
    x_q = np.full((1, 2, 4, 4), 77, np.uint8)
    w_q = np.full((3, 2, 3, 3), 100, np.int8)
    bias_q = np.array([1000, -2000, 0], np.int32)
    y = quantized_conv2d(x_q, 0.1, 77, w_q, 0.01, 0, bias_q, 0.1, 128, 0, 255, padding=1)
    M0, shift = quantize_multiplier(0.1 * 0.01 / 0.1)
    expected = requantize(bias_q, M0, shift, 128, 0, 255)
    assert np.array_equal(y, np.broadcast_to(expected.reshape(1, 3, 1, 1), (1, 3, 4, 4)))


def test_public_names():
    assert set(intops.__all__) == {
        "im2col", "int_matmul", "multiply_by_quantized_multiplier", "quantize_bias", "quantize_multiplier",
        "quantized_conv2d", "quantized_linear", "requantize", "rounding_divide_by_pot",
        "saturating_rounding_doubling_high_mul",
    }
