"""Unit and property tests for qlearn.pruning (the torch oracle is in test_pruning_torch.py)."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn.pruning import apply_mask, global_magnitude_masks, ln_structured_mask, magnitude_mask, nm_mask

# Weights with many ties: a few distinct magnitudes of both signs.
tied_weights = hnp.arrays(
    np.float32,
    hnp.array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
    elements=st.sampled_from([0.0, -0.0, 1.0, -1.0, 2.0, -2.0]),
)
amounts = st.one_of(st.floats(0.0, 1.0), st.integers(0, 10))


def _expected_k(amount, count):
    return round(amount * count) if isinstance(amount, float) else amount


# ---------------------------------------------------------------- magnitude_mask


def test_magnitude_mask_golden_table():
    w = np.array([0.3, -0.1, 2.0, -0.5, 0.0, 1.0], dtype=np.float32)
    # |w| sorted: 0.0 (i=4), 0.1 (i=1), 0.3 (i=0), 0.5 (i=3), 1.0 (i=5), 2.0 (i=2)
    assert magnitude_mask(w, 0.5).tolist() == [False, False, True, True, False, True]
    assert magnitude_mask(w, 2).tolist() == [True, False, True, True, False, True]
    assert magnitude_mask(w, 0).all() and magnitude_mask(w, 0.0).all()
    assert not magnitude_mask(w, 1.0).any()
    assert magnitude_mask(w, 6).sum() == 0


def test_magnitude_mask_rounds_amount_half_to_even():
    w = np.arange(1, 6, dtype=np.float32)  # 5 entries: 0.5 * 5 = 2.5 -> 2 pruned, 0.3 * 5 = 1.5 -> 2
    assert (~magnitude_mask(w, 0.5)).sum() == 2
    assert (~magnitude_mask(w, 0.3)).sum() == 2
    assert (~magnitude_mask(w, 0.7)).sum() == 4  # 3.5 -> 4


def test_ties_prune_the_lower_flat_index_first():
    w = np.array([[1.0, -1.0], [1.0, 1.0]], dtype=np.float32)
    assert magnitude_mask(w, 3).tolist() == [[False, False], [False, True]]
    assert magnitude_mask(np.ones(5), 2).tolist() == [False, False, True, True, True]


def test_magnitude_mask_handles_int8_minimum_without_overflow():
    # np.abs(np.int8(-128)) wraps to -128: the largest magnitude must not rank as the smallest
    w = np.array([-128, 3, -5, 100], dtype=np.int8)
    assert magnitude_mask(w, 1).tolist() == [True, False, True, True]


def test_magnitude_mask_keeps_infinity_to_the_end():
    w = np.array([np.inf, 1.0, -np.inf, 0.5], dtype=np.float32)
    assert magnitude_mask(w, 2).tolist() == [True, False, True, False]


@given(w=tied_weights, amount=amounts)
def test_magnitude_mask_prunes_exactly_k_even_with_ties(w, amount):
    if isinstance(amount, int) and amount > w.size:
        with pytest.raises(ValueError):
            magnitude_mask(w, amount)
        return
    mask = magnitude_mask(w, amount)
    k = _expected_k(amount, w.size)
    assert mask.shape == w.shape and mask.dtype == bool
    assert (~mask).sum() == k
    # every kept magnitude is >= every pruned magnitude
    if 0 < k < w.size:
        assert np.abs(w[mask]).min() >= np.abs(w[~mask]).max()


def test_all_equal_weights_prune_the_exact_count():
    w = np.full((4, 5), 0.25, dtype=np.float32)
    for amount, k in [(0.5, 10), (0.33, 7), (13, 13), (1.0, 20)]:
        assert (~magnitude_mask(w, amount)).sum() == k


def test_empty_weight_gives_empty_mask():
    w = np.zeros((0, 3), dtype=np.float32)
    for amount in (0, 0.0, 0.5, 1.0):
        mask = magnitude_mask(w, amount)
        assert mask.shape == (0, 3) and mask.dtype == bool
    with pytest.raises(ValueError, match="amount=1"):
        magnitude_mask(w, 1)


@pytest.mark.parametrize("amount", [-0.1, 1.5, -1, float("nan")])
def test_bad_amount_is_rejected(amount):
    with pytest.raises(ValueError, match="amount"):
        magnitude_mask(np.ones(4), amount)


def test_bad_inputs_are_rejected():
    with pytest.raises(ValueError, match="NaN"):
        magnitude_mask(np.array([1.0, np.nan]), 0.5)
    with pytest.raises(TypeError, match="dtype bool"):
        magnitude_mask(np.array([True, False]), 1)
    with pytest.raises(TypeError, match="amount"):
        magnitude_mask(np.ones(3), "half")


# ---------------------------------------------------------------- ln_structured_mask


def test_ln_structured_golden_table():
    w = np.array([[3.0, 0.0, 0.0], [1.0, 1.0, 1.0], [0.0, 0.0, 2.5]])
    # row L1: 3, 3, 2.5   row L2: 3, 1.73, 2.5   row Linf: 3, 1, 2.5
    assert ln_structured_mask(w, 1, n=1, dim=0)[:, 0].tolist() == [True, True, False]
    assert ln_structured_mask(w, 1, n=2, dim=0)[:, 0].tolist() == [True, False, True]
    assert ln_structured_mask(w, 2, n=np.inf, dim=0)[:, 0].tolist() == [True, False, False]
    # columns (dim=1 or -1), L2: 3.16, 1, 2.69
    assert ln_structured_mask(w, 1, dim=-1)[0].tolist() == [True, False, True]
    # n=0 counts non-zeros per row: 1, 3, 1 -> the tied rows 0 and 2: lower index pruned first
    assert ln_structured_mask(w, 1, n=0)[:, 0].tolist() == [False, True, True]


@given(
    w=hnp.arrays(np.float32, hnp.array_shapes(min_dims=1, max_dims=3, max_side=5), elements=st.sampled_from([0.0, 1.0, -2.0])),
    amount=st.floats(0.0, 1.0),
    n=st.sampled_from([1, 2, np.inf, 0]),
    data=st.data(),
)
def test_ln_structured_prunes_whole_slices(w, amount, n, data):
    dim = data.draw(st.integers(0, w.ndim - 1))
    mask = ln_structured_mask(w, amount, n=n, dim=dim)
    assert mask.shape == w.shape
    # constant along every axis but dim: a slice is all kept or all pruned
    per_slice = np.moveaxis(mask, dim, 0).reshape(w.shape[dim], -1)
    assert (per_slice == per_slice[:, :1]).all()
    assert (~per_slice[:, 0]).sum() == round(amount * w.shape[dim])


def test_ln_structured_negative_n_with_zeros_is_quiet():
    # vector_norm with ord=-1 is (sum |w|**-1) ** -1: a zero entry makes it 0 (torch agrees), no warning
    w = np.array([[0.0, 1.0], [2.0, 3.0], [0.5, 0.5]])  # norms 0, 1.2, 0.25
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert ln_structured_mask(w, 2, n=-1)[:, 0].tolist() == [False, True, False]


def test_ln_structured_bad_arguments():
    w = np.ones((3, 4))
    with pytest.raises(ValueError, match="dim=2"):
        ln_structured_mask(w, 0.5, dim=2)
    with pytest.raises(TypeError, match="n must be"):
        ln_structured_mask(w, 0.5, n="fro")
    with pytest.raises(ValueError, match="0-d"):
        ln_structured_mask(np.float32(1.0), 0)
    with pytest.raises(ValueError, match="amount=4"):
        ln_structured_mask(w, 4, dim=0)


# ---------------------------------------------------------------- global_magnitude_masks


def test_global_masks_share_one_threshold():
    small = np.array([0.1, 0.2, 0.3], dtype=np.float32)
    large = np.array([[5.0, 0.25], [4.0, 6.0]], dtype=np.float32)
    m_small, m_large = global_magnitude_masks([small, large], amount=4)
    assert m_small.tolist() == [False, False, False]
    assert m_large.tolist() == [[True, False], [True, True]]
    assert m_large.shape == large.shape


@given(ws=st.lists(tied_weights, min_size=1, max_size=3), amount=st.floats(0.0, 1.0))
def test_global_masks_prune_exactly_k_in_total(ws, amount):
    masks = global_magnitude_masks(ws, amount)
    total = sum(w.size for w in ws)
    assert sum(int((~m).sum()) for m in masks) == round(amount * total)
    # the same as pruning the concatenation
    joined = magnitude_mask(np.concatenate([w.reshape(-1) for w in ws]), amount)
    assert np.array_equal(np.concatenate([m.reshape(-1) for m in masks]), joined)


def test_global_masks_edge_cases():
    assert global_magnitude_masks([], 0.5) == []
    masks = global_magnitude_masks((w for w in [np.ones(2), np.zeros((0,))]), 1.0)
    assert [m.tolist() for m in masks] == [[False, False], []]
    with pytest.raises(TypeError, match="list of arrays"):
        global_magnitude_masks(np.ones((2, 2)), 0.5)
    with pytest.raises(ValueError, match=r"weights\[1\].*NaN"):
        global_magnitude_masks([np.ones(2), np.array([np.nan])], 0.5)


# ---------------------------------------------------------------- nm_mask


def test_nm_mask_golden_table():
    w = np.array([[0.1, -0.9, 0.5, 0.2], [1.0, 1.0, 1.0, 1.0]])
    assert nm_mask(w, 2, 4).tolist() == [[False, True, True, False], [False, False, True, True]]
    assert nm_mask(w, 1, 2).tolist() == [[False, True, True, False], [False, True, False, True]]
    assert nm_mask(w, 4, 4).all()
    # along axis 0: groups are the two entries of each column
    assert nm_mask(w, 1, 2, axis=0).tolist() == [[False, False, False, False], [True, True, True, True]]


@given(
    n_m=st.sampled_from([(1, 1), (1, 2), (2, 4), (1, 4), (3, 4), (4, 8)]),
    groups=st.integers(0, 3),
    other=st.integers(1, 3),
    axis=st.sampled_from([0, 1, -1]),
    data=st.data(),
)
def test_nm_mask_keeps_exactly_n_per_group(n_m, groups, other, axis, data):
    n, m = n_m
    shape = [other, other]
    shape[axis] = groups * m
    w = data.draw(hnp.arrays(np.float32, tuple(shape), elements=st.sampled_from([0.0, 1.0, -1.0, 3.0])))
    mask = nm_mask(w, n, m, axis=axis)
    assert mask.shape == w.shape
    per_group = np.moveaxis(mask, axis, -1).reshape(-1, m)
    mags = np.abs(np.moveaxis(w, axis, -1).reshape(-1, m))
    assert (per_group.sum(axis=1) == n).all()
    for keep, mag in zip(per_group, mags):
        if n < m:
            assert mag[keep].min() >= mag[~keep].max()


def test_nm_mask_bad_arguments():
    with pytest.raises(ValueError, match="multiple of m=4"):
        nm_mask(np.ones((2, 6)), 2, 4)
    with pytest.raises(ValueError, match="0 < n <= m"):
        nm_mask(np.ones(4), 0, 4)
    with pytest.raises(ValueError, match="0 < n <= m"):
        nm_mask(np.ones(4), 5, 4)
    with pytest.raises(TypeError, match="n must be an integer"):
        nm_mask(np.ones(4), 2.0, 4)
    with pytest.raises(ValueError, match="NaN"):
        nm_mask(np.array([1.0, np.nan, 0.0, 2.0]))


# ---------------------------------------------------------------- apply_mask


def test_apply_mask_keeps_dtype_and_zeroes_pruned():
    w = np.array([[1.5, -2.0], [3.0, -4.0]], dtype=np.float16)
    out = apply_mask(w, [[True, False], [False, True]])
    assert out.dtype == np.float16
    assert out.tolist() == [[1.5, 0.0], [0.0, -4.0]]
    ints = apply_mask(np.array([5, -7], dtype=np.int8), np.array([0.0, 1.0]))
    assert ints.dtype == np.int8 and ints.tolist() == [0, -7]
    # a pruned infinity is 0, not inf * 0 = NaN
    assert apply_mask(np.array([np.inf, 1.0]), [False, True]).tolist() == [0.0, 1.0]


def test_apply_mask_rejects_bad_masks():
    with pytest.raises(ValueError, match=r"\(3,\).*\(2,\)"):
        apply_mask(np.ones(2), [True, False, True])
    with pytest.raises(ValueError, match="True/False"):
        apply_mask(np.ones(2), [0.5, 1.0])
    with pytest.raises(TypeError, match="mask must be boolean"):
        apply_mask(np.ones(2), ["a", "b"])


@given(w=tied_weights, amount=st.floats(0.0, 1.0))
def test_pruned_weight_has_the_requested_sparsity(w, amount):
    mask = magnitude_mask(w, amount)
    pruned = apply_mask(w, mask)
    assert (pruned[~mask] == 0).all() and np.array_equal(pruned[mask], w[mask])
    # already-zero weights are pruned first, so the zero count is max(k, zeros in w)
    assert (pruned == 0).sum() == max(round(amount * w.size), int((w == 0).sum()))
