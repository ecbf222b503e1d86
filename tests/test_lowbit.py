"""qlearn.lowbit: binary and ternary weights. Golden values by hand, and properties (Hypothesis)."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qlearn.lowbit import TWN_RATIO, binarize, dequantize_lowbit, ternarize

f32 = np.float32
weights = arrays(f32, st.tuples(st.integers(1, 6), st.integers(1, 12)),
                 elements=st.floats(-4, 4, width=32, allow_nan=False))


def test_binary_golden():
    codes, alpha = binarize([[0.5, -1.5], [0.0, -0.25]], axis=0)
    np.testing.assert_array_equal(codes, [[1, -1], [1, -1]])
    np.testing.assert_array_equal(alpha.ravel(), f32([1.0, 0.125]))


def test_ternary_golden_and_threshold_is_strict():
    # mean|w| = 1 -> delta = 0.7; |w| = 0.7 exactly would stay 0 (strict >)
    codes, alpha = ternarize(f32([2.0, -0.5, 0.5, 1.0]))
    np.testing.assert_array_equal(codes, [1, 0, 0, 1])
    assert alpha == f32(1.5)
    codes, _ = ternarize(f32([1.0, 1.0, 1.0, 0.7 * 1.0]), ratio=0.0)
    assert (codes == 1).all()


def test_all_zero_channel():
    codes, alpha = ternarize(f32([[0, 0, 0], [1, -1, 0.1]]), axis=0)
    assert (codes[0] == 0).all() and alpha.ravel()[0] == 0


def test_errors_name_the_argument():
    with pytest.raises(ValueError, match="ratio"):
        ternarize([1.0], ratio=1.5)
    with pytest.raises(TypeError, match="w"):
        binarize(["a"])


@settings(max_examples=60, deadline=None, derandomize=True)
@given(weights)
def test_binary_alpha_is_least_squares_optimal(w):
    codes, alpha = binarize(w, axis=0)
    assert set(np.unique(codes)) <= {-1, 1}
    base = np.sum((w - dequantize_lowbit(codes, alpha)) ** 2, dtype=np.float64)
    for factor in (0.9, 1.1):
        assert base <= np.sum((w - dequantize_lowbit(codes, alpha * f32(factor))) ** 2, dtype=np.float64) + 1e-4


@settings(max_examples=60, deadline=None, derandomize=True)
@given(weights)
def test_ternary_properties(w):
    codes, alpha = ternarize(w, axis=0)
    assert set(np.unique(codes)) <= {-1, 0, 1}
    delta = TWN_RATIO * np.abs(w).mean(axis=1, keepdims=True, dtype=f32)
    kept = codes != 0
    assert (np.abs(w)[kept] >= delta.repeat(w.shape[1], 1)[kept] * (1 - 1e-6)).all()
    assert (np.sign(w)[kept] == codes[kept]).all()
    # idempotent: ternarizing the ternary weights gives them back
    w_hat = dequantize_lowbit(codes, alpha)
    codes2, alpha2 = ternarize(w_hat, axis=0)
    np.testing.assert_allclose(dequantize_lowbit(codes2, alpha2), w_hat, rtol=1e-6, atol=1e-7)
