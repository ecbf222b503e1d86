"""Oracle tests: qlearn's pruning masks equal torch.nn.utils.prune's on tie-free random weights.

torch's ``topk`` leaves the order of ties unspecified, so the data here is continuous random
(no two magnitudes or slice norms are equal); tests/test_pruning.py checks the tie rule.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn.utils import prune

from qlearn.pruning import apply_mask, global_magnitude_masks, ln_structured_mask, magnitude_mask


def _module(w: np.ndarray) -> torch.nn.Module:
    module = torch.nn.Module()
    module.weight = torch.nn.Parameter(torch.from_numpy(w.copy()))
    return module


def _torch_mask(module: torch.nn.Module) -> np.ndarray:
    return module.weight_mask.numpy().astype(bool)


SHAPES = [(7,), (4, 5), (6, 3, 2), (3, 4, 2, 2)]
AMOUNTS = [0, 0.0, 0.25, 0.5, 0.7, 0.999, 1.0, 1, 3]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("amount", AMOUNTS)
def test_magnitude_mask_matches_l1_unstructured(rng, shape, amount):
    w = rng.standard_normal(shape).astype(np.float32)
    module = _module(w)
    prune.l1_unstructured(module, "weight", amount=amount)
    np.testing.assert_array_equal(magnitude_mask(w, amount), _torch_mask(module))


@pytest.mark.parametrize("shape", SHAPES[1:])
@pytest.mark.parametrize("amount", [0, 0.0, 0.34, 0.5, 1.0, 1, 2])
@pytest.mark.parametrize("n", [1, 2, 3, np.inf, -np.inf, 0.5, -1])
def test_ln_structured_mask_matches_torch(rng, shape, amount, n):
    w = rng.standard_normal(shape).astype(np.float32)
    for dim in range(-len(shape), len(shape)):
        module = _module(w)
        prune.ln_structured(module, "weight", amount=amount, n=n, dim=dim)
        np.testing.assert_array_equal(ln_structured_mask(w, amount, n=n, dim=dim), _torch_mask(module))


@pytest.mark.parametrize("amount", [0, 0.0, 0.1, 0.5, 0.9, 1.0, 5, 29])
def test_global_magnitude_masks_match_global_unstructured(rng, amount):
    # different scales per layer, so that the global threshold prunes them unevenly
    weights = [
        (scale * rng.standard_normal(shape)).astype(np.float32)
        for scale, shape in [(0.1, (4, 3)), (1.0, (5,)), (3.0, (2, 3, 2))]
    ]
    modules = [_module(w) for w in weights]
    prune.global_unstructured(
        [(m, "weight") for m in modules], pruning_method=prune.L1Unstructured, amount=amount
    )
    masks = global_magnitude_masks(weights, amount)
    assert len(masks) == len(modules)
    for mask, module in zip(masks, modules):
        np.testing.assert_array_equal(mask, _torch_mask(module))


def test_apply_mask_matches_torch_pruned_weight(rng):
    w = rng.standard_normal((6, 5)).astype(np.float32)
    module = _module(w)
    prune.l1_unstructured(module, "weight", amount=0.4)
    np.testing.assert_array_equal(apply_mask(w, magnitude_mask(w, 0.4)), module.weight.detach().numpy())


def test_too_large_int_amount_is_rejected_like_torch(rng):
    w = rng.standard_normal((2, 3)).astype(np.float32)
    with pytest.raises(ValueError):
        prune.l1_unstructured(_module(w), "weight", amount=7)
    with pytest.raises(ValueError, match="amount=7"):
        magnitude_mask(w, 7)


# --- tied magnitudes: what torch guarantees, and what it does not -----------------------------

@pytest.mark.parametrize("seed", range(6))
@pytest.mark.parametrize("amount", [0.3, 0.5, 7, 0.9])
def test_on_tied_weights_torch_prunes_the_same_count_of_the_smallest_magnitudes(seed, amount):
    """torch.topk's order among equal values is not specified (std::nth_element/partial_sort of the
    platform's C++ library): on tied data only the count and the separation are guaranteed, and
    qlearn's mask agrees with torch's on both; where no tie straddles the cut, the masks are equal."""
    rng = np.random.default_rng(seed)
    w = (rng.integers(-4, 5, (6, 8)) * 0.25).astype(np.float32)  # quantized weights: many ties, zeros
    module = _module(w)
    prune.l1_unstructured(module, "weight", amount=amount)
    theirs, ours = _torch_mask(module), magnitude_mask(w, amount)
    assert (~theirs).sum() == (~ours).sum()
    mags = np.abs(w)
    for mask in (theirs, ours):
        if mask.any() and (~mask).any():
            assert mags[mask].min() >= mags[~mask].max()
    s = np.sort(mags, axis=None)
    k = int((~ours).sum())
    if 0 < k < w.size and s[k - 1] < s[k]:
        np.testing.assert_array_equal(ours, theirs)


def test_torch_breaks_a_straddling_tie_by_its_own_rule_only_the_count_is_fixed():
    module = _module(np.ones((1, 5), np.float32))
    prune.l1_unstructured(module, "weight", amount=2)
    assert (~_torch_mask(module)).sum() == 2  # which two depends on the C++ standard library
    assert magnitude_mask(np.ones((1, 5)), 2).tolist() == [[False, False, True, True, True]]


@pytest.mark.parametrize("seed", range(4))
def test_repeated_pruning_in_torch_takes_the_amount_of_what_is_left(seed):
    """Lab 06, question 6.Q3: torch's PruningContainer applies a new amount to the unpruned entries."""
    rng = np.random.default_rng(seed)
    w = rng.standard_normal((10, 12)).astype(np.float32)
    module = _module(w)
    prune.l1_unstructured(module, "weight", amount=0.5)
    prune.l1_unstructured(module, "weight", amount=0.5)
    first = magnitude_mask(w, 0.5)
    # the second call ranks only the kept entries: prune round(0.5 * 60) = 30 of them
    second = first.copy()
    second[first] = magnitude_mask(w[first], 0.5)
    np.testing.assert_array_equal(_torch_mask(module), second)
    assert (~second).sum() == 90
