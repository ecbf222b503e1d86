"""Tests for qlearn.metrics: hand-computed tables, edge cases, and invariants checked by Hypothesis."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn.metrics import cosine_similarity, max_abs_error, model_size_bytes, mse, sparsity, sqnr_db

X = [1.0, -2.0, 3.0, 0.5]
X_HAT = [1.0, -1.5, 2.0, 0.5]  # errors 0, -0.5, 1, 0


def test_golden_table():
    assert mse(X, X_HAT) == pytest.approx((0.25 + 1.0) / 4, abs=0)
    assert max_abs_error(X, X_HAT) == 1.0
    assert sqnr_db(X, X_HAT) == pytest.approx(10 * math.log10((1 + 4 + 9 + 0.25) / 1.25), rel=1e-15)
    assert cosine_similarity([3.0, 4.0], [4.0, 3.0]) == pytest.approx(24 / 25, rel=1e-15)
    assert sparsity([0.0, 1.0, -0.0, 2.0, 0.0]) == 0.6


def test_results_are_python_floats():
    for value in (mse(X, X_HAT), max_abs_error(X, X_HAT), sqnr_db(X, X_HAT), cosine_similarity(X, X_HAT), sparsity(X)):
        assert type(value) is float


def test_float64_accumulation_for_float32_inputs():
    # 2**24 + 1 has no float32: a metric that cast to float32 would see x == x_hat and report 0 error
    x = np.full(1000, 16777217, dtype=np.int64)
    x_hat = np.full(1000, 16777216.0, dtype=np.float32)
    assert mse(x, x_hat) == 1.0
    big = np.full(10, 1e30, dtype=np.float32)  # squares overflow float32
    assert math.isfinite(mse(big, big * np.float32(0.5)))


def test_sqnr_edge_cases_are_never_nan():
    assert sqnr_db([1.0, 2.0], [1.0, 2.0]) == math.inf
    assert sqnr_db([0.0, 0.0], [0.0, 0.0]) == math.inf
    assert sqnr_db([0.0, 0.0], [0.0, 1e-3]) == -math.inf
    assert sqnr_db([1.0, 1.0], [0.0, 0.0]) == 0.0  # all signal lost: noise power == signal power
    # float64 extremes: squares would overflow (inf / inf) or underflow (x / 0) without rescaling
    assert sqnr_db([1e200, 1e200], [-1e200, -1e200]) == pytest.approx(10 * math.log10(0.25))
    assert sqnr_db([1e-200, 0.0], [2e-200, 0.0]) == pytest.approx(0.0, abs=1e-12)


@given(bits=st.integers(2, 12))
def test_sqnr_gains_about_six_db_per_bit(bits):
    # a full-scale ramp quantized with a mid-rise uniform quantizer: SQNR ~ 6.02 * bits dB
    rng = np.random.default_rng(bits)
    x = rng.uniform(-1.0, 1.0, 20000)
    step = 2.0 / 2**bits
    x_hat = (np.floor(x / step) + 0.5) * step
    assert abs(sqnr_db(x, x_hat) - 6.02 * bits) < 0.3


def test_cosine_similarity_zero_vectors():
    assert cosine_similarity(np.zeros(3), np.zeros(3)) == 1.0
    with pytest.raises(ValueError, match="x is all zeros"):
        cosine_similarity(np.zeros(3), np.ones(3))
    with pytest.raises(ValueError, match="y is all zeros"):
        cosine_similarity(np.ones(3), np.zeros(3))


def test_cosine_similarity_flattens_and_is_bounded():
    a = np.array([[1.0, 2.0], [3.0, 4.0]])
    assert cosine_similarity(a, a) == 1.0
    assert cosine_similarity(a, -a) == -1.0
    assert cosine_similarity([1e200, 1e200], [1e200, 0.0]) == pytest.approx(1 / math.sqrt(2), rel=1e-15)


finite = st.floats(-1e6, 1e6, allow_nan=False, allow_infinity=False, width=32)


@given(data=st.data(), shape=hnp.array_shapes(min_dims=1, max_dims=3, max_side=5))
def test_metric_invariants(data, shape):
    x = data.draw(hnp.arrays(np.float32, shape, elements=finite))
    x_hat = data.draw(hnp.arrays(np.float32, shape, elements=finite))
    assert mse(x, x_hat) >= 0.0 and mse(x, x) == 0.0
    assert mse(x, x_hat) == mse(x_hat, x)
    assert max_abs_error(x, x_hat) ** 2 >= mse(x, x_hat) * (1 - 1e-12)
    assert sqnr_db(x, x) == math.inf
    assert not math.isnan(sqnr_db(x, x_hat))
    if x.any() and x_hat.any():
        c = cosine_similarity(x, x_hat)
        assert -1.0 <= c <= 1.0 and c == pytest.approx(cosine_similarity(x_hat, x), rel=1e-12, abs=1e-12)
    s = sparsity(x)
    assert 0.0 <= s <= 1.0 and s * x.size == pytest.approx(np.count_nonzero(x == 0))


def test_sparsity_edge_cases():
    assert sparsity(np.zeros((0, 4))) == 0.0
    assert sparsity(np.zeros((2, 3))) == 1.0
    assert sparsity(np.arange(1, 5)) == 0.0
    assert sparsity(np.float32(0.0)) == 1.0


def test_model_size_bytes():
    assert model_size_bytes(1000) == 4000
    assert model_size_bytes(1000, bits=8) == 1000
    assert model_size_bytes(1001, bits=4) == 501  # ceil(500.5)
    assert model_size_bytes(9, bits=1) == 2
    assert model_size_bytes(0) == 0
    arrays = [np.zeros((3, 4)), np.zeros(5), np.zeros((0, 2))]
    assert model_size_bytes(arrays, bits=2) == 5  # 17 values * 2 bits = 34 bits -> 5 bytes
    assert model_size_bytes(iter(arrays), bits=16) == 34
    assert model_size_bytes(np.zeros((10, 10)), bits=3) == 38  # one array: 300 bits -> 38 bytes
    assert model_size_bytes({"w": np.zeros(6), "b": np.zeros(2)}, bits=4) == 4
    assert type(model_size_bytes(np.int64(7))) is int


def test_model_size_bytes_counts_torch_like_objects():
    class Tensor:  # anything with numel(), as torch.Tensor, is counted without importing torch
        def numel(self):
            return 12

        def __iter__(self):  # iterating would count rows, not values
            raise AssertionError("numel() must be used")

    assert model_size_bytes([Tensor(), Tensor()], bits=8) == 24


def test_model_size_bytes_rejects_bad_input():
    with pytest.raises(ValueError, match="-5"):
        model_size_bytes(-5)
    with pytest.raises(ValueError, match="bits must be a positive integer, got 0"):
        model_size_bytes(10, bits=0)
    with pytest.raises(TypeError, match="bits"):
        model_size_bytes(10, bits=4.5)
    with pytest.raises(TypeError, match="string"):
        model_size_bytes("weights")
    with pytest.raises(TypeError, match=r"params\[0\].*string"):
        model_size_bytes(["weight", "bias"])
    with pytest.raises(TypeError, match="params"):
        model_size_bytes(3.5)


@pytest.mark.parametrize("metric", [mse, max_abs_error, sqnr_db, cosine_similarity])
def test_pair_checks(metric):
    with pytest.raises(ValueError, match=r"\(2, 3\).*\(3, 2\)"):
        metric(np.ones((2, 3)), np.ones((3, 2)))
    with pytest.raises(ValueError, match=r"\(3,\).*\(1,\)"):  # no broadcasting
        metric(np.ones(3), np.ones(1))
    with pytest.raises(ValueError, match="empty"):
        metric([], [])
    with pytest.raises(ValueError, match="NaN"):
        metric([1.0, np.nan], [1.0, 2.0])
    with pytest.raises(ValueError, match="non-finite"):
        metric([1.0, 2.0], [np.inf, 2.0])
    with pytest.raises(TypeError, match="dtype bool"):
        metric([True, False], [1.0, 0.0])


def test_sparsity_rejects_nan():
    with pytest.raises(ValueError, match="NaN"):
        sparsity([0.0, np.nan])
