"""Pruning masks: which weights to keep, chosen by magnitude.

A mask is a boolean array shaped like the weight, ``True`` = keep, ``False`` = prune. A pruned
weight is ``apply_mask(w, mask)``, i.e. ``w * mask``. The functions match ``torch.nn.utils.prune``:

- ``magnitude_mask`` (``prune.l1_unstructured``): prune the ``k`` smallest ``|w|``;
- ``ln_structured_mask`` (``prune.ln_structured``): prune the ``k`` slices with the smallest L_n norm;
- ``global_magnitude_masks`` (``prune.global_unstructured`` with ``L1Unstructured``): one ranking
  shared by every tensor;
- ``nm_mask``: N:M sparsity (keep the ``n`` largest of every ``m`` neighbours), as on sparse tensor cores.

``amount`` follows torch: a float in [0, 1] prunes ``round(amount * count)`` entries (Python's
half-to-even ``round``), an int prunes exactly that many.

Ties: ranks come from a *stable* sort of the magnitudes, so among equal magnitudes the entry (or
slice) with the **lower flat index is pruned first**. torch's ``topk`` leaves the order of ties
unspecified, so on tied data the count of pruned entries agrees with torch but which ones may not.

Empty arrays give an empty mask; only ``amount=0`` or a float amount (which rounds to 0) is valid.
A NaN weight has no magnitude to rank: it raises ``ValueError``.
"""

from __future__ import annotations

import numbers
from collections.abc import Iterable

import numpy as np

from qlearn._validate import check_amount, check_axis, check_int

__all__ = ["apply_mask", "global_magnitude_masks", "ln_structured_mask", "magnitude_mask", "nm_mask"]


def _as_weight(w: object, name: str = "w") -> np.ndarray:
    """Return ``w`` as a real numpy array (its dtype kept), rejecting NaN."""
    arr = np.asarray(w)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers (integer or float), got dtype {arr.dtype}")
    if np.issubdtype(arr.dtype, np.floating) and np.isnan(arr).any():
        raise ValueError(
            f"{name} contains {int(np.isnan(arr).sum())} NaN value(s): a NaN has no magnitude to rank; "
            f"replace them (for example with np.nan_to_num) before pruning"
        )
    return arr


def _magnitude(w: np.ndarray) -> np.ndarray:
    """``|w|`` in float64 (exact for float32 weights; no int8 overflow at ``abs(-128)``)."""
    return np.abs(w.astype(np.float64))


def _prune_smallest(scores: np.ndarray, k: int) -> np.ndarray:
    """Boolean keep-mask over a 1-D ``scores``: False at the ``k`` smallest (stable: lower index first)."""
    keep = np.ones(scores.shape, dtype=bool)
    keep[np.argsort(scores, kind="stable")[:k]] = False
    return keep


def magnitude_mask(w: object, amount: float | int) -> np.ndarray:
    """Keep-mask that prunes the ``k`` entries of smallest magnitude ``|w|``.

    ``k = round(amount * w.size)`` for a float amount, ``k = amount`` for an int.
    Equals the mask of ``torch.nn.utils.prune.l1_unstructured(module, "weight", amount)``.

    >>> magnitude_mask([[0.5, -3.0], [0.1, 2.0]], amount=0.5)
    array([[False,  True],
           [False,  True]])
    """
    w = _as_weight(w)
    k = check_amount(amount, w.size)
    return _prune_smallest(_magnitude(w).reshape(-1), k).reshape(w.shape)


def ln_structured_mask(w: object, amount: float | int, n: float = 2, dim: int = 0) -> np.ndarray:
    """Keep-mask that prunes whole slices along ``dim``: the ``k`` slices of smallest L_n norm.

    For slice ``i`` along ``dim`` (e.g. output channel ``i`` when ``dim=0``):
    ``norm_i = (sum |w[i, ...]|**n) ** (1/n)`` (``n=np.inf``: max ``|w|``; ``n=0``: count of
    non-zeros). ``k`` counts slices: ``round(amount * w.shape[dim])`` or the int ``amount``.
    Equals the mask of ``torch.nn.utils.prune.ln_structured(module, "weight", amount, n=n, dim=dim)``.

    >>> w = [[1.0, 1.0], [3.0, 0.0], [0.0, 0.5]]      # L2 norms of the rows: 1.41, 3.0, 0.5
    >>> ln_structured_mask(w, amount=1, n=2, dim=0)
    array([[ True,  True],
           [ True,  True],
           [False, False]])
    """
    w = _as_weight(w)
    if w.ndim == 0:
        raise ValueError("w must have at least one dimension for structured pruning, got a 0-d array")
    dim = check_axis(dim, w.ndim, "dim")
    if isinstance(n, (bool, np.bool_)) or not isinstance(n, numbers.Real) or np.isnan(n):
        raise TypeError(f"n must be a real number (1, 2, np.inf, ...), got {n!r}")
    k = check_amount(amount, w.shape[dim])
    others = tuple(a for a in range(w.ndim) if a != dim)
    with np.errstate(divide="ignore"):  # a negative n meets 0 ** -1 = inf; the norm is then 0, as in torch
        norms = np.linalg.vector_norm(_magnitude(w), ord=float(n), axis=others) if others else _magnitude(w)
    keep = _prune_smallest(norms.reshape(-1), k)
    shape = [1] * w.ndim
    shape[dim] = w.shape[dim]
    return np.broadcast_to(keep.reshape(shape), w.shape).copy()


def global_magnitude_masks(weights: Iterable[object], amount: float | int) -> list[np.ndarray]:
    """Keep-masks for several tensors that prune the ``k`` smallest ``|w|`` over all of them at once.

    The tensors are flattened and joined, ``k = round(amount * total_size)`` (or the int ``amount``),
    and one ranking decides for all: a layer of small weights loses more than a layer of large ones.
    Equals ``torch.nn.utils.prune.global_unstructured(params, pruning_method=prune.L1Unstructured,
    amount=amount)``. Returns one mask per tensor, in order.

    >>> m1, m2 = global_magnitude_masks([[0.1, 0.2], [5.0, 0.3, 4.0]], amount=0.6)
    >>> m1, m2
    (array([False, False]), array([ True, False,  True]))
    """
    if isinstance(weights, np.ndarray):
        raise TypeError("weights must be a list of arrays, got a single array; wrap it in a list: [w]")
    arrays = [_as_weight(w, f"weights[{i}]") for i, w in enumerate(weights)]
    flat = np.concatenate([_magnitude(a).reshape(-1) for a in arrays] + [np.zeros(0)])
    keep = _prune_smallest(flat, check_amount(amount, flat.size))
    ends = np.cumsum([a.size for a in arrays])[:-1]
    return [part.reshape(a.shape) for part, a in zip(np.split(keep, ends), arrays)]


def nm_mask(w: object, n: int = 2, m: int = 4, axis: int = -1) -> np.ndarray:
    """N:M keep-mask: in every group of ``m`` consecutive entries along ``axis``, keep the ``n`` largest ``|w|``.

    The groups are ``w[..., g*m : (g+1)*m, ...]`` along ``axis``; exactly ``m - n`` entries of each are
    pruned, so the sparsity is ``1 - n/m`` (2:4 -> 50%, the pattern NVIDIA's sparse tensor cores run).
    Needs ``w.shape[axis] % m == 0`` and ``0 < n <= m``.

    >>> nm_mask([[0.1, -0.9, 0.5, 0.2, 4.0, 3.0, 2.0, 1.0]], n=2, m=4)
    array([[False,  True,  True, False,  True,  True, False, False]])
    """
    w = _as_weight(w)
    n, m = check_int(n, "n"), check_int(m, "m")
    if not 0 < n <= m:
        raise ValueError(f"N:M sparsity needs 0 < n <= m, got n={n}, m={m}")
    if w.ndim == 0:
        raise ValueError("w must have at least one dimension for N:M sparsity, got a 0-d array")
    axis = check_axis(axis, w.ndim)
    if w.shape[axis] % m:
        raise ValueError(
            f"w.shape[{axis}]={w.shape[axis]} is not a multiple of m={m}: N:M groups of {m} must tile the axis"
        )
    groups = np.moveaxis(_magnitude(w), axis, -1).reshape(-1, m)  # one row per group of m neighbours
    keep = np.ones(groups.shape, dtype=bool)
    np.put_along_axis(keep, np.argsort(groups, axis=1, kind="stable")[:, : m - n], False, axis=1)
    moved_shape = np.moveaxis(w, axis, -1).shape
    return np.moveaxis(keep.reshape(moved_shape), -1, axis)


def apply_mask(w: object, mask: object) -> np.ndarray:
    """Return the pruned weight ``w * mask``: ``w`` where ``mask`` is True, ``0`` where it is False.

    ``mask`` is boolean (or 0/1 numbers, like torch's float masks) with exactly the shape of ``w``;
    the result has the dtype of ``w``. Pruned entries are ``+0.0`` (torch's ``w * mask`` gives
    ``-0.0`` for a negative weight; the two compare equal).

    >>> apply_mask(np.array([1.5, -2.0, 3.0], dtype=np.float32), [True, False, True])
    array([1.5, 0. , 3. ], dtype=float32)
    """
    w = _as_weight(w)
    mask = np.asarray(mask)
    if mask.shape != w.shape:
        raise ValueError(f"mask has shape {mask.shape} but w has shape {w.shape}; they must be equal")
    if mask.dtype != bool:
        if not (np.issubdtype(mask.dtype, np.integer) or np.issubdtype(mask.dtype, np.floating)):
            raise TypeError(f"mask must be boolean (True = keep), got dtype {mask.dtype}")
        if not np.isin(mask, (0, 1)).all():
            raise ValueError("mask must hold only True/False (or 1/0), got other values")
    return np.where(mask.astype(bool), w, np.zeros((), dtype=w.dtype))
