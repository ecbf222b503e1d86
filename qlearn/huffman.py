"""Huffman coding of quantized codes: the last, lossless stage of Deep Compression.

A Huffman code gives frequent symbols short bit strings and rare ones long strings. It is built
by repeatedly merging the two least frequent subtrees; a symbol's code length is its depth in the
final tree. The average length ``L = sum_s p_s * len_s`` is optimal among prefix codes and

    H <= L < H + 1,      H = -sum_s p_s * log2(p_s)   (the entropy, in bits per symbol).

Ties between equal counts are broken deterministically (lower count first, then the subtree that
holds the smallest symbol), so the code lengths are reproducible. A single distinct symbol still
needs 1 bit per occurrence. ``huffman_codes`` turns the lengths into a *canonical* code (codes of
each length are consecutive integers in symbol order), which is what a file would store.
Used in lab 07, section 6.
"""

from __future__ import annotations

import heapq
from collections import Counter

import numpy as np

__all__ = ["entropy_bits", "huffman_bits", "huffman_code_lengths", "huffman_codes", "huffman_decode", "huffman_encode"]


def _counts(symbols: object) -> Counter:
    arr = np.asarray(symbols)
    if not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"symbols must be integers (quantized codes), got dtype {arr.dtype}")
    values, counts = np.unique(arr.reshape(-1), return_counts=True)
    return Counter(dict(zip(values.tolist(), counts.tolist())))


def huffman_code_lengths(symbols: object) -> dict[int, int]:
    """Code length in bits of each distinct symbol of ``symbols`` (an integer array of any shape).

    >>> huffman_code_lengths([0, 0, 0, 0, 1, 1, 2, 3])
    {0: 1, 1: 2, 2: 3, 3: 3}
    >>> huffman_code_lengths([7, 7, 7])
    {7: 1}
    """
    counts = _counts(symbols)
    if not counts:
        return {}
    if len(counts) == 1:
        return {next(iter(counts)): 1}
    # heap entries: (count, smallest symbol in the subtree, symbols of the subtree)
    heap = [(c, s, [s]) for s, c in sorted(counts.items())]
    heapq.heapify(heap)
    lengths = dict.fromkeys(counts, 0)
    while len(heap) > 1:
        c1, m1, s1 = heapq.heappop(heap)
        c2, m2, s2 = heapq.heappop(heap)
        for s in s1 + s2:
            lengths[s] += 1
        heapq.heappush(heap, (c1 + c2, min(m1, m2), s1 + s2))
    return dict(sorted(lengths.items()))


def huffman_bits(symbols: object) -> int:
    """Total bits of the Huffman-coded ``symbols``: ``sum_s count_s * len_s`` (the table not counted).

    >>> huffman_bits([0, 0, 0, 0, 1, 1, 2, 3])     # 4*1 + 2*2 + 1*3 + 1*3
    14
    """
    counts = _counts(symbols)
    lengths = huffman_code_lengths(symbols)
    return int(sum(counts[s] * lengths[s] for s in counts))


def entropy_bits(symbols: object) -> float:
    """Shannon entropy ``H = -sum p_s log2 p_s`` of the symbols' frequencies, bits per symbol.

    >>> entropy_bits([0, 0, 0, 0, 1, 1, 2, 3])
    1.75
    """
    counts = np.array(list(_counts(symbols).values()), dtype=np.float64)
    if counts.size == 0:
        return 0.0
    p = counts / counts.sum()
    return float(-(p * np.log2(p)).sum() + 0.0)


def huffman_codes(symbols: object) -> dict[int, str]:
    """Canonical Huffman code of each distinct symbol, as a bit string.

    Symbols sorted by (length, symbol) get consecutive codes; moving to a longer length shifts left.

    >>> huffman_codes([0, 0, 0, 0, 1, 1, 2, 3])
    {0: '0', 1: '10', 2: '110', 3: '111'}
    """
    lengths = huffman_code_lengths(symbols)
    codes: dict[int, str] = {}
    code, prev_len = 0, 0
    for s, n in sorted(lengths.items(), key=lambda item: (item[1], item[0])):
        code <<= n - prev_len
        codes[s] = format(code, f"0{n}b")
        code, prev_len = code + 1, n
    return dict(sorted(codes.items()))


def huffman_encode(symbols: object, codes: dict[int, str]) -> str:
    """The bit string of ``symbols`` (flattened) under ``codes``.

    >>> huffman_encode([2, 0, 1], {0: '0', 1: '10', 2: '11'})
    '11010'
    """
    flat = np.asarray(symbols).reshape(-1).tolist()
    missing = sorted(set(flat) - set(codes))
    if missing:
        raise ValueError(f"symbols {missing[:5]} have no code in codes; build codes from these symbols")
    return "".join(codes[s] for s in flat)


def huffman_decode(bits: str, codes: dict[int, str]) -> list[int]:
    """Decode a bit string with a prefix code (the inverse of ``huffman_encode``).

    >>> huffman_decode('11010', {0: '0', 1: '10', 2: '11'})
    [2, 0, 1]
    """
    lookup = {c: s for s, c in codes.items()}
    out, current = [], ""
    for b in bits:
        current += b
        if current in lookup:
            out.append(lookup[current])
            current = ""
    if current:
        raise ValueError(f"bits ends with {current!r}, which is not a complete code word")
    return out
