"""qlearn.weight_sharing: k-means codebooks (vs scikit-learn-free brute force), relative indices, sizes."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn.weight_sharing import (
    compressed_bits,
    kmeans_1d,
    linear_init,
    relative_index_entries,
    share_weights,
    shared_weight,
)


def test_linear_init():
    np.testing.assert_array_equal(linear_init([-1.0, 2.0, 0.5], 4), [-1.0, 0.0, 1.0, 2.0])
    with pytest.raises(ValueError, match="n_clusters"):
        linear_init([1.0], 0)
    with pytest.raises(ValueError, match="empty"):
        linear_init([], 2)


def test_kmeans_golden_by_hand():
    # init [0, 2.5, 5]; 0, .1, .9, 1 -> 0 and 5 -> 2; update: c0 = 0.5, c1 empty stays 2.5
    centroids, codes = kmeans_1d([0.0, 0.1, 0.9, 1.0, 5.0], 3)
    np.testing.assert_allclose(centroids, [0.5, 2.5, 5.0])
    np.testing.assert_array_equal(codes, [0, 0, 0, 0, 2])


def test_kmeans_tie_goes_to_the_lower_index():
    # 1.0 is exactly halfway between the initial centroids 0 and 2
    _, codes = kmeans_1d([0.0, 1.0, 2.0], 2, n_iter=0)
    np.testing.assert_array_equal(codes, [0, 0, 1])


finite = st.floats(-4, 4, allow_nan=False, width=32)


@given(hnp.arrays(np.float32, st.integers(1, 60), elements=finite), st.integers(1, 8))
def test_kmeans_is_a_fixed_point_of_lloyd(values, k):
    centroids, codes = kmeans_1d(values, k, n_iter=100)
    # every code is the nearest centroid (ties lower index): argmin
    np.testing.assert_array_equal(codes, np.abs(values.astype(np.float64)[:, None] - centroids).argmin(1))
    for j in range(k):
        members = values.astype(np.float64)[codes == j]
        if members.size:
            assert centroids[j] == pytest.approx(members.mean(), rel=1e-12, abs=1e-12)
    assert codes.shape == values.shape


@given(hnp.arrays(np.float32, (5, 7), elements=finite), st.integers(1, 4))
def test_share_weights_reserves_zero(w, n_bits):
    mask = np.abs(w) > 0.5
    codebook, codes = share_weights(w, n_bits, mask=mask)
    assert codebook[0] == 0 and codebook.size == 2**n_bits
    assert ((codes == 0) == ~mask).all()
    rebuilt = shared_weight(codebook, codes)
    assert (rebuilt[~mask] == 0).all()
    # sharing never moves a kept weight farther than the spread of the kept weights
    if mask.any():
        kept = w[mask]
        assert np.abs(rebuilt[mask] - kept).max() <= kept.max() - kept.min() + 1e-6


def test_shared_weight_rejects_bad_codes():
    with pytest.raises(ValueError, match="codes must lie"):
        shared_weight([0.0, 1.0], [2])
    with pytest.raises(TypeError, match="integers"):
        shared_weight([0.0, 1.0], [0.5])


def test_relative_index_golden():
    gaps, fillers = relative_index_entries([0, 1, 0, 0, 0, 0, 0, 1, 1], index_bits=2)
    assert gaps.tolist() == [1, 3, 1, 0] and fillers == 1


@given(hnp.arrays(bool, st.integers(0, 200)), st.integers(1, 5))
def test_relative_index_decodes_to_the_mask(mask, bits):
    gaps, fillers = relative_index_entries(mask, bits)
    assert (gaps <= 2**bits - 1).all()
    positions = np.cumsum(gaps + 1) - 1
    decoded = np.zeros(mask.size, bool)
    decoded[positions] = True  # fillers land on positions that hold zeros
    assert gaps.size == mask.sum() + fillers
    # kept positions are exactly the stored ones minus the fillers
    assert set(np.flatnonzero(mask)) <= set(positions.tolist())
    assert len(set(positions.tolist()) - set(np.flatnonzero(mask))) == fillers


def test_compressed_bits_golden():
    plain = compressed_bits([0, 3, 0, 0, 0, 0, 0, 1, 1], n_bits=2, index_bits=2)
    assert plain == {"entries": 4, "fillers": 1, "codes": 8, "indices": 8, "codebook": 128, "total": 144}
    coded = compressed_bits([0, 3, 0, 0, 0, 0, 0, 1, 1], n_bits=2, index_bits=2, huffman=True)
    assert coded["codes"] == 6 and coded["indices"] == 6


@given(hnp.arrays(np.int64, st.integers(1, 300), elements=st.integers(0, 15)))
def test_huffman_never_costs_more(codes):
    plain = compressed_bits(codes, 4, 4)
    coded = compressed_bits(codes, 4, 4, huffman=True)
    assert coded["total"] <= plain["total"]
    assert coded["entries"] == plain["entries"]
