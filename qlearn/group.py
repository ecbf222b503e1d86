"""Per-group quantization: one (scale, zero_point) for every ``group_size`` consecutive values.

Per-channel quantization gives each row of a weight matrix its own scale. Per-group goes further:
it cuts each row into groups of ``group_size`` consecutive values along ``axis`` (typically 32, 64
or 128 input features, as in INT4 weight-only quantization of large language models) and gives
every group its own parameters. One outlier then spoils the resolution of its group only, at the
cost of storing ``x.shape[axis] // group_size`` scales per row instead of one.

For each group ``G``:

    xmin, xmax        = min(G), max(G)
    scale, zero_point = calc_qparams(xmin, xmax, qmin, qmax, symmetric)    (float32, torch observers)
    q                 = clamp(round(x * (1 / scale)) + zero_point, qmin, qmax)    (qlearn.affine)

Nothing here re-writes that formula: the groups are laid out as the channels of a 2-D array
(move ``axis`` to the end, reshape to ``(-1, group_size)``) and handed to the per-channel functions
of ``qlearn.affine`` with ``axis=0``. Two special cases follow: ``group_size == x.shape[axis]`` is
per-channel quantization with one scale per slice along every other axis, and ``group_size == 1``
stores a scale per value (see ``quantize_per_group`` for how close to lossless that is).

Comparison with PyTorch (``torch.ops.quantized_decomposed.quantize_per_channel_group``, 2-D input,
groups along the last dim):

- Its codes are ``clamp(round(x * (1 / scale) + zero_point))``: the zero-point is added *before*
  rounding, in float32. qlearn, like ``torch.quantize_per_tensor`` / ``torch.quantize_per_channel``,
  computes ``round(x * (1 / scale)) + zero_point``. The two agree exactly when ``zero_point == 0``
  (symmetric, signed range). With ``zero_point != 0`` they differ, by one code, only where
  ``v = x * (1 / scale)`` lies within one float32 ulp of ``v + zero_point`` of a half-integer
  ``k + 0.5``: at an exact tie with an odd zero-point (``v = 0.5, zero_point = 1``: torch
  ``round(1.5) = 2``, qlearn ``round(0.5) + 1 = 1``), and where the float32 sum
  ``v + zero_point`` rounds onto a tie (``v = 0.49999997, zero_point = 1`` gives ``1.5``).
- Torch has no group parameter chooser in ``torch.ao``. Its per-token chooser
  (``choose_qparams_per_token``, symmetric) uses ``max|x| / 127`` with a ``1e-5`` floor; qlearn uses
  the observers' ``calc_qparams`` (``max|x| / 127.5``, float32 eps floor), so that the group
  parameters equal ``PerChannelMinMaxObserver`` run on the groups.
- Dequantization, ``(q - zero_point) * scale`` in float32, agrees exactly.
"""

from __future__ import annotations

import numpy as np

from qlearn._validate import as_float32, check_axis, check_int
from qlearn.affine import dequantize, fake_quantize, quantize
from qlearn.qparams import calc_qparams

__all__ = ["dequantize_per_group", "fake_quantize_per_group", "quantize_per_group"]


def _check_group_size(group_size: object, shape: tuple[int, ...], axis: int, name: str) -> int:
    group_size = check_int(group_size, "group_size")
    if group_size < 1:
        raise ValueError(f"group_size must be a positive integer, got {group_size}")
    n = shape[axis]
    if n % group_size != 0:
        raise ValueError(
            f"group_size={group_size} does not divide {name}.shape[{axis}]={n}: the groups must "
            f"tile the axis exactly (choose a divisor of {n}, or pad {name})"
        )
    return group_size


def _to_groups(x: np.ndarray, group_size: int, axis: int) -> np.ndarray:
    """View ``x`` as a 2-D array with one group per row: shape ``(x.size // group_size, group_size)``."""
    return np.moveaxis(x, axis, -1).reshape(-1, group_size)


def _from_groups(rows: np.ndarray, shape: tuple[int, ...], axis: int) -> np.ndarray:
    """Undo ``_to_groups``: ``rows`` (one entry or one group per row) back to ``shape`` (``axis`` last)."""
    moved = shape[:axis] + shape[axis + 1:] + (shape[axis],)
    return np.moveaxis(rows.reshape(moved), -1, axis)


def _params_shape(shape: tuple[int, ...], group_size: int, axis: int) -> tuple[int, ...]:
    return shape[:axis] + (shape[axis] // group_size,) + shape[axis + 1:]


def _group_qparams(x, group_size, qmin, qmax, axis, symmetric):
    """Validate, group and choose the parameters; return ``(x, axis, groups, scale, zero_point)``."""
    x = as_float32(x, "x")
    if x.ndim == 0:
        raise ValueError("x must have at least one dimension to be split into groups, got a scalar")
    axis = check_axis(axis, x.ndim)
    group_size = _check_group_size(group_size, x.shape, axis, "x")
    if x.size == 0:
        raise ValueError(f"x is empty (shape {x.shape}): there is no group to quantize")
    groups = _to_groups(x, group_size, axis)
    scale, zero_point = calc_qparams(groups.min(axis=1), groups.max(axis=1), qmin, qmax, symmetric)
    return x, axis, groups, scale, zero_point


def quantize_per_group(x, group_size: int, qmin: int, qmax: int, *, axis: int = -1,
                       symmetric: bool = False, rounding: str = "half_even",
                       rng: np.random.Generator | None = None):
    """Quantize ``x`` with one ``(scale, zero_point)`` per group of ``group_size`` values along ``axis``.

    Returns ``(q, scale, zero_point)``: ``q`` has the shape of ``x`` (integer codes as in
    ``qlearn.affine.quantize``); ``scale`` (float32) and ``zero_point`` (int64) have the shape of
    ``x`` with ``axis`` replaced by ``x.shape[axis] // group_size``. For each group ``G``:

        scale, zero_point = calc_qparams(min(G), max(G), qmin, qmax, symmetric)
        q = clamp(round(x * (1 / scale)) + zero_point, qmin, qmax)

    ``x.shape[axis]`` must be a multiple of ``group_size``. With ``group_size == 1`` every value is
    its own group: the asymmetric round trip is exact up to float32 rounding of the scale (an ulp
    or two, and ``eps / 2`` below ``eps * (qmax - qmin)``); the symmetric one is *not* lossless,
    because ``scale = |x| / ((qmax - qmin) / 2)`` puts ``x`` half a step beyond the last code
    (on the tie ``+-127.5`` for int8): the error is ``|x| / (qmax - qmin)``.

    >>> x = np.array([[0.1, -0.2, 0.3, 0.4], [10.0, 20.0, -30.0, 40.0]], dtype=np.float32)
    >>> q, scale, zero_point = quantize_per_group(x, 2, -8, 7, symmetric=True)  # INT4, groups of 2
    >>> q
    array([[ 4, -8,  6,  7],
           [ 4,  7, -6,  7]], dtype=int8)
    >>> scale.shape, zero_point.tolist()
    ((2, 2), [[0, 0], [0, 0]])
    """
    x, axis, groups, scale, zero_point = _group_qparams(x, group_size, qmin, qmax, axis, symmetric)
    q = quantize(groups, scale, zero_point, qmin, qmax, axis=0, rounding=rounding, rng=rng)
    pshape = _params_shape(x.shape, group_size, axis)
    return (_from_groups(q, x.shape, axis), _from_groups(scale, pshape, axis),
            _from_groups(zero_point, pshape, axis))


def dequantize_per_group(q, scale, zero_point, group_size: int, *, axis: int = -1) -> np.ndarray:
    """Map per-group codes back to float32: ``x_hat = (q - zero_point) * scale``, group by group.

    ``scale`` and ``zero_point`` have the shape of ``q`` with ``axis`` replaced by
    ``q.shape[axis] // group_size``, as returned by ``quantize_per_group``.

    >>> q = np.array([[4, -8, 6, 7]], dtype=np.int8)
    >>> dequantize_per_group(q, np.array([[0.025, 0.05]], np.float32), np.array([[0, 0]]), 2)
    array([[ 0.1 , -0.2 ,  0.3 ,  0.35]], dtype=float32)
    """
    q = np.asarray(q)
    if q.ndim == 0:
        raise ValueError("q must have at least one dimension to be split into groups, got a scalar")
    axis = check_axis(axis, q.ndim)
    group_size = _check_group_size(group_size, q.shape, axis, "q")
    pshape = _params_shape(q.shape, group_size, axis)
    for name, a in (("scale", scale), ("zero_point", zero_point)):
        if np.shape(a) != pshape:
            raise ValueError(
                f"{name} must have shape {pshape} (q.shape {q.shape} with axis {axis} divided by "
                f"group_size={group_size}), got shape {np.shape(a)}"
            )
    s = _to_groups(np.asarray(scale), 1, axis).reshape(-1)
    z = _to_groups(np.asarray(zero_point), 1, axis).reshape(-1)
    x_hat = dequantize(_to_groups(q, group_size, axis), s, z, axis=0)
    return _from_groups(x_hat, q.shape, axis)


def fake_quantize_per_group(x, group_size: int, qmin: int, qmax: int, *, axis: int = -1,
                            symmetric: bool = False, rounding: str = "half_even",
                            rng: np.random.Generator | None = None) -> np.ndarray:
    """Quantize and dequantize per group in one step (float32 in, float32 out).

    Equal to ``dequantize_per_group(*quantize_per_group(x, ...), group_size, axis=axis)``:
    ``x_hat = (clamp(round(x * (1 / scale)) + zero_point, qmin, qmax) - zero_point) * scale``.

    >>> x = np.array([0.0, 1.5, -3.0, 0.1, 0.2, 0.6], dtype=np.float32)
    >>> fake_quantize_per_group(x, 6, 0, 15)   # one group: step 0.3 for all, 0.1 is lost
    array([ 0. ,  1.5, -3. ,  0. ,  0.3,  0.6], dtype=float32)
    >>> fake_quantize_per_group(x, 3, 0, 15)   # two groups: the small one gets step 0.04
    array([ 0.        ,  1.5       , -3.        ,  0.08000001,  0.20000002,
            0.6       ], dtype=float32)
    """
    x, axis, groups, scale, zero_point = _group_qparams(x, group_size, qmin, qmax, axis, symmetric)
    x_hat = fake_quantize(groups, scale, zero_point, qmin, qmax, axis=0, rounding=rounding, rng=rng)
    return _from_groups(x_hat, x.shape, axis)

