"""Affine (uniform) quantization: real values to integer codes and back.

    quantize:      q     = clamp(round(x / scale) + zero_point, qmin, qmax)
    dequantize:    x_hat = (q - zero_point) * scale
    fake_quantize: x_hat = dequantize(quantize(x))       (float in, float out: used in QAT)

These agree code for code with ``torch.quantize_per_tensor`` / ``torch.quantize_per_channel``
(``.int_repr()``), ``Tensor.dequantize`` and ``torch.fake_quantize_per_tensor_affine`` /
``torch.fake_quantize_per_channel_affine``. Two details make that exact:

- PyTorch's kernels compute ``x * (1 / scale)`` in float32 rather than ``x / scale``. The two differ
  in the last bit for some inputs, and so, right at a tie, in the code. qlearn does the same.
- The clamp happens on the rounded value, before any cast to a narrow integer type, so a value far
  out of range saturates at ``qmin``/``qmax`` instead of wrapping around (``np.int8(200) == -56``).

Codes come back in the smallest numpy integer type that holds ``[qmin, qmax]`` (int8 for
``(-128, 127)``, uint8 for ``(0, 255)``, ...). Do arithmetic on them in a wider type.
"""

from __future__ import annotations

import numpy as np

from qlearn._validate import as_float32, check_axis, check_finite, check_int, check_range
from qlearn.rounding import check_rounding, round_to_int

__all__ = ["code_dtype", "dequantize", "fake_quantize", "quantize"]

_CHUNK = 1 << 16  # elements per block: the work buffers stay in the CPU cache


def code_dtype(qmin: int, qmax: int) -> np.dtype:
    """The smallest numpy integer dtype that holds every code in ``[qmin, qmax]``.

    >>> code_dtype(-128, 127), code_dtype(0, 255), code_dtype(-8, 7), code_dtype(0, 2**32 - 1)
    (dtype('int8'), dtype('uint8'), dtype('int8'), dtype('int64'))
    """
    qmin, qmax = check_range(qmin, qmax)
    for dt in (np.int8, np.uint8, np.int16, np.uint16, np.int32):
        info = np.iinfo(dt)
        if info.min <= qmin and qmax <= info.max:
            return np.dtype(dt)
    return np.dtype(np.int64)


def _qparams(x: np.ndarray, scale, zero_point, qmin: int, qmax: int, axis):
    """Validate (scale, zero_point) and shape them to broadcast against ``x``."""
    if axis is None:
        if np.ndim(scale) != 0 or np.ndim(zero_point) != 0:
            raise ValueError(
                "scale and zero_point must be scalars for per-tensor quantization; for one pair per "
                f"channel pass axis=... (got scale of shape {np.shape(scale)}, "
                f"zero_point of shape {np.shape(zero_point)})"
            )
        s = as_float32(scale, "scale", finite=False)
        z = np.asarray(zero_point)
    else:
        axis = check_axis(axis, x.ndim)
        n = x.shape[axis]
        s = as_float32(scale, "scale", finite=False)
        z = np.asarray(zero_point)
        for name, a in (("scale", s), ("zero_point", z)):
            if a.shape != (n,):
                raise ValueError(
                    f"{name} must be 1-D with one entry per channel along axis {axis} "
                    f"(x.shape[{axis}] = {n}), got shape {a.shape}"
                )
    if not (np.isfinite(s).all() and (s > 0).all()):
        bad = s.reshape(-1)[~(np.isfinite(s.reshape(-1)) & (s.reshape(-1) > 0))][0]
        raise ValueError(f"scale must be positive and finite, got {bad!r}")
    if z.dtype == bool or not np.issubdtype(z.dtype, np.integer):
        if z.ndim == 0:
            check_int(zero_point, "zero_point")  # raises TypeError naming the value
        raise TypeError(f"zero_point must hold integers, got dtype {z.dtype}")
    z = z.astype(np.int64)
    if ((z < qmin) | (z > qmax)).any():
        bad = z.reshape(-1)[((z < qmin) | (z > qmax)).reshape(-1)][0]
        raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}], got {int(bad)}")
    if axis is not None:
        shape = [1] * x.ndim
        shape[axis] = -1
        s, z = s.reshape(shape), z.reshape(shape)
    return s, z


def _codes(x, scale, zero_point, qmin, qmax, axis, rounding, rng) -> np.ndarray:
    """The rounded and clamped codes as a float array (float32 when every code fits exactly)."""
    s, z = _qparams(x, scale, zero_point, qmin, qmax, axis)
    inv_scale = np.float32(1.0) / s  # float32 reciprocal, as in PyTorch's kernels
    v = np.asarray(x * inv_scale)  # an array even for 0-d x, so that it can be rounded in place
    round_to_int(v, rounding, rng, out=v)
    if max(-qmin, qmax) + int(np.abs(z).max(initial=0)) < 2**24:
        v += z.astype(np.float32)  # every code is an exact float32 integer
    else:
        v = v.astype(np.float64) + z
    return np.clip(v, qmin, qmax, out=v)


def quantize(x, scale, zero_point, qmin: int, qmax: int, *, axis: int | None = None,
             rounding: str = "half_even", rng: np.random.Generator | None = None) -> np.ndarray:
    """Quantize ``x`` to integer codes: ``q = clamp(round(x / scale) + zero_point, qmin, qmax)``.

    ``x`` is computed in float32; NaN or inf in ``x`` is an error. With ``axis=None`` ``scale`` and
    ``zero_point`` are scalars (per-tensor); with ``axis=k`` they are 1-D, one per slice along axis
    ``k`` (per-channel). ``rounding`` is one of ``qlearn.rounding.ROUNDING_MODES``;
    ``"stochastic"`` needs ``rng``. Out-of-range values saturate at ``qmin``/``qmax``.

    >>> quantize([-1.0, 0.0, 0.25, 0.75, 100.0], 0.5, 0, -128, 127)   # 0.5 -> 0, 1.5 -> 2: ties to even
    array([ -2,   0,   0,   2, 127], dtype=int8)
    >>> quantize([-1.0, 0.0, 1.0], 0.02, 128, 0, 255)                  # asymmetric, unsigned
    array([ 78, 128, 178], dtype=uint8)
    >>> quantize([[1.0, 1.0], [1.0, 1.0]], [0.5, 0.25], [0, 0], -128, 127, axis=0)
    array([[2, 2],
           [4, 4]], dtype=int8)
    """
    qmin, qmax = check_range(qmin, qmax)
    check_rounding(rounding, rng)
    x = as_float32(x, "x", finite=False)  # the finiteness check happens below, block by block
    dtype = code_dtype(qmin, qmax)
    if axis is None and rounding == "half_even" and x.size > _CHUNK:
        q = _per_tensor_blocked(x, scale, zero_point, qmin, qmax, dtype)
        if q is not None:
            return q
    check_finite(x, "x")
    return _codes(x, scale, zero_point, qmin, qmax, axis, rounding, rng).astype(dtype)


def _per_tensor_blocked(x, scale, zero_point, qmin, qmax, dtype, *, fake: bool = False) -> np.ndarray | None:
    """``quantize`` (or, with ``fake=True``, ``fake_quantize``) done block by block, per tensor.

    A plain numpy version makes a full-size temporary at every step (multiply, round, add, clip,
    cast): five passes over main memory. Working on cache-sized blocks in one reused float32 buffer
    keeps those passes in cache. Returns None when the codes do not fit float32's exact integers.
    """
    s, z = _qparams(x, scale, zero_point, qmin, qmax, None)
    if max(-qmin, qmax) + abs(int(z)) >= 2**24:
        return None
    inv_scale = np.float32(1.0) / s
    zf = np.float32(z)
    # Clamp to [qmin - zp, qmax - zp] before rounding: the bounds are integers, so this equals
    # clamping after rounding, and adding zp afterwards lands exactly in [qmin, qmax].
    lo, hi = np.float32(qmin) - zf, np.float32(qmax) - zf
    src = x.reshape(-1)
    out = np.empty(src.size, dtype=np.float32 if fake else dtype)
    buf = np.empty(_CHUNK, dtype=np.float32)
    for start in range(0, src.size, _CHUNK):
        stop = min(start + _CHUNK, src.size)
        b = buf[: stop - start]
        if not np.isfinite(src[start:stop]).all():
            check_finite(x, "x")  # raises, naming the first NaN/inf
        np.multiply(src[start:stop], inv_scale, out=b)
        np.clip(b, lo, hi, out=b)
        np.rint(b, out=b)
        if fake:
            np.add(b, np.float32(0.0), out=b)  # rint(-0.3) is -0.0; the integer codes know only +0
            np.multiply(b, s, out=out[start:stop])  # (q - zp) * scale, with q - zp = b exactly
        else:
            np.add(b, zf, out=b)
            out[start:stop] = b  # exact: b holds integers within [qmin, qmax]
    return out.reshape(x.shape)


def dequantize(q, scale, zero_point, *, axis: int | None = None) -> np.ndarray:
    """Map integer codes back to real values: ``x_hat = (q - zero_point) * scale`` in float32.

    The subtraction happens in int64, so codes stored as int8 or uint8 cannot wrap.

    >>> dequantize(np.array([78, 128, 178], dtype=np.uint8), 0.02, 128)
    array([-1.,  0.,  1.], dtype=float32)
    """
    q = np.asarray(q)
    if q.dtype == bool or not np.issubdtype(q.dtype, np.integer):
        raise TypeError(
            f"q must hold integer codes, got dtype {q.dtype}; pass the output of quantize(), "
            "not the float tensor (for float in, float out use fake_quantize)"
        )
    iinfo = np.iinfo(q.dtype)
    s, z = _qparams(q, scale, zero_point, int(iinfo.min), int(iinfo.max), axis)
    diff = q.astype(np.int64) - z
    if np.abs(diff).max(initial=0) < 2**24:
        return diff.astype(np.float32) * s
    return (diff * s.astype(np.float64)).astype(np.float32)


def fake_quantize(x, scale, zero_point, qmin: int, qmax: int, *, axis: int | None = None,
                  rounding: str = "half_even", rng: np.random.Generator | None = None) -> np.ndarray:
    """Quantize and dequantize in one step: ``(clamp(round(x / scale) + zp, qmin, qmax) - zp) * scale``.

    The output is float32 but takes at most ``qmax - qmin + 1`` distinct values. This is what
    quantization-aware training inserts into the forward pass.

    >>> fake_quantize([0.26, 0.74, 100.0], 0.5, 0, -128, 127)  # 100 saturates at 127 * 0.5
    array([ 0.5,  0.5, 63.5], dtype=float32)
    """
    qmin, qmax = check_range(qmin, qmax)
    check_rounding(rounding, rng)
    x = as_float32(x, "x", finite=False)
    if axis is None and rounding == "half_even" and x.size > _CHUNK:
        x_hat = _per_tensor_blocked(x, scale, zero_point, qmin, qmax, None, fake=True)
        if x_hat is not None:
            return x_hat
    check_finite(x, "x")
    s, z = _qparams(x, scale, zero_point, qmin, qmax, axis)
    v = _codes(x, scale, zero_point, qmin, qmax, axis, rounding, rng)
    if v.dtype == np.float32:
        v -= z.astype(np.float32)
        v *= s
        return v
    return ((v - z) * s.astype(np.float64)).astype(np.float32)
