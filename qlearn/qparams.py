"""Integer code ranges and the choice of quantization parameters (scale and zero-point).

An affine quantizer maps a real range ``[xmin, xmax]`` onto integer codes ``[qmin, qmax]``:

    scale      = (xmax - xmin) / (qmax - qmin)
    zero_point = clamp(qmin - round(xmin / scale), qmin, qmax)

``calc_qparams`` reproduces ``torch.ao.quantization.MinMaxObserver.calculate_qparams`` bit for bit:
float32 arithmetic, the range widened to contain 0 (so that 0.0 is exactly representable), a scale
floor of float32 eps (so that a constant or all-zero tensor never divides by zero), and a
zero-point rounded half-to-even and then clamped.
"""

from __future__ import annotations

import numpy as np

from qlearn._validate import as_float32, check_bits, check_bool, check_range

__all__ = ["EPS", "calc_qparams", "qrange"]

#: The smallest scale ``calc_qparams`` returns: float32 machine epsilon, as in torch's observers.
EPS = np.float32(np.finfo(np.float32).eps)


def qrange(bits: int, signed: bool = True, narrow: bool = False) -> tuple[int, int]:
    """Return the integer code range ``(qmin, qmax)`` of a ``bits``-bit integer.

    signed:   ``[-2**(bits-1), 2**(bits-1) - 1]``;  unsigned: ``[0, 2**bits - 1]``.
    ``narrow`` drops the most negative code of a signed range (``-128`` for int8), so the range is
    symmetric around 0, and the top code of an unsigned one.

    >>> qrange(8), qrange(8, narrow=True), qrange(8, signed=False), qrange(4)
    ((-128, 127), (-127, 127), (0, 255), (-8, 7))
    """
    bits = check_bits(bits)
    signed, narrow = check_bool(signed, "signed"), check_bool(narrow, "narrow")
    if narrow and bits == 1:
        raise ValueError("narrow=True needs bits >= 2: a narrow 1-bit range would hold a single code")
    if signed:
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        return (qmin + 1 if narrow else qmin), qmax
    return 0, (2**bits - 2 if narrow else 2**bits - 1)


def _symmetric_zero_point(qmin: int, qmax: int) -> int:
    # torch: 0 for signed ranges; for unsigned ranges 128 on the default quint8 range 0..255 and the
    # down-rounded midpoint (qmin + qmax) // 2 on any other ("customized") range.
    if qmin < 0:
        return 0
    if (qmin, qmax) == (0, 255):
        return 128
    return (qmin + qmax) // 2


def calc_qparams(xmin, xmax, qmin: int, qmax: int, symmetric: bool = False):
    """Choose ``(scale, zero_point)`` for the real range ``[xmin, xmax]`` and codes ``[qmin, qmax]``.

    All arithmetic is float32, as in torch. With ``lo = min(xmin, 0)`` and ``hi = max(xmax, 0)``:

    - asymmetric: ``scale = max((hi - lo) / (qmax - qmin), eps)``,
      ``zero_point = clamp(qmin - round(lo / scale), qmin, qmax)`` (round half-to-even);
    - symmetric:  ``scale = max(max(-lo, hi) / ((qmax - qmin) / 2), eps)``, and ``zero_point`` is 0
      for a signed range, 128 for 0..255 and ``(qmin + qmax) // 2`` for another unsigned range.

    Scalars give a ``np.float32`` scale and an ``int`` zero-point. Arrays (one min and max per
    channel) give a float32 array of scales and an int64 array of zero-points.

    >>> calc_qparams(-1.0, 3.0, 0, 255)
    (np.float32(0.015686275), 64)
    >>> calc_qparams(-1.0, 3.0, -128, 127, symmetric=True)
    (np.float32(0.023529412), 0)
    >>> calc_qparams(0.0, 0.0, -128, 127)   # an all-zero tensor: eps floor, no division by zero
    (np.float32(1.1920929e-07), -128)
    """
    qmin, qmax = check_range(qmin, qmax)
    symmetric = check_bool(symmetric, "symmetric")
    if qmin == qmax:
        raise ValueError(f"qmin and qmax must differ to leave room for more than one code, got {qmin}")
    lo = as_float32(xmin, "xmin", finite=False)
    hi = as_float32(xmax, "xmax", finite=False)
    if lo.shape != hi.shape:
        raise ValueError(f"xmin and xmax must have the same shape, got {lo.shape} and {hi.shape}")
    if lo.ndim > 1:
        raise ValueError(f"xmin and xmax must be scalars or 1-D (one per channel), got {lo.ndim}-D")
    if not (np.isfinite(lo).all() and np.isfinite(hi).all()):
        raise ValueError(
            f"xmin and xmax must be finite, got xmin={xmin!r}, xmax={xmax!r}; an observer that has "
            "seen no data, or data holding NaN/inf, has no usable range"
        )
    if (lo > hi).any():
        raise ValueError(f"xmin must not exceed xmax, got xmin={xmin!r} > xmax={xmax!r}")

    with np.errstate(over="ignore"):  # an overflowing range is reported below, in words
        scale, zero_point = _minmax_qparams(lo, hi, qmin, qmax, symmetric)
    if not np.isfinite(scale).all():
        raise ValueError(f"the range [{xmin!r}, {xmax!r}] is too wide for a float32 scale (it overflows to inf)")
    if scale.ndim == 0:
        return np.float32(scale), int(zero_point)
    return scale, zero_point


def _minmax_qparams(lo, hi, qmin, qmax, symmetric):
    """torch's ``_calculate_qparams``, step by step, in float32."""
    zero = np.float32(0)
    lo, hi = np.minimum(lo, zero), np.maximum(hi, zero)  # 0.0 must be inside the range
    if symmetric:
        scale = np.maximum(-lo, hi) / np.float32((qmax - qmin) / 2)
        scale = np.maximum(scale, EPS).astype(np.float32)
        zero_point = np.full(scale.shape, _symmetric_zero_point(qmin, qmax), dtype=np.int64)
    else:
        scale = (hi - lo) / np.float32(qmax - qmin)
        scale = np.maximum(scale, EPS).astype(np.float32)
        zero_point = np.clip(np.int64(qmin) - np.rint(lo / scale).astype(np.int64), qmin, qmax)
    return scale, zero_point
