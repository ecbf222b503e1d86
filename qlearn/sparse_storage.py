"""How many bytes a pruned tensor takes: dense, bitmap, CSR and N:M storage, and their break-even.

Used in lab 06, section 7 ("Sparse storage"). A pruned weight of ``size`` entries, ``nnz`` of them
kept (non-zero), each value stored with ``bits`` bits, takes (every part rounded up to whole bytes):

- **dense**: every entry, zeros included: ``ceil(size * bits / 8)``;
- **bitmap**: one bit per entry says kept or pruned, then the kept values:
  ``ceil(size / 8) + ceil(nnz * bits / 8)``;
- **CSR** (compressed sparse row; the tensor seen as ``rows = shape[0]`` by ``cols = size / rows``):
  the kept values, the column index of each, and ``rows + 1`` row pointers:
  ``ceil(nnz * bits / 8) + nnz * idx(cols - 1) + (rows + 1) * idx(nnz)``, where ``idx(v)`` is the
  size in bytes of the narrowest unsigned integer (1, 2, 4 or 8 bytes) that holds ``v``;
- **N:M** (``n`` kept in every group of ``m`` along the last axis, as on sparse tensor cores): the
  kept values and, for each, its position in its group, ``ceil(log2(m))`` bits:
  ``ceil(kept * bits / 8) + ceil(kept * ceil(log2 m) / 8)`` with ``kept = size * n / m``.

Index widths are the narrowest that hold the largest stored value: the column index of a 64 x 576
layer needs 2 bytes (575 > 255), its row pointers 2 or 4 bytes depending on ``nnz``. ``scipy`` and
``torch`` store int32/int64 indices; a format built for inference packs them as tightly as this.

The **break-even sparsity** of a format is the smallest sparsity ``1 - nnz / size`` at which it
takes no more bytes than dense storage. Fewer value bits make sparse formats pay off later: the
indices cost the same while the values they save get cheaper.
"""

from __future__ import annotations

import math

import numpy as np

from qlearn._validate import check_int

__all__ = [
    "FORMATS",
    "bitmap_bytes",
    "break_even_sparsity",
    "csr_bytes",
    "dense_bytes",
    "index_bytes",
    "nm_bytes",
    "storage_bytes",
]

#: The formats that :func:`storage_bytes` and :func:`break_even_sparsity` know.
FORMATS = ("dense", "bitmap", "csr")


def _shape(shape: object) -> tuple[int, ...]:
    if isinstance(shape, np.ndarray) or not isinstance(shape, (tuple, list)):
        raise TypeError(f"shape must be a tuple of ints such as (64, 576), got {shape!r}; for an array use w.shape")
    dims = tuple(check_int(d, "shape[i]") for d in shape)
    if not dims or any(d < 1 for d in dims):
        raise ValueError(f"shape must have at least one dimension, each >= 1, got {shape!r}")
    return dims


def _bits(bits: object) -> int:
    bits = check_int(bits, "bits")
    if not 1 <= bits <= 64:
        raise ValueError(f"bits (per stored value) must be between 1 and 64, got {bits}")
    return bits


def _nnz(nnz: object, size: int) -> int:
    nnz = check_int(nnz, "nnz")
    if not 0 <= nnz <= size:
        raise ValueError(f"nnz (the number of kept entries) must lie in [0, {size}] for this shape, got {nnz}")
    return nnz


def _bytes(count: int, bits: int) -> int:
    """``ceil(count * bits / 8)`` in integers."""
    return -(-count * bits // 8)


def index_bytes(max_value: object) -> int:
    """Bytes of the narrowest unsigned integer (1, 2, 4 or 8 bytes) that holds ``0 .. max_value``.

    >>> index_bytes(255), index_bytes(256), index_bytes(70_000), index_bytes(0)
    (1, 2, 4, 1)
    """
    max_value = check_int(max_value, "max_value")
    if max_value < 0:
        raise ValueError(f"max_value must be >= 0 (indices are unsigned), got {max_value}")
    for width in (1, 2, 4, 8):
        if max_value < 256**width:
            return width
    raise ValueError(f"max_value={max_value} does not fit in 64 bits")


def dense_bytes(shape: object, bits: object) -> int:
    """``ceil(size * bits / 8)``: every entry stored, the zeros too.

    >>> dense_bytes((64, 576), 8), dense_bytes((3, 3), 4)
    (36864, 5)
    """
    return _bytes(math.prod(_shape(shape)), _bits(bits))


def bitmap_bytes(shape: object, nnz: object, bits: object) -> int:
    """``ceil(size / 8) + ceil(nnz * bits / 8)``: one presence bit per entry, then the kept values.

    >>> bitmap_bytes((64, 576), 0, 8), bitmap_bytes((64, 576), 18432, 8)
    (4608, 23040)
    """
    size = math.prod(_shape(shape))
    return _bytes(size, 1) + _bytes(_nnz(nnz, size), _bits(bits))


def csr_bytes(shape: object, nnz: object, bits: object) -> int:
    """CSR over ``rows = shape[0]`` by ``cols = size / rows``: values, column indices, row pointers.

    ``ceil(nnz * bits / 8) + nnz * index_bytes(cols - 1) + (rows + 1) * index_bytes(nnz)``.

    >>> csr_bytes((64, 576), 3686, 8)      # 90 % sparse: 3686 values, 2-byte columns and pointers
    11188
    >>> csr_bytes((4, 4), 0, 32)           # nothing kept: only the 5 row pointers
    5
    """
    dims = _shape(shape)
    size = math.prod(dims)
    rows, cols = dims[0], size // dims[0]
    nnz = _nnz(nnz, size)
    return _bytes(nnz, _bits(bits)) + nnz * index_bytes(cols - 1) + (rows + 1) * index_bytes(nnz)


def nm_bytes(shape: object, n: object = 2, m: object = 4, bits: object = 16) -> int:
    """N:M compressed size: the ``kept = size * n / m`` values plus a ``ceil(log2 m)``-bit position each.

    ``ceil(kept * bits / 8) + ceil(kept * ceil(log2 m) / 8)``; the groups of ``m`` run along the
    last axis, so ``shape[-1] % m == 0``. 2:4 with fp16 values is 9/16 of dense, with int8 values 5/8.

    >>> nm_bytes((64, 576), 2, 4, 16), dense_bytes((64, 576), 16)
    (41472, 73728)
    >>> nm_bytes((64, 576), 2, 4, 8), dense_bytes((64, 576), 8)
    (23040, 36864)
    """
    dims = _shape(shape)
    n, m = check_int(n, "n"), check_int(m, "m")
    if not 0 < n <= m:
        raise ValueError(f"N:M sparsity needs 0 < n <= m, got n={n}, m={m}")
    if dims[-1] % m:
        raise ValueError(f"shape[-1]={dims[-1]} is not a multiple of m={m}: N:M groups must tile the last axis")
    kept = math.prod(dims) // m * n
    return _bytes(kept, _bits(bits)) + _bytes(kept, (m - 1).bit_length())


def storage_bytes(shape: object, nnz: object, bits: object, fmt: str) -> int:
    """Bytes of a tensor of ``shape`` with ``nnz`` kept entries in format ``fmt`` (one of :data:`FORMATS`).

    >>> [storage_bytes((64, 576), 3686, 8, f) for f in FORMATS]
    [36864, 8294, 11188]
    """
    if fmt == "dense":
        size = math.prod(_shape(shape))
        _nnz(nnz, size)
        return dense_bytes(shape, bits)
    if fmt == "bitmap":
        return bitmap_bytes(shape, nnz, bits)
    if fmt == "csr":
        return csr_bytes(shape, nnz, bits)
    raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")


def break_even_sparsity(shape: object, bits: object, fmt: str) -> float | None:
    """Smallest sparsity ``1 - nnz / size`` at which ``fmt`` takes no more bytes than dense storage.

    ``nnz`` runs over whole numbers, so the answer is a multiple of ``1 / size``; ``None`` if the
    format never fits (not even with nothing kept). Bytes never fall as ``nnz`` grows, so the
    answer is ``1 - max{nnz : bytes(nnz) <= dense} / size``.

    >>> break_even_sparsity((64, 576), 32, "bitmap")        # 1 bit of mask per 32-bit value
    0.03125
    >>> round(break_even_sparsity((64, 576), 8, "csr"), 4)  # 8-bit values, 2-byte column indices
    0.6679
    >>> break_even_sparsity((1, 8), 1, "csr") is None       # 1-bit values: the 2 row pointers already lose
    True
    """
    dims = _shape(shape)
    size = math.prod(dims)
    dense = dense_bytes(dims, bits)
    if fmt not in FORMATS:
        raise ValueError(f"fmt must be one of {FORMATS}, got {fmt!r}")
    if storage_bytes(dims, 0, bits, fmt) > dense:
        return None
    if storage_bytes(dims, size, bits, fmt) <= dense:
        return 0.0
    lo, hi = 0, size  # bytes(nnz) never falls as nnz grows: bytes(lo) <= dense < bytes(hi)
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if storage_bytes(dims, mid, bits, fmt) <= dense:
            lo = mid
        else:
            hi = mid
    return 1.0 - lo / size

