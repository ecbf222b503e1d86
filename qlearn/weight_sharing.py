"""Weight sharing with k-means, and the sparse storage of Deep Compression (Han et al., 2016).

Weight sharing replaces every (kept) weight of a layer by the nearest of ``k`` shared values, the
*codebook*; the layer then stores one ``log2(k)``-bit code per weight plus the ``k`` float32
centroids. The codebook comes from 1-D k-means (Lloyd's algorithm) on the weights:

    assign:  code_i = argmin_j |w_i - c_j|              (ties: the lower index j)
    update:  c_j    = mean{ w_i : code_i = j }          (an empty cluster keeps its centroid)

starting from the *linear* initialisation ``c_j = min(w) + j * (max(w) - min(w)) / (k - 1)``, which
Deep Compression found best because it keeps a few centroids on the large, rare, important weights.
Everything is deterministic, so a codebook is exactly reproducible.

Sparse layers store the position of each kept weight as the *gap* from the previous one
(``relative_index_entries``): ``index_bits`` bits per entry, plus a filler zero entry whenever a
run of zeros is longer than ``2**index_bits - 1``. Used in lab 07, section 6.
"""

from __future__ import annotations

import numbers

import numpy as np

from qlearn.huffman import huffman_bits

__all__ = [
    "compressed_bits",
    "kmeans_1d",
    "linear_init",
    "relative_index_entries",
    "share_weights",
    "shared_weight",
]


def _check_positive_int(value: object, name: str) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral) or int(value) < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return int(value)


def _as_values(values: object, name: str = "values") -> np.ndarray:
    arr = np.asarray(values)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64).reshape(-1)
    if not np.isfinite(arr).all():
        raise ValueError(f"{name} contains NaN or infinite values; k-means needs finite weights")
    return arr


def linear_init(values: object, n_clusters: int) -> np.ndarray:
    """Linear initialisation: ``n_clusters`` centroids evenly spaced over ``[min, max]`` (float64).

    >>> linear_init([-1.0, 0.5, 2.0], 4)
    array([-1.,  0.,  1.,  2.])
    >>> linear_init([3.0], 2)
    array([3., 3.])
    """
    values = _as_values(values)
    n_clusters = _check_positive_int(n_clusters, "n_clusters")
    if values.size == 0:
        raise ValueError("values is empty: there is nothing to cluster")
    if n_clusters == 1:
        return np.array([values.min()])
    return np.linspace(values.min(), values.max(), n_clusters)


def kmeans_1d(values: object, n_clusters: int, n_iter: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """1-D k-means from the linear initialisation: returns ``(centroids float64 [k], codes int64)``.

    Runs at most ``n_iter`` assign/update rounds and stops early once the codes stop changing; the
    final codes are the assignment to the final centroids. ``codes`` has the shape of ``values``.

    >>> centroids, codes = kmeans_1d([0.0, 0.1, 0.9, 1.0, 5.0], 3)
    >>> centroids.round(2).tolist(), codes.tolist()
    ([0.5, 2.5, 5.0], [0, 0, 0, 0, 2])
    >>> kmeans_1d([0.0, 0.1, 0.9, 1.0, 5.0], 3, n_iter=0)[1].tolist()   # codes of the initial centroids
    [0, 0, 0, 0, 2]
    """
    shape = np.shape(values)
    flat = _as_values(values)
    if isinstance(n_iter, (bool, np.bool_)) or not isinstance(n_iter, numbers.Integral) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative int, got {n_iter!r}")
    centroids = linear_init(flat, n_clusters)
    codes = np.abs(flat[:, None] - centroids[None, :]).argmin(axis=1)
    for _ in range(int(n_iter)):
        for j in range(centroids.size):
            members = flat[codes == j]
            if members.size:
                centroids[j] = members.mean()
        new_codes = np.abs(flat[:, None] - centroids[None, :]).argmin(axis=1)
        if np.array_equal(new_codes, codes):
            break
        codes = new_codes
    return centroids, codes.reshape(shape)


def share_weights(w: object, n_bits: int, mask: object | None = None, n_iter: int = 20) -> tuple[np.ndarray, np.ndarray]:
    """Deep Compression weight sharing of one layer with ``n_bits``-bit codes.

    Code 0 is reserved for the value 0 (pruned weights and the filler entries of the sparse
    format); the kept weights (``mask`` True; all weights if ``mask`` is None) are clustered into
    ``2**n_bits - 1`` centroids, codes ``1 .. 2**n_bits - 1``. Returns ``(codebook float32 [2**n_bits],
    codes int64 shaped like w)`` with ``codebook[0] == 0``; ``shared_weight`` rebuilds the layer.

    >>> codebook, codes = share_weights([[0.0, 0.9], [-1.0, 1.1]], 2, mask=[[False, True], [True, True]])
    >>> codebook, codes.tolist()
    (array([ 0.  , -1.  ,  0.05,  1.  ], dtype=float32), [[0, 3], [1, 3]])
    """
    n_bits = _check_positive_int(n_bits, "n_bits")
    w = np.asarray(w)
    keep = np.ones(w.shape, dtype=bool) if mask is None else np.asarray(mask, dtype=bool)
    if keep.shape != w.shape:
        raise ValueError(f"mask has shape {keep.shape} but w has shape {w.shape}; they must be equal")
    codebook = np.zeros(2**n_bits, dtype=np.float32)
    codes = np.zeros(w.shape, dtype=np.int64)
    kept = _as_values(w[keep], "w")
    if kept.size:
        centroids, kept_codes = kmeans_1d(kept, 2**n_bits - 1, n_iter)
        codebook[1:] = centroids.astype(np.float32)
        codes[keep] = kept_codes + 1
    return codebook, codes


def shared_weight(codebook: object, codes: object) -> np.ndarray:
    """The weight rebuilt from its codebook: ``codebook[codes]`` (float32).

    >>> shared_weight([0.0, -1.0, 1.0], [[2, 0], [1, 1]])
    array([[ 1.,  0.],
           [-1., -1.]], dtype=float32)
    """
    codebook = np.asarray(codebook, dtype=np.float32).reshape(-1)
    codes = np.asarray(codes)
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"codes must be integers, got dtype {codes.dtype}")
    if codes.size and (codes.min() < 0 or codes.max() >= codebook.size):
        raise ValueError(f"codes must lie in [0, {codebook.size - 1}] (the codebook has {codebook.size} entries)")
    return codebook[codes]


def relative_index_entries(mask: object, index_bits: int) -> tuple[np.ndarray, int]:
    """Relative-index encoding of a flattened sparse layer: ``(gaps, n_fillers)``.

    Each stored entry records ``gap`` = the number of zeros skipped since the previous stored entry,
    in ``index_bits`` bits, so ``gap <= 2**index_bits - 1``. A longer run of ``z`` zeros is cut by
    ``z // 2**index_bits`` filler entries (a stored zero). ``gaps`` lists the gap of every stored
    entry, fillers included, in order; the number of entries is ``gaps.size``. Trailing zeros cost
    nothing (the decoder knows the layer's size).

    >>> gaps, fillers = relative_index_entries([0, 1, 0, 0, 0, 0, 0, 1, 1], index_bits=2)  # runs 1, 5, 0
    >>> gaps.tolist(), fillers
    ([1, 3, 1, 0], 1)
    """
    index_bits = _check_positive_int(index_bits, "index_bits")
    flat = np.asarray(mask).astype(bool).reshape(-1)
    positions = np.flatnonzero(flat)
    runs = np.diff(np.concatenate([[-1], positions])) - 1
    span = 2**index_bits  # a filler covers 2**b - 1 zeros and takes one position itself
    gaps: list[int] = []
    fillers = 0
    for z in runs.tolist():
        while z > span - 1:
            gaps.append(span - 1)
            z -= span
            fillers += 1
        gaps.append(z)
    return np.array(gaps, dtype=np.int64), fillers


def compressed_bits(codes: object, n_bits: int, index_bits: int, huffman: bool = False) -> dict[str, int]:
    """Bits to store one shared, sparse layer: codes, relative indices and the codebook.

    ``codes`` are the layer's codes from ``share_weights`` (0 = pruned). Every stored entry (kept
    weights and fillers, see ``relative_index_entries``) costs an ``n_bits`` code and an
    ``index_bits`` gap; with ``huffman=True`` the code stream and the gap stream are each
    Huffman-coded instead (``huffman_bits``). The codebook costs ``2**n_bits`` float32 values.
    Returns ``{"entries", "fillers", "codes", "indices", "codebook", "total"}`` (bits).

    >>> compressed_bits([0, 3, 0, 0, 0, 0, 0, 1, 1], n_bits=2, index_bits=2)
    {'entries': 4, 'fillers': 1, 'codes': 8, 'indices': 8, 'codebook': 128, 'total': 144}
    >>> compressed_bits([0, 3, 0, 0, 0, 0, 0, 1, 1], n_bits=2, index_bits=2, huffman=True)["total"]
    140
    """
    n_bits = _check_positive_int(n_bits, "n_bits")
    codes = np.asarray(codes).reshape(-1)
    if not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"codes must be integers, got dtype {codes.dtype}")
    gaps, fillers = relative_index_entries(codes != 0, index_bits)
    # the code of every stored entry, fillers (code 0) in their place
    entry_codes = np.zeros(gaps.size, dtype=np.int64)
    kept = codes[codes != 0]
    is_filler = np.zeros(gaps.size, dtype=bool)
    position, k = -1, 0
    for e, g in enumerate(gaps.tolist()):
        position += g + 1
        if codes[position] != 0:
            entry_codes[e] = kept[k]
            k += 1
        else:
            is_filler[e] = True
    if huffman:
        code_bits, index_total = huffman_bits(entry_codes), huffman_bits(gaps)
    else:
        code_bits, index_total = n_bits * gaps.size, index_bits * gaps.size
    codebook = 32 * 2**n_bits
    return {
        "entries": int(gaps.size),
        "fillers": int(fillers),
        "codes": int(code_bits),
        "indices": int(index_total),
        "codebook": codebook,
        "total": int(code_bits + index_total + codebook),
    }
