"""Unit and property tests for the calibration observers and their stateless helpers."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn import EPS, calc_qparams, fake_quantize
from qlearn.observers import (
    EntropyObserver,
    MinMaxObserver,
    MovingAverageMinMaxObserver,
    MSEObserver,
    PercentileObserver,
    kl_threshold,
    moving_average_update,
    mse_clip_search,
    percentile_range,
)

ALL_OBSERVERS = {
    "minmax": lambda **kw: MinMaxObserver(**kw),
    "moving_average": lambda **kw: MovingAverageMinMaxObserver(0.1, **kw),
    "percentile": lambda **kw: PercentileObserver(99.0, **kw),
    "mse": lambda **kw: MSEObserver(20, **kw),
    "entropy": lambda **kw: EntropyObserver(256, **kw),
}
PER_CHANNEL = ["minmax", "moving_average", "percentile", "mse"]
NO_DATA = "has seen no data; call the observer on a calibration batch first"


@pytest.fixture
def laplace_with_outliers(rng):
    """20000 Laplace(0, 1) values (|x| < 10) and four far outliers, in two batches."""
    x = rng.laplace(size=20_000).astype(np.float32)
    x[:4] = [20.0, -18.0, 25.0, 16.0]
    return x


# ---------------------------------------------------------------- moving_average_update


def test_moving_average_update_golden():
    # 1 + 0.25 * (5 - 1) = 2;  c = 1 jumps to the new value
    assert moving_average_update(1.0, 5.0, 0.25) == np.float32(2.0)
    assert moving_average_update(1.0, 5.0, 1.0) == np.float32(5.0)
    out = moving_average_update(np.float32([0.0, -4.0]), np.float32([10.0, 4.0]), 0.5)
    np.testing.assert_array_equal(out, [5.0, 0.0])
    assert out.dtype == np.float32


def test_moving_average_update_is_float32_with_c_rounded_to_float32():
    old, new, c = np.float32(0.3), np.float32(-1.7), 1 / 3
    want = old + np.float32(c) * (new - old)  # every operand float32
    assert moving_average_update(old, new, c) == want
    assert isinstance(moving_average_update(old, new, c), np.float32)


@pytest.mark.parametrize("c", [0.0, -0.1, 1.5, math.nan])
def test_moving_average_update_rejects_bad_c(c):
    with pytest.raises(ValueError, match=r"c \(the averaging constant\) must lie in \(0, 1\]"):
        moving_average_update(0.0, 1.0, c)


# ---------------------------------------------------------------- percentile_range


def test_percentile_range_golden():
    x = np.arange(101, dtype=np.float32)  # the p-th percentile of 0..100 is p
    assert percentile_range(x, 99.0) == (1.0, 99.0)
    assert percentile_range(x, 100.0) == (0.0, 100.0)
    # linear interpolation: 0, 10, 20, 30 -> the 90th percentile is 27 (position 2.7)
    assert percentile_range(np.float32([30, 0, 20, 10]), 90.0) == (np.float32(3.0), np.float32(27.0))
    lo, hi = percentile_range(np.arange(101.0), 99.0)
    assert isinstance(lo, np.float32) and isinstance(hi, np.float32)


def test_percentile_range_per_channel(rng):
    x = rng.standard_normal((3, 40, 5)).astype(np.float32)
    lo, hi = percentile_range(x, 95.0, axis=1)
    assert lo.shape == hi.shape == (40,) and lo.dtype == np.float32
    for c in range(40):
        assert (lo[c], hi[c]) == percentile_range(x[:, c, :], 95.0)


@pytest.mark.parametrize("p", [49.9, 100.1, -1, math.nan])
def test_percentile_range_rejects_bad_percentile(p):
    with pytest.raises(ValueError, match=r"percentile must lie in \[50, 100\]"):
        percentile_range(np.arange(5.0), p)


# ---------------------------------------------------------------- mse_clip_search


def test_mse_clip_search_finds_the_bottom_of_a_u_shaped_curve():
    x = np.concatenate([np.linspace(-1, 1, 1001), [10.0]])  # one outlier at 10
    res = mse_clip_search(x, -8, 7, num_candidates=20, symmetric=True)
    np.testing.assert_allclose(res.fractions, np.arange(1, 21) / 20)
    k = int(np.argmin(res.errors))
    assert res.fractions[k] == 0.35 and res.xmax == np.float32(0.35) * np.float32(10.0)
    assert res.xmin == np.float32(0.35) * np.float32(-1.0)
    # U shape: clipping error on the left, rounding error on the right of the minimum
    assert res.errors[0] > res.errors[k] < res.errors[-1]
    assert np.all(np.diff(res.errors[k + 5:]) > 0)


def test_mse_clip_search_errors_are_the_stated_mean_squared_error(rng):
    x = rng.standard_normal(500).astype(np.float32)
    res = mse_clip_search(x, 0, 15, num_candidates=10)
    for k in [0, 4, 9]:
        f = np.float32(res.fractions[k])
        scale, zp = calc_qparams(f * x.min(), f * x.max(), 0, 15)
        want = np.mean((x.astype(np.float64) - fake_quantize(x, scale, zp, 0, 15)) ** 2)
        assert res.errors[k] == want
    assert res.errors[np.argmin(res.errors)] == res.errors.min()


def test_mse_clip_search_is_deterministic_and_breaks_ties_to_the_smallest_fraction():
    x = np.zeros(10, dtype=np.float32)  # every candidate has error 0
    res = mse_clip_search(x, -128, 127, num_candidates=7)
    assert (res.errors == 0).all() and (res.xmin, res.xmax) == (0.0, 0.0)
    x = np.float32([1.0, 2.0, 3.0])
    assert mse_clip_search(x, -8, 7).errors.tolist() == mse_clip_search(x, -8, 7).errors.tolist()


def test_mse_clip_search_rejects_bad_arguments():
    with pytest.raises(ValueError, match="num_candidates must be at least 1, got 0"):
        mse_clip_search(np.ones(3), -8, 7, num_candidates=0)
    with pytest.raises(ValueError, match="empty"):
        mse_clip_search(np.ones(0), -8, 7)
    with pytest.raises(TypeError, match="symmetric"):
        mse_clip_search(np.ones(3), -8, 7, symmetric="yes")


# ---------------------------------------------------------------- kl_threshold


def test_kl_threshold_golden_by_hand():
    # hist [2, 1, 1], 2 levels, candidates i = 2, 3:
    # i=2: P = [2, 1+1] -> [.5, .5]; levels [0, 1], Q = [2, 1] -> [2/3, 1/3];
    #      KL = .5 ln(.5 / (2/3)) + .5 ln(.5 / (1/3)) = .5 ln(1.125)
    # i=3: P = [2, 1, 1] -> [.5, .25, .25]; levels [0, 0, 1] with sums [3, 1] spread over the
    #      non-zero bins of P: Q = [1.5, 1.5, 1] -> [.375, .375, .25];
    #      KL = .5 ln(.5/.375) + .25 ln(.25/.375) + .25 ln(1)
    res = kl_threshold(np.array([2, 1, 1]), np.array([0.0, 1.0, 2.0, 3.0]), 2)
    want = [0.5 * math.log(1.125), 0.5 * math.log(4 / 3) + 0.25 * math.log(2 / 3)]
    np.testing.assert_allclose(res.divergences, want, rtol=1e-12)
    np.testing.assert_array_equal(res.thresholds, [2.0, 3.0])
    assert res.threshold == np.float32(3.0)


def test_kl_threshold_smoothing_golden_by_hand():
    # hist [1, 0, 0, 1], 2 levels. i = 4: Q = P, KL = 0 (smoothing changes both the same way).
    # i = 2: P = [1, 1], Q = [1, 0] -> smoothed Q = [1 - 1e-4, 1e-4] (eps into the empty bin,
    #        taken from the other): KL = .5 ln(.5 / (1 - 1e-4)) + .5 ln(.5 / 1e-4).
    res = kl_threshold(np.array([1, 0, 0, 1]), np.arange(5.0), 2)
    assert res.divergences[-1] == 0.0
    want = 0.5 * math.log(0.5 / (1 - 1e-4)) + 0.5 * math.log(0.5 / 1e-4)
    assert res.divergences[0] == pytest.approx(want, rel=1e-12)
    assert np.isfinite(res.divergences).all()
    assert res.threshold == 4.0


def reference_divergence(hist, i, nq):
    """TensorRT's pseudo-code, written out with loops, to check the vectorized version."""
    p = [float(h) for h in hist[:i]]
    p[i - 1] += float(sum(hist[i:]))
    q = [0.0] * i
    for level in range(nq):
        members = [j for j in range(i) if j * nq // i == level]
        total = sum(float(hist[j]) for j in members)
        support = [j for j in members if p[j] > 0]
        for j in support:
            q[j] = total / len(support)

    def smooth(v):
        zeros = [j for j in range(len(v)) if v[j] == 0]
        if not zeros:
            return v
        take = 1e-4 * len(zeros) / (len(v) - len(zeros))
        return [1e-4 if x == 0 else x - take for x in v]

    p, q = smooth(p), smooth(q)
    sp, sq = sum(p), sum(q)
    return sum(a / sp * math.log((a / sp) / (b / sq)) for a, b in zip(p, q))


def test_kl_threshold_matches_a_loop_reference(rng):
    x = np.abs(rng.laplace(size=3000))
    x[:3] = [15.0, 17.0, 30.0]
    hist, edges = np.histogram(x, bins=64, range=(0.0, x.max()))
    res = kl_threshold(hist, edges, 8)
    want = [reference_divergence(hist, i, 8) for i in range(8, 65)]
    np.testing.assert_allclose(res.divergences, want, rtol=1e-9)
    np.testing.assert_array_equal(res.thresholds, edges[8:].astype(np.float32))


def test_kl_threshold_damped_zero_bin_golden_by_hand():
    # hist [6, 1, 1], 2 levels. Undamped: i=2: P = [6, 2] -> [.75, .25], Q = [6, 1] -> [6/7, 1/7];
    #   i=3: P = [6, 1, 1] / 8, levels [0, 0, 1] with sums [7, 1]: Q = [3.5, 3.5, 1] / 8.
    # Damped (hist[0] = hist[1] = 1): hist [1, 1, 1]; i=2: P = [1, 2] / 3, Q = [1, 1] / 2;
    #   i=3: P = Q = [1, 1, 1] / 3, KL = 0.
    hist, edges = np.array([6, 1, 1]), np.array([0.0, 1.0, 2.0, 3.0])
    plain = kl_threshold(hist, edges, 2)
    want = [0.75 * math.log(0.75 * 7 / 6) + 0.25 * math.log(0.25 * 7),
            0.75 * math.log(6 / 3.5) + 0.125 * math.log(1 / 3.5)]
    np.testing.assert_allclose(plain.divergences, want, rtol=1e-12)
    assert plain.threshold == np.float32(2.0)
    damped = kl_threshold(hist, edges, 2, damp_zero_bin=True)
    want = [math.log(2 / 3) / 3 + 2 / 3 * math.log(4 / 3), 0.0]
    np.testing.assert_allclose(damped.divergences, want, rtol=1e-12, atol=1e-15)
    assert damped.threshold == np.float32(3.0)
    np.testing.assert_array_equal(hist, [6, 1, 1])  # the caller's histogram is not modified


def test_kl_threshold_damped_matches_the_loop_reference_on_relu_data(rng):
    x = np.abs(rng.laplace(size=3000))
    x[:1800] = 0.0  # 60% exact zeros, as after a ReLU
    x[1800:1803] = [15.0, 17.0, 30.0]
    hist, edges = np.histogram(x, bins=64, range=(0.0, x.max()))
    damped_hist = hist.copy()
    damped_hist[0] = hist[1]
    res = kl_threshold(hist, edges, 8, damp_zero_bin=True)
    want = [reference_divergence(damped_hist, i, 8) for i in range(8, 65)]
    np.testing.assert_allclose(res.divergences, want, rtol=1e-9)
    undamped = kl_threshold(hist, edges, 8, damp_zero_bin=False)
    assert undamped.threshold == undamped.thresholds[0]  # the spike pins the smallest candidate
    assert res.threshold > 1.5 * undamped.threshold


def test_kl_threshold_damping_changes_nothing_without_a_spike():
    hist = np.array([3, 3, 2, 1, 1, 0, 0, 1])
    a = kl_threshold(hist, np.arange(9.0), 2, damp_zero_bin=True)
    b = kl_threshold(hist, np.arange(9.0), 2)
    assert a.divergences.tolist() == b.divergences.tolist() and a.threshold == b.threshold


def test_kl_threshold_damping_rejects_bad_arguments():
    with pytest.raises(TypeError, match="damp_zero_bin must be True or False"):
        kl_threshold(np.ones(4), np.arange(5.0), 2, damp_zero_bin=1)
    with pytest.raises(ValueError, match="only in its first bin"):
        kl_threshold(np.array([5, 0, 0, 0]), np.arange(5.0), 2, damp_zero_bin=True)


def test_kl_threshold_rejects_bad_arguments():
    with pytest.raises(ValueError, match="all zeros"):
        kl_threshold(np.zeros(4), np.arange(5.0), 2)
    with pytest.raises(ValueError, match="non-negative"):
        kl_threshold(np.array([1, -1, 2, 0]), np.arange(5.0), 2)
    with pytest.raises(ValueError, match=r"len\(hist\) \+ 1 = 5"):
        kl_threshold(np.ones(4), np.arange(4.0), 2)
    with pytest.raises(ValueError, match="num_quant_bins must lie in"):
        kl_threshold(np.ones(4), np.arange(5.0), 5)
    with pytest.raises(ValueError, match="strictly increasing"):
        kl_threshold(np.ones(2), np.array([0.0, 2.0, 1.0]), 1)


# ---------------------------------------------------------------- observers: golden tables


def test_minmax_golden():
    obs = MinMaxObserver(0, 255)
    obs(np.array([-1.0, 0.5]))
    obs(np.array([[2.0], [3.0]]))
    assert (obs.min_val, obs.max_val) == (-1.0, 3.0)
    assert obs.calculate_qparams() == (np.float32(4 / 255), 64)  # zero_point = 0 - round(-63.75)


def test_minmax_per_channel_golden():
    obs = MinMaxObserver(-128, 127, symmetric=True, axis=1)
    obs(np.array([[1.0, -2.0, 0.0], [-4.0, 1.0, 0.0]]))
    np.testing.assert_array_equal(obs.min_val, [-4.0, -2.0, 0.0])
    np.testing.assert_array_equal(obs.max_val, [1.0, 1.0, 0.0])
    scale, zero_point = obs.calculate_qparams()
    np.testing.assert_array_equal(scale, np.float32([4 / 127.5, 2 / 127.5, EPS]))
    np.testing.assert_array_equal(zero_point, [0, 0, 0])


def test_moving_average_golden():
    obs = MovingAverageMinMaxObserver(0.5)
    obs(np.array([-1.0, 1.0]))  # the first batch sets the range
    obs(np.array([-3.0, 9.0]))  # -1 + .5 (-3 + 1) = -2;  1 + .5 (9 - 1) = 5
    obs(np.array([0.0, 5.0]))  # -2 + .5 (0 + 2) = -1;  5 + .5 (5 - 5) = 5
    assert (obs.min_val, obs.max_val) == (-1.0, 5.0)


def test_moving_average_follows_typical_batches_not_one_outlier(rng):
    mm, ma = MinMaxObserver(), MovingAverageMinMaxObserver(0.01)
    for b in range(50):
        x = rng.standard_normal(100).astype(np.float32)
        if b == 10:
            x[0] = 100.0
        mm(x)
        ma(x)
    assert mm.max_val == 100.0 and ma.max_val < 5.0


def test_percentile_observer_keeps_values_so_batching_does_not_matter(rng):
    x = rng.standard_normal(1000).astype(np.float32)
    one, many = PercentileObserver(99.0), PercentileObserver(99.0)
    one(x)
    for part in np.split(x, [7, 100, 101, 600]):
        many(part)
    assert (one.min_val, one.max_val) == (many.min_val, many.max_val) == percentile_range(x, 99.0)
    np.testing.assert_array_equal(many.values(), x)


def test_observers_keep_a_copy_of_the_batch():
    x = np.arange(10, dtype=np.float32)
    obs = PercentileObserver(100.0)
    obs(x)
    x[:] = 0.0
    assert obs.max_val == 9.0


def test_mse_observer_equals_the_search_and_per_channel_searches_each_row(rng):
    x = rng.laplace(size=(3, 200)).astype(np.float32)
    obs = MSEObserver(30, -8, 7)
    obs(x[:, :50])
    obs(x[:, 50:])
    res = mse_clip_search(np.concatenate([x[:, :50].ravel(), x[:, 50:].ravel()]), -8, 7, 30)
    assert (obs.min_val, obs.max_val) == (res.xmin, res.xmax)
    assert obs.search().errors.tolist() == res.errors.tolist()
    per_channel = MSEObserver(30, -8, 7, axis=0)
    per_channel(x)
    for c in range(3):
        r = mse_clip_search(x[c], -8, 7, 30)
        assert (per_channel.min_val[c], per_channel.max_val[c]) == (r.xmin, r.xmax)
    with pytest.raises(ValueError, match="per-tensor observer"):
        per_channel.search()


def test_entropy_observer_uses_the_histogram_of_magnitudes(rng):
    x = rng.laplace(size=5000).astype(np.float32)
    obs = EntropyObserver(512)
    obs(x)
    hist, edges = obs.histogram()
    assert hist.sum() == x.size and edges[0] == 0 and edges[-1] == np.abs(x).max()
    res = kl_threshold(hist, edges, 128)  # signed int8, data of both signs: 256 // 2 levels
    assert obs.search().threshold == res.threshold
    assert obs.max_val == min(x.max(), res.threshold) and obs.min_val == max(x.min(), -res.threshold)


def test_entropy_observer_levels_for_non_negative_data(rng):
    x = np.abs(rng.laplace(size=5000)).astype(np.float32)  # as after a ReLU
    asym = EntropyObserver(1024, 0, 255)
    asym(x)
    assert asym.search().thresholds[0] == asym.histogram()[1][256]  # all 256 codes on [0, T]
    sym = EntropyObserver(1024, -128, 127, symmetric=True)
    sym(x)
    assert sym.search().thresholds[0] == sym.histogram()[1][128]  # half of them
    assert asym.min_val >= 0


@pytest.mark.parametrize("zeros", [0.7, 0.8])
def test_entropy_observer_damp_zero_bin_on_relu_data(rng, zeros):
    x = np.abs(rng.laplace(size=20_000)).astype(np.float32)  # max about 10
    x[: int(zeros * x.size)] = 0.0  # a ReLU's spike of exact zeros
    plain, damped = (EntropyObserver(2048, 0, 255, damp_zero_bin=d) for d in (False, True))
    plain(x)
    damped(x)
    assert "damp_zero_bin=True" in repr(damped) and "damp_zero_bin=False" in repr(plain)
    hist, edges = damped.histogram()
    res = kl_threshold(hist, edges, 256, damp_zero_bin=True)
    assert damped.search().threshold == res.threshold and damped.max_val == res.threshold
    # undamped, the spike pins the smallest threshold the search allows: 256 / 2048 of max|x|,
    # which clips several percent of the non-zero values; damped, the search keeps nearly all
    assert plain.max_val == plain.search().thresholds[0] == edges[256]
    assert np.mean(x[x > 0] > damped.max_val) < 0.005 and np.mean(x[x > 0] > plain.max_val) > 0.1
    assert damped.min_val == plain.min_val == 0.0


def test_entropy_observer_damp_zero_bin_is_a_bool():
    with pytest.raises(TypeError, match="damp_zero_bin must be True or False"):
        EntropyObserver(damp_zero_bin="yes")
    assert EntropyObserver().damp_zero_bin is False


def test_entropy_observer_all_zero_and_constant_data():
    obs = EntropyObserver()
    obs(np.zeros(100))
    assert (obs.min_val, obs.max_val) == (0.0, 0.0)
    assert obs.calculate_qparams() == (EPS, -128)
    with pytest.raises(ValueError, match="all values seen are 0"):
        obs.search()
    const = EntropyObserver()
    const(np.full(50, -2.5))
    assert (const.min_val, const.max_val) == (-2.5, -2.5)  # nothing to clip: a single bin


def test_entropy_observer_needs_enough_bins():
    with pytest.raises(ValueError, match="bins must be at least the number of codes"):
        EntropyObserver(100, 0, 255)


# ---------------------------------------------------------------- clipping on heavy tails


def test_percentile_mse_and_entropy_clip_outliers_that_minmax_keeps(laplace_with_outliers):
    x = laplace_with_outliers
    ranges = {}
    defaults = {"minmax": MinMaxObserver, "percentile": lambda: PercentileObserver(99.9),
                "mse": MSEObserver, "entropy": EntropyObserver}  # int8, 2048 histogram bins
    for name, make in defaults.items():
        obs = make()
        obs(x[:10_000])
        obs(x[10_000:])
        ranges[name] = (float(obs.min_val), float(obs.max_val))
    assert ranges["minmax"] == (-18.0, 25.0)
    for name in ["percentile", "mse", "entropy"]:
        lo, hi = ranges[name]
        assert -18.0 < lo < 0 < hi < 25.0, name
    assert ranges["percentile"][1] < 10 and ranges["entropy"][1] < 10  # the bulk, not the outliers


def test_clipping_lowers_the_quantization_error_at_4_bits(laplace_with_outliers):
    x = laplace_with_outliers
    mse = {}
    for name in ["minmax", "percentile", "mse"]:
        obs = ALL_OBSERVERS[name](qmin=-8, qmax=7)
        obs(x)
        scale, zero_point = obs.calculate_qparams()
        mse[name] = float(np.mean((x - fake_quantize(x, scale, zero_point, -8, 7)) ** 2))
    assert mse["mse"] <= mse["percentile"] < mse["minmax"]


# ---------------------------------------------------------------- observers: contract


@pytest.mark.parametrize("name", list(ALL_OBSERVERS))
def test_no_data_is_an_error(name):
    obs = ALL_OBSERVERS[name]()
    for action in (obs.calculate_qparams, lambda: obs.min_val, lambda: obs.max_val):
        with pytest.raises(ValueError, match=NO_DATA):
            action()
    obs(np.zeros(0))  # an empty batch is ignored, as in torch
    with pytest.raises(ValueError, match="has seen no data"):
        obs.calculate_qparams()


@pytest.mark.parametrize("name", list(ALL_OBSERVERS))
@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_batches_are_rejected(name, bad):
    obs = ALL_OBSERVERS[name]()
    obs(np.array([1.0, 2.0]))
    before = (obs.min_val, obs.max_val)
    with pytest.raises(ValueError, match="non-finite"):
        obs(np.array([0.0, bad]))
    assert (obs.min_val, obs.max_val) == before  # the bad batch left no trace


@pytest.mark.parametrize("name", list(ALL_OBSERVERS))
def test_call_returns_the_input_unchanged_and_reset_forgets(name):
    obs = ALL_OBSERVERS[name]()
    x = [[1.0, -2.0], [3.0, 4.0]]
    assert obs(x) is x
    obs.reset()
    with pytest.raises(ValueError, match="has seen no data"):
        obs.calculate_qparams()
    assert type(obs).__name__ in repr(obs) and "qmin=-128" in repr(obs)


@pytest.mark.parametrize("name", PER_CHANNEL)
def test_per_channel_shapes_and_channel_count_check(name, rng):
    obs = ALL_OBSERVERS[name](axis=1)
    obs(rng.standard_normal((4, 3, 5)))
    scale, zero_point = obs.calculate_qparams()
    assert obs.min_val.shape == obs.max_val.shape == scale.shape == zero_point.shape == (3,)
    assert scale.dtype == np.float32 and zero_point.dtype == np.int64
    with pytest.raises(ValueError, match="x has 5 channels along axis 1, but this observer has seen 3"):
        obs(rng.standard_normal((4, 5, 5)))
    with pytest.raises(ValueError, match="axis=1 is out of range"):
        obs(np.ones(3))


def test_entropy_observer_is_per_tensor_only():
    with pytest.raises(TypeError):
        EntropyObserver(axis=0)  # no axis argument at all


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MinMaxObserver(5, 5), "qmin and qmax must differ"),
        (lambda: MinMaxObserver(5, 1), "qmin must not exceed qmax"),
        (lambda: MinMaxObserver(symmetric=1), "symmetric must be True or False"),
        (lambda: MinMaxObserver(axis=1.0), "axis must be an integer"),
        (lambda: MovingAverageMinMaxObserver(0.0), r"averaging_constant must lie in \(0, 1\]"),
        (lambda: PercentileObserver(101), r"percentile must lie in \[50, 100\]"),
        (lambda: MSEObserver(0), "num_candidates must be at least 1"),
        (lambda: EntropyObserver(bins=2.5), "bins must be an integer"),
    ],
)
def test_bad_constructor_arguments(make, match):
    with pytest.raises((ValueError, TypeError), match=match):
        make()


# ---------------------------------------------------------------- properties

batches = hnp.arrays(
    np.float32,
    st.tuples(st.integers(1, 4), st.integers(1, 30)),
    elements=st.floats(-1e3, 1e3, width=32),
)
qranges = st.sampled_from([(-128, 127), (0, 255), (-8, 7), (0, 15)])


@given(st.sampled_from(list(ALL_OBSERVERS)), st.lists(batches, min_size=1, max_size=3), qranges,
       st.booleans())
def test_every_observer_gives_a_usable_grid_containing_zero(name, xs, qrange_, symmetric):
    qmin, qmax = qrange_
    obs = ALL_OBSERVERS[name](qmin=qmin, qmax=qmax, symmetric=symmetric)
    for x in xs:
        obs(x)
    lo, hi = obs.min_val, obs.max_val
    data = np.concatenate([x.ravel() for x in xs])
    assert lo <= hi
    if name != "moving_average":  # the others choose a range inside the data
        assert data.min() <= lo and hi <= data.max()
    scale, zero_point = obs.calculate_qparams()
    assert scale > 0 and qmin <= zero_point <= qmax
    assert (qmin - zero_point) * scale <= 0 <= (qmax - zero_point) * scale
    assert fake_quantize(np.zeros(1), scale, zero_point, qmin, qmax)[0] == 0


@given(st.sampled_from(PER_CHANNEL), st.lists(batches, min_size=1, max_size=3), st.booleans())
def test_per_channel_observer_equals_one_observer_per_channel(name, xs, symmetric):
    channels = xs[0].shape[0]
    xs = [x for x in xs if x.shape[0] == channels]
    obs = ALL_OBSERVERS[name](symmetric=symmetric, axis=0)
    singles = [ALL_OBSERVERS[name](symmetric=symmetric) for _ in range(channels)]
    for x in xs:
        obs(x)
        for c in range(channels):
            singles[c](x[c])
    scale, zero_point = obs.calculate_qparams()
    for c in range(channels):
        assert (obs.min_val[c], obs.max_val[c]) == (singles[c].min_val, singles[c].max_val)
        assert (scale[c], zero_point[c]) == singles[c].calculate_qparams()


def test_clipping_error_parts_add_up_to_the_mse_of_the_symmetric_quantizer(rng):
    from qlearn import calc_qparams, fake_quantize, qrange
    from qlearn.observers import clipping_error_parts

    x = rng.standard_normal(5000).astype(np.float32)
    for t, bits in [(0.5, 4), (2.0, 4), (float(np.abs(x).max()), 8)]:
        parts = clipping_error_parts(x, t, bits)
        qmin, qmax = qrange(bits)
        scale, zero_point = calc_qparams(-t, t, qmin, qmax, symmetric=True)
        mse = np.mean((x.astype(np.float64) - fake_quantize(x, scale, zero_point, qmin, qmax)) ** 2)
        assert parts.scale == scale
        assert parts.rounding + parts.clipping == pytest.approx(mse, rel=1e-12)
        outside = (x < (qmin - 0.5) * scale) | (x > (qmax + 0.5) * scale)  # codes -8..7: not symmetric
        assert parts.inside == pytest.approx(1 - outside.mean())
        assert (parts.clipping == 0) == (not outside.any())


@pytest.mark.parametrize("threshold, bits", [(0.0, 4), (-1.0, 4), (float("nan"), 4), (1.0, 1)])
def test_clipping_error_parts_rejects_bad_arguments(threshold, bits):
    from qlearn.observers import clipping_error_parts

    with pytest.raises(ValueError, match="threshold|bits"):
        clipping_error_parts(np.ones(3, np.float32), threshold, bits)
