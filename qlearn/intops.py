"""Integer-only inference: int8 matmul, int32 accumulator, fixed-point requantization.

The integer pipeline of Jacob et al. 2018 ("Quantization and Training of Neural Networks for
Efficient Integer-Arithmetic-Only Inference"), as gemmlowp and TFLite run it. With
``x = s_x (q_x - z_x)``, ``w = s_w (q_w - z_w)`` and ``y = s_y (q_y - z_y)``, a linear layer
``y = x W^T + b`` becomes, in integers only::

    acc  = sum_k (q_x - z_x)(q_w - z_w)  +  q_b           int32       (int_matmul, quantize_bias)
    q_y  = clamp(z_y + round(M * acc), qmin, qmax)         M = s_x s_w / s_y   (requantize)

``M`` is the only real number. It is computed once, offline, and stored as an int32 ``M0`` and a
right shift ``n``: ``M ~= M0 * 2**-(31 + n)`` with ``2**30 <= M0 < 2**31`` (quantize_multiplier).
At run time ``round(M * acc)`` is two integer steps (multiply_by_quantized_multiplier): gemmlowp's
``SaturatingRoundingDoublingHighMul`` (the high 32 bits of ``2 * acc * M0``, rounded) and
``RoundingDivideByPOT`` (a rounding right shift by ``n``).

PyTorch's CPU kernels do the last step in float32 instead, ties to even: qnnpack computes
``rint(float32(acc + q_b) * float32(M))``; fbgemm (engines ``fbgemm`` and ``x86``) adds the float
bias in float32, ``rint((float32(acc) + b / (s_x s_w)) * float32(M))``. So the codes can differ from
the fixed-point result by one, only where ``M * acc`` lies very near a tie: within ``2**-(n+1)``
(gemmlowp's double rounding; ``single_rounding=True`` avoids it), within a float32 rounding, or
within ``M / 2`` (fbgemm's unrounded bias). Lab 05 and ``tests/test_intops_torch.py`` measure it.

Everything here is numpy integer arithmetic (int64 where an int32 product would overflow);
nothing wraps around silently except where the caller asks for it (``int_matmul(...,
acc_dtype=np.int16)``, which exists to show what a too-narrow accumulator does).
"""

from __future__ import annotations


import numpy as np

from qlearn._validate import as_int_array, check_int, check_int_pair, check_positive, check_range
from qlearn.affine import code_dtype, quantize

__all__ = [
    "im2col",
    "int_matmul",
    "multiply_by_quantized_multiplier",
    "quantize_bias",
    "quantize_multiplier",
    "quantized_conv2d",
    "quantized_linear",
    "requantize",
    "rounding_divide_by_pot",
    "saturating_rounding_doubling_high_mul",
]

INT32_MIN, INT32_MAX = -(2**31), 2**31 - 1
_ACC_DTYPES = (np.int8, np.int16, np.int32, np.int64)


# --- checks -----------------------------------------------------------------------------------

def _zero_point(z: object, name: str) -> np.ndarray:
    """A zero-point (an int, or a 1-D array of ints for per-channel) as int64."""
    if np.ndim(z) == 0:
        return np.int64(check_int(z, name))
    arr = as_int_array(z, name)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be an int or a 1-D array (one per channel), got shape {arr.shape}")
    return arr.astype(np.int64)


# --- 1. the int32 accumulator -----------------------------------------------------------------

def int_matmul(a_q, b_q, a_zero_point=0, b_zero_point=0, *, acc_dtype=np.int32) -> np.ndarray:
    """Integer matrix product with zero-points: ``acc[i, j] = sum_k (a[i, k] - z_a)(b[k, j] - z_b)``.

    ``a_q`` is ``(..., K)`` (uint8 or int8 codes), ``b_q`` is ``(K, N)`` (int8 codes);
    ``b_zero_point`` may be one per column (shape ``(N,)``, per-channel weights). The zero-points
    are subtracted in a wide type (``uint8 - 128`` would wrap in uint8). The result has dtype
    ``acc_dtype``:

    - ``np.int32`` (the default, what integer kernels use) or ``np.int64``: the exact result. If
      it does not fit in int32, ``OverflowError`` says so (it cannot happen when
      ``K * max|a - z_a| * max|b - z_b| <= 2**31 - 1``, e.g. ``K <= 65793`` for uint8 x int8 with
      symmetric weights: ``255 * 128 * 65793 < 2**31``).
    - ``np.int16`` or ``np.int8``: a too-narrow accumulator, **on purpose**. The result is the
      exact sum wrapped modulo ``2**16`` (``2**8``), as a wrapping hardware accumulator would give
      it (two's complement: the order of the additions does not matter). numpy does this
      silently; compare with ``acc_dtype=np.int64`` to see where it went wrong.

    >>> a = np.array([[130, 131, 129]], np.uint8)      # uint8 activations, zero_point 128
    >>> b = np.array([[1], [-2], [127]], np.int8)       # int8 weights, zero_point 0
    >>> int_matmul(a, b, 128, 0)                        # (2*1 + 3*(-2) + 1*127)
    array([[123]], dtype=int32)
    >>> big = np.full((1, 64), 255, np.uint8), np.full((64, 1), 127, np.int8)
    >>> int_matmul(*big), int_matmul(*big, acc_dtype=np.int16)   # 64 * 255 * 127 = 2072640
    (array([[2072640]], dtype=int32), array([[-24512]], dtype=int16))
    """
    a = as_int_array(a_q, "a_q")
    b = as_int_array(b_q, "b_q")
    acc_dtype = np.dtype(acc_dtype)
    if acc_dtype not in [np.dtype(d) for d in _ACC_DTYPES]:
        raise TypeError(f"acc_dtype must be one of int8, int16, int32, int64, got {acc_dtype}")
    if a.ndim < 1 or b.ndim != 2 or a.shape[-1] != b.shape[0]:
        raise ValueError(
            f"a_q must be (..., K) and b_q (K, N) with the same K, got shapes {a.shape} and {b.shape}"
        )
    za = _zero_point(a_zero_point, "a_zero_point")
    zb = _zero_point(b_zero_point, "b_zero_point")
    if za.ndim:
        raise ValueError(f"a_zero_point must be a single int (activations are per-tensor), got shape {za.shape}")
    if zb.ndim and zb.shape != (b.shape[1],):
        raise ValueError(f"b_zero_point must be an int or have shape (N,) = ({b.shape[1]},), got {zb.shape}")
    # exact, in int64: |acc| <= K * 2**16, far from 2**63 for any real layer
    acc = np.matmul(a.astype(np.int64) - za, b.astype(np.int64) - zb)
    if acc_dtype == np.int32 and acc.size and (acc.min() < INT32_MIN or acc.max() > INT32_MAX):
        raise OverflowError(
            f"the accumulator does not fit in int32 (K = {a.shape[-1]} products, values up to "
            f"{int(np.abs(acc).max())}); split the sum or accumulate in int64 (acc_dtype=np.int64)"
        )
    return acc.astype(acc_dtype)  # int16/int8: keeps the low bits, i.e. wraps modulo 2**bits


# --- 2. the bias --------------------------------------------------------------------------------

def quantize_bias(bias, input_scale, weight_scale) -> np.ndarray:
    """The bias as int32 codes on the accumulator's grid: ``q_b = round(b / (s_x * s_w))``.

    The accumulator ``sum (q_x - z_x)(q_w - z_w)`` has the scale ``s_x * s_w`` and zero-point 0,
    so the bias is quantized with that scale (zero-point 0, int32 range) and added to it
    directly. ``weight_scale`` may be one per output channel (1-D, the length of ``bias``). The
    scale product is rounded to float32 and the codes computed like ``torch.quantize_per_tensor(
    bias, s_x * s_w, 0, torch.qint32)`` (ties to even, ``b * (1 / scale)`` in float32): this is
    how PyTorch's qnnpack kernels quantize the bias.

    >>> quantize_bias(np.array([0.5, -0.25, 0.0009], np.float32), 0.1, 0.01)   # scale 0.001
    array([ 500, -250,    1], dtype=int32)
    >>> quantize_bias(np.array([0.5, 0.5], np.float32), 0.1, np.array([0.01, 0.02]))
    array([500, 250], dtype=int32)
    """
    s_x = check_positive(input_scale, "input_scale")
    s_w = check_positive(weight_scale, "weight_scale")
    if s_x.ndim:
        raise ValueError(f"input_scale must be a single number (activations are per-tensor), got shape {s_x.shape}")
    b = np.asarray(bias)
    scale = (np.float32(s_x) * s_w.astype(np.float32)).astype(np.float32)
    if scale.ndim == 0:
        return quantize(b, scale, 0, INT32_MIN, INT32_MAX)
    if b.shape != scale.shape:
        raise ValueError(f"with one weight_scale per channel, bias must have shape {scale.shape}, got {b.shape}")
    return quantize(b, scale, np.zeros(scale.shape, np.int64), INT32_MIN, INT32_MAX, axis=0)


# --- 3. the fixed-point multiplier -------------------------------------------------------------

def quantize_multiplier(M):
    """Split a real multiplier ``0 < M < 1`` into an int32 ``M0`` and a right shift ``n``.

    ``M = q * 2**-n`` with ``q`` in ``[0.5, 1)``, and ``M0 = round(q * 2**31)``, so that

        M ~= M0 * 2**-(31 + n),      2**30 <= M0 < 2**31,      |M0 * 2**-(31+n) - M| <= 2**-32 * 2**-n

    (a relative error of at most ``2**-31``). If rounding gives ``M0 = 2**31`` (``q`` just below
    1), it is halved and ``n`` drops by one, so ``M0`` always fits an int32; for ``M`` within
    ``2**-32`` of 1 that makes ``n = -1`` (a left shift). This is TFLite's ``QuantizeMultiplier``,
    with ``shift = -n``. Rounding is half-to-even; TFLite rounds half away from zero, which
    differs only if ``q * 2**31`` is exactly halfway between two integers.

    A scalar ``M`` gives Python ints; a 1-D array (one multiplier per channel) gives int32 arrays.

    >>> quantize_multiplier(0.5), quantize_multiplier(0.25), quantize_multiplier(0.75)
    ((1073741824, 0), (1073741824, 1), (1610612736, 0))
    >>> M0, n = quantize_multiplier(0.1)
    >>> M0, n, M0 * 2.0 ** -(31 + n)
    (1717986918, 3, 0.09999999997671694)
    """
    arr = np.asarray(M)
    if isinstance(M, (bool, np.bool_)) or arr.dtype == bool or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"M must be a real number in (0, 1) or a 1-D array of them, got {M!r}")
    m = arr.astype(np.float64)
    if m.ndim > 1:
        raise ValueError(f"M must be a number or a 1-D array (one per channel), got shape {m.shape}")
    ok = np.isfinite(m) & (m > 0) & (m < 1)
    if not ok.all():
        bad = float(m.reshape(-1)[~ok.reshape(-1)][0])
        raise ValueError(
            f"M must lie in (0, 1), got {bad!r}; M = s_x * s_w / s_out >= 1 means the output grid is "
            f"finer than the accumulator's, so choose a larger output scale"
        )
    q, e = np.frexp(m)  # m = q * 2**e, q in [0.5, 1)
    M0 = np.rint(np.ldexp(q, 31)).astype(np.int64)
    n = (-e).astype(np.int64)
    top = M0 == 2**31  # q rounded up to 1: renormalise
    M0 = np.where(top, 2**30, M0)
    n = np.where(top, n - 1, n)
    if m.ndim == 0:
        return int(M0), int(n)
    return M0.astype(np.int32), n.astype(np.int32)


def _as_int32(x: object, name: str) -> np.ndarray:
    arr = as_int_array(x, name)
    if arr.size and (arr.min() < INT32_MIN or arr.max() > INT32_MAX):
        raise ValueError(f"{name} must hold int32 values, got values in [{arr.min()}, {arr.max()}]")
    return arr.astype(np.int64)


def saturating_rounding_doubling_high_mul(a, b) -> np.ndarray:
    """gemmlowp's ``SaturatingRoundingDoublingHighMul``: ``round(a * b / 2**31)`` for int32 a, b.

    The high 32 bits of the 64-bit product ``2 * a * b``, rounded to nearest with ties toward
    +infinity (1.5 -> 2, -1.5 -> -1): a nudge of ``2**30``, or ``1 - 2**30`` for a negative
    product, then a division that truncates toward zero, as in C. The single overflowing case,
    ``a = b = -2**31``, saturates to ``2**31 - 1``. Arrays broadcast; the result is int32. With
    ``b = M0`` this is the multiplication by ``M0 * 2**-31``, a number in ``[0.5, 1)``.

    >>> saturating_rounding_doubling_high_mul(np.array([3, -3, 1, -1, 5, -5]), 2**30)  # times 0.5
    array([ 2, -1,  1,  0,  3, -2], dtype=int32)
    >>> saturating_rounding_doubling_high_mul(-2**31, -2**31)  # the one overflow saturates
    array(2147483647, dtype=int32)
    """
    a64 = _as_int32(a, "a")
    b64 = _as_int32(b, "b")
    ab = a64 * b64  # |ab| <= 2**62: exact in int64
    nudge = np.where(ab >= 0, 2**30, 1 - 2**30)
    num = ab + nudge
    high = np.where(num >= 0, num // 2**31, -((-num) // 2**31))  # C division: toward zero
    overflow = (a64 == INT32_MIN) & (b64 == INT32_MIN)
    return np.where(overflow, INT32_MAX, high).astype(np.int32)


def rounding_divide_by_pot(x, exponent) -> np.ndarray:
    """gemmlowp's ``RoundingDivideByPOT``: ``round(x / 2**exponent)``, ties away from zero.

    An arithmetic right shift (which floors) plus one when the bits shifted out are more than
    half, or exactly half for a positive ``x``:

        mask = 2**e - 1,  remainder = x & mask,  threshold = (mask >> 1) + (x < 0),
        result = (x >> e) + (remainder > threshold)

    ``exponent`` is 0..62 (an int or an array that broadcasts against ``x``).

    >>> rounding_divide_by_pot(np.array([5, -5, 6, -6, 7, -7]), 2)   # 1.25, -1.25, 1.5, -1.5, 1.75, -1.75
    array([ 1, -1,  2, -2,  2, -2])
    """
    x64 = as_int_array(x, "x").astype(np.int64)
    e = as_int_array(exponent, "exponent").astype(np.int64)
    if e.size and (e.min() < 0 or e.max() > 62):
        raise ValueError(f"exponent must be a right shift in 0..62, got values in [{e.min()}, {e.max()}]")
    mask = (np.int64(1) << e) - 1
    remainder = x64 & mask
    threshold = (mask >> 1) + (x64 < 0)
    return (x64 >> e) + (remainder > threshold)


def multiply_by_quantized_multiplier(acc, M0, shift, *, single_rounding: bool = False) -> np.ndarray:
    """``round(acc * M)`` in integers, with ``M = M0 * 2**-(31 + shift)`` (quantize_multiplier).

    By default two roundings, as in gemmlowp and TFLite's default build:
    ``saturating_rounding_doubling_high_mul(acc, M0)`` (ties up), then
    ``rounding_divide_by_pot(., shift)`` (ties away from zero). The result is within one unit of
    ``round(acc * M)``, and equal to it unless ``acc * M`` lies within about ``2**-(shift + 1)`` of
    a tie (the first rounding moves the value by up to half of ``2**-shift``).

    ``single_rounding=True`` rounds once (TFLite's ``TFLITE_SINGLE_ROUNDING``), ties up:

        (acc * M0 + 2**(30 + shift)) >> (31 + shift)        (int64 product, arithmetic shift)

    ``M0`` and ``shift`` broadcast against ``acc`` (per-channel: one per output channel, shaped to
    broadcast). A ``shift`` of -1 (``M`` rounded up to 1, a left shift) is computed with one
    rounding. Results saturate at the int32 limits; they are returned as int64.

    >>> M0, shift = quantize_multiplier(0.1)
    >>> multiply_by_quantized_multiplier(np.array([1000, -1000, 15, -15, 25]), M0, shift)
    array([ 100, -100,    2,   -2,    3])
    >>> M0, shift = quantize_multiplier(2**-8)                     # 1/256: acc * M is exactly k + 1/2
    >>> acc = np.array([384, -384, 640, -640])                     # 1.5, -1.5, 2.5, -2.5
    >>> multiply_by_quantized_multiplier(acc, M0, shift)           # gemmlowp: ties away from zero
    array([ 2, -2,  3, -3])
    >>> multiply_by_quantized_multiplier(acc, M0, shift, single_rounding=True)   # ties up
    array([ 2, -1,  3, -2])
    """
    shift = as_int_array(shift, "shift").astype(np.int64)
    acc64 = _as_int32(acc, "acc")
    m0 = _as_int32(M0, "M0")
    if shift.size and shift.min() < -1:
        raise ValueError(f"shift must be >= -1 (quantize_multiplier gives M < 1), got {shift.min()}")
    # one rounding, exact in int64: |acc * M0| < 2**62, so a total shift beyond 62 gives 0 anyway
    total = np.minimum(31 + shift, 62)
    single = np.clip((acc64 * m0 + (np.int64(1) << (total - 1))) >> total, INT32_MIN, INT32_MAX)
    if single_rounding:
        return single
    high = saturating_rounding_doubling_high_mul(acc64, m0)
    double = rounding_divide_by_pot(high, np.clip(shift, 0, 62))
    # shift = -1 (M rounded up to 1): 2 * acc first, which one rounding gives exactly, saturated
    return np.where(shift < 0, single, double)


def requantize(acc, M0, shift, output_zero_point, qmin, qmax, *, single_rounding: bool = False) -> np.ndarray:
    """int32 accumulator to output codes: ``q = clamp(z_out + round(acc * M), qmin, qmax)``.

    ``round(acc * M)`` is :func:`multiply_by_quantized_multiplier` (integer only, gemmlowp's two
    roundings unless ``single_rounding``); the zero-point is added in a wide type and the sum
    **saturates** at ``qmin``/``qmax`` (no wrap-around). The codes come back in the smallest dtype
    that holds ``[qmin, qmax]`` (uint8 for ``[0, 255]``).

    >>> M0, shift = quantize_multiplier(0.01)
    >>> requantize(np.array([-30000, -1000, 0, 1049, 1051, 30000]), M0, shift, 128, 0, 255)
    array([  0, 118, 128, 138, 139, 255], dtype=uint8)
    """
    qmin, qmax = check_range(qmin, qmax)
    z = _zero_point(output_zero_point, "output_zero_point")
    y = multiply_by_quantized_multiplier(acc, M0, shift, single_rounding=single_rounding) + z
    return np.clip(y, qmin, qmax).astype(code_dtype(qmin, qmax))


# --- 4. whole layers ----------------------------------------------------------------------------

def _multiplier(x_scale, w_scale, out_scale, n_out: int):
    s_x = check_positive(x_scale, "x_scale")
    s_w = check_positive(w_scale, "w_scale")
    s_y = check_positive(out_scale, "out_scale")
    if s_x.ndim or s_y.ndim:
        raise ValueError("x_scale and out_scale must be single numbers (activations are per-tensor)")
    if s_w.ndim and s_w.shape != (n_out,):
        raise ValueError(f"w_scale must be a number or have one entry per output channel ({n_out}), got {s_w.shape}")
    # the one floating-point step, done once, offline: M = s_x * s_w / s_out, in float64
    return quantize_multiplier(s_x * s_w / s_y)


def _add_bias(acc: np.ndarray, bias_q, n_out: int) -> np.ndarray:
    if bias_q is None:
        return acc
    b = as_int_array(bias_q, "bias_q")
    if b.shape != (n_out,):
        raise ValueError(f"bias_q must have shape ({n_out},), one int32 per output, got {b.shape}")
    total = acc.astype(np.int64) + _as_int32(b, "bias_q")
    if total.size and (total.min() < INT32_MIN or total.max() > INT32_MAX):
        raise OverflowError("accumulator + bias does not fit in int32")
    return total


def quantized_linear(x_q, x_scale, x_zp, w_q, w_scale, w_zp, bias_q, out_scale, out_zp, qmin, qmax,
                     *, single_rounding: bool = False) -> np.ndarray:
    """An integer-only linear layer: ``y_q = requantize(int_matmul(x_q, w_q^T) + bias_q)``.

    ``x_q`` is ``(batch, in_features)`` (uint8 codes, scale ``x_scale``, zero-point ``x_zp``),
    ``w_q`` is ``(out_features, in_features)`` (int8, like ``torch.nn.Linear.weight``) with a
    per-tensor or per-channel ``w_scale``/``w_zp``, ``bias_q`` the int32 bias of
    :func:`quantize_bias` (or None); ``single_rounding`` as in :func:`requantize`. The multiplier
    ``M = x_scale * w_scale / out_scale`` is the only float computation (offline, in float64);
    the rest is integer arithmetic:

        acc = sum_k (x_q - x_zp)(w_q - w_zp) + bias_q,    y_q = clamp(out_zp + round(M acc), qmin, qmax)

    >>> x_q = np.array([[130, 126]], np.uint8)            # x = 0.1 * (q - 128) = [0.2, -0.2]
    >>> w_q = np.array([[50, 50], [50, -50]], np.int8)    # w = 0.01 * q = [[.5, .5], [.5, -.5]]
    >>> quantized_linear(x_q, 0.1, 128, w_q, 0.01, 0, quantize_bias(np.array([0.0, 0.1]), 0.1, 0.01),
    ...                  0.05, 128, 0, 255)               # y = [0.0, 0.3] = 0.05 * ([128, 134] - 128)
    array([[128, 134]], dtype=uint8)
    """
    w = as_int_array(w_q, "w_q")
    if w.ndim != 2:
        raise ValueError(f"w_q must be (out_features, in_features), got shape {w.shape}")
    x = as_int_array(x_q, "x_q")
    M0, shift = _multiplier(x_scale, w_scale, out_scale, w.shape[0])
    acc = _add_bias(int_matmul(x, w.T, x_zp, w_zp), bias_q, w.shape[0])
    return requantize(acc, M0, shift, out_zp, qmin, qmax, single_rounding=single_rounding)


def im2col(x, kernel_size, stride=1, padding=0, pad_value=0) -> np.ndarray:
    """Unfold the sliding windows of an NCHW tensor into columns, like ``torch.nn.functional.unfold``.

    ``x`` is ``(N, C, H, W)``; the result is ``(N, C * kh * kw, L)`` with ``L = H_out * W_out``
    windows, ``H_out = (H + 2 * pad_h - kh) // stride_h + 1``. A convolution with weights
    ``(C_out, C, kh, kw)`` is then one matrix product, ``w.reshape(C_out, -1) @ cols``. The
    padding is filled with ``pad_value``: for quantized codes, the zero-point (the code of 0.0).

    >>> im2col(np.arange(9).reshape(1, 1, 3, 3), 2)[0]
    array([[0, 1, 3, 4],
           [1, 2, 4, 5],
           [3, 4, 6, 7],
           [4, 5, 7, 8]])
    """
    x = np.asarray(x)
    if x.ndim != 4:
        raise ValueError(f"x must be NCHW (4-D), got shape {x.shape}")
    kh, kw = check_int_pair(kernel_size, "kernel_size")
    sh, sw = check_int_pair(stride, "stride")
    ph, pw = check_int_pair(padding, "padding")
    if min(kh, kw, sh, sw) < 1 or min(ph, pw) < 0:
        raise ValueError(
            f"kernel_size and stride must be >= 1 and padding >= 0, got {kernel_size}, {stride}, {padding}"
        )
    if ph or pw:
        x = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=pad_value)
    n, c, h, w = x.shape
    if h < kh or w < kw:
        raise ValueError(f"the kernel {kh}x{kw} is larger than the padded input {h}x{w}")
    win = np.lib.stride_tricks.sliding_window_view(x, (kh, kw), axis=(2, 3))[:, :, ::sh, ::sw]
    h_out, w_out = win.shape[2], win.shape[3]
    # (N, C, H_out, W_out, kh, kw) -> (N, C, kh, kw, H_out, W_out) -> (N, C*kh*kw, L)
    return win.transpose(0, 1, 4, 5, 2, 3).reshape(n, c * kh * kw, h_out * w_out)


def quantized_conv2d(x_q, x_scale, x_zp, w_q, w_scale, w_zp, bias_q, out_scale, out_zp, qmin, qmax,
                     *, stride=1, padding=0, single_rounding: bool = False) -> np.ndarray:
    """An integer-only 2-D convolution (NCHW, groups=1, no dilation), through :func:`im2col`.

    ``x_q`` is ``(N, C, H, W)``, ``w_q`` is ``(C_out, C, kh, kw)`` (like ``torch.nn.Conv2d``);
    scales, zero-points and ``bias_q`` as in :func:`quantized_linear`. The input is padded with
    ``x_zp``, the code of 0.0 (padding with code 0 would pad with ``-x_zp * x_scale``). Each output
    is then a dot product of a window with a filter, requantized like a linear layer.

    >>> x_q = np.full((1, 1, 2, 2), 130, np.uint8)           # x = 0.1 * (130 - 128) = 0.2
    >>> w_q = np.full((1, 1, 2, 2), 25, np.int8)             # w = 0.01 * 25 = 0.25
    >>> quantized_conv2d(x_q, 0.1, 128, w_q, 0.01, 0, None, 0.05, 128, 0, 255, padding=1)[0, 0]
    array([[129, 130, 129],
           [130, 132, 130],
           [129, 130, 129]], dtype=uint8)
    """
    x = as_int_array(x_q, "x_q")
    w = as_int_array(w_q, "w_q")
    if x.ndim != 4 or w.ndim != 4 or x.shape[1] != w.shape[1]:
        raise ValueError(
            f"x_q must be (N, C, H, W) and w_q (C_out, C, kh, kw) with the same C, got {x.shape} and {w.shape}"
        )
    c_out, _, kh, kw = w.shape
    M0, shift = _multiplier(x_scale, w_scale, out_scale, c_out)
    zx = check_int(x_zp, "x_zp")
    cols = im2col(x, (kh, kw), stride, padding, pad_value=zx)  # (N, C*kh*kw, L)
    n, _, length = cols.shape
    rows = cols.transpose(0, 2, 1).reshape(n * length, -1)  # one window per row
    acc = _add_bias(int_matmul(rows, w.reshape(c_out, -1).T, zx, w_zp), bias_q, c_out)  # (N*L, C_out)
    y = requantize(acc, M0, shift, out_zp, qmin, qmax, single_rounding=single_rounding)
    h_out = (x.shape[2] + 2 * check_int_pair(padding, "padding")[0] - kh) // check_int_pair(stride, "stride")[0] + 1
    return y.reshape(n, h_out, length // h_out, c_out).transpose(0, 3, 1, 2)
