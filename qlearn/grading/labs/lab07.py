"""Lab 07 (``07_pruning_the_resnet``): sensitivity, schedules, channel surgery, Deep Compression.

    07.1  choose_sparsities(scan, sparsities, sizes, target)
                                        per-layer sparsities; graded on the OUTCOME: the shipped ResNet
                                        pruned by magnitude with them, no fine-tuning, must lose at most
                                        ``MAX_DROP`` of accuracy on the scan subset while pruning at
                                        least ``target`` of all conv/linear weights
    07.2  cubic_sparsity(step, final, initial, begin, end)
                                        s_f + (s_i - s_f) (1 - (t - t0) / (t1 - t0))^3, clamped outside
    07.3  slice_group(params, amount)   channel pruning of one conv -> BN -> conv group (numpy arrays)
    07.4  kmeans_codebook(w, n_bits, n_iter)
                                        1-D k-means from the linear initialisation: (centroids, codes)
    07.5  huffman_lengths(counts)       code length of each symbol of an optimal prefix code

07.1 is measured in the grader's own process (``_outcome``): it loads the shipped checkpoint and the
first ``SCAN_IMAGES`` test images, prunes every layer with ``qlearn.pruning.magnitude_mask`` and
evaluates. Torch is imported there, never when this module is imported. The scan the learner
receives is a literal table below (from ``data/checkpoints/pruned_results.json``), so building the
cases reads no file.

07.5 accepts any optimal code: Huffman's lengths depend on how ties are broken, but every optimal
prefix code has the same total length, so the check asks for a complete prefix code (Kraft sum 1)
whose total bits equal the optimum.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from qlearn.grading.compare import compare_values
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register
from qlearn.huffman import huffman_code_lengths
from qlearn.schedule import cubic_sparsity as _cubic
from qlearn.weight_sharing import kmeans_1d

__all__ = [
    "MAX_DROP",
    "RESULTS",
    "SCAN_IMAGES",
    "SCAN_SPARSITIES",
    "LAYER_SIZES",
    "TARGET_FRACTION",
    "choose_sparsities",
    "cubic_sparsity",
    "dense_scan_accuracy",
    "huffman_lengths",
    "kmeans_codebook",
    "outcome",
    "scan_table",
    "slice_group",
]

NOTEBOOK = "07_pruning_the_resnet"

# --- 07.1: the sensitivity scan (pruned_results.json, "sensitivity") ----------------------------

SCAN_IMAGES = 500  #: the first 500 test images
SCAN_SPARSITIES = (0.5, 0.7, 0.8, 0.9)
#: weights of every prunable layer of the shipped ResNet-14
LAYER_SIZES = {
    "conv1": 144,
    "layer1.0.conv1": 2304, "layer1.0.conv2": 2304, "layer1.1.conv1": 2304, "layer1.1.conv2": 2304,
    "layer2.0.conv1": 4608, "layer2.0.conv2": 9216, "layer2.0.downsample.0": 512,
    "layer2.1.conv1": 9216, "layer2.1.conv2": 9216,
    "layer3.0.conv1": 18432, "layer3.0.conv2": 36864, "layer3.0.downsample.0": 2048,
    "layer3.1.conv1": 36864, "layer3.1.conv2": 36864,
    "fc": 640,
}
RESULTS = "checkpoints/pruned_results.json"  #: under the data root: the full runs of tools/train_pruned.py
TARGET_FRACTION = 0.6  #: at least this fraction of all conv/linear weights pruned
MAX_DROP = 0.03  #: at most this accuracy lost on the scan subset, without fine-tuning
_DENSE_SCAN_ACCURACY: float | None = None

_CACHE: dict = {}


def scan_table() -> dict[str, list[float]]:
    """Accuracy on the scan subset with one layer pruned at each of ``SCAN_SPARSITIES`` (the full run)."""
    import json

    from qlearn.datasets import data_root

    path = data_root() / RESULTS
    data = json.loads(path.read_text())["sensitivity"]
    if tuple(data["sparsities"]) != SCAN_SPARSITIES or data["scan_images"] != SCAN_IMAGES:
        raise ValueError(f"{path} holds a scan at {data['sparsities']} on {data['scan_images']} images; "
                         f"lab 07 expects {SCAN_SPARSITIES} on {SCAN_IMAGES}: rerun tools/train_pruned.py")
    return data["accuracy"]


def _scan_setup():
    """The shipped model and the scan subset, loaded once per process (torch imported here)."""
    if "model" not in _CACHE:
        import torch

        from qlearn.bridge.data import make_loader
        from qlearn.bridge.pretrained import load_pretrained

        torch.set_num_threads(max(1, min(2, torch.get_num_threads())))
        _CACHE["model"] = load_pretrained()
        _CACHE["batches"] = list(make_loader("test", 500, limit=SCAN_IMAGES))
        _CACHE["results"] = {}
    return _CACHE["model"], _CACHE["batches"]


def outcome(sparsities: Mapping[str, float]) -> tuple[float, float]:
    """``(fraction of conv/linear weights pruned, accuracy on the scan subset)`` of the shipped model
    pruned layer by layer with ``magnitude_mask`` at ``sparsities`` (missing layers stay dense)."""
    import torch

    from qlearn.bridge.ptq import evaluate
    from qlearn.pruning import magnitude_mask

    model, batches = _scan_setup()
    key = tuple(sorted((n, float(s)) for n, s in sparsities.items()))
    if key not in _CACHE["results"]:
        pruned = sum(round(float(s) * LAYER_SIZES[n]) for n, s in sparsities.items())
        fraction = pruned / sum(LAYER_SIZES.values())
        layers = dict(model.named_modules())
        saved = {}
        try:
            with torch.no_grad():
                for name, s in sparsities.items():
                    w = layers[name].weight
                    saved[name] = w.detach().clone()
                    mask = magnitude_mask(saved[name].numpy(), float(s))
                    w.copy_(saved[name] * torch.from_numpy(mask).to(w.dtype))
                accuracy = evaluate(model, batches)
        finally:
            with torch.no_grad():
                for name, w in saved.items():
                    layers[name].weight.copy_(w)
        _CACHE["results"][key] = (fraction, accuracy)
    return _CACHE["results"][key]


def dense_scan_accuracy() -> float:
    """Accuracy of the unpruned shipped model on the scan subset (measured once)."""
    return outcome({})[1]


def choose_sparsities(scan, sparsities, sizes, target):
    """Per-layer sparsities (a dict layer -> fraction in [0, 1]) that prune at least ``target`` of all
    the weights while the accuracy stays as high as possible (graded: within MAX_DROP of dense).

    Reference: greedy. Start dense; repeatedly raise the sparsity of the layer whose next step up
    costs the least accuracy per weight pruned (from the scan), until ``target`` is reached.
    """
    sparsities = [float(s) for s in sparsities]
    total = sum(sizes.values())
    level = {name: -1 for name in scan}  # index into sparsities, -1 = dense
    acc0 = max(max(v) for v in scan.values())

    def pruned():
        return sum(round(sparsities[i] * sizes[n]) for n, i in level.items() if i >= 0)

    while pruned() < target * total:
        best, best_cost = None, math.inf
        for name, i in level.items():
            if i + 1 >= len(sparsities):
                continue
            before = acc0 if i < 0 else scan[name][i]
            gain = sizes[name] * (sparsities[i + 1] - (sparsities[i] if i >= 0 else 0.0))
            cost = max(before - scan[name][i + 1], 0.0) / gain + 1e-12 / gain
            if cost < best_cost:
                best, best_cost = name, cost
        if best is None:
            break
        level[best] += 1
    return {n: sparsities[i] for n, i in level.items() if i >= 0}


def _choose_cases(rng: np.random.Generator) -> list[Case]:
    scan = {n: np.array(v) for n, v in scan_table().items()}
    sizes = dict(LAYER_SIZES)
    order = list(scan)
    shuffled = [order[i] for i in rng.permutation(len(order))]
    return [
        Case("the scan of the notebook, target 60%", (scan, list(SCAN_SPARSITIES), sizes, TARGET_FRACTION)),
        Case("only 0.5, 0.7 and 0.9 offered", ({n: v[[0, 1, 3]] for n, v in scan.items()}, [0.5, 0.7, 0.9],
                                                 sizes, TARGET_FRACTION)),
        Case("the layers in another order", ({n: scan[n] for n in reversed(order)}, list(SCAN_SPARSITIES),
                                             sizes, TARGET_FRACTION)),
        Case("random order of the layers", ({n: scan[n] for n in shuffled}, list(SCAN_SPARSITIES), sizes,
                                            TARGET_FRACTION)),
    ]


def _compare_outcome(got, expected) -> str | None:
    if not isinstance(got, dict):
        return f"returned a {type(got).__name__}; return a dict layer name -> sparsity"
    unknown = [n for n in got if n not in LAYER_SIZES]
    if unknown:
        return f"unknown layer name(s) {unknown[:3]}; the layers are the keys of the scan"
    for name, s in got.items():
        if isinstance(s, bool) or not isinstance(s, (int, float, np.integer, np.floating)) or not 0 <= s <= 1:
            return f"the sparsity of {name!r} is {s!r}; each must be a number in [0, 1]"
    fraction, accuracy = outcome(got)
    dense = dense_scan_accuracy()
    if fraction < TARGET_FRACTION:
        return (f"prunes {fraction:.2%} of the weights, the target is at least {TARGET_FRACTION:.0%} "
                f"(accuracy {accuracy:.2%})")
    if accuracy < dense - MAX_DROP - 1e-9:
        return (f"prunes {fraction:.2%} of the weights, but the accuracy on the scan subset is {accuracy:.2%}, "
                f"{100 * (dense - accuracy):.1f} points below the dense {dense:.2%}; at most "
                f"{100 * MAX_DROP:.0f} points may be lost")
    return None


def _uniform(fraction):
    def choose(scan, sparsities, sizes, target):
        return {n: fraction for n in scan}
    return choose


def _greedy_by_size(scan, sparsities, sizes, target):
    """A typical wrong answer: prune the biggest layers hardest, ignoring the scan."""
    out, total, pruned = {}, sum(sizes.values()), 0
    for name in sorted(sizes, key=sizes.get, reverse=True):
        out[name] = max(sparsities)
        pruned += round(max(sparsities) * sizes[name])
        if pruned >= target * total:
            break
    return out


register(Exercise(
    id="07.1",
    title="Choose per-layer sparsities from the sensitivity scan",
    points=3,
    reference=choose_sparsities,
    cases=_choose_cases,
    function="choose_sparsities",
    hint=(
        "Each layer costs accuracy and gives weights: spend the pruning where the scan says it is cheap "
        "and where the layer is big.",
        "A greedy rule works: keep raising the sparsity of the layer whose next step loses the least "
        "accuracy per weight it prunes, until the pruned weights reach the target fraction of all weights.",
        "Pruned layers interact: the losses of several layers add up to more than the scan suggests, so "
        "leave a margin, and leave the small, sensitive layers (the first conv, the shortcuts, the "
        "classifier) dense.",
    ),
    notebook=NOTEBOOK,
    seed=7001,
    compare=_compare_outcome,
    forbidden=("qlearn.grading.labs.lab07.choose_sparsities",),
    wrong_answers={
        "prunes every layer uniformly at 60%": _uniform(0.6),
        "prunes every layer at 90%": _uniform(0.9),
        "prunes too little": _uniform(0.3),
        "prunes the biggest layers hardest, ignoring the scan": _greedy_by_size,
    },
))


# --- 07.2 -------------------------------------------------------------------------------------

def cubic_sparsity(step, final, initial, begin, end):
    """Zhu & Gupta's target sparsity at ``step``: ``initial`` before ``begin``, ``final`` from ``end``,
    ``final + (initial - final) * (1 - (step - begin) / (end - begin)) ** 3`` in between."""
    return _cubic(step, final, initial=initial, begin=begin, end=end)


def _cubic_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        Case("the first step: begin", (0, 0.8, 0.0, 0, 100)),
        Case("a quarter of the way", (25, 0.8, 0.0, 0, 100)),
        Case("halfway, from an initial sparsity of 0.5", (50, 0.9, 0.5, 0, 100)),
        Case("before begin: the initial sparsity", (3, 0.9, 0.2, 10, 50)),
        Case("at end", (50, 0.9, 0.2, 10, 50)),
        Case("after end: the final sparsity, not beyond", (80, 0.9, 0.2, 10, 50)),
        Case("begin == end: a one-shot jump, at the step itself", (7, 0.7, 0.0, 7, 7)),
        Case("begin == end: the step before", (6, 0.7, 0.0, 7, 7)),
        Case("late begin, three quarters of the way", (85, 0.6, 0.0, 40, 100)),
    ]
    for i in range(4):
        begin = int(rng.integers(0, 50))
        end = begin + int(rng.integers(1, 200))
        cases.append(Case(f"random schedule {i + 1}", (int(rng.integers(0, end + 20)), round(float(rng.uniform(0.5, 0.95)), 3),
                                                       round(float(rng.uniform(0, 0.4)), 3), begin, end)))
    return cases


def _cubic_wrong(kind):
    def wrong(step, final, initial, begin, end):
        if kind == "linear":
            p = min(max((step - begin) / max(end - begin, 1), 0.0), 1.0)
            return initial + (final - initial) * p
        if kind == "progress cubed":
            p = min(max((step - begin) / max(end - begin, 1), 0.0), 1.0)
            return initial + (final - initial) * p**3
        if kind == "no clamp":
            p = (step - begin) / max(end - begin, 1)
            return final + (initial - final) * (1 - p) ** 3
        if kind == "swapped":
            p = min(max((step - begin) / max(end - begin, 1), 0.0), 1.0)
            return initial + (final - initial) * (1 - p) ** 3
        raise AssertionError(kind)
    return wrong


register(Exercise(
    id="07.2",
    title="The cubic sparsity schedule of Zhu & Gupta",
    points=2,
    reference=cubic_sparsity,
    cases=_cubic_cases,
    function="cubic_sparsity",
    hint=(
        "Outside the window from begin to end the schedule is flat: what is the sparsity before pruning "
        "starts, and after it ends?",
        "Inside, measure the progress as the fraction of the window already done (0 at begin, 1 at end); "
        "the remaining gap to the final sparsity shrinks as the cube of one minus the progress.",
        "When begin equals end there is no window: the sparsity jumps at that step, so test the step "
        "against end before dividing.",
    ),
    notebook=NOTEBOOK,
    seed=7002,
    rtol=1e-9,
    atol=1e-12,
    forbidden=("qlearn.schedule.cubic_sparsity", "qlearn.grading.labs.lab07.cubic_sparsity"),
    wrong_answers={
        "linear ramp instead of the cube": _cubic_wrong("linear"),
        "cubes the progress (slow start, fast end)": _cubic_wrong("progress cubed"),
        "no clamp outside [begin, end]": _cubic_wrong("no clamp"),
        "initial and final swapped in the formula": _cubic_wrong("swapped"),
    },
))


# --- 07.3 -------------------------------------------------------------------------------------

_GROUP_KEYS = ("conv1.weight", "bn1.weight", "bn1.bias", "bn1.running_mean", "bn1.running_var", "conv2.weight")


def slice_group(params, amount):
    """Remove the ``round(amount * C)`` inner channels of smallest L2 filter norm from a conv->BN->conv group.

    ``params`` holds numpy arrays: ``conv1.weight`` ``[C, C_in, k, k]``, the four BN vectors ``[C]``
    and ``conv2.weight`` ``[C_out, C, k, k]``. Returns ``(keep, sliced)``: the kept channel indices
    (increasing, int64) and a dict with the same keys holding the sliced arrays (kept channels in
    their original order). Ties in the norm: the lower index is removed first (as torch's
    ``ln_structured`` ranks them here). ``amount`` rounds half-to-even, like Python's ``round``.
    """
    w1 = np.asarray(params["conv1.weight"])
    channels = w1.shape[0]
    k = round(amount * channels)
    norms = np.sqrt((w1.astype(np.float64) ** 2).reshape(channels, -1).sum(axis=1))
    removed = np.argsort(norms, kind="stable")[:k]
    keep = np.setdiff1d(np.arange(channels), removed).astype(np.int64)
    sliced = {key: np.asarray(params[key])[keep] for key in _GROUP_KEYS[:5]}
    sliced["conv2.weight"] = np.asarray(params["conv2.weight"])[:, keep]
    return keep, sliced


def _group(rng, c_in, c, c_out, k=3, ties=False):
    params = {
        "conv1.weight": rng.normal(0, 0.2, (c, c_in, k, k)).astype(np.float32),
        "bn1.weight": rng.uniform(0.5, 1.5, c).astype(np.float32),
        "bn1.bias": rng.normal(0, 0.1, c).astype(np.float32),
        "bn1.running_mean": rng.normal(0, 0.3, c).astype(np.float32),
        "bn1.running_var": rng.uniform(0.2, 2.0, c).astype(np.float32),
        "conv2.weight": rng.normal(0, 0.2, (c_out, c, k, k)).astype(np.float32),
    }
    if ties:  # channel 3 is channel 1 negated: the same norm; channel 0 is small
        params["conv1.weight"][3] = -params["conv1.weight"][1]
        params["conv1.weight"][0] *= 0.01
    return params


def _slice_cases(rng: np.random.Generator) -> list[Case]:
    l1_trap = _group(rng, 2, 4, 3, k=1)
    # channel 0: L1 norm small, L2 norm large (one big weight); channel 1: the other way round
    l1_trap["conv1.weight"][:] = 0.1
    l1_trap["conv1.weight"][0, 0, 0, 0] = 1.0
    l1_trap["conv1.weight"][0, 1, 0, 0] = 0.0
    l1_trap["conv1.weight"][1] = 0.45
    return [
        Case("half of 8 inner channels", (_group(rng, 4, 8, 6), 0.5)),
        Case("a norm tie: the lower index goes first", (_group(rng, 3, 6, 5, ties=True), 0.5)),
        Case("amount 0.25 of 6 rounds half-to-even: 1.5 -> 2", (_group(rng, 2, 6, 4), 0.25)),
        Case("amount 0: everything kept", (_group(rng, 2, 5, 3), 0.0)),
        Case("L2, not L1: one large weight outweighs many small ones", (l1_trap, 0.25)),
        Case("C_out != C_in, a 1x1 group", (_group(rng, 5, 10, 7, k=1), 0.7)),
        Case("random group, as in layer1 (16 channels)", (_group(rng, 16, 16, 16), 0.5)),
    ]


def _slice_wrong(kind):
    def wrong(params, amount):
        w1 = np.asarray(params["conv1.weight"])
        c = w1.shape[0]
        k = round(amount * c)
        flat = w1.astype(np.float64).reshape(c, -1)
        norms = np.abs(flat).sum(axis=1) if kind == "l1" else np.sqrt((flat ** 2).sum(axis=1))
        if kind == "conv2 norm":
            w2 = np.asarray(params["conv2.weight"]).astype(np.float64)
            norms = np.sqrt((np.moveaxis(w2, 1, 0).reshape(c, -1) ** 2).sum(axis=1))
        order = np.argsort(norms, kind="stable")
        if kind == "keeps the smallest":
            keep = np.sort(order[: c - k])
        elif kind == "largest first order":
            keep = order[::-1][: c - k]
        else:
            keep = np.sort(order[k:])
        keep = keep.astype(np.int64)
        sliced = {key: np.asarray(params[key])[keep] for key in _GROUP_KEYS[:5]}
        w2 = np.asarray(params["conv2.weight"])
        sliced["conv2.weight"] = w2[:, keep]
        if kind == "conv2 rows":
            sliced["conv2.weight"] = w2[keep] if w2.shape[0] == c else w2[:, keep] * 0
        if kind == "forgets running stats":
            sliced["bn1.running_mean"] = np.asarray(params["bn1.running_mean"])
            sliced["bn1.running_var"] = np.asarray(params["bn1.running_var"])
        return keep, sliced
    return wrong


register(Exercise(
    id="07.3",
    title="Slice one conv -> BatchNorm -> conv group",
    points=3,
    reference=slice_group,
    cases=_slice_cases,
    function="slice_group",
    hint=(
        "An inner channel is an output of the first conv, a feature of the BatchNorm and an input of the "
        "second conv: all three must lose the same channels.",
        "Rank the channels by the L2 norm of their whole filter in the first conv; the second conv keeps "
        "all its outputs and loses input channels, which sit on its second axis.",
        "The BatchNorm has four per-channel vectors, two of them buffers (the running statistics): slice "
        "all four, and keep the surviving channels in increasing order.",
    ),
    notebook=NOTEBOOK,
    seed=7003,
    forbidden=("qlearn.bridge.surgery.slice_conv_bn_conv", "qlearn.bridge.surgery.block_keep_indices",
               "qlearn.bridge.surgery.prune_block_channels", "qlearn.pruning.ln_structured_mask",
               "qlearn.grading.labs.lab07.slice_group"),
    wrong_answers={
        "ranks by the L1 norm": _slice_wrong("l1"),
        "ranks by the second conv's filters": _slice_wrong("conv2 norm"),
        "keeps the smallest channels": _slice_wrong("keeps the smallest"),
        "keeps the channels largest first, not in their order": _slice_wrong("largest first order"),
        "slices the second conv's outputs (axis 0)": _slice_wrong("conv2 rows"),
        "forgets the running statistics": _slice_wrong("forgets running stats"),
    },
))


# --- 07.4 -------------------------------------------------------------------------------------

def kmeans_codebook(w, n_bits, n_iter):
    """k-means weight sharing of ``w`` with ``2**n_bits`` clusters: ``(centroids float64, codes int64)``.

    Linear initialisation over ``[min(w), max(w)]``; each round assigns every weight to its nearest
    centroid (ties: the lower index) and moves each centroid to the mean of its weights (an empty
    cluster keeps its centroid); at most ``n_iter`` rounds, stopping when no code changes. ``codes``
    has the shape of ``w`` and are the assignment to the returned centroids.
    """
    centroids, codes = kmeans_1d(w, 2**n_bits, n_iter)
    return centroids, codes.astype(np.int64)


def _kmeans_cases(rng: np.random.Generator) -> list[Case]:
    bimodal = np.concatenate([rng.normal(-0.3, 0.05, 40), rng.normal(0.3, 0.05, 40)]).astype(np.float32)
    return [
        Case("a tiny example you can follow by hand", (np.array([0.0, 0.1, 0.9, 1.0, 5.0], np.float32), 2, 10)),
        Case("an empty cluster keeps its centroid", (np.array([-1.0, -0.9, 1.0, 0.95, 0.9], np.float32), 2, 10)),
        Case("n_iter = 0: the linear initialisation and its codes", (rng.normal(0, 1, 20).astype(np.float32), 2, 0)),
        Case("n_iter = 1: one update", (rng.normal(0, 1, 30).astype(np.float32), 2, 1)),
        Case("bimodal weights (a pruned layer's survivors), 3 bits", (bimodal, 3, 20)),
        Case("a 2-D weight: codes keep its shape", (rng.normal(0, 0.1, (4, 6)).astype(np.float32), 2, 20)),
        Case("all weights equal", (np.full(6, 0.25, np.float32), 1, 5)),
        Case("random conv weight, 4 bits", (rng.normal(0, 0.1, (8, 4, 3, 3)).astype(np.float32), 4, 20)),
    ]


def _kmeans_wrong(kind):
    def wrong(w, n_bits, n_iter):
        flat = np.asarray(w, np.float64).reshape(-1)
        k = n_bits if kind == "k = n_bits" else 2**n_bits
        c = np.quantile(flat, np.linspace(0, 1, k)) if kind == "quantile init" else np.linspace(flat.min(), flat.max(), k)
        codes = first = np.abs(flat[:, None] - c[None]).argmin(1)
        for _ in range(1 if kind == "one round" else n_iter):
            for j in range(k):
                members = flat[codes == j]
                if members.size:
                    c[j] = members.mean()
                elif kind == "empty -> 0":
                    c[j] = 0.0
            new = np.abs(flat[:, None] - c[None]).argmin(1)
            if np.array_equal(new, codes):
                break
            codes = new
        if kind == "initial codes":
            codes = first
        return c, codes.reshape(np.shape(w)).astype(np.int64)
    return wrong


register(Exercise(
    id="07.4",
    title="One k-means codebook, as in Deep Compression",
    points=3,
    reference=kmeans_codebook,
    cases=_kmeans_cases,
    function="kmeans_codebook",
    hint=(
        "Lloyd's algorithm alternates two steps, assignment and update, from centroids spread evenly "
        "between the smallest and the largest weight.",
        "Assignment: the index of the nearest centroid, the lower index on a tie. Update: the mean of the "
        "weights assigned to each centroid; a centroid that received none stays where it is.",
        "The number of clusters is two to the power of the bits; stop when an assignment equals the "
        "previous one or after n_iter updates, and return the codes of the final centroids.",
    ),
    notebook=NOTEBOOK,
    seed=7004,
    rtol=1e-9,
    atol=1e-12,
    forbidden=("qlearn.weight_sharing.kmeans_1d", "qlearn.weight_sharing.share_weights",
               "qlearn.weight_sharing.linear_init", "qlearn.grading.labs.lab07.kmeans_codebook"),
    wrong_answers={
        "uses n_bits clusters instead of 2**n_bits": _kmeans_wrong("k = n_bits"),
        "initialises at the quantiles": _kmeans_wrong("quantile init"),
        "runs one round whatever n_iter": _kmeans_wrong("one round"),
        "moves an empty cluster to 0": _kmeans_wrong("empty -> 0"),
        "returns the codes of the initial centroids": _kmeans_wrong("initial codes"),
    },
))


# --- 07.5 -------------------------------------------------------------------------------------

def huffman_lengths(counts):
    """Code length of each symbol (dict symbol -> length) of an optimal prefix code for ``counts``
    (dict symbol -> positive count). A single symbol gets length 1."""
    keys = list(counts)  # any hashable symbols: coded by their position
    symbols = np.repeat(np.arange(len(keys), dtype=np.int64), [int(c) for c in counts.values()])
    return {keys[int(i)]: int(n) for i, n in huffman_code_lengths(symbols).items()}


#: counts of every case built in this process, by symbol set (each case has its own symbols), so
#: that the comparison can compute the total bits of the learner's lengths
_COUNTS: dict[frozenset, dict[int, int]] = {}


def _compare_huffman(got, expected) -> str | None:
    if not isinstance(got, dict):
        return f"returned a {type(got).__name__}; return a dict symbol -> code length"
    if set(got) != set(expected):
        return f"the symbols are {sorted(got)[:8]}, expected {sorted(expected)[:8]}"
    lengths = {}
    for s, n in got.items():
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            return f"the length of symbol {s} is {n!r}; lengths must be positive ints (a lone symbol: 1)"
        lengths[s] = int(n)
    kraft = sum(2.0 ** -n for n in lengths.values())
    if len(lengths) > 1 and kraft > 1:
        return f"no prefix code has these lengths: the Kraft sum of 2**-length is {kraft:.4f} > 1"
    counts = _COUNTS.get(frozenset(expected))
    if counts is None:  # not a case of this process: only an exact match is accepted
        return compare_values(got, expected)
    total = sum(counts[s] * n for s, n in lengths.items())
    best = sum(counts[s] * n for s, n in expected.items())
    if len(lengths) == 1:
        return None if next(iter(lengths.values())) == 1 else "a single symbol needs exactly 1 bit"
    if total != best:
        return (f"these lengths spend {total} bits on the {sum(counts.values())} symbols; an optimal "
                f"prefix code spends {best}")
    return None


def _counts_case(name: str, counts: dict[str, int]) -> Case:
    # string symbols: the grader's codec sends dicts with str keys only
    _COUNTS[frozenset(counts)] = dict(counts)
    return Case(name, (counts,))


def _huffman_cases(rng: np.random.Generator) -> list[Case]:
    cases = [
        _counts_case("four symbols", {"a": 4, "b": 2, "c": 1, "d": 1}),
        _counts_case("two symbols", {"e": 9, "f": 1}),
        _counts_case("a single symbol: 1 bit each", {"g": 10}),
        _counts_case("equal counts, 8 symbols: 3 bits each", {f"h{s}": 5 for s in range(8)}),
        _counts_case("equal counts, 5 symbols: not a power of two", {f"i{s}": 1 for s in range(5)}),
        _counts_case("geometric counts: a long, thin tree", {f"j{s}": 2 ** (10 - s) for s in range(8)}),
        _counts_case("a Shannon code is not optimal here", {"k0": 90, "k1": 6, "k2": 4}),
    ]
    for i in range(3):
        n = int(rng.integers(3, 17))
        symbols = rng.choice(np.arange(1000, 10**6), n, replace=False)
        counts = rng.integers(1, 200, n)
        cases.append(_counts_case(f"random counts {i + 1}", {f"w{int(s)}": int(c) for s, c in zip(symbols, counts)}))
    return cases


def _fixed_length(counts):
    n = max(1, math.ceil(math.log2(len(counts))))
    return {s: n for s in counts}


def _shannon(counts):
    total = sum(counts.values())
    return {s: max(1, math.ceil(-math.log2(c / total))) for s, c in counts.items()}


def _off_by_one(counts):
    return {s: n + 1 for s, n in huffman_lengths(counts).items()}


def _single_zero(counts):
    if len(counts) == 1:
        return {s: 0 for s in counts}
    return huffman_lengths(counts)


register(Exercise(
    id="07.5",
    title="Huffman code lengths",
    points=2,
    reference=huffman_lengths,
    cases=_huffman_cases,
    function="huffman_lengths",
    hint=(
        "Huffman's algorithm builds a tree from the bottom: the two rarest subtrees are merged, again and "
        "again, until one tree is left; a symbol's length is its depth.",
        "Keep the subtrees in a priority queue ordered by their total count (the heapq module); each merge "
        "makes every symbol in the two merged subtrees one bit longer.",
        "Ties may be broken any way: every optimal code has the same total. A lone symbol still needs one "
        "bit.",
    ),
    notebook=NOTEBOOK,
    seed=7005,
    compare=_compare_huffman,
    forbidden=("qlearn.huffman.huffman_code_lengths", "qlearn.huffman.huffman_codes",
               "qlearn.huffman.huffman_bits", "qlearn.grading.labs.lab07.huffman_lengths"),
    wrong_answers={
        "a fixed-length code": _fixed_length,
        "a Shannon code, ceil(-log2 p)": _shannon,
        "every length one bit too long": _off_by_one,
        "a single symbol gets 0 bits": _single_zero,
    },
))


# --- questions ----------------------------------------------------------------------------------

register(Question(
    id="07.Q1",
    title="Which layer is the most sensitive to 90% sparsity?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_answer",
    choices={"a": "layer3.1.conv2, the largest layer", "b": "conv1, the first convolution",
             "c": "fc, the classifier", "d": "they all cost about the same"},
    answer="b",
    explanation=("The first convolution has 16 filters of 9 weights: at 90% most filters keep one weight or "
                 "none, and every later layer receives the damage. The largest layers are the most redundant."),
    hint=("Think about how many weights each filter has left at 90%, and how many layers see the damage.",),
))

register(Question(
    id="07.Q2",
    title="One-shot or gradual at 90%, same budget?",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_answer",
    choices={"a": "one-shot", "b": "gradual (cubic)", "c": "the same within 0.2 points"},
    answer="a",
    explanation=("With only 40 steps, the time spent at the final masks decides: one-shot trains at them for all "
                 "40 steps and climbs back from chance to about 90%, while the gradual run reaches 90% only after "
                 "24 steps. Gradual pruning pays off when the budget is long (Zhu & Gupta train for tens of "
                 "thousands of steps)."),
    hint=("Count, for each scheme, how many of the 40 steps train at the final sparsity.",),
))

register(Question(
    id="07.Q3",
    title="MACs left after removing half of the inner channels",
    points=1,
    notebook=NOTEBOOK,
    variable="q3_macs_left",
    choices=None,
    answer=0.508,
    atol=0.02,
    explanation=("Each block's conv1 loses half its outputs and conv2 half its inputs, so both halve; they do "
                 "about 98% of the work. The first conv, the 1x1 shortcuts and the classifier keep theirs: "
                 "10 249 088 of 20 183 936 MACs remain, 0.508."),
    hint=("Which convolutions lose work, by what factor, and what share of all MACs do they do?",),
))

register(Question(
    id="07.Q4",
    title="Does 90% unstructured sparsity speed up a dense kernel?",
    points=1,
    notebook=NOTEBOOK,
    variable="q4_answer",
    choices={"a": "about 10x faster", "b": "about the same (within 30%)", "c": "about 2x faster"},
    answer="b",
    explanation=("A dense convolution multiplies every weight, zero or not: the zeros change neither the "
                 "MACs nor the memory layout. Speed needs a sparse kernel or fewer channels."),
    hint=("Does a dense convolution kernel look at the values of the weights before multiplying?",),
))
