"""Calibration observers: watch a few batches of real data, then choose the clipping range.

Post-training quantization needs a range ``[min_val, max_val]`` for every tensor it quantizes.
An observer is called on calibration batches (``observer(x)`` records statistics and returns ``x``
unchanged, like ``torch.ao.quantization`` observers), then ``observer.calculate_qparams()`` turns
the range it chose into ``(scale, zero_point)`` with ``qlearn.qparams.calc_qparams``.

The observers differ only in how they choose the range:

- ``MinMaxObserver``: the smallest and largest value seen (never clips).
- ``MovingAverageMinMaxObserver``: an exponential moving average of each batch's min and max.
- ``PercentileObserver``: the ``100 - p`` and ``p`` percentiles of all values seen.
- ``MSEObserver``: the range ``f * [min, max]`` that minimizes the mean squared error between
  ``x`` and ``fake_quantize(x)``.
- ``EntropyObserver``: the threshold that minimizes the KL divergence between the histogram of
  ``|x|`` and its quantized version (TensorRT's entropy calibration; ``damp_zero_bin=True`` first
  damps the spike of exact zeros, ``bins[0] = bins[1]``, as NVIDIA's calibrator does). Per-tensor
  only; the others also work per channel (``axis=k``: one range per slice along axis ``k``).

Clipping trades two errors: a narrower range gives a finer step (less rounding error) but
saturates the outliers (clipping error). Min-max never clips, so one outlier can waste most of
the codes; the other three observers clip below the maximum on heavy-tailed data.

The stateful observers call stateless helpers that a notebook can use on its own:
``moving_average_update``, ``percentile_range``, ``mse_clip_search`` and ``kl_threshold``.

``MinMaxObserver`` and ``MovingAverageMinMaxObserver`` agree bit for bit with their torch
namesakes (and ``PerChannelMinMaxObserver`` / ``MovingAveragePerChannelMinMaxObserver`` when
``axis`` is set). Unlike torch, an observer that has seen no data raises instead of returning
``(1.0, 0)``, and NaN or inf in a batch is an error. ``min_val`` / ``max_val`` are the raw range
chosen (torch's convention); ``calc_qparams`` then widens it to contain 0.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from qlearn._validate import as_float32, check_axis, check_bool, check_int, check_range, check_real
from qlearn.affine import fake_quantize
from qlearn.qparams import calc_qparams

__all__ = [
    "ClippingErrorParts",
    "EntropyObserver",
    "KLThresholdResult",
    "MSEClipResult",
    "MSEObserver",
    "MinMaxObserver",
    "MovingAverageMinMaxObserver",
    "PercentileObserver",
    "clipping_error_parts",
    "kl_threshold",
    "moving_average_update",
    "mse_clip_search",
    "percentile_range",
]

_NO_DATA = "has seen no data; call the observer on a calibration batch first"


# --------------------------------------------------------------------------------------------
# Stateless helpers
# --------------------------------------------------------------------------------------------


def moving_average_update(old, new, c: float):
    """One step of an exponential moving average, in float32 as torch's observers compute it.

        avg = old + c * (new - old)          (= (1 - c) * old + c * new in exact arithmetic)

    ``c`` (the ``averaging_constant``, in ``(0, 1]``) is rounded to float32 first. A small ``c``
    forgets slowly: one batch with an outlier moves the average by only ``c`` of the jump.

    >>> moving_average_update(0.0, 10.0, 0.1)
    np.float32(1.0)
    >>> moving_average_update(np.float32([-1.0, 2.0]), np.float32([-3.0, 2.0]), 0.5)
    array([-2.,  2.], dtype=float32)
    """
    c = check_real(c, "c")
    if not 0.0 < c <= 1.0:
        raise ValueError(f"c (the averaging constant) must lie in (0, 1], got {c}")
    old = as_float32(old, "old")
    new = as_float32(new, "new")
    avg = old + np.float32(c) * (new - old)
    return np.float32(avg) if avg.ndim == 0 else avg


def _check_percentile(percentile: object) -> float:
    percentile = check_real(percentile, "percentile")
    if not 50.0 <= percentile <= 100.0:  # also rejects NaN
        raise ValueError(
            f"percentile must lie in [50, 100] (the upper percentile; the lower one is "
            f"100 - percentile), got {percentile}"
        )
    return percentile


def percentile_range(x, percentile: float, *, axis: int | None = None):
    """The clipping range ``(lo, hi)`` = the ``100 - p`` and ``p`` percentiles of ``x``.

    Percentiles use linear interpolation between sorted values (numpy's default method, computed
    in float64 and rounded to float32; it equals ``torch.quantile`` on float64). ``p = 100`` gives
    the min and max. With ``axis=k`` there is one range per slice along axis ``k`` (per-channel).

    >>> x = np.arange(101, dtype=np.float32)          # 0, 1, ..., 100
    >>> percentile_range(x, 99.0)
    (np.float32(1.0), np.float32(99.0))
    >>> percentile_range(np.array([[0.0, 1.0, 2.0], [0.0, 10.0, 20.0]]), 75.0, axis=0)  # per row
    (array([0.5, 5. ], dtype=float32), array([ 1.5, 15. ], dtype=float32))
    """
    p = _check_percentile(percentile)
    x = as_float32(x, "x")
    if x.size == 0:
        raise ValueError("x is empty: a percentile needs at least one value")
    v = _rows(x, axis).astype(np.float64)
    lo, hi = np.percentile(v, [100.0 - p, p], axis=-1).astype(np.float32)
    return (np.float32(lo), np.float32(hi)) if lo.ndim == 0 else (lo, hi)


class MSEClipResult(NamedTuple):
    """The result of ``mse_clip_search``: the best range and the whole error curve."""

    xmin: np.float32
    xmax: np.float32
    fractions: np.ndarray  #: candidate fractions f of the full range, ``k / num_candidates``
    errors: np.ndarray     #: mean squared error of ``fake_quantize`` at each fraction (float64)


def mse_clip_search(x, qmin: int, qmax: int, num_candidates: int = 100,
                    symmetric: bool = False) -> MSEClipResult:
    """Search the clipping range ``f * [min(x), max(x)]`` that minimizes the quantization MSE.

    For ``f = k / num_candidates``, ``k = 1 .. num_candidates`` (``f = 1`` is min-max):

        scale_f, zero_point_f = calc_qparams(f * min(x), f * max(x), qmin, qmax, symmetric)
        error(f) = mean((x - fake_quantize(x, scale_f, zero_point_f, qmin, qmax))**2)

    and returns the ``f`` with the smallest error (the smallest ``f`` on a tie), as
    ``MSEClipResult(xmin, xmax, fractions, errors)``. Plot ``errors`` against ``fractions`` to see
    the U shape: clipping error dominates on the left, rounding error on the right.

    >>> x = np.concatenate([np.linspace(-1, 1, 1001), [10.0]])    # one outlier at 10
    >>> best = mse_clip_search(x, -8, 7, num_candidates=20, symmetric=True)     # 4 bits
    >>> float(best.xmax), best.fractions[best.errors.argmin()], len(best.errors)
    (3.5, np.float64(0.35), 20)
    """
    qmin, qmax = check_range(qmin, qmax)
    num_candidates = check_int(num_candidates, "num_candidates")
    if num_candidates < 1:
        raise ValueError(f"num_candidates must be at least 1, got {num_candidates}")
    symmetric = check_bool(symmetric, "symmetric")
    x = as_float32(x, "x").reshape(-1)
    if x.size == 0:
        raise ValueError("x is empty: the search needs at least one value")
    xmin, xmax = x.min(), x.max()
    x64 = x.astype(np.float64)
    fractions = np.arange(1, num_candidates + 1) / num_candidates
    errors = np.empty(num_candidates)
    for k, f in enumerate(fractions):
        f32 = np.float32(f)
        scale, zero_point = calc_qparams(f32 * xmin, f32 * xmax, qmin, qmax, symmetric)
        x_hat = fake_quantize(x, scale, zero_point, qmin, qmax)
        errors[k] = np.mean(np.square(x64 - x_hat))
    f32 = np.float32(fractions[np.argmin(errors)])
    return MSEClipResult(f32 * xmin, f32 * xmax, fractions, errors)


class ClippingErrorParts(NamedTuple):
    """The result of ``clipping_error_parts``: the MSE split into its two parts."""

    rounding: float  #: sum of squared errors of the values inside the grid, divided by ``x.size``
    clipping: float  #: the same for the values beyond it (they saturate)
    inside: float    #: fraction of the values inside the grid
    scale: np.float32  #: the step of the quantizer


def clipping_error_parts(x, threshold: float, bits: int) -> ClippingErrorParts:
    """The MSE of the symmetric ``bits``-bit quantizer with range ``[-threshold, threshold]``, split
    into its rounding part and its clipping part (lab 04, section 4).

    With signed codes ``[qmin, qmax] = qrange(bits)`` and ``scale, zero_point = calc_qparams(-T, T,
    qmin, qmax, symmetric=True)``, a value is *inside* when ``(qmin - 1/2) s <= x <= (qmax + 1/2) s``
    (it is rounded to the nearest level) and *clipped* otherwise (it saturates):

        rounding = sum_{x inside} (x - x_hat)**2 / N,    clipping = sum_{x outside} (x - x_hat)**2 / N

    so that ``rounding + clipping`` is the MSE. The rounding part is about ``s**2 / 12`` times the
    fraction inside while the step is small next to the spread of the values.

    >>> x = np.array([-1.0, 0.1, 0.5, 3.0], np.float32)
    >>> parts = clipping_error_parts(x, 1.0, 4)     # s = 1 / 7.5; 3.0 saturates at code 7, 7 s = 0.933
    >>> round(parts.clipping, 4), round((3.0 - 7 / 7.5) ** 2 / 4, 4), parts.inside
    (1.0678, 1.0678, 0.75)
    """
    bits = check_int(bits, "bits")
    if not 2 <= bits <= 32:
        raise ValueError(f"bits must be between 2 and 32 for signed symmetric codes, got {bits}")
    if not np.isfinite(threshold) or threshold <= 0:
        raise ValueError(f"threshold must be a positive finite number, got {threshold!r}")
    x = as_float32(x, "x").reshape(-1)
    if x.size == 0:
        raise ValueError("x is empty: an error over no values is undefined")
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    scale, zero_point = calc_qparams(-threshold, threshold, qmin, qmax, symmetric=True)
    err2 = (x.astype(np.float64) - fake_quantize(x, scale, zero_point, qmin, qmax)) ** 2
    inside = (x >= (qmin - 0.5) * scale) & (x <= (qmax + 0.5) * scale)
    return ClippingErrorParts(float(err2[inside].sum() / x.size), float(err2[~inside].sum() / x.size),
                              float(inside.mean()), scale)


class KLThresholdResult(NamedTuple):
    """The result of ``kl_threshold``: the chosen threshold and the divergence curve."""

    threshold: np.float32
    thresholds: np.ndarray   #: candidate thresholds ``bin_edges[i]``
    divergences: np.ndarray  #: KL(P || Q) at each candidate (float64)


def _smooth(counts: np.ndarray, eps: float = 1e-4) -> np.ndarray:
    """Give every empty bin ``eps`` counts, taken evenly from the non-empty bins (MXNet, TVM, ORT)."""
    zero = counts == 0
    n_zero = int(zero.sum())
    if n_zero == 0:
        return counts
    eps_taken = eps * n_zero / (counts.size - n_zero)
    return np.where(zero, eps, counts - eps_taken)


def _kl_divergence(p_counts: np.ndarray, q_counts: np.ndarray) -> float:
    """``KL(P || Q) = sum_j p_j log(p_j / q_j)`` of two count vectors, after smoothing."""
    if not q_counts.any():
        return np.inf  # Q is empty: nothing of P is represented
    p, q = _smooth(p_counts), _smooth(q_counts)
    if (p <= 0).any() or (q <= 0).any():
        return np.inf  # a bin too small for the smoothing to stay positive: reject the candidate
    p, q = p / p.sum(), q / q.sum()
    return float(np.sum(p * np.log(p / q)))


def kl_threshold(hist, bin_edges, num_quant_bins: int, *,
                 damp_zero_bin: bool = False) -> KLThresholdResult:
    """Entropy calibration (TensorRT): the threshold whose quantized histogram loses least information.

    ``hist`` counts the magnitudes ``|x|`` in the bins ``bin_edges`` (as from ``np.histogram``, the
    first edge at 0); ``num_quant_bins`` is the number of quantization levels that cover
    ``[0, threshold]`` (128 for signed int8).

    ``damp_zero_bin=True`` first replaces the count of the first bin (the one holding the exact
    zeros) by the second bin's, ``hist[0] = hist[1]``, as NVIDIA's entropy calibrator does
    (``bins[0] = bins[1]`` in ``pytorch_quantization.calib.histogram``). After a ReLU half of the
    values can be exact zeros; undamped, that spike dominates ``P`` and the search judges every
    candidate by how well ``Q`` keeps the spike. Zero is exactly representable whatever the
    threshold, so damping it loses nothing the quantizer could have kept.

    Then, for each candidate ``i = num_quant_bins .. len(hist)``, i.e. the threshold
    ``T_i = bin_edges[i]``:

    1. reference ``P``: the first ``i`` bins, with every count beyond ``T_i`` (the values that
       would be clipped) added to bin ``i - 1``;
    2. candidate ``Q``: the first ``i`` bins (without the clipped values) merged into
       ``num_quant_bins`` levels, bin ``j`` into level ``j * num_quant_bins // i``, then each
       level's count spread evenly over its bins where ``P`` is non-zero (``Q`` is what the
       quantizer can express). TensorRT spreads over the non-empty bins of ``hist``; using the
       support of ``P``, as MXNet does, leaves ``q_j = 0 < p_j`` only where a whole level is empty;
    3. smoothing: in ``P`` and ``Q`` every empty bin gets ``eps = 1e-4`` counts, taken evenly from
       the non-empty ones (as MXNet, TVM and ONNX Runtime do), so that no ``q_j`` is 0;
    4. ``KL(P || Q) = sum_j p_j log(p_j / q_j)`` with ``P`` and ``Q`` normalized to sum to 1.
       A candidate whose ``Q`` is all zeros (every value clipped) gets ``inf``.

    The threshold is ``T_i`` for the ``i`` with the smallest divergence (the largest ``i`` on a
    tie). Clipping too much piles the outliers into bin ``i - 1`` of ``P`` but not of ``Q``;
    clipping too little merges many bins into each level: both raise the divergence.
    Returns ``KLThresholdResult(threshold, thresholds, divergences)``.

    >>> hist = np.array([8, 4, 2, 1, 0, 0, 0, 1])          # a long, empty tail
    >>> result = kl_threshold(hist, np.arange(9.0), 2)
    >>> float(result.threshold), result.thresholds.tolist()
    (4.0, [2.0, 3.0, 4.0, 5.0, 6.0, 7.0, 8.0])

    A spike in the first bin (exact zeros) pulls the threshold down to the smallest candidate;
    damping it (``hist[0] = hist[1]``) lets the rest of the histogram decide:

    >>> spike = np.array([90, 2, 2, 2, 2, 2, 2, 1])
    >>> float(kl_threshold(spike, np.arange(9.0), 4, damp_zero_bin=False).threshold)
    4.0
    >>> float(kl_threshold(spike, np.arange(9.0), 4, damp_zero_bin=True).threshold)
    8.0
    """
    as_float32(hist, "hist")  # rejects non-numbers, NaN and inf with a clear message
    hist = np.asarray(hist, dtype=np.float64)  # float64: exact for counts up to 2**53
    if hist.ndim != 1 or hist.size == 0:
        raise ValueError(f"hist must be a non-empty 1-D array of counts, got shape {hist.shape}")
    if (hist < 0).any():
        raise ValueError(f"hist holds counts and must be non-negative, got minimum {hist.min()}")
    if hist.sum() == 0:
        raise ValueError("hist is all zeros: there is no data to calibrate on")
    if check_bool(damp_zero_bin, "damp_zero_bin") and hist.size > 1:
        hist = hist.copy()
        hist[0] = hist[1]  # NVIDIA's calibrator: damp the spike of exact zeros
        if hist.sum() == 0:
            raise ValueError(
                "hist holds counts only in its first bin, so damp_zero_bin=True leaves nothing to "
                "calibrate on; use damp_zero_bin=False (or a histogram whose range fits the data)"
            )
    edges = as_float32(bin_edges, "bin_edges")
    if edges.shape != (hist.size + 1,):
        raise ValueError(
            f"bin_edges must have len(hist) + 1 = {hist.size + 1} entries, got shape {edges.shape}"
        )
    if (np.diff(edges) <= 0).any():
        raise ValueError("bin_edges must be strictly increasing")
    nq = check_int(num_quant_bins, "num_quant_bins")
    if not 1 <= nq <= hist.size:
        raise ValueError(
            f"num_quant_bins must lie in [1, len(hist)] = [1, {hist.size}], got {nq}; use more "
            "histogram bins than quantization levels"
        )
    candidates = np.arange(nq, hist.size + 1)
    divergences = np.empty(candidates.size)
    tail = np.concatenate([np.cumsum(hist[::-1])[::-1], [0.0]])  # tail[i] = sum(hist[i:])
    for k, i in enumerate(candidates):
        p = hist[:i].copy()
        p[-1] += tail[i]
        level = np.arange(i) * nq // i
        level_sum = np.bincount(level, weights=hist[:i], minlength=nq)
        level_support = np.bincount(level, weights=p > 0, minlength=nq)
        q = np.where(p > 0, level_sum[level] / np.maximum(level_support[level], 1), 0.0)
        divergences[k] = _kl_divergence(p, q)
    best = candidates.size - 1 - np.argmin(divergences[::-1])
    thresholds = edges[candidates]
    return KLThresholdResult(np.float32(thresholds[best]), thresholds, divergences)


# --------------------------------------------------------------------------------------------
# Observers
# --------------------------------------------------------------------------------------------


def _rows(x: np.ndarray, axis: int | None) -> np.ndarray:
    """All values as 1-D (per-tensor), or one row per channel along ``axis``: ``(C, -1)``."""
    if axis is None:
        return x.reshape(-1)
    if x.ndim == 0:
        raise ValueError(f"per-channel observation (axis={axis}) needs an array, got a scalar")
    axis = check_axis(axis, x.ndim)
    return np.moveaxis(x, axis, 0).reshape(x.shape[axis], -1)


class _Observer:
    """Shared machinery: input checks, per-tensor or per-channel rows, and ``calculate_qparams``.

    A subclass implements ``_observe(v)`` (``v`` is 1-D, or ``(channels, values)`` per-channel)
    and ``_range()``, which returns the clipping range ``(min_val, max_val)``.
    """

    def __init__(self, qmin: int = -128, qmax: int = 127, symmetric: bool = False,
                 axis: int | None = None) -> None:
        self.qmin, self.qmax = check_range(qmin, qmax)
        if self.qmin == self.qmax:
            raise ValueError(f"qmin and qmax must differ, got qmin = qmax = {self.qmin}")
        self.symmetric = check_bool(symmetric, "symmetric")
        if axis is not None:
            axis = check_int(axis, "axis")
        self.axis = axis
        self.reset()

    def reset(self) -> None:
        """Forget every batch seen so far."""
        self._channels: int | None = None
        self._reset()

    def __call__(self, x):
        """Record the statistics of the batch ``x`` and return ``x`` unchanged."""
        arr = as_float32(x, "x")
        if arr.size == 0:
            return x  # as in torch: an empty batch carries no information
        v = _rows(arr, self.axis)
        if self.axis is not None:
            if self._channels is not None and v.shape[0] != self._channels:
                raise ValueError(
                    f"x has {v.shape[0]} channels along axis {self.axis}, but this observer has "
                    f"seen {self._channels} channels before"
                )
            self._channels = v.shape[0]
        self._observe(v)
        return x

    def _require_data(self) -> None:
        if not self._has_data():
            raise ValueError(f"{type(self).__name__} {_NO_DATA}")

    @property
    def min_val(self):
        """The lower end of the clipping range (float32; one per channel when ``axis`` is set)."""
        return self._range()[0]

    @property
    def max_val(self):
        """The upper end of the clipping range (float32; one per channel when ``axis`` is set)."""
        return self._range()[1]

    def calculate_qparams(self):
        """``(scale, zero_point) = calc_qparams(min_val, max_val, qmin, qmax, symmetric)``."""
        lo, hi = self._range()
        return calc_qparams(lo, hi, self.qmin, self.qmax, self.symmetric)

    def _extra_repr(self) -> str:
        return ""

    def __repr__(self) -> str:
        extra = self._extra_repr()
        return (f"{type(self).__name__}({extra}{', ' if extra else ''}qmin={self.qmin}, "
                f"qmax={self.qmax}, symmetric={self.symmetric}, axis={self.axis})")


class MinMaxObserver(_Observer):
    """The running minimum and maximum of everything seen: ``min_val = min(min_val, min(x))``.

    Equals ``torch.ao.quantization.MinMaxObserver`` (``axis=None``) and
    ``PerChannelMinMaxObserver(ch_axis=axis)`` bit for bit. It never clips, so a single outlier
    stretches the range and coarsens the step for every other value.

    >>> obs = MinMaxObserver(qmin=0, qmax=255)
    >>> _ = obs(np.array([-1.0, 0.5])); _ = obs(np.array([2.0, 3.0]))
    >>> obs.min_val, obs.max_val
    (np.float32(-1.0), np.float32(3.0))
    >>> obs.calculate_qparams()
    (np.float32(0.015686275), 64)
    """

    def _reset(self) -> None:
        self._min_val = self._max_val = None

    def _has_data(self) -> bool:
        return self._min_val is not None

    def _observe(self, v: np.ndarray) -> None:
        lo, hi = v.min(axis=-1), v.max(axis=-1)
        if self._min_val is not None:
            lo, hi = np.minimum(self._min_val, lo), np.maximum(self._max_val, hi)
        self._min_val, self._max_val = lo, hi

    def _range(self):
        self._require_data()
        if np.ndim(self._min_val) == 0:
            return np.float32(self._min_val), np.float32(self._max_val)
        return self._min_val.copy(), self._max_val.copy()


class MovingAverageMinMaxObserver(MinMaxObserver):
    """An exponential moving average of each batch's min and max.

    The first batch sets ``min_val, max_val = min(x), max(x)``; each later batch updates
    ``min_val = min_val + c * (min(x) - min_val)`` (and the same for ``max_val``) in float32, with
    ``c = averaging_constant``. Equals torch's ``MovingAverageMinMaxObserver`` (and
    ``MovingAveragePerChannelMinMaxObserver`` with ``axis``) bit for bit. A rare outlier batch
    moves the range only by ``c`` of its jump, so the range follows the typical batch.

    >>> obs = MovingAverageMinMaxObserver(averaging_constant=0.5)
    >>> _ = obs(np.array([-1.0, 1.0])); _ = obs(np.array([-3.0, 9.0]))
    >>> obs.min_val, obs.max_val
    (np.float32(-2.0), np.float32(5.0))
    """

    def __init__(self, averaging_constant: float = 0.01, qmin: int = -128, qmax: int = 127,
                 symmetric: bool = False, axis: int | None = None) -> None:
        c = check_real(averaging_constant, "averaging_constant")
        if not 0.0 < c <= 1.0:
            raise ValueError(f"averaging_constant must lie in (0, 1], got {c}")
        self.averaging_constant = c
        super().__init__(qmin, qmax, symmetric, axis)

    def _observe(self, v: np.ndarray) -> None:
        lo, hi = v.min(axis=-1), v.max(axis=-1)
        if self._min_val is not None:
            c = self.averaging_constant
            lo = moving_average_update(self._min_val, lo, c)
            hi = moving_average_update(self._max_val, hi, c)
        self._min_val, self._max_val = lo, hi

    def _extra_repr(self) -> str:
        return f"averaging_constant={self.averaging_constant}"


class _ValueObserver(_Observer):
    """An observer that keeps a float32 copy of every value it sees.

    Percentiles, the MSE search and the histogram all need the whole data set; keeping the values
    makes the result exact and independent of how the data was split into batches, at the cost
    of memory that grows with the calibration set (4 bytes a value: a few MB for typical labs).
    """

    def _reset(self) -> None:
        self._values: list[np.ndarray] = []
        self._cache = None

    def _has_data(self) -> bool:
        return bool(self._values)

    def _observe(self, v: np.ndarray) -> None:
        self._values.append(np.array(v, dtype=np.float32, copy=True))
        self._cache = None

    def values(self) -> np.ndarray:
        """Every value seen: 1-D, or ``(channels, values)`` when ``axis`` is set."""
        self._require_data()
        return np.concatenate(self._values, axis=-1)

    def _range(self):
        if self._cache is None:
            self._cache = self._choose_range(self.values())
        lo, hi = self._cache
        return (lo.copy(), hi.copy()) if np.ndim(lo) else (lo, hi)


class PercentileObserver(_ValueObserver):
    """Clip to the ``100 - percentile`` and ``percentile`` percentiles of all values seen.

    ``min_val, max_val = percentile_range(values, percentile)`` (linear interpolation). The
    observer keeps every value seen (see ``values()``), so the result does not depend on how the
    data was batched. ``percentile=100`` is min-max; 99.99 ignores the most extreme 0.01% on each
    side.

    >>> obs = PercentileObserver(percentile=99.0)
    >>> _ = obs(np.arange(101.0))
    >>> obs.min_val, obs.max_val
    (np.float32(1.0), np.float32(99.0))
    """

    def __init__(self, percentile: float = 99.99, qmin: int = -128, qmax: int = 127,
                 symmetric: bool = False, axis: int | None = None) -> None:
        self.percentile = _check_percentile(percentile)
        super().__init__(qmin, qmax, symmetric, axis)

    def _choose_range(self, v: np.ndarray):
        return percentile_range(v, self.percentile, axis=None if v.ndim == 1 else 0)

    def _extra_repr(self) -> str:
        return f"percentile={self.percentile}"


class MSEObserver(_ValueObserver):
    """Clip to the range ``f * [min, max]`` that minimizes the quantization MSE over all values seen.

    ``mse_clip_search`` tries ``f = 1/n, 2/n, ..., 1`` (``n = num_candidates``) and keeps the ``f``
    with the smallest ``mean((x - fake_quantize(x))**2)``; the search is exhaustive and so
    deterministic. With ``axis`` each channel gets its own search. The observer keeps every value
    seen; ``search()`` returns the full result (with the error curve) for a per-tensor observer.

    >>> x = np.concatenate([np.linspace(-1, 1, 1001), [10.0]])
    >>> obs = MSEObserver(num_candidates=20, qmin=-8, qmax=7, symmetric=True)
    >>> _ = obs(x)
    >>> obs.min_val, obs.max_val     # f = 0.35: clips the outlier at 3.5 rather than 10
    (np.float32(-0.35), np.float32(3.5))
    """

    def __init__(self, num_candidates: int = 100, qmin: int = -128, qmax: int = 127,
                 symmetric: bool = False, axis: int | None = None) -> None:
        self.num_candidates = check_int(num_candidates, "num_candidates")
        if self.num_candidates < 1:
            raise ValueError(f"num_candidates must be at least 1, got {self.num_candidates}")
        super().__init__(qmin, qmax, symmetric, axis)

    def search(self) -> MSEClipResult:
        """The full ``mse_clip_search`` result over all values seen (per-tensor observers only)."""
        if self.axis is not None:
            raise ValueError("search() returns one curve; it needs a per-tensor observer (axis=None)")
        return mse_clip_search(self.values(), self.qmin, self.qmax, self.num_candidates,
                               self.symmetric)

    def _choose_range(self, v: np.ndarray):
        rows = [mse_clip_search(r, self.qmin, self.qmax, self.num_candidates, self.symmetric)
                for r in np.atleast_2d(v)]
        lo = np.array([r.xmin for r in rows], dtype=np.float32)
        hi = np.array([r.xmax for r in rows], dtype=np.float32)
        return (lo[0], hi[0]) if v.ndim == 1 else (lo, hi)

    def _extra_repr(self) -> str:
        return f"num_candidates={self.num_candidates}"


class EntropyObserver(_ValueObserver):
    """KL-divergence (entropy) calibration, as in TensorRT: per-tensor, for activations.

    1. Build a histogram of ``|x|`` over all values seen, with ``bins`` bins on ``[0, max|x|]``.
    2. ``T = kl_threshold(hist, bin_edges, levels).threshold``: the threshold whose quantized
       histogram is closest to the clipped one, by ``KL(P || Q) = sum p log(p / q)`` (see
       ``kl_threshold`` for how ``P`` and ``Q`` are built and smoothed).
    3. ``min_val = max(min(x), -T)`` and ``max_val = min(max(x), T)``.

    ``damp_zero_bin=True`` sets the count of the histogram's first bin (the exact zeros after a
    ReLU) to the second bin's before the search, as NVIDIA's calibrator does (see
    ``kl_threshold``); with ``False`` (the default) the spike of zeros stays in ``P`` and, where
    it holds a large share of the values, drags the threshold down to the smallest candidate.

    ``levels`` is the number of codes covering ``[0, T]``: ``qmax - qmin + 1`` when the data is
    non-negative and ``symmetric=False`` (for example after a ReLU: the whole range is
    ``[0, T]``), and ``(qmax - qmin + 1) // 2`` otherwise (half the codes for each sign). The
    histogram needs at least ``qmax - qmin + 1`` bins, and the smallest threshold it can choose
    is ``levels / bins * max|x|``. The observer keeps every value seen.

    Named after TensorRT's entropy calibrator; it is *not* torch's ``HistogramObserver``, which
    minimizes the L2 quantization error of the histogram instead.

    >>> u = (np.arange(10001) + 0.5) / 10001
    >>> x = -np.sign(u - 0.5) * np.log(1 - 2 * np.abs(u - 0.5))    # Laplace quantiles, |x| < 9.22
    >>> obs = EntropyObserver()
    >>> _ = obs(np.append(x, 30.0))                                 # and one outlier at 30
    >>> round(float(obs.min_val), 2), round(float(obs.max_val), 2)  # keeps the bulk, clips the outlier
    (-9.21, 9.21)

    After a ReLU (half the values exact zeros), the undamped spike sets the smallest threshold the
    search allows, ``levels / bins * max|x|`` = 256 / 2048 * 30 = 3.75; damped, the bulk decides:

    >>> relu = np.concatenate([np.zeros(10001), np.abs(x), [30.0]])
    >>> obs = EntropyObserver(qmin=0, qmax=255, damp_zero_bin=False)
    >>> _ = obs(relu)
    >>> round(float(obs.max_val), 2)
    3.75
    >>> obs = EntropyObserver(qmin=0, qmax=255, damp_zero_bin=True)
    >>> _ = obs(relu)
    >>> round(float(obs.max_val), 2)
    9.21
    """

    def __init__(self, bins: int = 2048, qmin: int = -128, qmax: int = 127,
                 symmetric: bool = False, damp_zero_bin: bool = False) -> None:
        self.bins = check_int(bins, "bins")
        self.damp_zero_bin = check_bool(damp_zero_bin, "damp_zero_bin")
        super().__init__(qmin, qmax, symmetric, None)
        if self.bins < self.qmax - self.qmin + 1:
            raise ValueError(
                f"bins must be at least the number of codes qmax - qmin + 1 = "
                f"{self.qmax - self.qmin + 1}, got {self.bins}"
            )

    def _levels(self, nonnegative: bool) -> int:
        n = self.qmax - self.qmin + 1
        return n if nonnegative and not self.symmetric else n // 2

    def histogram(self) -> tuple[np.ndarray, np.ndarray]:
        """``(hist, bin_edges)`` of ``|x|`` over all values seen, ``bins`` bins on ``[0, max|x|]``."""
        mag = np.abs(self.values())
        return np.histogram(mag, bins=self.bins, range=(0.0, float(mag.max())))

    def search(self) -> KLThresholdResult:
        """The full ``kl_threshold`` result (with the divergence curve) over all values seen."""
        v = self.values()
        if not np.abs(v).max() > 0:
            raise ValueError("all values seen are 0: there is no threshold to search")
        hist, edges = self.histogram()
        levels = self._levels(nonnegative=bool(v.min() >= 0))
        return kl_threshold(hist, edges, levels, damp_zero_bin=self.damp_zero_bin)

    def _choose_range(self, v: np.ndarray):
        lo, hi = v.min(), v.max()
        if not np.abs(v).max() > 0:
            return lo, hi  # all zeros: calc_qparams falls back to the eps scale
        t = self.search().threshold
        return np.maximum(lo, -t), np.minimum(hi, t)

    def _extra_repr(self) -> str:
        return f"bins={self.bins}, damp_zero_bin={self.damp_zero_bin}"
