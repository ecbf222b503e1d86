"""Unit, property and oracle tests for qlearn.sparse_storage (the oracle: torch's own CSR tensors)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from qlearn.sparse_storage import (
    FORMATS,
    bitmap_bytes,
    break_even_sparsity,
    csr_bytes,
    dense_bytes,
    index_bytes,
    nm_bytes,
    storage_bytes,
)

shapes = st.lists(st.integers(1, 12), min_size=1, max_size=3).map(tuple)
bit_widths = st.sampled_from([1, 2, 4, 8, 16, 32])


def test_golden_table_by_hand():
    # a 64 x 576 conv weight (64 x 64 x 3 x 3), int8, 90 % sparse: 3686 kept
    assert dense_bytes((64, 64, 3, 3), 8) == 36864
    assert bitmap_bytes((64, 576), 3686, 8) == 36864 // 8 + 3686
    # columns 0..575 need 2 bytes, row pointers 0..3686 need 2 bytes
    assert csr_bytes((64, 576), 3686, 8) == 3686 + 2 * 3686 + 65 * 2
    # 4-D shapes are seen as (shape[0], rest)
    assert csr_bytes((64, 64, 3, 3), 3686, 8) == csr_bytes((64, 576), 3686, 8)
    # row pointers widen to 4 bytes once nnz > 65535
    assert csr_bytes((256, 512), 70000, 16) == 2 * 70000 + 2 * 70000 + 257 * 4
    # one byte per column index while cols <= 256
    assert csr_bytes((10, 256), 100, 8) == 100 + 100 + 11 * 1
    assert csr_bytes((10, 257), 100, 8) == 100 + 200 + 11 * 1
    # partial bytes round up
    assert dense_bytes((3, 3), 4) == 5 and bitmap_bytes((3, 3), 3, 4) == 2 + 2


def test_index_bytes_boundaries():
    assert [index_bytes(v) for v in (0, 255, 256, 65535, 65536, 2**32 - 1, 2**32)] == [1, 1, 2, 2, 4, 4, 8]
    with pytest.raises(ValueError, match="max_value"):
        index_bytes(-1)


def test_nm_bytes():
    # 2:4: half the values plus 2 bits each
    assert nm_bytes((8, 16), 2, 4, 16) == 64 * 2 + 64 * 2 // 8
    assert nm_bytes((8, 16), 2, 4, 8) == 64 + 16
    assert nm_bytes((8, 16), 1, 2, 8) == 64 + 8  # 1 bit per position
    assert nm_bytes((8, 16), 4, 8, 8) == 64 + 24  # 3 bits per position
    assert nm_bytes((1, 4), 4, 4, 8) == 4 + 1  # m = 4 still 2 bits per position
    with pytest.raises(ValueError, match="multiple of m=4"):
        nm_bytes((4, 6), 2, 4, 8)


def test_break_even_by_hand():
    # bitmap: size/8 + nnz*b/8 <= size*b/8  <=>  nnz <= size (b - 1) / b
    assert break_even_sparsity((64, 576), 8, "bitmap") == 1 / 8
    assert break_even_sparsity((64, 576), 4, "bitmap") == 1 / 4
    assert break_even_sparsity((64, 576), 1, "bitmap") == 1.0  # only when nothing is kept
    assert break_even_sparsity((64, 576), 32, "dense") == 0.0
    shape, size = (64, 576), 64 * 576
    nnz = round((1 - break_even_sparsity(shape, 8, "csr")) * size)
    assert csr_bytes(shape, nnz, 8) <= dense_bytes(shape, 8) < csr_bytes(shape, nnz + 1, 8)
    assert break_even_sparsity((1, 8), 1, "csr") is None


@given(shape=shapes, bits=bit_widths, fmt=st.sampled_from(FORMATS))
def test_break_even_is_the_first_sparsity_that_fits(shape, bits, fmt):
    size, dense = math.prod(shape), dense_bytes(shape, bits)
    costs = [storage_bytes(shape, nnz, bits, fmt) for nnz in range(size + 1)]
    assert all(a <= b for a, b in zip(costs, costs[1:]))  # bytes never fall as nnz grows
    fits = [nnz for nnz, c in enumerate(costs) if c <= dense]
    got = break_even_sparsity(shape, bits, fmt)
    assert got == (None if not fits else 1.0 - max(fits) / size)


@given(shape=shapes, bits=bit_widths, data=st.data())
def test_fewer_value_bits_never_lower_the_break_even(shape, bits, data):
    fmt = data.draw(st.sampled_from(["bitmap", "csr"]))
    wider = break_even_sparsity(shape, 2 * bits, fmt)
    narrow = break_even_sparsity(shape, bits, fmt)
    if narrow is not None:  # the indices cost the same, the values saved are worth more
        assert wider is not None and wider <= narrow


def test_bad_arguments():
    with pytest.raises(TypeError, match="shape"):
        dense_bytes(np.zeros((2, 2)), 8)
    with pytest.raises(ValueError, match="nnz"):
        csr_bytes((2, 2), 5, 8)
    with pytest.raises(ValueError, match="bits"):
        dense_bytes((2, 2), 0)
    with pytest.raises(ValueError, match="fmt"):
        storage_bytes((2, 2), 1, 8, "coo")
    with pytest.raises(ValueError, match="fmt"):
        break_even_sparsity((2, 2), 8, "coo")


@pytest.mark.filterwarnings("ignore:Sparse CSR tensor support is in beta")
@pytest.mark.parametrize("shape", [(7, 5), (16, 9), (3, 40)])
@pytest.mark.parametrize("density", [0.0, 0.1, 0.5, 1.0])
def test_csr_parts_match_torch_sparse_csr(rng, shape, density):
    """torch's CSR tensor stores the same three arrays; with its int64 indices the bytes agree."""
    w = rng.standard_normal(shape).astype(np.float32) * (rng.random(shape) < density)
    t = torch.from_numpy(w).to_sparse_csr()
    nnz = int(np.count_nonzero(w))
    assert t.values().numel() == nnz and t.col_indices().numel() == nnz
    assert t.crow_indices().numel() == shape[0] + 1
    torch_bytes = sum(p.numel() * p.element_size() for p in (t.values(), t.col_indices(), t.crow_indices()))
    ours = csr_bytes(shape, nnz, 32)
    rows = shape[0]
    narrow = nnz * index_bytes(shape[1] - 1) + (rows + 1) * index_bytes(nnz)
    assert torch_bytes == ours - narrow + 8 * (nnz + rows + 1)
    # the column indices and row pointers fit the narrow widths we count
    if nnz:
        assert int(t.col_indices().max()) < 256 ** index_bytes(shape[1] - 1)
    assert int(t.crow_indices().max()) < 256 ** index_bytes(nnz)
