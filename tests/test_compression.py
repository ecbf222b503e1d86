"""qlearn.compression: unbiasedness and variance within statistical bounds (fixed seeds), the biased
compressors' exact outputs, top-k against lab 06's magnitude mask, and error feedback's invariant.

The statistical tests use fixed seeds, so they are deterministic; their bounds are set at 4 to 5
standard errors, so a correct implementation passes on any seed and a biased one (rounding to
nearest, a wrong norm) fails by a wide margin (each such wrong version is tested to fail).
"""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from qlearn.compression import (
    COMPRESSORS,
    ErrorFeedback,
    compress,
    compressed_bits,
    ef_sgd,
    qsgd,
    qsgd_decode,
    qsgd_variance_bound,
    sign_compress,
    sign_decode,
    stochastic_round,
    terngrad,
    terngrad_decode,
    topk_compress,
    topk_decode,
    train_compressed,
)
from qlearn.pruning import magnitude_mask

finite = st.floats(-1e3, 1e3, allow_nan=False, allow_infinity=False, width=64)
vectors = arrays(np.float64, st.integers(1, 40), elements=finite)


# --- stochastic rounding --------------------------------------------------------------------

def _mean_within(samples: np.ndarray, target: np.ndarray, per_value_var: np.ndarray, sigmas: float = 5.0) -> bool:
    """Every mean of ``samples`` (axis 0) is within ``sigmas`` standard errors of ``target``."""
    n = samples.shape[0]
    se = np.sqrt(np.maximum(per_value_var, 1e-12) / n)
    return bool(np.all(np.abs(samples.mean(axis=0) - target) <= sigmas * se + 1e-12))


def test_stochastic_rounding_is_unbiased_with_variance_f_one_minus_f():
    x = np.array([-2.75, -0.5, 0.0, 0.1, 0.3, 0.5, 0.9, 3.25])
    rng = np.random.default_rng(0)
    samples = np.array([stochastic_round(x, rng) for _ in range(20_000)])
    f = x - np.floor(x)
    assert _mean_within(samples, x, f * (1 - f))
    np.testing.assert_allclose(samples.var(axis=0), f * (1 - f), atol=0.01)
    # rounding to nearest is biased: the same test rejects it
    assert not _mean_within(np.rint(np.broadcast_to(x, samples.shape)), x, f * (1 - f))


@given(vectors)
def test_stochastic_rounding_lands_on_a_neighbouring_integer(x):
    r = stochastic_round(x, np.random.default_rng(1))
    assert np.all((r == np.floor(x)) | (r == np.floor(x) + 1))


def test_stochastic_rounding_needs_a_generator():
    with pytest.raises(TypeError, match="np.random.Generator"):
        stochastic_round(np.ones(2), 0)


# --- QSGD and TernGrad -----------------------------------------------------------------------

@pytest.mark.parametrize("s", [1, 2, 8])
def test_qsgd_is_unbiased_and_within_its_variance_bound(s):
    g = np.random.default_rng(3).normal(0, 1, 50)
    draws = np.array([qsgd_decode(*qsgd(g, s, np.random.default_rng(seed)), s) for seed in range(6000)])
    total_variance = np.mean(np.sum((draws - g) ** 2, axis=1))
    assert total_variance <= qsgd_variance_bound(g, s)
    per_value = draws.var(axis=0)
    assert _mean_within(draws, g, per_value)


def test_a_biased_quantizer_fails_the_unbiasedness_test():
    g = np.random.default_rng(3).normal(0, 1, 50)
    norm = np.linalg.norm(g)
    nearest = norm * np.sign(g) * np.rint(np.abs(g) / norm * 2) / 2  # QSGD's grid, rounded to nearest
    draws = np.broadcast_to(nearest, (6000, 50))
    per_value = np.array([qsgd_decode(*qsgd(g, 2, np.random.default_rng(s)), 2) for s in range(6000)]).var(axis=0)
    assert not _mean_within(draws, g, per_value)


@given(vectors, st.integers(1, 20), st.integers(0, 2**32 - 1))
def test_qsgd_codes_are_integers_in_minus_s_to_s_with_the_sign_of_g(g, s, seed):
    norm, codes = qsgd(g, s, np.random.default_rng(seed))
    assert codes.dtype.kind == "i" and codes.shape == g.shape
    assert np.all(np.abs(codes) <= s)
    assert np.all(codes * np.sign(g) >= 0)
    assert math.isclose(norm, float(np.linalg.norm(g)), rel_tol=1e-12, abs_tol=1e-300)


def test_qsgd_golden_values():
    norm, codes = qsgd(np.array([3.0, -4.0]), 1, np.random.default_rng(0))
    assert norm == 5.0
    u = np.random.default_rng(0).random(2)  # |g| / norm * s = [0.6, 0.8]
    assert codes.tolist() == [int(np.floor(0.6 + u[0])), -int(np.floor(0.8 + u[1]))]
    assert qsgd(np.zeros(3), 4, np.random.default_rng(0))[0] == 0.0
    assert qsgd_variance_bound(np.ones(4), 1) == 8.0  # min(4, 2) * 4
    with pytest.raises(ValueError, match="s"):
        qsgd(np.ones(3), 0, np.random.default_rng(0))


def test_terngrad_is_unbiased_with_codes_in_minus_one_to_one():
    g = np.random.default_rng(4).normal(0, 1, 30)
    rng = np.random.default_rng(5)
    draws = np.array([terngrad_decode(*terngrad(g, rng)) for _ in range(8000)])
    assert _mean_within(draws, g, draws.var(axis=0))
    scale, codes = terngrad(g, rng)
    assert scale == np.abs(g).max() and set(codes.tolist()) <= {-1, 0, 1}


# --- sign and top-k --------------------------------------------------------------------------

def test_scaled_sign_golden_values_and_its_bias():
    scale, signs = sign_compress(np.array([0.5, -1.5, 0.0, 2.0]))
    assert scale == 1.0 and signs.tolist() == [1, -1, 1, 1] and signs.dtype == np.int8
    g = np.array([0.1, -3.0])
    assert not np.allclose(sign_decode(*sign_compress(g)), g)  # deterministic and not equal: biased


@given(vectors, st.data())
def test_topk_keeps_exactly_lab06s_magnitude_mask(g, data):
    k = data.draw(st.integers(0, g.size))
    indices, values = topk_compress(g, k)
    assert np.array_equal(indices, np.flatnonzero(magnitude_mask(g, g.size - k)))
    assert np.array_equal(values, g[indices])
    dense = topk_decode(indices, values, g.size)
    assert np.count_nonzero(dense[indices] == g[indices]) == k


def test_topk_golden_and_errors():
    assert topk_compress(np.array([0.1, -3.0, 0.5, 2.0]), 2)[0].tolist() == [1, 3]
    with pytest.raises(ValueError, match="k must be an int"):
        topk_compress(np.ones(3), 4)


# --- bits and the one interface -------------------------------------------------------------

def test_compressed_bits_table():
    d = 7850
    assert compressed_bits("none", d) == 32 * d
    assert compressed_bits("stochastic8", d) == 8 * d + 32
    assert compressed_bits("qsgd", d, s=4) == 32 + d * 4  # sign + 3 bits for levels 0..4
    assert compressed_bits("terngrad", d) == 32 + 2 * d
    assert compressed_bits("sign", d) == 32 + d
    assert compressed_bits("topk", d, k=79) == 79 * 64
    assert compressed_bits("none", d) / compressed_bits("sign", d) >= 25  # the lab's 1-bit target
    with pytest.raises(ValueError, match="unknown compressor"):
        compressed_bits("zip", d)


@pytest.mark.parametrize("name", sorted(COMPRESSORS))
def test_every_compressor_returns_an_estimate_of_the_same_shape(name):
    g = np.random.default_rng(6).normal(0, 1, 17)
    out = compress(name, g, np.random.default_rng(7), k=3)
    assert out.shape == g.shape and np.isfinite(out).all()


def test_stochastic8_estimate_has_at_most_one_step_of_error():
    g = np.random.default_rng(8).normal(0, 1, 100)
    step = np.abs(g).max() / 127
    err = compress("stochastic8", g, np.random.default_rng(9)) - g
    assert np.all(np.abs(err) < step * (1 + 1e-12))


# --- error feedback --------------------------------------------------------------------------

@given(arrays(np.float64, (6, 5), elements=finite))
def test_error_feedback_loses_nothing(gradients):
    ef = ErrorFeedback(lambda p: compress("topk", p, k=1))
    sent = sum(ef(g) for g in gradients)
    np.testing.assert_allclose(sent + ef.residual, gradients.sum(axis=0), rtol=1e-9, atol=1e-9)


def test_ef_sgd_golden_and_without_feedback_differs():
    sign = lambda p: np.mean(np.abs(p)) * np.sign(p)  # noqa: E731
    path = ef_sgd(lambda w: w, np.array([1.0, -0.5]), 0.5, 2, sign)
    np.testing.assert_allclose(path, [[1.0, -0.5], [0.625, -0.125], [0.375, -0.375]])
    no_ef = ef_sgd(lambda w: w, np.array([1.0, -0.5]), 0.5, 2, sign, error_feedback=False)
    assert not np.allclose(no_ef[-1], path[-1])


def test_train_compressed_counts_bits_exactly_and_learns():
    rng = np.random.default_rng(0)
    x = rng.random((400, 20))
    y = (x[:, 0] > 0.5).astype(np.int64)
    log = train_compressed(x, y, x[:100], y[:100], "sign", error_feedback=True, workers=2, steps=40,
                           batch_size=16, lr=0.5, eval_every=10, k_fraction=0.01)
    d = 20 * 10 + 10
    assert log["d"] == d and log["steps"] == [0, 10, 20, 30, 40]
    assert log["bits"] == [step * (32 + d) for step in log["steps"]]
    assert log["loss"][-1] < 0.6 * log["loss"][0]
