"""How much did quantization or pruning change a tensor, and how big is the model now?

Error metrics compare a tensor ``x`` with its reconstruction ``x_hat`` (e.g. ``dequantize(quantize(x))``).
Every metric computes in float64 and returns a Python ``float``. The two arrays must have the same
shape (no broadcasting), be non-empty and hold only finite numbers; otherwise ``ValueError``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping

import numpy as np

from qlearn._validate import as_float64, check_int

__all__ = ["cosine_similarity", "max_abs_error", "model_size_bytes", "mse", "sparsity", "sqnr_db"]


def _pair(x: object, y: object, names: tuple[str, str] = ("x", "x_hat")) -> tuple[np.ndarray, np.ndarray]:
    """Both arrays in float64, checked: same shape, non-empty, finite."""
    a, b = as_float64(x, names[0]), as_float64(y, names[1])
    if a.shape != b.shape:
        raise ValueError(f"{names[0]} has shape {a.shape} but {names[1]} has shape {b.shape}; they must be equal")
    if a.size == 0:
        raise ValueError(f"{names[0]} and {names[1]} are empty (shape {a.shape}): a metric of no values is undefined")
    return a, b


def mse(x: object, x_hat: object) -> float:
    """Mean squared error: ``mean((x - x_hat)**2)``.

    >>> mse([1.0, 2.0, 3.0], [1.0, 2.5, 2.0])   # (0 + 0.25 + 1) / 3
    0.4166666666666667
    """
    x, x_hat = _pair(x, x_hat)
    return float(np.mean((x - x_hat) ** 2))


def max_abs_error(x: object, x_hat: object) -> float:
    """Largest absolute error: ``max |x - x_hat|`` (at most ``scale / 2`` inside the quantization range).

    >>> max_abs_error([1.0, 2.0, 3.0], [1.0, 2.5, 2.0])
    1.0
    """
    x, x_hat = _pair(x, x_hat)
    return float(np.max(np.abs(x - x_hat)))


def sqnr_db(x: object, x_hat: object) -> float:
    """Signal-to-quantization-noise ratio in decibels: ``10 * log10(sum(x**2) / sum((x - x_hat)**2))``.

    Each extra bit of a uniform quantizer adds about 6.02 dB. Edge cases, never NaN:
    ``inf`` when the error is exactly zero (``x_hat == x``, even if ``x`` is all zeros), and ``-inf``
    when the signal is all zeros but the error is not.

    >>> round(sqnr_db([3.0, 4.0], [3.0, 3.0]), 4)   # 10 * log10(25 / 1)
    13.9794
    >>> sqnr_db([1.0, 2.0], [1.0, 2.0]), sqnr_db([0.0, 0.0], [0.0, 1.0])
    (inf, -inf)
    """
    x, x_hat = _pair(x, x_hat)
    x, err = x.reshape(-1), (x - x_hat).reshape(-1)
    with np.errstate(over="ignore", under="ignore"):  # handled just below
        signal, noise = float(x @ x), float(err @ err)  # sums of squares, without temporaries
    if not (1e-280 < signal < 1e280 and 1e-280 < noise < 1e280):
        # Squares may have overflowed or underflowed float64 (or a sum is exactly zero): divide both
        # by the largest magnitude first. The ratio does not change.
        big = max(float(np.max(np.abs(x), initial=0.0)), float(np.max(np.abs(err), initial=0.0)))
        if big > 0.0:
            x, err = x / big, err / big
        signal, noise = float(x @ x), float(err @ err)
    if noise == 0.0:
        return math.inf
    if signal == 0.0:
        return -math.inf
    return 10.0 * math.log10(signal / noise)


def cosine_similarity(x: object, y: object) -> float:
    """Cosine of the angle between ``x`` and ``y`` (both flattened): ``<x, y> / (||x|| * ||y||)``, in [-1, 1].

    Zero vectors have no direction. When **both** are all zeros the result is defined as ``1.0``
    (a zero tensor reconstructed as zero is perfect). When **exactly one** is all zeros the angle is
    undefined and ``ValueError`` is raised (``torch.nn.functional.cosine_similarity`` quietly
    returns 0.0 there instead).

    >>> cosine_similarity([1.0, 0.0], [1.0, 1.0])    # 1 / (1 * sqrt(2))
    0.7071067811865475
    >>> cosine_similarity([0.0, 0.0], [0.0, 0.0])
    1.0
    """
    x, y = _pair(x, y, ("x", "y"))
    x_zero, y_zero = not x.any(), not y.any()
    if x_zero and y_zero:
        return 1.0
    if x_zero or y_zero:
        raise ValueError(
            f"{'x' if x_zero else 'y'} is all zeros: its angle with a non-zero vector is undefined"
        )
    x, y = x.reshape(-1) / np.max(np.abs(x)), y.reshape(-1) / np.max(np.abs(y))  # no overflow; same angle
    return float(np.clip(np.dot(x, y) / (np.linalg.norm(x) * np.linalg.norm(y)), -1.0, 1.0))


def sparsity(x: object) -> float:
    """Fraction of entries that are exactly zero: ``count(x == 0) / x.size``, in [0, 1].

    ``-0.0`` counts as zero. An empty array has sparsity ``0.0`` (there is nothing pruned).

    >>> sparsity([[0.0, 1.5], [0.0, -0.0]])
    0.75
    """
    x = as_float64(x, "x")
    return float(np.count_nonzero(x == 0) / x.size) if x.size else 0.0


def model_size_bytes(params: object, bits: int = 32) -> int:
    """Bytes needed to store the values at ``bits`` bits each: ``ceil(count * bits / 8)``.

    ``params`` is a count of values (an int), one array, or an iterable of arrays, e.g. ``model.parameters()``
    (anything with ``.numel()`` or ``.size``) or a state dict (its values are counted).
    Scales, zero-points and the masks of pruned weights are not included.

    >>> model_size_bytes(1000), model_size_bytes(1000, bits=4), model_size_bytes(3, bits=1)
    (4000, 500, 1)
    >>> model_size_bytes([np.zeros((3, 4)), np.zeros(5)], bits=8)
    17
    """
    bits = check_int(bits, "bits")
    if bits < 1:
        raise ValueError(f"bits must be a positive integer, got {bits}")
    if isinstance(params, (str, bytes)):
        raise TypeError(f"params must be an int count or an iterable of arrays, got the string {params!r}")
    if isinstance(params, Mapping):
        params = params.values()
    if isinstance(params, np.ndarray):
        count = params.size
    elif isinstance(params, Iterable):
        count = sum(_numel(p, i) for i, p in enumerate(params))
    else:
        count = check_int(params, "params")
        if count < 0:
            raise ValueError(f"params as a count of values must be >= 0, got {count}")
    return -(-count * bits // 8)


def _numel(p: object, i: int) -> int:
    if hasattr(p, "numel"):  # a torch tensor, without importing torch
        return int(p.numel())
    if isinstance(p, (str, bytes)):
        raise TypeError(f"params[{i}] must be an array, got the string {p!r}")
    return int(np.asarray(p).size)
