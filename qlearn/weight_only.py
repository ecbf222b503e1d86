"""Weight-only quantization of a linear layer: W8A16 and W4A16 (int weights, float activations).

A linear layer computes ``y = x @ W.T + b`` with ``W`` of shape ``[out_features, in_features]``.
Weight-only quantization stores ``W`` as integer codes with float scales and leaves the activations
``x`` in floating point (the "A16" of W8A16: 16-bit floats on a GPU; float32 here, on the CPU).
Nothing has to be calibrated, because the weights are known in advance.

W8A16, symmetric int8 with a narrow range ``[-127, 127]`` (0 is code 0, ``-W`` gives ``-q``), one
scale per output channel (row ``r`` of ``W``)::

    scale[r] = max(max_j |W[r, j]| / 127, eps)          (float32; eps = float32 machine epsilon)
    q[r, j]  = clamp(rint(W[r, j] * (1 / scale[r])), -127, 127)          (int8)
    y        = (x @ q.T) * scale + b                     (the scale factors out of the sum over j)

W4A16, asymmetric 4-bit codes ``[0, 15]`` with one ``(scale, zero_point)`` per group of
``group_size`` consecutive inputs of a row (the scheme of GPTQ/AWQ checkpoints), two codes per byte::

    lo, hi        = min(min(group), 0), max(max(group), 0)
    scale[r, g]   = max((hi - lo) / 15, eps)
    zero_point    = clamp(-rint(lo / scale), 0, 15)
    q[r, j]       = clamp(rint(W[r, j] * (1 / scale)) + zero_point, 0, 15)
    packed[r, k]  = q[r, 2k] | (q[r, 2k + 1] << 4)          (qlearn.packing.pack: element 0 low)
    y             = x @ ((q - zero_point) * scale).T + b     (group by group)

A transformer's weights are not centred in every group of 16 or 32, so the zero-point buys
resolution that a symmetric int4 grid wastes (lab 11, section 4, measures both). Stored with
float32 scales and 4-bit zero-points, a weight costs ``4 + 32 / group_size + 4 / group_size`` bits.

The scales come from ``qlearn.qparams.calc_qparams`` and the codes from ``qlearn.affine.quantize``
and ``qlearn.group.quantize_per_group`` (torch's formula ``rint(x * float32(1 / scale))``,
half-to-even): nothing here re-writes them. Used in lab 11, sections 3 and 4, and by
``qlearn.bridge.transformer`` (the ``nn.Module`` wrappers).
"""

from __future__ import annotations

import numpy as np

from qlearn._validate import as_float32, check_int
from qlearn.affine import quantize
from qlearn.group import dequantize_per_group, quantize_per_group
from qlearn.packing import pack, unpack
from qlearn.qparams import calc_qparams

__all__ = [
    "dequantize_w4",
    "linear_weight_bytes",
    "quantize_w4",
    "quantize_w8",
    "w4a16_linear",
    "w8a16_linear",
]

W8_QMAX = 127
W4_QMAX_U = 15


def _check_weight(weight: object) -> np.ndarray:
    w = as_float32(weight, "weight")
    if w.ndim != 2 or w.size == 0:
        raise ValueError(f"weight must be a non-empty 2-D array [out_features, in_features] (an nn.Linear "
                         f"weight), got shape {w.shape}")
    return w


def _check_group_size(group_size: object, in_features: int) -> int:
    group_size = check_int(group_size, "group_size")
    if group_size < 2 or group_size % 2 or in_features % group_size:
        raise ValueError(f"group_size must be an even divisor of in_features={in_features} (whole groups, "
                         f"whole bytes of two int4 codes), got {group_size}")
    return group_size


def _linear(x: object, w: np.ndarray, bias: object) -> np.ndarray:
    x = as_float32(x, "x")
    if x.shape[-1:] != w.shape[1:]:
        raise ValueError(f"x must end with in_features={w.shape[1]} (shape [..., in_features]), got shape {x.shape}")
    y = x @ w.T
    return y if bias is None else y + as_float32(bias, "bias")


def quantize_w8(weight) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes of a linear weight, one scale per output channel (row): ``(q, scale)``.

    ``scale[r] = max(max|W[r]| / 127, eps)``, ``q = clamp(rint(W * (1 / scale[r])), -127, 127)``;
    ``q`` is int8 ``[out, in]`` and ``scale`` float32 ``[out]``. An all-zero row gets ``scale = eps``
    and codes 0. The largest weight of each row is code ``+-127`` exactly.

    >>> q, scale = quantize_w8(np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]], np.float32))
    >>> q
    array([[  64, -127,   32],
           [   0,    0,    0]], dtype=int8)
    >>> scale.tolist() == [np.float32(1 / 127), np.finfo(np.float32).eps]
    True
    """
    w = _check_weight(weight)
    m = np.abs(w).max(axis=1)
    scale, _ = calc_qparams(-m, m, -W8_QMAX, W8_QMAX, symmetric=True)
    return quantize(w, scale, np.zeros(len(w), np.int64), -W8_QMAX, W8_QMAX, axis=0), scale


def w8a16_linear(x, q, scale, bias=None) -> np.ndarray:
    """The W8A16 layer's output ``y = (x @ q.T) * scale + bias``, in float32; ``x`` is ``[..., in]``.

    The per-row scale factors out of the sum over the inputs, so the matmul runs on the codes
    (exact integers in float32) and each output is scaled once.

    >>> x = np.array([[1.0, 2.0, 4.0]], np.float32)
    >>> w8a16_linear(x, np.array([[64, -127, 32]], np.int8), np.array([0.5], np.float32), np.array([1.0]))
    array([[-30.]], dtype=float32)
    """
    q = np.asarray(q)
    if q.ndim != 2 or q.dtype.kind not in "iu":
        raise TypeError(f"q must be 2-D integer codes [out, in] (from quantize_w8), got {q.dtype} of shape {q.shape}")
    scale = as_float32(scale, "scale")
    if scale.shape != q.shape[:1]:
        raise ValueError(f"scale must have shape ({q.shape[0]},), one per output channel, got {scale.shape}")
    y = _linear(x, q.astype(np.float32), None) * scale
    return y if bias is None else y + as_float32(bias, "bias")


def quantize_w4(weight, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group asymmetric uint4 codes of a linear weight, packed: ``(packed, scale, zero_point)``.

    Groups are ``group_size`` consecutive inputs of a row; for each group, ``calc_qparams`` on its
    min and max with codes ``[0, 15]`` (the range widened to contain 0), then
    ``q = clamp(rint(W * (1 / scale)) + zero_point, 0, 15)``. ``packed`` is uint8 ``[out, in // 2]``,
    byte ``k`` of a row holding ``q[2k]`` in its low nibble and ``q[2k + 1]`` in its high one;
    ``scale`` is float32 and ``zero_point`` uint8, both ``[out, in // group_size]``.

    >>> packed, scale, zero_point = quantize_w4(np.array([[0.75, -0.75, 0.0, 1.5]], np.float32), 2)
    >>> packed, scale, zero_point          # codes [15, 0 | 0, 15]: 0x0F, 0xF0
    (array([[ 15, 240]], dtype=uint8), array([[0.1, 0.1]], dtype=float32), array([[8, 0]], dtype=uint8))
    """
    w = _check_weight(weight)
    group_size = _check_group_size(group_size, w.shape[1])
    q, scale, zero_point = quantize_per_group(w, group_size, 0, W4_QMAX_U, axis=1)
    packed = pack(q, 4).reshape(w.shape[0], w.shape[1] // 2)
    return packed, scale, zero_point.astype(np.uint8)


def dequantize_w4(packed, scale, zero_point, group_size: int) -> np.ndarray:
    """The float32 weight ``[out, in]`` of ``quantize_w4``'s output: ``(q - zero_point) * scale`` per group.

    >>> dequantize_w4(np.array([[15, 240]], np.uint8), np.array([[0.1, 0.1]], np.float32),
    ...               np.array([[8, 0]], np.uint8), 2)
    array([[ 0.7, -0.8,  0. ,  1.5]], dtype=float32)
    """
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 2:
        raise TypeError(f"packed must be uint8 [out, in // 2] (from quantize_w4), got {packed.dtype} of "
                        f"shape {packed.shape}")
    out, in_features = packed.shape[0], 2 * packed.shape[1]
    group_size = _check_group_size(group_size, in_features)
    q = unpack(packed.reshape(-1), 4, packed.size * 2).reshape(out, in_features)
    scale = as_float32(scale, "scale")
    zero_point = np.asarray(zero_point)
    for name, a in (("scale", scale), ("zero_point", zero_point)):
        if a.shape != (out, in_features // group_size):
            raise ValueError(f"{name} must have shape {(out, in_features // group_size)} (one per group), "
                             f"got {a.shape}")
    return dequantize_per_group(q, scale, zero_point.astype(np.int64), group_size, axis=1)


def w4a16_linear(x, packed, scale, zero_point, group_size: int, bias=None) -> np.ndarray:
    """The W4A16 layer's output ``y = x @ dequantize_w4(packed, scale, zero_point, group_size).T + bias``.

    >>> x = np.array([[1.0, 1.0, 1.0, 1.0]], np.float32)
    >>> w4a16_linear(x, np.array([[15, 240]], np.uint8), np.array([[0.1, 0.1]], np.float32),
    ...              np.array([[8, 0]], np.uint8), 2)
    array([[1.4]], dtype=float32)
    """
    return _linear(x, dequantize_w4(packed, scale, zero_point, group_size), bias)


def linear_weight_bytes(out_features: int, in_features: int, scheme: str = "fp32", *,
                        group_size: int | None = None, scale_bytes: int = 4) -> int:
    """Bytes to store one linear weight (biases excluded) under ``scheme``.

    ``fp32``: ``4 * out * in``; ``w8``: ``out * in`` codes + ``out`` scales; ``w4``:
    ``out * in / 2`` bytes of codes + ``out * in / group_size`` scales and as many 4-bit
    zero-points (packed two per byte); each scale is ``scale_bytes`` long.

    >>> [linear_weight_bytes(384, 1536, s, group_size=16) for s in ("fp32", "w8", "w4")]
    [2359296, 591360, 460800]
    """
    out_features, in_features = check_int(out_features, "out_features"), check_int(in_features, "in_features")
    n = out_features * in_features
    if scheme == "fp32":
        return 4 * n
    if scheme == "w8":
        return n + scale_bytes * out_features
    if scheme == "w4":
        if group_size is None:
            raise ValueError("scheme='w4' needs group_size (the inputs that share one scale)")
        group_size = _check_group_size(group_size, in_features)
        groups = n // group_size
        return n // 2 + scale_bytes * groups + -(-groups // 2)
    raise ValueError(f"scheme must be 'fp32', 'w8' or 'w4', got {scheme!r}")
