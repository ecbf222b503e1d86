"""Unit and property tests for per-group quantization (qlearn.group)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn import EPS, calc_qparams, quantize
from qlearn.group import dequantize_per_group, fake_quantize_per_group, quantize_per_group

# ---------------------------------------------------------------- golden tables (by hand)


def test_golden_asymmetric_uint4():
    # group [-1.5, 3.0]: scale = 4.5 / 15 = 0.3, zero_point = 0 - round(-1.5 / 0.3) = 5;
    #   codes -5 + 5 = 0 and 10 + 5 = 15.
    # group [0.0, 0.75]: the range [0, 0.75] gives scale 0.05, zero_point 0; codes 0 and 15.
    x = np.array([-1.5, 3.0, 0.0, 0.75], dtype=np.float32)
    q, scale, zero_point = quantize_per_group(x, 2, 0, 15)
    assert q.dtype == np.int8  # the smallest integer type holding 0..15
    np.testing.assert_array_equal(q, [0, 15, 0, 15])
    np.testing.assert_array_equal(scale, np.float32([4.5 / 15, 0.75 / 15]))
    np.testing.assert_array_equal(zero_point, [5, 0])
    np.testing.assert_allclose(dequantize_per_group(q, scale, zero_point, 2), x, atol=1e-6)


def test_golden_symmetric_int4_rounds_ties_to_even_and_clamps():
    # group [-1.5, 3.0], symmetric: scale = 3 / 7.5 = 0.4, zero_point 0;
    #   -1.5 / 0.4 = -3.75 -> -4;  3.0 / 0.4 = 7.5, a tie -> 8 (even) -> clamped to 7.
    # group [1.0, -0.5]: scale = 1 / 7.5; 1.0 -> 7.5 -> 7 after the clamp; -0.5 -> -3.75 -> -4.
    x = np.array([[-1.5, 3.0], [1.0, -0.5]], dtype=np.float32)
    q, scale, zero_point = quantize_per_group(x, 2, -8, 7, symmetric=True)
    np.testing.assert_array_equal(q, [[-4, 7], [7, -4]])
    np.testing.assert_array_equal(scale, np.float32([[3 / 7.5], [1 / 7.5]]))
    np.testing.assert_array_equal(zero_point, [[0], [0]])


def test_groups_are_consecutive_along_axis():
    # Two groups of 3 along axis 0; each column is grouped on its own.
    x = np.array([[1.0, -8.0], [2.0, 0.0], [3.0, 0.0], [10.0, 0.0], [20.0, 0.0], [30.0, 0.0]], np.float32)
    q, scale, zero_point = quantize_per_group(x, 3, 0, 255, axis=0)
    assert scale.shape == zero_point.shape == (2, 2)
    np.testing.assert_array_equal(scale[:, 0], np.float32([3 / 255, 30 / 255]))
    np.testing.assert_array_equal(scale[:, 1], np.float32([8 / 255, EPS]))
    np.testing.assert_array_equal(zero_point, [[0, 255], [0, 0]])


# ---------------------------------------------------------------- shapes and axes


@pytest.mark.parametrize("axis", [0, 1, 2, -1, -2])
def test_matches_moving_axis_to_the_end(rng, axis):
    x = rng.standard_normal((4, 6, 8)).astype(np.float32)
    g = 2
    q, scale, zero_point = quantize_per_group(x, g, -8, 7, axis=axis)
    expected = list(x.shape)
    expected[axis] //= g
    assert q.shape == x.shape and scale.shape == zero_point.shape == tuple(expected)
    assert scale.dtype == np.float32 and zero_point.dtype == np.int64
    # The same thing done by hand: the axis last, then groups of g there.
    moved = np.moveaxis(x, axis, -1)
    q2, s2, z2 = quantize_per_group(moved, g, -8, 7, axis=-1)
    np.testing.assert_array_equal(np.moveaxis(q, axis, -1), q2)
    np.testing.assert_array_equal(np.moveaxis(scale, axis, -1), s2)
    np.testing.assert_array_equal(np.moveaxis(zero_point, axis, -1), z2)
    x_hat = dequantize_per_group(q, scale, zero_point, g, axis=axis)
    np.testing.assert_array_equal(x_hat, fake_quantize_per_group(x, g, -8, 7, axis=axis))


def test_each_group_uses_its_own_min_and_max(rng):
    x = rng.standard_normal((3, 12)).astype(np.float32)
    _, scale, zero_point = quantize_per_group(x, 4, -128, 127)
    groups = x.reshape(3, 3, 4)
    s_ref, z_ref = calc_qparams(groups.min(-1).ravel(), groups.max(-1).ravel(), -128, 127)
    np.testing.assert_array_equal(scale, s_ref.reshape(3, 3))
    np.testing.assert_array_equal(zero_point, z_ref.reshape(3, 3))


@pytest.mark.parametrize("symmetric", [False, True])
def test_whole_axis_group_is_per_channel(rng, symmetric):
    x = (rng.standard_normal((5, 16)) * rng.uniform(0.1, 10, (5, 1))).astype(np.float32)
    q, scale, zero_point = quantize_per_group(x, 16, -128, 127, symmetric=symmetric)
    s_pc, z_pc = calc_qparams(x.min(1), x.max(1), -128, 127, symmetric)
    np.testing.assert_array_equal(scale[:, 0], s_pc)
    np.testing.assert_array_equal(zero_point[:, 0], z_pc)
    np.testing.assert_array_equal(q, quantize(x, s_pc, z_pc, -128, 127, axis=0))


@pytest.mark.parametrize("qrange_", [(-128, 127), (0, 255), (-8, 7), (0, 15)])
def test_group_size_one_asymmetric_is_lossless_up_to_float32(rng, qrange_):
    # Each value is its own group, at one end of its range: code qmin or qmax, and
    # x_hat = (qmax - qmin) * fl(x / (qmax - qmin)) is x up to one ulp. Below (qmax - qmin) * eps
    # the scale is floored at eps and the step is eps, so the error is at most eps / 2.
    qmin, qmax = qrange_
    x = (rng.standard_normal(20_000) * np.exp(rng.uniform(-20, 8, 20_000))).astype(np.float32)
    x[:3] = [0.0, 1.0, -1.0]
    x_hat = fake_quantize_per_group(x, 1, qmin, qmax)
    err = np.abs(x_hat.astype(np.float64) - x)
    big = np.abs(x) >= (qmax - qmin) * EPS
    assert (err[big] <= np.spacing(np.abs(x[big]))).all()
    assert (err[~big] <= EPS / 2).all()
    assert x_hat[0] == 0.0


def test_group_size_one_symmetric_is_not_lossless():
    # The symmetric scale |x| / ((qmax - qmin) / 2) puts every value on (or, after float32
    # rounding, next to) the tie +-127.5 for int8. A positive value gets 127 (128 is clamped), a
    # negative one -127 or -128: half a step away either way, an error of |x| / 255.
    x = np.array([1.0, -1.0, 2.0, -3.0, 0.1], dtype=np.float32)
    q, scale, _ = quantize_per_group(x, 1, -128, 127, symmetric=True)
    assert (q[x > 0] == 127).all() and np.isin(q[x < 0], [-127, -128]).all()
    x_hat = fake_quantize_per_group(x, 1, -128, 127, symmetric=True)
    err = np.abs(x_hat.astype(np.float64) - x)
    np.testing.assert_allclose(err, np.abs(x) / 255, rtol=0, atol=2 * np.spacing(np.abs(x)).max())


# ---------------------------------------------------------------- properties

group_arrays = st.integers(1, 4).flatmap(
    lambda g: st.tuples(
        st.just(g),
        hnp.arrays(
            np.float32,
            st.tuples(st.integers(1, 3), st.integers(1, 4).map(lambda k: k * g)),
            elements=st.floats(-1e4, 1e4, width=32),
        ),
    )
)
qranges = st.sampled_from([(-128, 127), (0, 255), (-8, 7), (0, 15), (-2, 1)])


@given(group_arrays, qranges, st.booleans())
def test_codes_in_range_and_roundtrip_error_at_most_half_a_step(gx, qrange_, symmetric):
    g, x = gx
    qmin, qmax = qrange_
    q, scale, zero_point = quantize_per_group(x, g, qmin, qmax, symmetric=symmetric)
    assert (q >= qmin).all() and (q <= qmax).all()
    assert (scale > 0).all()
    assert ((zero_point >= qmin) & (zero_point <= qmax)).all()
    x_hat = dequantize_per_group(q, scale, zero_point, g)
    step = np.repeat(scale, g, axis=-1).astype(np.float64)
    err = np.abs(x_hat.astype(np.float64) - x)
    # Every value lies inside its own group's range, so only rounding is lost (float32 slack).
    assert (err <= step / 2 * (1 + 1e-5) + 4 * np.spacing(np.abs(x).astype(np.float32))).all()


@given(group_arrays, qranges, st.booleans())
def test_zero_is_exact_and_fake_quantize_is_quantize_then_dequantize(gx, qrange_, symmetric):
    g, x = gx
    qmin, qmax = qrange_
    x = x.copy()
    x[..., 0] = 0.0
    x_hat = fake_quantize_per_group(x, g, qmin, qmax, symmetric=symmetric)
    assert (x_hat[..., 0] == 0).all()
    q, s, z = quantize_per_group(x, g, qmin, qmax, symmetric=symmetric)
    np.testing.assert_array_equal(x_hat, dequantize_per_group(q, s, z, g))


def test_stochastic_rounding_needs_rng_and_picks_a_neighbour(rng):
    x = rng.standard_normal((4, 8)).astype(np.float32)
    with pytest.raises(TypeError, match="rng"):
        quantize_per_group(x, 4, -8, 7, rounding="stochastic")
    q, scale, zero_point = quantize_per_group(x, 4, -8, 7, rounding="stochastic", rng=rng)
    v = x / np.repeat(scale, 4, axis=-1) + np.repeat(zero_point, 4, axis=-1)
    assert ((q >= np.floor(v) - 1e-3) & (q <= np.ceil(v) + 1e-3)).all()


# ---------------------------------------------------------------- errors


def test_group_size_must_divide_the_axis():
    with pytest.raises(ValueError, match=r"group_size=3 does not divide x\.shape\[1\]=8"):
        quantize_per_group(np.zeros((2, 8)), 3, -8, 7)
    with pytest.raises(ValueError, match=r"group_size=3 does not divide x\.shape\[0\]=2"):
        fake_quantize_per_group(np.zeros((2, 9)), 3, -8, 7, axis=0)
    with pytest.raises(ValueError, match=r"group_size=3 does not divide q\.shape\[1\]=8"):
        dequantize_per_group(np.zeros((2, 8), np.int8), np.ones((2, 2)), np.zeros((2, 2), int), 3)


@pytest.mark.parametrize("bad", [0, -4])
def test_group_size_must_be_positive(bad):
    with pytest.raises(ValueError, match="group_size must be a positive integer"):
        quantize_per_group(np.zeros(8), bad, -8, 7)


def test_group_size_must_be_an_int():
    with pytest.raises(TypeError, match="group_size"):
        quantize_per_group(np.zeros(8), 2.0, -8, 7)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="non-finite"):
        quantize_per_group(np.array([1.0, np.nan]), 2, -8, 7)
    with pytest.raises(ValueError, match="scalar"):
        quantize_per_group(np.float32(1.0), 1, -8, 7)
    with pytest.raises(ValueError, match="empty"):
        quantize_per_group(np.zeros((0, 4)), 2, -8, 7)
    with pytest.raises(ValueError, match="axis=2 is out of range"):
        quantize_per_group(np.zeros((2, 4)), 2, -8, 7, axis=2)


def test_dequantize_checks_the_parameter_shape():
    q = np.zeros((2, 8), np.int8)
    with pytest.raises(ValueError, match=r"scale must have shape \(2, 4\).*got shape \(2, 2\)"):
        dequantize_per_group(q, np.ones((2, 2), np.float32), np.zeros((2, 2), int), 2)
    with pytest.raises(ValueError, match=r"zero_point must have shape \(2, 4\)"):
        dequantize_per_group(q, np.ones((2, 4), np.float32), np.zeros(8, int), 2)
    with pytest.raises(TypeError, match="integer codes"):
        dequantize_per_group(q.astype(np.float32), np.ones((2, 4)), np.zeros((2, 4), int), 2)


def test_dequantize_is_the_affine_formula_group_by_group(rng):
    q = rng.integers(-8, 8, (3, 8)).astype(np.int8)
    scale = rng.uniform(0.01, 1, (3, 2)).astype(np.float32)
    zero_point = rng.integers(-8, 8, (3, 2))
    got = dequantize_per_group(q, scale, zero_point, 4)
    # (q - zero_point) * scale with each parameter repeated over its 4 values
    want = (q - np.repeat(zero_point, 4, axis=1)).astype(np.float32) * np.repeat(scale, 4, axis=1)
    np.testing.assert_array_equal(got, want)
