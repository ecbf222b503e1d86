"""Binary and ternary weights: one bit (two levels) and log2(3) = 1.58 bits (three levels).

Binary (BinaryConnect, Courbariaux et al. 2015; scaled as in XNOR-Net, Rastegari et al. 2016)::

    b = sign(w)  in {-1, +1}   (sign(0) = +1),      alpha = mean |w|,      w_hat = alpha * b

``alpha = mean|w|`` is the scale that minimises ``||w - alpha * sign(w)||^2``.

Ternary (TWN, Li et al. 2016)::

    delta = 0.7 * mean |w|
    t     = sign(w) where |w| > delta, else 0          in {-1, 0, +1}
    alpha = mean of |w| over the kept weights (|w| > delta), 0 if none is kept
    w_hat = alpha * t

The 0.7 is TWN's approximation of the threshold that minimises the squared error for Gaussian or
uniform weights. Both take ``axis``: ``None`` for one scale per tensor, or the axis of the output
channels (0 for a conv or linear weight) for one scale per channel. Used in lab 08, section 5.
"""

from __future__ import annotations

import numpy as np

from qlearn._validate import as_float32, check_axis

__all__ = ["TWN_RATIO", "binarize", "dequantize_lowbit", "ternarize"]

#: TWN's threshold ratio: ``delta = TWN_RATIO * mean|w|``.
TWN_RATIO: float = 0.7


def _reduce_axes(ndim: int, axis: int | None) -> tuple[int, ...] | None:
    if axis is None:
        return None
    axis = check_axis(axis, ndim)
    return tuple(i for i in range(ndim) if i != axis)


def _mean_abs(a: np.ndarray, axes) -> np.ndarray:
    return np.mean(np.abs(a), axis=axes, keepdims=axes is not None, dtype=np.float32).astype(np.float32)


def binarize(w, axis: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, alpha)``: int8 codes in {-1, +1} (``sign(0) = +1``) and float32 ``alpha = mean|w|``
    (a scalar array, or one per index of ``axis``, shaped to broadcast against ``w``).

    >>> codes, alpha = binarize([0.5, -1.5, 0.0, 1.0])
    >>> codes, alpha
    (array([ 1, -1,  1,  1], dtype=int8), array(0.75, dtype=float32))
    >>> binarize([[1.0, -3.0], [0.5, 0.5]], axis=0)[1].ravel()   # one alpha per row
    array([2. , 0.5], dtype=float32)
    """
    a = as_float32(w, "w")
    axes = _reduce_axes(a.ndim, axis)
    codes = np.where(a >= 0, 1, -1).astype(np.int8)
    return codes, np.asarray(_mean_abs(a, axes), dtype=np.float32)


def ternarize(w, axis: int | None = None, ratio: float = TWN_RATIO) -> tuple[np.ndarray, np.ndarray]:
    """``(codes, alpha)``: int8 codes in {-1, 0, +1} and float32 ``alpha`` (TWN, see the module).

    A weight exactly at the threshold ``delta = ratio * mean|w|`` becomes 0 (the test is
    ``|w| > delta``). An all-zero tensor or channel gets codes 0 and ``alpha = 0``.

    >>> ternarize([0.1, -1.0, 2.0, 0.5])        # delta = 0.7 * 0.9 = 0.63
    (array([ 0, -1,  1,  0], dtype=int8), array(1.5, dtype=float32))
    >>> ternarize([[1.0, 0.1], [0.0, 0.0]], axis=0)[1].ravel()
    array([1., 0.], dtype=float32)
    """
    a = as_float32(w, "w")
    if not (isinstance(ratio, (int, float)) and 0 <= ratio < 1):
        raise ValueError(f"ratio must be a float in [0, 1), got {ratio!r}")
    axes = _reduce_axes(a.ndim, axis)
    absw = np.abs(a)
    delta = np.float32(ratio) * _mean_abs(a, axes)
    keep = absw > delta
    codes = (np.sign(a) * keep).astype(np.int8)
    kept_sum = np.sum(np.where(keep, absw, np.float32(0)), axis=axes, keepdims=axes is not None, dtype=np.float32)
    count = np.sum(keep, axis=axes, keepdims=axes is not None)
    alpha = np.where(count > 0, kept_sum / np.maximum(count, 1), 0).astype(np.float32)
    return codes, np.asarray(alpha, dtype=np.float32)


def dequantize_lowbit(codes, alpha) -> np.ndarray:
    """``alpha * codes`` in float32: the weights a binary or ternary layer computes with.

    >>> dequantize_lowbit(*ternarize([0.1, -1.0, 2.0, 0.5]))
    array([ 0. , -1.5,  1.5,  0. ], dtype=float32)
    """
    return (np.asarray(alpha, dtype=np.float32) * np.asarray(codes, dtype=np.float32)).astype(np.float32)
