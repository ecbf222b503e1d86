"""Lab 06 (``06_pruning_fundamentals``): magnitude masks, structured and global pruning, 2:4, storage.

    06.1  magnitude_prune_mask(w, amount)              == torch.nn.utils.prune.l1_unstructured's mask
    06.2  ln_structured_prune_mask(w, amount, n, dim)  == prune.ln_structured's mask
    06.3  compress_2_4(w, bits)                        2:4 mask, compressed values, 2-bit positions, bytes
    06.4  global_prune_masks(weights, amount)          == prune.global_unstructured(L1Unstructured)'s masks
    06.5  break_even_sparsity(rows, cols, bits, fmt)   smallest sparsity at which bitmap/CSR beat dense

**Ties.** torch picks the pruned entries with ``torch.topk``, whose order among equal values is
not specified: on CPU it comes from the C++ library's ``std::nth_element``/``std::partial_sort``
(libstdc++, libc++ and MSVC differ; on this Linux machine, of five equal weights it prunes indices
2 and 4 when asked for two). So the cases of 06.1, 06.2 and 06.4 hold many ties (quantized weights, zeros,
``w`` and ``-w``, a channel and its negation) but never a tie that straddles the cut: the k-th and
the (k+1)-th smallest magnitude (or slice norm) always differ, and the one right mask is torch's on
every platform. ``tests/test_lab06.py`` checks every case against torch. Random slice norms are
redrawn until no two lie within 1e-4 of each other (relative), so that float32 and float64 norms
rank them the same. 2:4 has no torch counterpart on the CPU; its contract states the tie rule.
"""

from __future__ import annotations

import math

import numpy as np

from qlearn.grading.compare import compare_values
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register
from qlearn.pruning import global_magnitude_masks, ln_structured_mask, magnitude_mask, nm_mask
from qlearn.sparse_storage import break_even_sparsity as _break_even
from qlearn.sparse_storage import nm_bytes

__all__ = [
    "break_even_sparsity",
    "compress_2_4",
    "global_prune_masks",
    "ln_structured_prune_mask",
    "magnitude_prune_mask",
]

NOTEBOOK = "06_pruning_fundamentals"
f32 = np.float32

#: What prunes by magnitude in qlearn and torch: a solution calling one of these earns nothing.
_PRUNING = (
    "qlearn.pruning.magnitude_mask", "qlearn.pruning.global_magnitude_masks",
    "qlearn.pruning.ln_structured_mask", "qlearn.pruning.nm_mask", "qlearn.pruning._prune_smallest",
    "qlearn.viz.widgets.sparsity_explorer", "qlearn.viz.widgets.SparsityExplorer",
    "qlearn.viz.pruning.granularity_mask",
    "torch.nn.utils.prune.l1_unstructured", "torch.nn.utils.prune.ln_structured",
    "torch.nn.utils.prune.global_unstructured", "torch.nn.utils.prune.random_unstructured",
    "torch.nn.utils.prune.L1Unstructured", "torch.nn.utils.prune.LnStructured", "torch.topk",
    "torch.kthvalue", "torch.sort", "torch.argsort",
)
_STORAGE = (
    "qlearn.sparse_storage.break_even_sparsity", "qlearn.sparse_storage.storage_bytes",
    "qlearn.sparse_storage.csr_bytes", "qlearn.sparse_storage.bitmap_bytes",
    "qlearn.sparse_storage.dense_bytes", "qlearn.sparse_storage.nm_bytes",
    "qlearn.sparse_storage.index_bytes",
)


# --- shared case helpers ----------------------------------------------------------------------

def _distinct(rng: np.random.Generator, shape, scale: float = 1.0) -> np.ndarray:
    """Random float32 weights whose magnitudes are all different (no ties anywhere)."""
    while True:
        w = (scale * rng.standard_normal(shape)).astype(f32)
        if np.unique(np.abs(w)).size == w.size:
            return w


def _cuts(mags: np.ndarray) -> list[int]:
    """Every ``k`` (0..n) at which pruning the ``k`` smallest splits no tie: s[k-1] < s[k]."""
    s = np.sort(mags.reshape(-1))
    return [0] + [k for k in range(1, s.size) if s[k - 1] < s[k]] + [s.size]


def _amount_for(k: int, n: int) -> float:
    """A float amount with ``round(amount * n) == k`` (the fraction k / n)."""
    amount = k / n
    assert round(amount * n) == k
    return amount


def _quantized(rng: np.random.Generator, shape, levels: int = 6, step: float = 0.125) -> np.ndarray:
    """Weights on a grid (as after quantization): every magnitude occurs many times, 0 included."""
    return (rng.integers(-levels, levels + 1, shape) * step).astype(f32)


def _tied_cut(mags: np.ndarray) -> int:
    """A cut ``k`` whose last pruned and first kept magnitudes each occur at least twice."""
    s = np.sort(mags.reshape(-1))
    good = [k for k in _cuts(mags)[1:-1] if k >= 2 and s[k - 2] == s[k - 1] and k + 1 < s.size and s[k] == s[k + 1]]
    assert good, "no cut between two tie groups"
    return good[len(good) // 2]


# --- 06.1 -------------------------------------------------------------------------------------

def magnitude_prune_mask(w: np.ndarray, amount: float | int) -> np.ndarray:
    """Boolean keep-mask of ``w`` (True = keep) that prunes what ``prune.l1_unstructured`` prunes.

    ``amount``: a float in [0, 1] is the fraction of the ``w.size`` entries to prune, turned into a
    count the way torch does; an int is the count itself. The pruned entries are those of smallest
    magnitude ``|w|``. Returns a bool array shaped like ``w``.

    >>> magnitude_prune_mask(np.array([0.5, -3.0, 0.1, 2.0], np.float32), 0.5)
    array([False,  True, False,  True])
    """
    return magnitude_mask(w, amount)


def _magnitude_cases(rng: np.random.Generator) -> list[Case]:
    ten = _distinct(rng, 10)
    q = _quantized(rng, (6, 8))
    k_tied = _tied_cut(np.abs(q))
    pruned_before = _distinct(rng, (5, 6), 0.1)
    pruned_before[rng.random((5, 6)) < 0.3] = 0.0  # a previous round left exact zeros
    zeros = int((pruned_before == 0).sum())
    pairs = _distinct(rng, 8)
    pairs = np.concatenate([pairs, -pairs[:4]])  # w and -w: equal magnitudes of opposite sign
    rng.shuffle(pairs)
    k_pairs = [k for k in _cuts(np.abs(pairs)) if 4 <= k <= 8][0]
    conv = _distinct(rng, (4, 3, 3, 3), 0.05)
    return [
        Case("random 2-D weights, amount 0.5", (_distinct(rng, (6, 7)), 0.5)),
        Case("random 4-D conv weight, amount 0.7", (conv, 0.7)),
        Case("negative weights: rank by magnitude, not by value", (np.sort(_distinct(rng, 9)) - f32(3), 0.4)),
        Case("10 weights, amount 0.25: 2.5 rounds half-to-even to 2", (ten, 0.25)),
        Case("10 weights, amount 0.45: 4.5 rounds half-to-even to 4", (ten, 0.45)),
        Case("10 weights, amount 0.35: 3.5 rounds half-to-even to 4", (ten, 0.35)),
        Case("7 weights, amount 0.999: rounds to all 7", (_distinct(rng, 7), 0.999)),
        Case("int amount 3: exactly 3 entries", (_distinct(rng, (3, 4)), 3)),
        Case("int amount 1 is a count (one entry), not 100 %", (_distinct(rng, (2, 5)), 1)),
        Case("float amount 1.0 prunes everything", (_distinct(rng, (2, 3)), 1.0)),
        Case("amount 0 (int) keeps everything", (_distinct(rng, 5), 0)),
        Case("amount 0.0 keeps everything", (_distinct(rng, (2, 2)), 0.0)),
        Case("quantized weights: tied magnitudes on both sides of the cut",
             (q, _amount_for(k_tied, q.size))),
        Case("quantized weights, int amount: ties on both sides of the cut", (q[:3], _tied_cut(np.abs(q[:3])))),
        Case("already-pruned zeros go first, then the smallest others",
             (pruned_before, _amount_for(zeros + 3, pruned_before.size))),
        Case("w and -w: tied magnitudes of opposite sign", (pairs, k_pairs)),
        Case("random weights with many ties, random cut",
             (q[3:], int(rng.choice(_cuts(np.abs(q[3:]))[1:-1])))),
    ]


def _sorted_mags(w):
    return np.sort(np.abs(np.asarray(w, np.float64)).reshape(-1))


def _k(amount, size, rnd=round):
    return amount if isinstance(amount, int) else int(rnd(amount * size))


def _threshold_mask(w, amount, *, rnd=round, strict_at_kth=True, signed=False):
    mags = np.asarray(w, np.float64) if signed else np.abs(np.asarray(w, np.float64))
    k = _k(amount, mags.size, rnd)
    if k == 0:
        return np.ones(mags.shape, bool)
    t = np.sort(mags.reshape(-1))[k - 1]
    return mags > t if strict_at_kth else mags >= t


def _first_kept_strict(w, amount):
    mags = np.abs(np.asarray(w, np.float64))
    k = _k(amount, mags.size)
    if k == mags.size:
        return np.zeros(mags.shape, bool)
    return mags > np.sort(mags.reshape(-1))[k]  # the entries equal to the first kept one are pruned too


def _largest_pruned(w, amount):
    return ~magnitude_mask(-np.abs(np.asarray(w, np.float64)), amount)  # the k largest pruned


def _quantile_mask(w, amount):
    mags = np.abs(np.asarray(w, np.float64))
    if isinstance(amount, int):
        amount = amount / mags.size
    return mags > np.quantile(mags, amount)


def _one_is_one_entry(w, amount):
    return magnitude_mask(w, 1 if amount == 1.0 else amount)


register(Exercise(
    id="06.1",
    title="A magnitude mask equal to prune.l1_unstructured",
    points=3,
    reference=magnitude_prune_mask,
    cases=_magnitude_cases,
    function="magnitude_prune_mask",
    hint=(
        "First turn the amount into a number of entries, exactly as torch does: a float is a fraction of "
        "all entries and an int is already a count. Then prune exactly that many, the smallest "
        "magnitudes, even when several magnitudes are equal.",
        "Python's built-in rounding goes half to even, like torch's: 2.5 becomes 2. A threshold can prune "
        "too many or too few when the magnitude at the cut occurs more than once; pruning by rank "
        "(positions in the sorted order of the magnitudes) always prunes the exact count.",
    ),
    notebook=NOTEBOOK,
    seed=601,
    forbidden=_PRUNING,
    wrong_answers={
        "non-strict threshold: keeps the entries equal to the k-th smallest magnitude":
            lambda w, a: _threshold_mask(w, a, strict_at_kth=False),
        "strict threshold at the first kept magnitude: prunes its ties too": _first_kept_strict,
        "floor of the amount (int(amount * size))": lambda w, a: _threshold_mask(w, a, rnd=math.floor),
        "round half up (floor(amount * size + 0.5))":
            lambda w, a: _threshold_mask(w, a, rnd=lambda v: math.floor(v + 0.5)),
        "ceil of the amount": lambda w, a: _threshold_mask(w, a, rnd=math.ceil),
        "an int amount read as a fraction": lambda w, a: magnitude_mask(w, float(a) if a <= 1 else 1.0),
        "amount 1.0 read as one entry": _one_is_one_entry,
        "signed values ranked instead of magnitudes": lambda w, a: _threshold_mask(w, a, signed=True),
        "prunes the largest magnitudes": _largest_pruned,
        "interpolated quantile as the threshold": _quantile_mask,
        "returns the pruned weights instead of the mask": lambda w, a: w * magnitude_mask(w, a),
    },
))


# --- 06.2 -------------------------------------------------------------------------------------

def ln_structured_prune_mask(w: np.ndarray, amount: float | int, n: float, dim: int) -> np.ndarray:
    """Keep-mask (bool, shaped like ``w``) that prunes what ``prune.ln_structured(..., n, dim)`` prunes.

    Whole slices along ``dim`` (``w[i]`` for ``dim=0``, an output channel) are kept or pruned; a
    slice's importance is its L_n norm (``n`` is 1, 2 or ``np.inf``), and the slices of smallest
    norm go. ``amount`` counts slices, with torch's rule for floats and ints. ``dim`` may be negative.

    >>> w = np.array([[1.0, 1.0], [3.0, 0.0], [0.0, 0.5]], np.float32)
    >>> ln_structured_prune_mask(w, 1, 2, 0)
    array([[ True,  True],
           [ True,  True],
           [False, False]])
    """
    return ln_structured_mask(w, amount, n=n, dim=dim)


def _slice_norms(w: np.ndarray, n: float, dim: int) -> np.ndarray:
    moved = np.moveaxis(np.abs(w.astype(np.float64)), dim, 0).reshape(w.shape[dim], -1)
    return np.linalg.norm(moved, ord=n, axis=1)


def _well_separated(rng: np.random.Generator, shape, dim: int, scale: float = 1.0) -> np.ndarray:
    """Random weights whose slice norms along ``dim`` (L1, L2 and Linf) are at least 1e-4 apart (relative)."""
    while True:
        # each slice gets its own size, as the channels of a trained layer do
        axes = [-1 if a == dim % len(shape) else 1 for a in range(len(shape))]
        sizes = rng.uniform(0.2, 2.0, shape[dim]).reshape(axes)
        w = (scale * sizes * rng.standard_normal(shape)).astype(f32)
        ok = True
        for n in (1, 2, np.inf):
            s = np.sort(_slice_norms(w, n, dim))
            if np.any(np.diff(s) <= 1e-4 * s[1:]):
                ok = False
        if ok:
            return w


def _norms_disagree(rng: np.random.Generator, shape, k: int) -> np.ndarray:
    """Rows of different kinds (a few large entries, or many medium ones) whose L1, L2 and L-infinity
    rankings prune different sets of ``k`` rows (and whose norms are well separated)."""
    while True:
        w = _well_separated(rng, shape, 0)
        w *= (rng.random(shape) < rng.uniform(0.2, 1.0, (shape[0], 1))).astype(f32)  # some rows sparse
        norms = {n: _slice_norms(w, n, 0) for n in (1, 2, np.inf)}
        if any(np.any(np.diff(np.sort(v)) <= 1e-4 * np.sort(v)[1:]) for v in norms.values()):
            continue
        pruned = {n: frozenset(np.argsort(v)[:k].tolist()) for n, v in norms.items()}
        if len(set(pruned.values())) == 3:
            return w


def _ln_cases(rng: np.random.Generator) -> list[Case]:
    conv = _well_separated(rng, (8, 4, 3, 3), 0, 0.1)
    conv_in = _well_separated(rng, (6, 8, 3, 3), 1, 0.1)
    lin = _well_separated(rng, (10, 6), 0)
    lin_cols = _well_separated(rng, (5, 12), 1)
    tied = _well_separated(rng, (8, 5), 0)
    order = np.argsort(_slice_norms(tied, 2, 0))
    tied[order[1]] = -tied[order[0]]  # two channels, one the negation of the other: equal norms, both pruned
    dead = _well_separated(rng, (6, 2, 2, 2), 0)
    dead[2] = 0.0  # a dead channel: norm 0, pruned first
    mixed = _norms_disagree(rng, (8, 12), 3)
    return [
        Case("random conv weight, output channels (dim 0), L2, amount 0.5", (conv, 0.5, 2, 0)),
        Case("random conv weight, input channels (dim 1), L1, amount 0.5", (conv_in, 0.5, 1, 1)),
        Case("random conv weight, dim 0, L-infinity (largest magnitude), int amount 3", (conv, 3, np.inf, 0)),
        Case("random linear weight, rows (dim 0), L2, amount 0.25: 2.5 channels round to 2", (lin, 0.25, 2, 0)),
        Case("random linear weight, rows, L1, amount 0.35: 3.5 channels round to 4", (lin, 0.35, 1, 0)),
        Case("random linear weight, columns (dim -1), L2, amount 0.5", (lin_cols, 0.5, 2, -1)),
        Case("random linear weight, columns (dim 1), L-infinity, amount 0.4", (lin_cols, 0.4, np.inf, 1)),
        Case("conv weight, dim -4 (the same axis as dim 0), L2, int amount 1", (conv, 1, 2, -4)),
        Case("amount 0 keeps every channel", (lin, 0, 2, 0)),
        Case("amount 1.0 prunes every channel", (lin, 1.0, 2, 0)),
        Case("a channel and its negation: equal norms, both pruned", (tied, 2, 2, 0)),
        Case("a dead (all-zero) channel is pruned first", (dead, 1, 1, 0)),
        Case("L1, L2 and L-infinity prune different rows: L1 here", (mixed, 3, 1, 0)),
        Case("L1, L2 and L-infinity prune different rows: L-infinity here", (mixed, 3, np.inf, 0)),
        Case("L1, L2 and L-infinity prune different rows: L2 here", (mixed, 3, 2, 0)),
        Case("random conv weight, random dim and amount",
             (conv, float(rng.choice([0.25, 0.5, 0.75])), 2, 0)),
    ]


def _ln_wrong(norm=None, rnd=round, per_entry=False, largest=False, squeeze=False, axis0=False):
    def wrong(w, amount, n, dim):
        w = np.asarray(w)
        d = 0 if axis0 else dim % w.ndim
        if per_entry:
            return magnitude_mask(w, amount if isinstance(amount, int) else rnd(amount * w.shape[d]))
        norms = _slice_norms(w, n if norm is None else norm, d)
        k = _k(amount, w.shape[d], rnd)
        keep = np.ones(norms.shape, bool)
        keep[np.argsort(-norms if largest else norms, kind="stable")[:k]] = False
        if squeeze:
            return keep
        shape = [1] * w.ndim
        shape[d] = w.shape[d]
        return np.broadcast_to(keep.reshape(shape), w.shape).copy()
    return wrong


def _signed_l1(w, amount, n, dim):
    moved = np.moveaxis(np.asarray(w, np.float64), dim, 0).reshape(w.shape[dim], -1)
    keep = magnitude_mask(np.abs(moved.sum(axis=1)), amount)
    shape = [1] * w.ndim
    shape[dim % w.ndim] = w.shape[dim]
    return np.broadcast_to(keep.reshape(shape), w.shape).copy()


register(Exercise(
    id="06.2",
    title="An Ln-structured mask equal to prune.ln_structured",
    points=3,
    reference=ln_structured_prune_mask,
    cases=_ln_cases,
    function="ln_structured_prune_mask",
    hint=(
        "One number per slice along dim: the L_n norm of everything in that slice (all the other axes "
        "at once). Rank the slices by it; the amount counts slices, not entries. The mask keeps or "
        "prunes each slice whole and has the shape of w.",
        "Moving the axis dim to the front and flattening the rest gives one row per slice. The "
        "infinity norm of a row is its largest magnitude. Expand the per-slice decision back along "
        "every other axis (broadcasting) before you return it.",
    ),
    notebook=NOTEBOOK,
    seed=602,
    forbidden=_PRUNING,
    wrong_answers={
        "norm over the wrong slices (always output channels, dim 0)": _ln_wrong(axis0=True),
        "L1 norm whatever n": _ln_wrong(norm=1),
        "L2 norm whatever n": _ln_wrong(norm=2),
        "floor of amount * channels": _ln_wrong(rnd=math.floor),
        "round half up": _ln_wrong(rnd=lambda v: math.floor(v + 0.5)),
        "prunes single entries instead of whole slices": _ln_wrong(per_entry=True),
        "prunes the slices of largest norm": _ln_wrong(largest=True),
        "returns one flag per slice, not a mask shaped like w": _ln_wrong(squeeze=True),
        "signed sum instead of a norm": _signed_l1,
    },
))


# --- 06.4 -------------------------------------------------------------------------------------

def global_prune_masks(weights: list[np.ndarray], amount: float | int) -> list[np.ndarray]:
    """Keep-masks for every tensor in ``weights`` that equal ``prune.global_unstructured``'s
    (with ``L1Unstructured``): one ranking of all the magnitudes of all the tensors together.

    ``amount`` is a fraction (float) or a count (int) of *all* the entries, with torch's rule.
    Returns a list of bool masks, one per tensor, each shaped like its tensor.

    >>> m1, m2 = global_prune_masks([np.array([0.1, 0.2]), np.array([[5.0, 0.3], [4.0, 1.0]])], 0.5)
    >>> m1.tolist(), m2.tolist()
    ([False, False], [[True, False], [True, True]])
    """
    return global_magnitude_masks(weights, amount)


def _global_cases(rng: np.random.Generator) -> list[Case]:
    def layers():
        return [_distinct(rng, (6, 4), 0.05), _distinct(rng, (3, 2, 2, 2), 1.0), _distinct(rng, 7, 0.3)]

    a = layers()
    q = [_quantized(rng, (4, 6), step=0.05), _quantized(rng, (3, 3, 2), levels=3, step=0.25), _quantized(rng, 5)]
    allq = np.concatenate([np.abs(x).reshape(-1) for x in q])
    ten = [_distinct(rng, 4, 0.1), _distinct(rng, 6, 1.0)]
    return [
        Case("three layers of different scales, amount 0.5", (a, 0.5)),
        Case("three layers of different scales, amount 0.8", (layers(), 0.8)),
        Case("int amount 10 over all the layers", (layers(), 10)),
        Case("10 weights in two layers, amount 0.25: 2.5 rounds half-to-even to 2", (ten, 0.25)),
        Case("10 weights in two layers, amount 0.35: 3.5 rounds to 4", (ten, 0.35)),
        Case("quantized layers: ties across layers on both sides of the cut",
             (q, _amount_for(_tied_cut(allq), allq.size))),
        Case("a single layer in the list", ([a[0]], 0.3)),
        Case("amount 0.0 keeps everything", (a, 0.0)),
        Case("amount 1.0 prunes everything", (a, 1.0)),
        Case("random layers, random amount", (layers(), float(rng.choice([0.2, 0.4, 0.6, 0.9])))),
    ]


def _per_tensor(weights, amount):
    return [magnitude_mask(w, amount) if isinstance(amount, float) else magnitude_mask(w, min(amount, w.size))
            for w in weights]


def _normalized(weights, amount):
    scaled = [np.abs(w) / np.abs(w).max() for w in weights]
    return global_magnitude_masks(scaled, amount)


def _global_threshold(weights, amount, rnd=round, strict=True):
    mags = np.concatenate([np.abs(np.asarray(w, np.float64)).reshape(-1) for w in weights])
    k = _k(amount, mags.size, rnd)
    if k == 0:
        return [np.ones(np.shape(w), bool) for w in weights]
    t = np.sort(mags)[k - 1]
    return [(np.abs(w) > t) if strict else (np.abs(w) >= t) for w in weights]


def _flat(weights, amount):
    return np.concatenate([m.reshape(-1) for m in global_magnitude_masks(weights, amount)])


def _rounded_per_layer(weights, amount):
    if isinstance(amount, int):
        return global_magnitude_masks(weights, amount)
    k = sum(round(amount * w.size) for w in weights)
    return global_magnitude_masks(weights, int(k))


register(Exercise(
    id="06.4",
    title="Global magnitude masks equal to prune.global_unstructured",
    points=2,
    reference=global_prune_masks,
    cases=_global_cases,
    function="global_prune_masks",
    hint=(
        "Global pruning ranks the magnitudes of all the tensors together, as if they were one long "
        "vector, and prunes the smallest of that single ranking; the amount refers to the total count.",
        "Flatten and join the magnitudes, decide for the joined vector exactly as in Exercise 06.1, then "
        "cut the decision back into pieces of the tensors' sizes and shapes, in order.",
    ),
    notebook=NOTEBOOK,
    seed=603,
    forbidden=_PRUNING,
    wrong_answers={
        "per-tensor instead of global (each layer pruned by the amount)": _per_tensor,
        "each layer normalized by its largest magnitude first": _normalized,
        "the count rounded per layer and summed": _rounded_per_layer,
        "non-strict global threshold (keeps ties at the k-th smallest)":
            lambda ws, a: _global_threshold(ws, a, strict=False),
        "floor of the amount": lambda ws, a: _global_threshold(ws, a, rnd=math.floor),
        "one joined mask instead of one per tensor": _flat,
    },
))


# --- 06.3 -------------------------------------------------------------------------------------

def compress_2_4(w: np.ndarray, bits: int) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """2:4-prune the matrix ``w`` (rows, cols) and store it compressed, as sparse tensor cores read it.

    The groups are 4 neighbours along a row (``cols % 4 == 0``). In each group the 2 entries of
    largest ``|w|`` are kept; among equal magnitudes the entry further right wins (``qlearn.nm_mask``'s
    rule: the lower index is pruned first). Returns

    - ``mask``: bool, shaped like ``w``, True = kept;
    - ``values``: the kept entries, shape ``(rows, cols // 2)``, dtype of ``w``, in their order in the row;
    - ``positions``: integers, shape ``(rows, cols // 2)``, each kept entry's position 0..3 in its group;
    - ``nbytes``: an int, the compressed size: ``bits`` per value plus 2 bits per position, each part
      rounded up to whole bytes.

    >>> mask, values, positions, nbytes = compress_2_4(np.array([[0.25, -1.5, 0.5, 0.125]], np.float32), 16)
    >>> mask.tolist(), values.tolist(), positions.tolist(), nbytes
    ([[False, True, True, False]], [[-1.5, 0.5]], [[1, 2]], 5)
    """
    w = np.asarray(w)
    mask = nm_mask(w, 2, 4, axis=-1)
    rows = w.shape[0]
    values = w[mask].reshape(rows, -1)
    positions = np.nonzero(mask.reshape(rows, -1, 4))[2].reshape(rows, -1).astype(np.uint8)
    return mask, values, positions, nm_bytes(w.shape, 2, 4, bits)


def _compare_2_4(got, expected) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 4:
        what = f"{len(got)} items" if isinstance(got, (tuple, list)) else type(got).__name__
        return f"expected a tuple (mask, values, positions, nbytes), got {what}"
    names = ("mask", "values", "positions", "nbytes")
    for name, g, e in zip(names, got, expected):
        if name == "positions" and isinstance(g, np.ndarray) and g.dtype.kind in "iu" and e.dtype.kind in "iu":
            g = g.astype(e.dtype) if g.size == 0 or (g.min() >= 0 and g.max() <= 255) else g
        reason = compare_values(g, e)
        if reason is not None:
            return f"{name}: {reason}"
    return None


def _nm_cases(rng: np.random.Generator) -> list[Case]:
    ties = np.array([[1.0, 3.0, 3.0, 3.0, 2.0, 2.0, 2.0, 2.0],
                     [0.0, 0.0, 0.0, 0.0, -1.0, 1.0, 0.5, -0.5]], f32)
    square = _distinct(rng, (8, 8), 0.1)
    return [
        Case("random 4 x 16 weight, 16-bit values", (_distinct(rng, (4, 16), 0.1), 16)),
        Case("random 8 x 8 weight, int8 values (groups along rows, not down columns)", (square, 8)),
        Case("random 3 x 12 weight, 4-bit values: 9 bytes of values, 5 of positions", (_distinct(rng, (3, 12)), 4)),
        Case("one group, 8-bit values: 2 bytes of values, 4 bits of positions -> 1 byte", (_distinct(rng, (1, 4)), 8)),
        Case("negative weights: the largest magnitudes, not the largest values",
             (-np.abs(_distinct(rng, (2, 8))) - f32(0.1) * (np.arange(8) % 2).astype(f32), 16)),
        Case("ties within a group: the entry further right wins", (ties, 16)),
        Case("an all-zero row (already pruned): positions 2 and 3", (np.zeros((1, 8), f32), 32)),
        Case("random 16 x 32 weight, 32-bit values", (_distinct(rng, (16, 32), 0.05), 32)),
    ]


def _keep_two(scores: np.ndarray, axis: int = -1, tie_left: bool = False) -> np.ndarray:
    """Keep the 2 highest ``scores`` of every 4 along ``axis`` (ties: right wins, or left with tie_left)."""
    moved = np.moveaxis(scores, axis, -1)
    groups = moved.reshape(-1, 4)
    if tie_left:
        order = np.argsort(-groups, axis=1, kind="stable")[:, 2:]  # the 2 lowest, the rightmost of ties
    else:
        order = np.argsort(groups, axis=1, kind="stable")[:, :2]
    keep = np.ones(groups.shape, bool)
    np.put_along_axis(keep, order, False, axis=1)
    return np.moveaxis(keep.reshape(moved.shape), -1, axis)


def _nm_wrong(axis=-1, tie_left=False, col_index=False, pos_bits=2, value_bits=None, smallest=False,
              signed=False, rnd=math.ceil, dense=False):
    def wrong(w, bits):
        w = np.asarray(w)
        rows, cols = w.shape
        scores = np.asarray(w, np.float64) if signed else np.abs(np.asarray(w, np.float64))
        mask = _keep_two(-scores if smallest else scores, axis=axis, tie_left=tie_left)
        kept = int(mask.sum())
        per_row = mask.sum(axis=1)
        if (per_row == cols // 2).all():
            values = w[mask].reshape(rows, -1)
            where = np.nonzero(mask)[1] if col_index else np.nonzero(mask.reshape(rows, -1, 4))[2]
            positions = where.reshape(rows, -1).astype(np.uint8)
        else:
            values, positions = w * mask, np.nonzero(mask)[1]
        vb = bits if value_bits is None else value_bits
        nbytes = int(rnd(kept * vb / 8) + rnd(kept * pos_bits / 8))
        if dense:
            return mask, w * mask, positions, nbytes
        return mask, values, positions, nbytes
    return wrong


register(Exercise(
    id="06.3",
    title="A 2:4 mask, compressed, with its size",
    points=4,
    reference=compress_2_4,
    cases=_nm_cases,
    function="compress_2_4",
    compare=_compare_2_4,
    hint=(
        "Cut every row into groups of four neighbours. In each group exactly two entries survive: the two "
        "largest magnitudes, and when magnitudes are equal the stated rule decides. The compressed form "
        "keeps only the survivors, plus where each sat inside its group.",
        "A position inside a group of four takes 2 bits. A stable sort of the magnitudes in increasing "
        "order puts the earlier of two equal entries first, which is the one to prune. Count the bytes of "
        "the values and of the positions separately, each rounded up.",
    ),
    notebook=NOTEBOOK,
    seed=604,
    forbidden=_PRUNING + _STORAGE,
    wrong_answers={
        "2:4 along the wrong axis (groups down the columns)": _nm_wrong(axis=0),
        "ties broken the wrong way (the left entry kept)": _nm_wrong(tie_left=True),
        "positions counted as column indices in the row": _nm_wrong(col_index=True),
        "positions counted as one byte each": _nm_wrong(pos_bits=8),
        "values counted at 32 bits whatever bits": _nm_wrong(value_bits=32),
        "bytes rounded down": _nm_wrong(rnd=math.floor),
        "keeps the two smallest magnitudes": _nm_wrong(smallest=True),
        "keeps the two largest values (signed)": _nm_wrong(signed=True),
        "values left in place (the dense pruned matrix)": _nm_wrong(dense=True),
    },
))


# --- 06.5 -------------------------------------------------------------------------------------

def break_even_sparsity(rows: int, cols: int, bits: int, fmt: str) -> float | None:
    """Smallest sparsity ``1 - nnz / (rows * cols)`` at which ``fmt`` needs no more bytes than dense.

    ``fmt`` is ``"bitmap"`` or ``"csr"``, laid out as in section 7 (values of ``bits`` bits; the
    narrowest unsigned integer of 1, 2, 4 or 8 bytes for every index; each part rounded up to whole
    bytes). ``nnz`` is a whole number; returns ``None`` if no ``nnz`` fits, not even 0.

    >>> break_even_sparsity(64, 576, 32, "bitmap")
    0.03125
    """
    if fmt not in ("bitmap", "csr"):
        raise ValueError(f"fmt must be 'bitmap' or 'csr', got {fmt!r}")
    return _break_even((rows, cols), bits, fmt)


def _break_even_cases(rng: np.random.Generator) -> list[Case]:
    r, c = int(rng.integers(8, 65)), int(rng.integers(9, 300))
    return [
        Case("64 x 576 int8 layer, CSR (2-byte column indices and row pointers)", (64, 576, 8, "csr")),
        Case("64 x 576 float32 layer, CSR", (64, 576, 32, "csr")),
        Case("64 x 576 int8 layer, bitmap", (64, 576, 8, "bitmap")),
        Case("64 x 576 4-bit layer, bitmap", (64, 576, 4, "bitmap")),
        Case("64 x 576 float32 layer, bitmap", (64, 576, 32, "bitmap")),
        Case("1-bit values, bitmap: only an empty tensor breaks even", (16, 16, 1, "bitmap")),
        Case("256 columns: column indices 0..255 fit one byte", (10, 256, 8, "csr")),
        Case("257 columns: column indices need two bytes", (10, 257, 8, "csr")),
        Case("256 x 512 fp16: row pointers up to nnz, still 2 bytes at the break-even", (256, 512, 16, "csr")),
        Case("3 x 5 4-bit layer, bitmap: partial bytes round up", (3, 5, 4, "bitmap")),
        Case("1 x 8 1-bit row, CSR: never fits (returns None)", (1, 8, 1, "csr")),
        Case("random layer, 8-bit CSR", (r, c, 8, "csr")),
        Case("random layer, 16-bit bitmap", (r, c, 16, "bitmap")),
    ]


def _idx(v):
    for width in (1, 2, 4, 8):
        if v < 256**width:
            return width
    return 8


def _be_wrong(strict=False, col_of=lambda cols: cols - 1, ptr_rows=lambda rows: rows + 1, ptr_width=None,
              col_width=None, floor=False, density=False, none_as=None):
    def wrong(rows, cols, bits, fmt):
        size = rows * cols

        def up(count, b):
            return count * b // 8 if floor else -(-count * b // 8)

        dense = up(size, bits)

        def cost(nnz):
            if fmt == "bitmap":
                return up(size, 1) + up(nnz, bits)
            cw = col_width if col_width is not None else _idx(col_of(cols))
            pw = ptr_width if ptr_width is not None else _idx(nnz)
            return up(nnz, bits) + nnz * cw + ptr_rows(rows) * pw

        fits = [nnz for nnz in range(size + 1) if (cost(nnz) < dense if strict else cost(nnz) <= dense)]
        if not fits:
            return none_as
        return max(fits) / size if density else 1.0 - max(fits) / size
    return wrong


register(Exercise(
    id="06.5",
    title="The storage break-even sparsity",
    points=3,
    reference=break_even_sparsity,
    cases=_break_even_cases,
    function="break_even_sparsity",
    rtol=1e-12,
    hint=(
        "Write the bytes of each format as a function of the number of kept entries, with every part "
        "rounded up to whole bytes, and compare with the dense bytes. The answer is the sparsity of the "
        "largest count of kept entries that still fits; 'no more than' includes equality.",
        "The column index of CSR goes up to cols - 1 and a row pointer up to nnz, and there are rows + 1 "
        "pointers: their widths follow from those largest values. Trying every count from 0 to the size is "
        "fast enough here; bytes never shrink as the count grows.",
    ),
    notebook=NOTEBOOK,
    seed=605,
    forbidden=_STORAGE,
    wrong_answers={
        "strictly fewer bytes than dense (< instead of <=)": _be_wrong(strict=True),
        "column index width from cols instead of cols - 1": _be_wrong(col_of=lambda cols: cols),
        "CSR indices counted at 4 bytes (int32) whatever the size": _be_wrong(col_width=4, ptr_width=4),
        "row pointers at 4 bytes whatever nnz": _be_wrong(ptr_width=4),
        "rows row pointers instead of rows + 1": _be_wrong(ptr_rows=lambda rows: rows),
        "no row pointers at all": _be_wrong(ptr_rows=lambda rows: 0),
        "bytes rounded down": _be_wrong(floor=True),
        "returns the density (nnz / size) instead of the sparsity": _be_wrong(density=True),
        "returns 1.0 instead of None when nothing fits": _be_wrong(none_as=1.0),
    },
))


# --- graded questions ("predict, then run") ---------------------------------------------------

register(Question(
    id="06.Q1", title="Does one threshold give one sparsity?", points=1, notebook=NOTEBOOK,
    variable="q1_answer",
    choices={"a": "about the same fraction in every layer: the threshold sets the sparsity",
             "b": "a much larger fraction of the deep 64-channel convolution than of the first convolution",
             "c": "a much larger fraction of the first convolution than of the deep 64-channel convolution"},
    answer="b",
    explanation=("A fixed threshold prunes whatever lies below it, so the sparsity follows each layer's "
                 "scale: the deep convolution's weights are about ten times smaller than the first "
                 "convolution's, and most of them fall under the threshold. The amount rule of torch fixes "
                 "the count instead, and lets the threshold follow."),
    hint=("Compare the typical magnitudes of the two layers' weights (section 1 printed them).",),
))

register(Question(
    id="06.Q2", title="How many of 10 weights does amount=0.25 prune?", points=1, notebook=NOTEBOOK,
    variable="q2_answer", choices=None, answer=2,
    explanation=("torch computes round(0.25 * 10) = round(2.5) with Python's round, which goes half to "
                 "even: 2, not 3. amount=0.35 gives round(3.5) = 4."),
    hint=("Python's built-in round does not round halves up.",),
))

register(Question(
    id="06.Q3", title="Prune 50 %, then 50 % again: what sparsity?", points=1, notebook=NOTEBOOK,
    variable="q3_answer", choices=None, answer=0.75,
    explanation=("The second call's amount refers to the entries still unpruned (torch's PruningContainer "
                 "ranks only those): 50 % of the remaining half, 75 % in total."),
    hint=("Does the second amount count the entries that are already zero?",),
))

register(Question(
    id="06.Q4", title="Which layer does global pruning hit hardest?", points=1, notebook=NOTEBOOK,
    variable="q4_answer",
    choices={"a": "conv1, the first convolution", "b": "layer3.1.conv2, the last 64-channel convolution",
             "c": "fc, the classifier", "d": "all layers get the same sparsity"},
    answer="b",
    explanation=("One global threshold prunes the layers with the smallest weights most. The last "
                 "64-channel convolution has the smallest typical magnitude (many inputs per output, so "
                 "training keeps each weight small); the first convolution and the classifier have the "
                 "largest and lose the least."),
    hint=("A global ranking compares magnitudes across layers: which layer's weights are smallest?",),
))

register(Question(
    id="06.Q5", title="Does CSR pay off sooner for int8 or for float32 weights?", points=1, notebook=NOTEBOOK,
    variable="q5_answer",
    choices={"a": "int8 needs a higher sparsity than float32 before CSR is smaller than dense",
             "b": "float32 needs a higher sparsity than int8",
             "c": "the same sparsity: the format does not depend on the value width"},
    answer="a",
    explanation=("Every kept value carries a 2-byte column index whatever its width. Next to a 4-byte "
                 "float that is a 50 % overhead, next to a 1-byte int8 value 200 %: int8 weights must be "
                 "about two thirds zeros before CSR wins, float32 weights about a third."),
    hint=("Compare the cost of an index with the cost of the value it comes with.",),
))
