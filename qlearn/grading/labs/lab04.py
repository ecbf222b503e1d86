"""Lab 04 (``04_calibration_and_clipping``): choosing the range of an activation from calibration data.

    04.1  percentile_clip_range(x, p, symmetric)  (lo, hi) = the 100 - p and p percentiles of x, widened
                                                  to contain 0; or (-T, T), T = P_p(|x|)
    04.2  mse_optimal_clip(x, bits, candidates)   the threshold T whose symmetric quantizer has the least MSE
    04.3  kl_clip_threshold(hist, bin_edges, num_levels, damp_zero_bin)
                                                  TensorRT's entropy (KL) search, NVIDIA's zero-bin damping
    04.4  ema_update(old_min, old_max, x, c)      one step of the moving-average min/max observer
    04.Q1-04.Q4                                   graded "predict, then run" questions

**Tolerances.** 04.1 and 04.4 return real numbers that a correct solution may compute in a slightly
different order (``np.percentile`` on float32 or float64 data; ``(1 - c) * old + c * new`` or
``old + c * (new - old)``), which changes the last bits: they are compared with ``rtol = 1e-5``.
Every wrong answer below misses by far more on at least one case. 04.2 returns one of the given
candidates, compared exactly: every case is built so that the best candidate's error is at least
0.1% below the runner-up's, far more than the difference between ``x / scale`` and ``x * (1 /
scale)``, or between float32 and float64 arithmetic, can make. 04.3 returns one of the bin edges, compared exactly: every
histogram is built so that its best candidate's divergence is at least a relative 1e-6 below the
runner-up's, far more than the order of the floating-point sums can move it. ``tests/test_lab04.py``
proves that correct solutions written these different ways pass and that every wrong answer is rejected.
"""

from __future__ import annotations

import numpy as np

from qlearn.affine import fake_quantize
from qlearn.grading.compare import compare_values
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register
from qlearn.observers import kl_threshold, moving_average_update, percentile_range
from qlearn.qparams import calc_qparams, qrange

__all__ = ["ema_update", "kl_clip_threshold", "mse_optimal_clip", "percentile_clip_range"]

NOTEBOOK = "04_calibration_and_clipping"
f32 = np.float32
RTOL = 1e-5


def _compare_close(got, expected):
    return compare_values(got, expected, rtol=RTOL, atol=1e-12)


# --- 04.1 -------------------------------------------------------------------------------------

def percentile_clip_range(x: np.ndarray, p: float, symmetric: bool = False) -> tuple[np.float32, np.float32]:
    """The clipping range ``(lo, hi)`` of a percentile observer, over all values of ``x`` (any shape).

    Percentiles interpolate linearly between sorted values (numpy's default); ``p`` lies in
    ``[50, 100]``.

    - ``symmetric=False``: ``lo = P_{100 - p}(x)`` and ``hi = P_p(x)``, then widened to contain 0
      (``lo <= 0 <= hi``), as every observer's range is before it becomes a scale and zero-point;
    - ``symmetric=True``: ``T = P_p(|x|)`` and the range ``(-T, T)`` (TensorRT's percentile calibrator).

    >>> x = np.arange(101, dtype=np.float32)
    >>> percentile_clip_range(x, 99.0), percentile_clip_range(x - 50, 99.0, symmetric=True)
    ((np.float32(0.0), np.float32(99.0)), (np.float32(-50.0), np.float32(50.0)))
    """
    v = np.asarray(x, np.float64).reshape(-1)
    if symmetric:
        t = f32(np.percentile(np.abs(v), p))
        return -t, t
    lo, hi = percentile_range(v, p)
    return f32(min(lo, 0)), f32(max(hi, 0))


def _percentile_cases(rng: np.random.Generator) -> list[Case]:
    normal = rng.normal(0.0, 1.0, 1000).astype(f32)
    heavy = rng.standard_t(2, 5000).astype(f32)               # heavy tails: a few huge values
    relu = np.maximum(rng.normal(-0.5, 1.0, (8, 4, 6, 6)), 0).astype(f32)  # NCHW, many exact zeros
    skewed = np.concatenate([rng.exponential(1.0, 3000), -rng.exponential(0.1, 997)]).astype(f32)
    negative = -rng.uniform(0.5, 4.0, 700).astype(f32)
    positive = rng.uniform(0.5, 3.0, 400).astype(f32)
    return [
        Case("1000 normal values, p = 99", (normal, 99.0)),
        Case("5000 heavy-tailed values (Student t), p = 99.9", (heavy, 99.9)),
        Case("ReLU activations (N, C, H, W): flatten; lo is 0", (relu, 99.99)),
        Case("a long positive tail and a short negative one, p = 99.5", (skewed, 99.5)),
        Case("5 values, p = 90: interpolate between sorted values",
             (np.array([3.0, -1.0, 10.0, 0.5, 2.0], f32), 90.0)),
        Case("p = 100 is min-max", (heavy, 100.0)),
        Case("p = 50: both ends are the median", (normal, 50.0)),
        Case("negative-only values, p = 97.5: hi is widened to 0", (negative, 97.5)),
        Case("positive-only values, p = 99: lo is widened to 0", (positive, 99.0)),
        Case("a constant tensor", (np.full((3, 3), 0.25, f32), 99.0)),
        Case("symmetric: T = the p-th percentile of |x|, range (-T, T)", (skewed, 99.5, True)),
        Case("symmetric on heavy tails, p = 99.9", (heavy, 99.9, True)),
        Case("symmetric on ReLU activations: (-T, T) although nothing is negative", (relu, 99.0, True)),
        Case("symmetric, 5 values, p = 90", (np.array([3.0, -1.0, -10.0, 0.5, 2.0], f32), 90.0, True)),
    ]


def _pct(fn, widen=True, sym=None):
    """A wrong 04.1 built from ``fn(v, p) -> (lo, hi)`` on the flattened float64 values."""
    def wrong(x, p, symmetric=False):
        v = np.asarray(x, np.float64).reshape(-1)
        if symmetric:
            if sym is not None:
                return tuple(f32(t) for t in sym(v, p))
            t = f32(np.percentile(np.abs(v), p))
            return -t, t
        lo, hi = fn(v, p)
        if widen:
            lo, hi = min(lo, 0), max(hi, 0)
        return f32(lo), f32(hi)
    return wrong


def _nearest(v, q):
    return np.sort(v)[int(q / 100 * (v.size - 1))]


register(Exercise(
    id="04.1",
    title="A percentile observer",
    points=2,
    reference=percentile_clip_range,
    cases=_percentile_cases,
    function="percentile_clip_range",
    hint=("Two percentiles of all the values, one for each end of the range; a percentile interpolates "
          "linearly between the sorted values, and numpy has a function that does exactly that, in percents.",
          "An observer's range always contains 0, so that 0.0 gets an exact code: widen the asymmetric range "
          "where it misses 0. The symmetric range uses one threshold, a percentile of the magnitudes.",
          "Return the pair (lo, hi), lo first, for an input of any shape (flatten it)."),
    notebook=NOTEBOOK,
    seed=401,
    forbidden=("qlearn.observers.percentile_range", "qlearn.observers.PercentileObserver",),
    compare=_compare_close,
    wrong_answers={
        "p and 100 - p swapped": _pct(lambda v, p: (np.percentile(v, p), np.percentile(v, 100 - p))),
        "p used as a fraction: np.percentile(x, p / 100)": _pct(
            lambda v, p: (np.percentile(v, 1 - p / 100), np.percentile(v, p / 100))),
        "nearest rank instead of linear interpolation": _pct(lambda v, p: (_nearest(v, 100 - p), _nearest(v, p)),
                                                             sym=lambda v, p: (-_nearest(np.abs(v), p),
                                                                               _nearest(np.abs(v), p))),
        "clips the top only: lo = min(x)": _pct(lambda v, p: (v.min(), np.percentile(v, p))),
        "the range is not widened to contain 0": _pct(lambda v, p: (np.percentile(v, 100 - p),
                                                                    np.percentile(v, p)), widen=False),
        "symmetric: max(|lo|, |hi|) of the asymmetric percentiles": _pct(
            lambda v, p: (np.percentile(v, 100 - p), np.percentile(v, p)),
            sym=lambda v, p: (-max(abs(np.percentile(v, 100 - p)), abs(np.percentile(v, p))),
                              max(abs(np.percentile(v, 100 - p)), abs(np.percentile(v, p))))),
        "symmetric: ignores the flag": lambda x, p, symmetric=False: _pct(
            lambda v, q: (np.percentile(v, 100 - q), np.percentile(v, q)))(x, p),
        "percentiles of the first row only (no flatten)": lambda x, p, symmetric=False: _pct(
            lambda v, q: (np.percentile(v, 100 - q), np.percentile(v, q)))(
            np.asarray(x).reshape(np.shape(x)[0], -1)[0] if np.ndim(x) > 1 else x, p, symmetric),
        "returns (min, max)": _pct(lambda v, p: (v.min(), v.max()), sym=lambda v, p: (-np.abs(v).max(),
                                                                                     np.abs(v).max())),
    },
))


# --- 04.2 -------------------------------------------------------------------------------------

def _fq_mse(x: np.ndarray, t, bits: int) -> float:
    qmin, qmax = qrange(bits)
    scale, zero_point = calc_qparams(-f32(t), f32(t), qmin, qmax, symmetric=True)
    x_hat = fake_quantize(x, scale, zero_point, qmin, qmax)
    return float(np.mean(np.square(x.astype(np.float64) - x_hat)))


def mse_optimal_clip(x: np.ndarray, bits: int, candidates) -> float:
    """The clipping threshold ``T`` among ``candidates`` whose symmetric ``bits``-bit quantizer errs least.

    For each ``T``: signed codes ``[qmin, qmax] = qrange(bits)``, range ``[-T, T]``,
    ``scale = calc_qparams(-T, T, qmin, qmax, symmetric=True)[0]`` (``= T / ((qmax - qmin) / 2)``),
    ``x_hat = fake_quantize(x, scale, 0, qmin, qmax)`` (values beyond ``+-T`` saturate) and
    ``error(T) = mean((x - x_hat)**2)``. Returns the ``T`` with the smallest error (the first one on
    a tie), as a Python float.

    >>> x = np.concatenate([np.linspace(-1, 1, 1001), [10.0]]).astype(np.float32)   # one outlier
    >>> mse_optimal_clip(x, 4, [1.0, 3.0, 10.0]), mse_optimal_clip(x, 8, [1.0, 3.0, 10.0])
    (3.0, 10.0)
    """
    x = np.asarray(x, f32)
    errors = [_fq_mse(x, t, bits) for t in candidates]
    return float(candidates[int(np.argmin(errors))])


def _errors_all_ways(x: np.ndarray, bits: int, candidates: np.ndarray) -> list[np.ndarray]:
    """The error curve computed as the reference does, and with division / in float64."""
    qmin, qmax = qrange(bits)
    curves = [np.array([_fq_mse(x, t, bits) for t in candidates])]
    x64 = x.astype(np.float64)
    for dtype in (f32, np.float64):
        errs = []
        for t in candidates:
            s = dtype(t) / dtype((qmax - qmin) / 2)
            xs = x.astype(dtype)
            x_hat = np.clip(np.rint(xs / s), qmin, qmax) * s
            errs.append(np.mean((x64 - x_hat) ** 2))
        curves.append(np.array(errs))
    return curves


def _clip_case(rng: np.random.Generator, name: str, x: np.ndarray, bits: int, num: int) -> Case:
    """A case whose best candidate wins by at least 0.1%, however the error is computed."""
    x = x.astype(f32)
    top = float(np.abs(x).max())
    while True:
        candidates = np.round(np.sort(rng.uniform(0.02, 1.0, num)) * top, 4)
        candidates = np.unique(candidates[candidates > 0])
        curves = _errors_all_ways(x, bits, candidates)
        best = [int(np.argmin(c)) for c in curves]
        if len(set(best)) == 1:
            c = np.sort(curves[0])
            if c.size > 1 and c[1] > c[0] * 1.001:
                return Case(name, (x, bits, [float(t) for t in candidates]))


def _mse_clip_cases(rng: np.random.Generator) -> list[Case]:
    laplace = rng.laplace(0.0, 1.0, 4000)
    normal = rng.normal(0.0, 1.0, 3000)
    outliers = np.concatenate([rng.normal(0.0, 0.5, 2000), [12.0, -9.0, 15.0]])
    skewed = np.concatenate([rng.exponential(1.0, 2500), -rng.exponential(0.3, 500)])
    relu = np.maximum(rng.normal(0.0, 1.0, (16, 8, 4)), 0.0)
    neg_tail = -rng.exponential(1.0, 2000) + rng.normal(0.0, 0.2, 2000)
    return [
        _clip_case(rng, "Laplace values (heavy tails), 4 bits", laplace, 4, 12),
        _clip_case(rng, "normal values, 8 bits", normal, 8, 10),
        _clip_case(rng, "normal values, 2 bits: clip hard", normal, 2, 10),
        _clip_case(rng, "a few far outliers, 4 bits", outliers, 4, 15),
        _clip_case(rng, "long positive tail, short negative tail, 3 bits", skewed, 3, 10),
        _clip_case(rng, "long negative tail: the range is symmetric, both sides clip", neg_tail, 4, 10),
        _clip_case(rng, "ReLU activations (3-D), 4 bits", relu, 4, 10),
        Case("a single candidate", (normal.astype(f32), 4, [2.5])),
    ]


def _mse_wrong(range_of=None, inside_only=False, no_clamp=False, pick=np.argmin, returns="t",
               estimate=False, unsigned=False):
    def wrong(x, bits, candidates):
        x = np.asarray(x, f32)
        x64 = x.astype(np.float64)
        qmin, qmax = (0, 2**bits - 1) if unsigned else qrange(bits)
        errors = []
        for t in candidates:
            lo, hi = (-t, t) if range_of is None else range_of(x, t)
            scale, zero_point = calc_qparams(f32(lo), f32(hi), qmin, qmax, symmetric=range_of is None)
            if unsigned:
                scale, zero_point = calc_qparams(f32(0), f32(t), qmin, qmax)
            if estimate:
                errors.append(float(scale) ** 2 / 12)
                continue
            if no_clamp:
                x_hat = (np.rint(x / scale) + zero_point - zero_point) * scale
            else:
                x_hat = fake_quantize(x, scale, zero_point, qmin, qmax)
            err = (x64 - x_hat) ** 2
            errors.append(float(np.mean(err[np.abs(x) <= t]) if inside_only else np.mean(err)))
        k = int(pick(errors))
        return {"t": float(candidates[k]), "index": k, "error": errors[k]}[returns]
    return wrong


register(Exercise(
    id="04.2",
    title="An MSE-optimal clipping threshold",
    points=3,
    reference=mse_optimal_clip,
    cases=_mse_clip_cases,
    function="mse_optimal_clip",
    hint=("For every candidate, quantize the values with the quantizer that threshold defines and measure how "
          "far the result is from the values; keep the candidate whose error is smallest.",
          "The range is symmetric, [-T, T], with signed codes: the scale is T over half the number of codes "
          "minus one, and the zero-point is 0. Values beyond the range saturate, and that clipping error "
          "counts: average the squared error over every value, not only those inside.",
          "Return the threshold itself, the first one on a tie: not its position in the list, not its error."),
    notebook=NOTEBOOK,
    seed=402,
    forbidden=("qlearn.observers.mse_clip_search", "qlearn.observers.MSEObserver",
               "qlearn.observers.clipping_error_parts",),
    allowed=("qlearn.qparams.qrange", "qlearn.qparams.calc_qparams", "qlearn.affine.fake_quantize",),
    wrong_answers={
        "searches only the max side: range [min(x), T] when symmetric is asked": _mse_wrong(
            range_of=lambda x, t: (x.min(), t)),
        "error without the clipping part (only values inside [-T, T])": _mse_wrong(inside_only=True),
        "no clamp: values beyond T are never clipped": _mse_wrong(no_clamp=True),
        "rounding error estimate scale**2 / 12 only": _mse_wrong(estimate=True),
        "unsigned codes [0, 2**bits - 1] on signed data": _mse_wrong(unsigned=True),
        "picks the largest error (argmax)": _mse_wrong(pick=np.argmax),
        "returns the index of the best candidate": _mse_wrong(returns="index"),
        "returns the smallest error instead of the threshold": _mse_wrong(returns="error"),
        "returns max |x| (min-max, no search)": lambda x, bits, candidates: float(np.abs(x).max()),
    },
))


# --- 04.3 -------------------------------------------------------------------------------------

def kl_clip_threshold(hist, bin_edges, num_levels: int, damp_zero_bin: bool = False) -> float:
    """Entropy (KL) calibration: the threshold ``T = bin_edges[i]`` whose quantized histogram loses least.

    ``hist`` counts the magnitudes ``|x|`` in the bins ``bin_edges`` (first edge 0); ``num_levels``
    is the number of codes that cover ``[0, T]``. With ``damp_zero_bin`` the first bin's count is
    first replaced by the second's. For every candidate ``i = num_levels, ..., len(hist)``: ``P`` is
    ``hist[:i]`` with the clipped counts ``sum(hist[i:])`` added to its last bin; ``Q`` merges the
    bins of ``hist[:i]`` into ``num_levels`` levels (bin ``j`` into level ``j * num_levels // i``) and
    spreads each level's count evenly over its bins where ``P > 0`` (0 elsewhere); in each of ``P``
    and ``Q`` every empty bin gets ``1e-4`` counts, taken evenly from the non-empty ones; then
    ``KL = sum p log(p / q)`` on the normalized ``P`` and ``Q``. Returns the ``T`` with the smallest
    divergence (the largest ``T`` on a tie), as a float: :func:`qlearn.observers.kl_threshold`.

    >>> kl_clip_threshold(np.array([8, 4, 2, 1, 0, 0, 0, 1]), np.arange(9.0), 2)
    4.0
    >>> spike = np.array([90, 2, 2, 2, 2, 2, 2, 1])                 # exact zeros in the first bin
    >>> kl_clip_threshold(spike, np.arange(9.0), 4), kl_clip_threshold(spike, np.arange(9.0), 4, True)
    (4.0, 8.0)
    """
    return float(kl_threshold(hist, bin_edges, num_levels, damp_zero_bin=damp_zero_bin).threshold)


def _kl_divergences(hist, num_levels, *, damp=False, add_tail=True, spread="support", smooth=True):
    """The divergence curve of 04.3, with one step changed for each wrong answer."""
    hist = np.asarray(hist, np.float64).copy()
    if damp:
        hist[0] = hist[1]
    out = []
    for i in range(num_levels, hist.size + 1):
        p = hist[:i].copy()
        if add_tail:
            p[-1] += hist[i:].sum()
        level = np.arange(i) * num_levels // i
        total = np.bincount(level, weights=hist[:i], minlength=num_levels)
        where = p > 0 if spread == "support" else np.ones(i, bool)
        support = np.bincount(level, weights=where, minlength=num_levels)
        q = np.where(where, total[level] / np.maximum(support[level], 1), 0.0)
        if not q.any():
            out.append(np.inf)
            continue
        if smooth:
            p, q = _smooth_counts(p), _smooth_counts(q)
            if (p <= 0).any() or (q <= 0).any():
                out.append(np.inf)
                continue
            p, q = p / p.sum(), q / q.sum()
            out.append(float(np.sum(p * np.log(p / q))))
        else:
            keep = (p > 0) & (q > 0)
            p, q = p / p.sum(), q / q.sum()
            out.append(float(np.sum(p[keep] * np.log(p[keep] / q[keep]))))
    return np.array(out)


def _smooth_counts(counts):
    zero = counts == 0
    if not zero.any():
        return counts
    return np.where(zero, 1e-4, counts - 1e-4 * zero.sum() / (counts.size - zero.sum()))


def _kl_case(rng: np.random.Generator, name: str, make, bins: int, levels: int, damp: bool) -> Case:
    """A histogram of ``|make(rng)|`` whose best threshold wins by a clear margin (relative 1e-6)."""
    for _ in range(200):
        mag = np.abs(make(rng))
        hist, edges = np.histogram(mag, bins=bins, range=(0.0, float(mag.max())))
        d = _kl_divergences(hist, levels, damp=damp)
        if d.size == 1:
            break
        best, second = np.sort(d)[:2]
        if np.isfinite(best) and second > best * (1 + 1e-6) + 1e-12:
            break
    else:  # pragma: no cover - the seeds guarantee a clear winner
        raise RuntimeError(f"no histogram with a clear winner for {name!r}")
    return Case(name, (hist.astype(np.int64), edges.astype(f32), levels, damp))


def _laplace_outliers(rng):
    return np.concatenate([rng.laplace(0, 1, 3000), rng.uniform(8, 15, 4)])


def _relu(rng):
    v = np.maximum(rng.normal(-0.3, 1.0, 4000), 0)
    return np.concatenate([v, rng.exponential(1.5, 40)])


def _background(rng):  # half of the values at one level away from 0 (an image's background), the rest spread
    return np.concatenate([np.full(2000, 0.8), np.abs(rng.normal(0.8, 0.6, 2000))])


def _kl_cases(rng: np.random.Generator) -> list[Case]:
    return [
        _kl_case(rng, "Laplace values and a few far outliers: clip the outliers, keep the bulk", _laplace_outliers,
                 256, 32, False),
        _kl_case(rng, "ReLU outputs (half exact zeros), undamped: the spike decides", _relu, 256, 32, False),
        _kl_case(rng, "the same kind of ReLU outputs, damp_zero_bin=True: bins[0] = bins[1] first", _relu, 256, 32,
                 True),
        _kl_case(rng, "a spike away from 0 (an image's background), damped: damping bin 0 does not help",
                 _background, 128, 16, True),
        _kl_case(rng, "normal values, 128 bins and 16 levels", lambda r: r.normal(0, 1, 3000), 128, 16, False),
        _kl_case(rng, "values with a gap: empty bins in the middle of P", lambda r: np.concatenate(
            [r.normal(0, 0.5, 2000), r.normal(6, 0.2, 60)]), 128, 16, False),
        _kl_case(rng, "num_levels = len(hist): a single candidate, the whole range", lambda r: r.normal(0, 1, 500),
                 16, 16, False),
        _kl_case(rng, "random heavy-tailed values (Student t)", lambda r: r.standard_t(3, 3000), 192, 24, False),
    ]


def _kl_wrong(damp=None, add_tail=True, spread="support", smooth=True, pick="min", returns="t", first=False):
    def wrong(hist, bin_edges, num_levels, damp_zero_bin=False):
        d = _kl_divergences(hist, num_levels, damp=damp_zero_bin if damp is None else damp, add_tail=add_tail,
                            spread=spread, smooth=smooth)
        if pick == "max":
            k = int(np.argmax(np.where(np.isfinite(d), d, -np.inf)))
        elif first:
            k = int(np.argmin(d))
        else:
            k = d.size - 1 - int(np.argmin(d[::-1]))
        i = num_levels + k
        return {"t": float(np.asarray(bin_edges, f32)[i]), "index": i, "kl": float(d[k])}[returns]
    return wrong


register(Exercise(
    id="04.3",
    title="Entropy (KL) calibration, with the zero bin damped or not",
    points=4,
    reference=kl_clip_threshold,
    cases=_kl_cases,
    function="kl_clip_threshold",
    hint=("For each candidate threshold, build two histograms over the bins below it: P, what the data looks "
          "like once clipped there, and Q, what a quantizer with num_levels codes can express of it. Keep the "
          "threshold whose Q is closest to P.",
          "In P the clipped values do not vanish: they pile up in the last bin. Q starts from the counts "
          "below the threshold only, merges them level by level, and gives each level's count back to the "
          "bins of that level that P does not leave empty.",
          "Before normalizing, give every empty bin a tiny count and take it back evenly from the others, in "
          "P and in Q, so that no logarithm sees a zero. Damping copies the second bin's count into the first "
          "before anything else. Return the threshold, a bin edge."),
    notebook=NOTEBOOK,
    seed=403,
    forbidden=("qlearn.observers.kl_threshold", "qlearn.observers.EntropyObserver",
               "qlearn.observers._kl_divergence", "qlearn.observers._smooth"),
    wrong_answers={
        "ignores damp_zero_bin (never damps)": _kl_wrong(damp=False),
        "always damps the zero bin": _kl_wrong(damp=True),
        "P without the clipped values (they vanish instead of piling into the last bin)": _kl_wrong(add_tail=False),
        "Q spreads each level over all its bins, empty ones included": _kl_wrong(spread="all"),
        "no smoothing: bins where P or Q is 0 are skipped": _kl_wrong(smooth=False),
        "keeps the largest divergence": _kl_wrong(pick="max"),
        "returns the bin index instead of the threshold": _kl_wrong(returns="index"),
        "returns the divergence instead of the threshold": _kl_wrong(returns="kl"),
        "returns the last bin edge (no clipping at all)": lambda hist, edges, levels, damp=False: float(
            np.asarray(edges, f32)[-1]),
    },
))


# --- 04.4 -------------------------------------------------------------------------------------

def ema_update(old_min, old_max, x: np.ndarray, c: float):
    """One step of ``MovingAverageMinMaxObserver``: average each batch's min and max into the range.

    The first batch (``old_min`` and ``old_max`` are ``None``) sets the range to ``(min(x), max(x))``.
    Each later batch moves it a fraction ``c`` of the way towards the batch's own range:

        new_min = old_min + c * (min(x) - old_min),    new_max = old_max + c * (max(x) - old_max)

    in float32, as torch computes it. Returns ``(new_min, new_max)``.

    >>> ema_update(None, None, np.array([-1.0, 3.0], np.float32), 0.1)
    (np.float32(-1.0), np.float32(3.0))
    >>> ema_update(np.float32(-1.0), np.float32(3.0), np.array([-2.0, 13.0], np.float32), 0.1)
    (np.float32(-1.1), np.float32(4.0))
    """
    x = np.asarray(x, f32)
    lo, hi = x.min(), x.max()
    if old_min is None and old_max is None:
        return f32(lo), f32(hi)
    return moving_average_update(old_min, lo, c), moving_average_update(old_max, hi, c)


def _ema_cases(rng: np.random.Generator) -> list[Case]:
    batch = rng.normal(0.0, 1.0, (8, 16)).astype(f32)
    relu = np.maximum(rng.normal(0.3, 1.0, (4, 3, 5, 5)), 0).astype(f32)
    outlier = batch.copy()
    outlier[3, 5] = 40.0
    negative = -rng.uniform(1.0, 3.0, 20).astype(f32)
    return [
        Case("the first batch sets the range (old_min = old_max = None)", (None, None, batch, 0.01)),
        Case("the first batch of ReLU outputs", (None, None, relu, 0.01)),
        Case("a later batch, c = 0.01 (torch's default)", (f32(-2.0), f32(2.5), batch, 0.01)),
        Case("a later batch, c = 0.1", (f32(-1.0), f32(1.0), batch, 0.1)),
        Case("a batch with an outlier (40): the max moves only c of the way", (f32(-2.2), f32(2.4), outlier, 0.05)),
        Case("ReLU outputs (min 0), c = 0.2", (f32(0.0), f32(1.5), relu, 0.2)),
        Case("negative-only batch, c = 0.3", (f32(-2.5), f32(-1.5), negative, 0.3)),
        Case("c = 1: the range becomes the batch's", (f32(-5.0), f32(5.0), batch, 1.0)),
    ]


def _ema_wrong(kind):
    def wrong(old_min, old_max, x, c):
        x = np.asarray(x, f32)
        lo, hi = x.min(), x.max()
        first = old_min is None and old_max is None
        if kind == "no init":
            old_min, old_max = (f32(0), f32(0)) if first else (old_min, old_max)
        elif first:
            return f32(lo), f32(hi)
        if kind == "wrong term":
            return f32(c * old_min + (1 - c) * lo), f32(c * old_max + (1 - c) * hi)
        if kind == "no init":
            return f32(old_min + c * (lo - old_min)), f32(old_max + c * (hi - old_max))
        if kind == "running":
            return f32(min(old_min, lo)), f32(max(old_max, hi))
        if kind == "mean":
            m = x.mean()
            return f32(old_min + c * (m - old_min)), f32(old_max + c * (m - old_max))
        if kind == "batch only":
            return f32(lo), f32(hi)
        if kind == "swapped":
            return f32(old_min + c * (hi - old_min)), f32(old_max + c * (lo - old_max))
        if kind == "no old":
            return f32(old_min + c * lo), f32(old_max + c * hi)
        raise AssertionError(kind)
    return wrong


register(Exercise(
    id="04.4",
    title="A moving-average min/max update",
    points=2,
    reference=ema_update,
    cases=_ema_cases,
    function="ema_update",
    hint=("The first batch has nothing to average with: it sets the range. Every later batch moves each end "
          "of the range a fraction c of the way towards that batch's own extreme.",
          "c is the weight of the NEW batch: a small c forgets slowly. The minimum follows the batch's "
          "minimum, the maximum its maximum, each on its own.",
          "Return the pair (new minimum, new maximum)."),
    notebook=NOTEBOOK,
    seed=404,
    forbidden=(
        "qlearn.observers.moving_average_update", "qlearn.observers.MovingAverageMinMaxObserver",
        "torch.ao.quantization.observer.MovingAverageMinMaxObserver",
        "torch.ao.quantization.observer.MovingAveragePerChannelMinMaxObserver",
    ),
    compare=_compare_close,
    wrong_answers={
        "c applied to the wrong term: c * old + (1 - c) * new": _ema_wrong("wrong term"),
        "first batch not initialising (None taken as 0)": _ema_wrong("no init"),
        "running min/max instead of an average": _ema_wrong("running"),
        "averages the batch mean instead of its min and max": _ema_wrong("mean"),
        "forgets the old range: returns the batch's min and max": _ema_wrong("batch only"),
        "min and max swapped in the update": _ema_wrong("swapped"),
        "old + c * new (the old value not subtracted)": _ema_wrong("no old"),
    },
))


# --- graded questions ("predict, then run") ------------------------------------------------------

register(Question(
    id="04.Q1",
    title="How many of the 16 levels of a 4-bit min-max grid serve the tails?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_levels",
    choices={"a": "one or two, at the very ends", "b": "about four", "c": "half of them or more"},
    answer="c",
    explanation=("The min-max range is set by a handful of extreme values, and the levels are spread evenly over "
                 "it: with a narrow peak and long tails, most of the range (and most of the levels) lies where "
                 "almost no value is. Here 10 of the 16 levels lie outside the middle 99% of the values."),
    hint=("The levels are spread evenly between the minimum and the maximum. How wide is the middle 99% of the "
          "values compared with that whole range?",),
))

register(Question(
    id="04.Q2",
    title="Which percentile gives the best 4-bit SQNR on held-out values?",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_percentile",
    choices=None,
    answer=99.0,
    explanation=("At 4 bits the step is coarse, so the rounding error of the bulk dominates: clipping more of "
                 "the tail to make the step finer pays, and the lowest percentile tried, 99, wins. At 8 bits the "
                 "best percentile keeps more of the tail."),
    hint=("At 4 bits, which error is larger here: rounding the bulk with a coarse step, or clipping the few "
          "values of the tail?",),
))

register(Question(
    id="04.Q3",
    title="After 15 updates with c = 0.01, what share of the moving average is the first batch's?",
    points=1,
    notebook=NOTEBOOK,
    variable="q3_first_weight",
    choices=None,
    answer=86.0,
    atol=1.0,
    explanation=("Each update keeps 1 - c of the average, so after 15 updates the first batch still weighs "
                 "0.99**15 = 0.86: 86%. A moving average with c = 0.01 needs about 69 batches to forget half of "
                 "its first one, far more than a calibration sees."),
    hint=("Each update multiplies the weight of everything already in the average by the same factor. Which "
          "factor?", "The factor is 1 - c, applied once per update: raise it to the number of updates."),
))

register(Question(
    id="04.Q4",
    title="Which observer's 8-bit ranges cost the network the most accuracy?",
    points=1,
    notebook=NOTEBOOK,
    variable="q4_worst",
    choices={"a": "min-max", "b": "percentile 99.99", "c": "MSE", "d": "entropy (KL), undamped"},
    answer="d",
    explanation=("At 8 bits min-max, percentile and MSE ranges all keep the float accuracy within a percent. The "
                 "undamped entropy search clips a tenth of the values on many ReLU sites (the spike of zeros pins "
                 "its threshold at max/8) and the input's bright pixels, and the network loses a third of its "
                 "accuracy."),
    hint=("Which of these searches can clip a large share of the values at 8 bits? Think of the ReLU outputs "
          "of exercise 04.3.",),
))
