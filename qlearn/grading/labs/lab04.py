"""Lab 04 (``04_calibration_and_clipping``): choosing the range of an activation from calibration data.

    04.1  percentile_clip_range(x, p)             (lo, hi) = the 100 - p and p percentiles of x
    04.2  mse_optimal_clip(x, bits, candidates)   the threshold T whose symmetric quantizer has the least MSE
    04.3  ema_update(old_min, old_max, x, c)      one step of the moving-average min/max observer

**Tolerances.** 04.1 and 04.3 return real numbers that a correct solution may compute in a slightly
different order (``np.percentile`` on float32 or float64 data; ``(1 - c) * old + c * new`` or
``old + c * (new - old)``), which changes the last bits: they are compared with ``rtol = 1e-5``.
Every wrong answer below misses by far more on at least one case. 04.2 returns one of the given
candidates, compared exactly: every case is built so that the best candidate's error is at least
0.1% below the runner-up's, far more than the difference between ``x / scale`` and ``x * (1 /
scale)``, or between float32 and float64 arithmetic, can make. ``tests/test_lab04.py`` proves that
correct solutions written these different ways pass and that every wrong answer is rejected.
"""

from __future__ import annotations

import numpy as np

from qlearn.affine import fake_quantize
from qlearn.grading.compare import compare_values
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.registry import register
from qlearn.observers import moving_average_update, percentile_range
from qlearn.qparams import calc_qparams, qrange

__all__ = ["ema_update", "mse_optimal_clip", "percentile_clip_range"]

NOTEBOOK = "04_calibration_and_clipping"
f32 = np.float32
RTOL = 1e-5


def _compare_close(got, expected):
    return compare_values(got, expected, rtol=RTOL, atol=1e-12)


# --- 04.1 -------------------------------------------------------------------------------------

def percentile_clip_range(x: np.ndarray, p: float) -> tuple[np.float32, np.float32]:
    """The clipping range of a percentile observer: ``lo = P_{100 - p}(x)``, ``hi = P_p(x)``.

    Percentiles of all values of ``x`` (flattened), interpolated linearly between sorted values
    (numpy's default); ``p`` lies in ``[50, 100]``, and ``p = 100`` gives ``(min, max)``.

    >>> percentile_clip_range(np.arange(101, dtype=np.float32), 99.0)
    (np.float32(1.0), np.float32(99.0))
    """
    return percentile_range(x, p)


def _percentile_cases(rng: np.random.Generator) -> list[Case]:
    normal = rng.normal(0.0, 1.0, 1000).astype(f32)
    heavy = rng.standard_t(2, 5000).astype(f32)               # heavy tails: a few huge values
    relu = np.maximum(rng.normal(-0.5, 1.0, (8, 4, 6, 6)), 0).astype(f32)  # NCHW, many exact zeros
    skewed = np.concatenate([rng.exponential(1.0, 3000), -rng.exponential(0.1, 997)]).astype(f32)
    negative = -rng.uniform(0.5, 4.0, 700).astype(f32)
    return [
        Case("1000 normal values, p = 99", (normal, 99.0)),
        Case("5000 heavy-tailed values (Student t), p = 99.9", (heavy, 99.9)),
        Case("ReLU activations (N, C, H, W): flatten; lo is 0", (relu, 99.99)),
        Case("a long positive tail and a short negative one, p = 99.5", (skewed, 99.5)),
        Case("5 values, p = 90: interpolate between sorted values",
             (np.array([3.0, -1.0, 10.0, 0.5, 2.0], f32), 90.0)),
        Case("p = 100 is min-max", (heavy, 100.0)),
        Case("p = 50: both ends are the median", (normal, 50.0)),
        Case("negative-only values, p = 97.5", (negative, 97.5)),
        Case("a constant tensor", (np.full((3, 3), 0.25, f32), 99.0)),
    ]


def _nearest_rank(x, p):
    v = np.sort(np.asarray(x, np.float64).reshape(-1))
    index = lambda q: v[int(q / 100 * (v.size - 1))]
    return f32(index(100 - p)), f32(index(p))


def _both(fn):
    return lambda x, p: tuple(f32(v) for v in fn(np.asarray(x, np.float64).reshape(-1), p))


register(Exercise(
    id="04.1",
    title="A percentile observer",
    points=2,
    reference=percentile_clip_range,
    cases=_percentile_cases,
    function="percentile_clip_range",
    hint=("lo = np.percentile(x, 100 - p) and hi = np.percentile(x, p): np.percentile takes percents "
          "(0..100), flattens x, and interpolates linearly between sorted values by default. Return the "
          "pair (lo, hi), lo first."),
    notebook=NOTEBOOK,
    seed=401,
    forbidden=("qlearn.observers.percentile_range", "qlearn.observers.PercentileObserver",),
    compare=_compare_close,
    wrong_answers={
        "p and 100 - p swapped": _both(lambda v, p: (np.percentile(v, p), np.percentile(v, 100 - p))),
        "p used as a fraction: np.percentile(x, p / 100)": _both(
            lambda v, p: (np.percentile(v, 1 - p / 100), np.percentile(v, p / 100))),
        "nearest rank instead of linear interpolation": _nearest_rank,
        "clips the top only: lo = min(x)": _both(lambda v, p: (v.min(), np.percentile(v, p))),
        "symmetric: -P_p(|x|) and P_p(|x|)": _both(
            lambda v, p: (-np.percentile(np.abs(v), p), np.percentile(np.abs(v), p))),
        "percentiles of the first row only (no flatten)": lambda x, p: tuple(
            f32(np.percentile(np.asarray(x).reshape(np.shape(x)[0], -1)[0] if np.ndim(x) > 1 else x, q))
            for q in (100 - p, p)),
        "returns (min, max)": _both(lambda v, p: (v.min(), v.max())),
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
    hint=("For each T in candidates: qmin, qmax = qrange(bits); scale, zero_point = calc_qparams(-T, T, qmin, "
          "qmax, symmetric=True); x_hat = fake_quantize(x, scale, zero_point, qmin, qmax) (it clamps: values "
          "beyond +-T saturate, which is the clipping error); error = np.mean((x - x_hat)**2) over ALL values. "
          "Return the T (not its index, not its error) with the smallest error: candidates[np.argmin(errors)]."),
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
    id="04.3",
    title="A moving-average min/max update",
    points=2,
    reference=ema_update,
    cases=_ema_cases,
    function="ema_update",
    hint=("lo, hi = x.min(), x.max(). If old_min is None (the first batch), return (lo, hi). Otherwise "
          "return (old_min + c * (lo - old_min), old_max + c * (hi - old_max)): c is the weight of the NEW "
          "batch, so a small c forgets slowly."),
    notebook=NOTEBOOK,
    seed=403,
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
