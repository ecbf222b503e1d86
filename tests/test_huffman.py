"""qlearn.huffman: optimal code lengths, the entropy bound, canonical codes, round trips."""

from __future__ import annotations

import heapq
import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from qlearn.huffman import (
    entropy_bits,
    huffman_bits,
    huffman_code_lengths,
    huffman_codes,
    huffman_decode,
    huffman_encode,
)


def test_golden_dyadic():
    symbols = [0] * 4 + [1] * 2 + [2, 3]
    assert huffman_code_lengths(symbols) == {0: 1, 1: 2, 2: 3, 3: 3}
    assert huffman_bits(symbols) == 14
    assert entropy_bits(symbols) == 1.75  # dyadic: Huffman meets the entropy exactly


def test_single_symbol_and_empty():
    assert huffman_code_lengths([5, 5, 5]) == {5: 1}
    assert huffman_bits([5, 5, 5]) == 3
    assert huffman_code_lengths(np.zeros(0, np.int64)) == {}


def test_rejects_floats():
    with pytest.raises(TypeError, match="integers"):
        huffman_code_lengths([0.5, 1.0])


def _brute_force_optimum(counts):
    """Optimal prefix-code cost by the textbook merge with a plain counter tie-break (independent code)."""
    if len(counts) == 1:
        return counts[0]
    heap = list(counts)
    heapq.heapify(heap)
    cost = 0
    while len(heap) > 1:
        a, b = heapq.heappop(heap), heapq.heappop(heap)
        cost += a + b
        heapq.heappush(heap, a + b)
    return cost


symbol_lists = st.lists(st.integers(-5, 40), min_size=1, max_size=300)


@given(symbol_lists)
def test_optimal_and_within_the_entropy_bound(symbols):
    counts = np.unique(symbols, return_counts=True)[1]
    bits = huffman_bits(symbols)
    assert bits == _brute_force_optimum(counts.tolist())
    if len(counts) > 1:
        h = entropy_bits(symbols) * len(symbols)
        assert h - 1e-9 <= bits < h + len(symbols)


@given(symbol_lists)
def test_kraft_equality_and_prefix_free(symbols):
    lengths = huffman_code_lengths(symbols)
    if len(lengths) > 1:
        assert sum(2.0 ** -n for n in lengths.values()) == 1.0
    codes = huffman_codes(symbols)
    assert {s: len(c) for s, c in codes.items()} == lengths
    for a, b in itertools.permutations(codes.values(), 2):
        assert not b.startswith(a)


@given(symbol_lists)
def test_round_trip(symbols):
    codes = huffman_codes(symbols)
    bits = huffman_encode(symbols, codes)
    assert len(bits) == huffman_bits(symbols)
    assert huffman_decode(bits, codes) == list(symbols)


def test_decode_rejects_a_truncated_stream():
    with pytest.raises(ValueError, match="not a complete code word"):
        huffman_decode("1", {0: "0", 1: "10", 2: "11"})


def test_encode_names_missing_symbols():
    with pytest.raises(ValueError, match=r"\[7\]"):
        huffman_encode([7], {0: "0", 1: "1"})
