"""Lab 08 (``08_qat_and_mixed_precision``): quantization-aware training and mixed precision.

    08.1  ste_forward_backward(x, scale, zero_point, quant_min, quant_max, grad_output)
              -> (x_hat, grad_x): a FakeQuantSTE autograd Function, forward and backward, bit for bit
              torch.fake_quantize_per_tensor_affine and its gradient
    08.2  lsq_scale_grad(x, scale, zero_point, quant_min, quant_max, grad_output)
              -> dL/dscale of LSQ with its gradient scale g = 1 / sqrt(numel * quant_max), as
              torch._fake_quantize_learnable_per_tensor_affine
    08.3  binarize_weights(w)   -> (codes in {-1, +1}, alpha = mean|w| per output channel)
    08.4  ternarize_weights(w)  -> (codes in {-1, 0, +1}, alpha) with TWN's delta = 0.7 mean|w|
    08.5  allocate_bits(sizes, sensitivity, choices, budget)
              -> bits per layer; graded on the OUTCOME: within budget, and the ResNet with those
              weight bits is at least as accurate, on a fixed subset of test images, as the threshold

08.1 and 08.2 take and return torch tensors (torch is imported inside the functions: importing this
catalogue does not import torch). 08.5's check quantizes the shipped ResNet's weights to the
returned bits and measures its accuracy on the first 500 test images in the checking process (the
grader's trusted parent), never in the learner's kernel; the threshold is the lower accuracy of
the two reference allocations (greedy, and the exact knapsack of ``qlearn.mixed_precision``)
minus 1.5 points (7 of 500 images): any sound greedy or knapsack allocation clears it, and a
uniform allocation, an inverted one or one over budget does not.

**A quirk of torch's LSQ kernel.** ``torch._fake_quantize_learnable_per_tensor_affine`` (torch 2.x,
CPU) uses the zero-point in its forward pass but treats a *negative* zero-point as 0 in the
backward's clipped terms (``quant_min - zero_point``): with ``zero_point = -1`` on ``[-4, 3]`` the
forward clips to ``(-4 + 1) * scale`` while the scale's gradient uses ``-4``. Zero-points are never
negative in practice (``quint8`` activations, symmetric weights), so 08.2's cases use ``zero_point
>= 0``, where the formula and torch agree; ``tests/test_lab08.py`` pins the quirk down.
"""

from __future__ import annotations

import functools
import json
import math

import numpy as np

from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register
from qlearn.mixed_precision import allocate_greedy

__all__ = [
    "MIXED_SUBSET",
    "THRESHOLD_MARGIN",
    "allocate_bits",
    "allocation_accuracy",
    "binarize_weights",
    "lsq_scale_grad",
    "mixed_precision_table",
    "ste_forward_backward",
    "ternarize_weights",
]

NOTEBOOK = "08_qat_and_mixed_precision"
f32 = np.float32


# --- 08.1 -------------------------------------------------------------------------------------

def ste_forward_backward(x, scale, zero_point, quant_min, quant_max, grad_output):
    """Fake-quantize ``x`` (float32 tensor) and back-propagate ``grad_output`` with the STE.

    Returns ``(x_hat, grad_x)``, both float32 tensors shaped like ``x``::

        q      = round(x * float32(1 / scale)) + zero_point         (half to even)
        x_hat  = (clamp(q, quant_min, quant_max) - zero_point) * scale
        grad_x = grad_output where quant_min <= q <= quant_max, else 0

    >>> import torch
    >>> y, g = ste_forward_backward(torch.tensor([0.26, 9.0]), 0.5, 0, -4, 3, torch.ones(2))
    >>> y.tolist(), g.tolist()
    ([0.5, 1.5], [1.0, 0.0])
    """
    import torch

    inv_scale = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(scale, dtype=torch.float32)
    q = torch.round(x * inv_scale) + zero_point
    mask = (q >= quant_min) & (q <= quant_max)
    x_hat = (torch.clamp(q, quant_min, quant_max) - zero_point) * torch.tensor(scale, dtype=torch.float32)
    return x_hat, grad_output * mask


def _near_ties(scale: np.float32, kmax: int) -> list[np.float32]:
    """Float32 values within 3 ulps of ``(k + 1/2) * scale`` for ``|k| < kmax``."""
    out = []
    for k in range(-kmax, kmax):
        base = (f32(k) + f32(0.5)) * scale
        for direction in (-np.inf, np.inf):
            x = base
            for _ in range(3):
                x = np.nextafter(x, f32(direction), dtype=f32)
                out.append(x)
        out.append(base)
    return out


def _ste_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    def t(a) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=f32))

    def g(shape) -> torch.Tensor:
        return t(rng.normal(0, 1, shape))

    cases = []
    x = rng.normal(0, 1.0, 64).astype(f32)
    cases.append(Case("uint8-style range [0, 255], zero_point 128, values inside and clipped",
                      (t(x * 40), 0.25, 128, 0, 255, g(64))))
    ties = (np.arange(-6, 6) + 0.5).astype(f32) * f32(0.125)
    cases.append(Case("ties x = (k + 1/2) * scale: round half to even", (t(ties), 0.125, 0, -8, 7, g(ties.shape))))
    edge = np.array([-1.0, -0.875, 0.875, 1.0, 0.9375, -1.0625], f32)
    cases.append(Case("values at the clipping edges: code -8 and 7 keep their gradient, -9 and 8 lose it",
                      (t(edge), 0.125, 0, -8, 7, g(6))))
    # a value where x / scale and x * (1 / scale) round differently: PyTorch uses the reciprocal
    s = f32(0.1)
    differ = [x for x in _near_ties(s, 120) if np.rint(x / s) != np.rint(x * (f32(1) / s))]
    cases.append(Case("x * (1 / scale) and x / scale round differently here: use the float32 reciprocal",
                      (t(np.concatenate([np.asarray(differ[:8], f32), [0.0, 0.05]])), 0.1, 3, -128, 127, g(10))))
    cases.append(Case("4-bit unsigned activations with zero_point 0, a 2-D batch",
                      (t(np.abs(rng.normal(0, 2, (4, 6)))), 0.3, 0, 0, 15, g((4, 6)))))
    cases.append(Case("negative zero_point, narrow range [-7, 7]",
                      (t(rng.normal(0, 1, 20)), 0.2, -2, -7, 7, g(20))))
    for i in range(3):
        shape = (int(rng.integers(1, 4)), int(rng.integers(2, 9)))
        scale = float(f32(rng.uniform(0.01, 0.5)))
        zp = int(rng.integers(-3, 4))
        cases.append(Case(f"random {i + 1}: a 2-D tensor, 4-bit signed range, random scale and zero_point",
                          (t(rng.normal(0, 8 * scale, shape)), scale, zp, -8, 7, g(shape))))
    return cases


def _ste_wrong(half_away=False, divide=False, no_mask=False, mask_strict=False, zp_sign=1, no_clamp=False):
    def wrong(x, scale, zero_point, quant_min, quant_max, grad_output):
        import torch

        s = torch.tensor(scale, dtype=torch.float32)
        v = x / s if divide else x * (torch.tensor(1.0) / s)
        r = torch.sign(v) * torch.floor(v.abs() + 0.5) if half_away else torch.round(v)
        q = r + zp_sign * zero_point
        if mask_strict:
            mask = (q > quant_min) & (q < quant_max)
        else:
            mask = (q >= quant_min) & (q <= quant_max)
        qc = q if no_clamp else torch.clamp(q, quant_min, quant_max)
        x_hat = (qc - zp_sign * zero_point) * s
        return x_hat, grad_output if no_mask else grad_output * mask
    return wrong


register(Exercise(
    id="08.1",
    title="A fake-quantize autograd Function with the straight-through estimator",
    points=3,
    reference=ste_forward_backward,
    cases=_ste_cases,
    function="ste_forward_backward",
    hint=(
        "Forward is lab 02's round trip: quantize onto the integer grid, clamp, come back to float. "
        "Backward pretends the rounding was the identity, except where the clamp cut the value off.",
        "The forward must remember, for the backward, which values were inside the range: save that "
        "boolean tensor on the context. It is decided on the code before the clamp.",
        "Bit for bit with PyTorch means its order of operations: multiply by the float32 reciprocal "
        "of the scale, round half to even, add the zero-point, then clamp, subtract the zero-point "
        "and multiply by the scale.",
    ),
    notebook=NOTEBOOK,
    seed=801,
    forbidden=(
        "torch.fake_quantize_per_tensor_affine", "torch.fake_quantize_per_channel_affine",
        "torch._fake_quantize_learnable_per_tensor_affine", "torch._fake_quantize_learnable_per_channel_affine",
        "torch.fused_moving_avg_obs_fake_quant", "torch.quantize_per_tensor", "torch.ao.quantization.FakeQuantize",
        "qlearn.bridge.qat.fake_quantize_ste", "qlearn.bridge.qat.FakeQuantizeSTE.forward",
        "qlearn.bridge.qat.lsq_fake_quantize", "qlearn.bridge.qat.LSQFakeQuantize.forward",
        "qlearn.affine.fake_quantize", "qlearn.affine.quantize",
    ),
    allowed=("torch",),
    wrong_answers={
        "rounds half away from zero": _ste_wrong(half_away=True),
        "divides by the scale instead of multiplying by its float32 reciprocal": _ste_wrong(divide=True),
        "passes every gradient (no mask for clipped values)": _ste_wrong(no_mask=True),
        "mask with strict inequalities (the edge codes lose their gradient)": _ste_wrong(mask_strict=True),
        "zero-point subtracted instead of added": _ste_wrong(zp_sign=-1),
        "missing clamp": _ste_wrong(no_clamp=True),
    },
))


# --- 08.2 -------------------------------------------------------------------------------------

def lsq_scale_grad(x, scale, zero_point, quant_min, quant_max, grad_output):
    """LSQ's gradient of the loss with respect to a per-tensor ``scale`` (a float32 tensor of shape [1]).

    With ``v = x * (1 / scale)``, ``q = round(v) + zero_point``, ``g = 1 / sqrt(x.numel() * quant_max)``::

        d x_hat / d scale = round(v) - v        if quant_min <= q <= quant_max
                          = quant_min - zero_point   if q < quant_min
                          = quant_max - zero_point   if q > quant_max
        dL/dscale = g * sum(grad_output * d x_hat / d scale)        (shape [1], float32)

    >>> import torch
    >>> lsq_scale_grad(torch.tensor([0.3, 5.0]), torch.tensor([0.5]), 0, -2, 1, torch.ones(2))
    tensor([0.9899])
    """
    import torch

    inv_scale = 1.0 / scale
    v = x * inv_scale
    q = torch.round(v) + zero_point
    x_hat = (torch.clamp(q, quant_min, quant_max) - zero_point) * scale
    inside = (x_hat - x) * inv_scale
    below = torch.tensor(float(quant_min - zero_point))
    above = torch.tensor(float(quant_max - zero_point))
    d = torch.where(q < quant_min, below, torch.where(q > quant_max, above, inside))
    g = 1.0 / math.sqrt(x.numel() * quant_max)
    return ((d * grad_output).sum() * g).reshape(1)


def _lsq_cases(rng: np.random.Generator) -> list[Case]:
    import torch

    def t(a) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(a, dtype=f32))

    def s(v: float) -> torch.Tensor:
        return torch.tensor([v], dtype=torch.float32)

    cases = [
        Case("4-bit weights [-8, 7], zero_point 0, some clipped at both ends",
             (t(rng.normal(0, 1, 200)), s(0.2), 0, -8, 7, t(rng.normal(0, 1, 200)))),
        Case("4-bit activations [0, 15] with a zero_point of 3: the clipped terms are quant_min - zp and quant_max - zp",
             (t(rng.normal(0, 2, (8, 8))), s(0.25), 3, 0, 15, t(rng.normal(0, 1, (8, 8))))),
        Case("8-bit [0, 255], nothing clipped: only round(v) - v terms",
             (t(rng.uniform(0, 10, 300)), s(0.05), 0, 0, 255, t(rng.normal(0, 1, 300)))),
        Case("everything clipped above: the gradient is g * (quant_max - zp) * sum(grad)",
             (t(rng.uniform(50, 60, 30)), s(1.0), 0, -2, 1, t(rng.normal(0, 1, 30)))),
        Case("2-bit [-2, 1] on a 4-D tensor: g uses all its elements",
             (t(rng.normal(0, 1, (2, 3, 3, 3))), s(0.5), 0, -2, 1, t(rng.normal(0, 1, (2, 3, 3, 3))))),
    ]
    for i in range(3):
        n = int(rng.integers(20, 400))
        bits = int(rng.choice([2, 3, 4, 8]))
        lo, hi = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        cases.append(Case(f"random {i + 1}: random length, 2 to 8 bits, zero_point 0 or 1",
                          (t(rng.normal(0, 1, n)), s(float(f32(rng.uniform(0.05, 0.6)))), int(rng.integers(0, 2)),
                           lo, hi, t(rng.normal(0, 1, n)))))
    return cases


def _lsq_wrong(factor="lsq", inside_sign=1, clipped="lsq"):
    def wrong(x, scale, zero_point, quant_min, quant_max, grad_output):
        import torch

        v = x * (1.0 / scale)
        q = torch.round(v) + zero_point
        inside = inside_sign * (torch.round(v) - v)
        if clipped == "zero":
            below = above = torch.tensor(0.0)
        elif clipped == "no_zp":
            below, above = torch.tensor(float(quant_min)), torch.tensor(float(quant_max))
        else:
            below, above = torch.tensor(float(quant_min - zero_point)), torch.tensor(float(quant_max - zero_point))
        d = torch.where(q < quant_min, below, torch.where(q > quant_max, above, inside))
        g = {"lsq": 1.0 / math.sqrt(x.numel() * quant_max), "none": 1.0,
             "numel": 1.0 / math.sqrt(x.numel())}[factor]
        return ((d * grad_output).sum() * g).reshape(1)
    return wrong


register(Exercise(
    id="08.2",
    title="LSQ: the gradient of the loss with respect to the step size",
    points=3,
    reference=lsq_scale_grad,
    cases=_lsq_cases,
    function="lsq_scale_grad",
    hint=(
        "Differentiate the fake-quantized value with respect to the scale in each of the three regions: "
        "inside the range the rounded code stays fixed while the scale moves; outside, the clamped code "
        "does. Then sum over the elements, weighted by the incoming gradient.",
        "Inside the range the derivative is the rounding error measured in steps (rounded value minus "
        "unrounded value); below and above it is the clamped code minus the zero-point.",
        "Multiply the sum by LSQ's gradient scale: one over the square root of the number of elements "
        "times the largest positive code. Return a float32 tensor with one element.",
    ),
    notebook=NOTEBOOK,
    seed=802,
    rtol=1e-5,
    atol=1e-6,
    forbidden=(
        "torch._fake_quantize_learnable_per_tensor_affine", "torch._fake_quantize_learnable_per_channel_affine",
        "torch.fake_quantize_per_tensor_affine",
        "qlearn.bridge.qat.lsq_fake_quantize", "qlearn.bridge.qat.LSQFakeQuantize.forward",
    ),
    allowed=("torch",),
    wrong_answers={
        "no gradient scale g": _lsq_wrong(factor="none"),
        "g = 1 / sqrt(numel), forgetting quant_max": _lsq_wrong(factor="numel"),
        "inside term with the wrong sign (v - round(v))": _lsq_wrong(inside_sign=-1),
        "clipped values contribute nothing": _lsq_wrong(clipped="zero"),
        "clipped terms without subtracting the zero-point": _lsq_wrong(clipped="no_zp"),
    },
))


# --- 08.3 -------------------------------------------------------------------------------------

def binarize_weights(w):
    """Binary weights with one scale per output channel (axis 0), XNOR-Net style.

    Returns ``(codes, alpha)``: int8 codes ``sign(w)`` in {-1, +1} with ``sign(0) = +1``, shaped
    like ``w``; float32 ``alpha`` of shape ``(w.shape[0],)``, ``alpha_c = mean |w_c|``.

    >>> binarize_weights(np.array([[0.5, -1.5], [0.0, -0.25]], np.float32))
    (array([[ 1, -1],
           [ 1, -1]], dtype=int8), array([1.   , 0.125], dtype=float32))
    """
    w = np.asarray(w, dtype=f32)
    codes = np.where(w >= 0, 1, -1).astype(np.int8)
    alpha = np.abs(w).reshape(w.shape[0], -1).mean(axis=1, dtype=f32).astype(f32)
    return codes, alpha


def _lowbit_cases(rng: np.random.Generator, ternary: bool) -> list[Case]:
    def avoid_threshold(w: np.ndarray) -> np.ndarray:
        """Move weights within 1e-3 (relative) of TWN's threshold away from it: no float-order ties."""
        flat = w.reshape(w.shape[0], -1)
        for c in range(flat.shape[0]):
            delta = 0.7 * np.abs(flat[c]).astype(np.float64).mean()
            near = np.abs(np.abs(flat[c]) - delta) < 1e-3 * max(delta, 1e-6)
            flat[c, near] *= f32(1.01)
        return flat.reshape(w.shape).astype(f32)

    cases = [
        Case("a conv weight [8, 4, 3, 3]", (avoid_threshold(rng.normal(0, 0.1, (8, 4, 3, 3)).astype(f32)),)),
        Case("exact zeros: sign(0) counts as +1 for binary, 0 for ternary",
             (np.array([[0.0, 0.5, -0.5, 0.0], [1.0, -2.0, 0.0, 3.0]], f32),)),
        Case("an all-zero channel (alpha 0) next to a normal one",
             (np.array([[0.0, 0.0, 0.0], [0.2, -0.9, 0.4]], f32),)),
        Case("a linear weight [10, 64] with outliers", (avoid_threshold(np.concatenate(
            [rng.normal(0, 0.05, (10, 63)), rng.normal(0, 1.0, (10, 1))], axis=1).astype(f32)),)),
        Case("channels of very different magnitude: one alpha per channel, not per tensor",
             (avoid_threshold((rng.normal(0, 1, (3, 16)) * np.array([[0.01], [1.0], [100.0]])).astype(f32)),)),
    ]
    for i in range(3):
        shape = (int(rng.integers(2, 7)), int(rng.integers(1, 5)), 3, 3)
        cases.append(Case(f"random {i + 1}: a Laplace-distributed conv weight [C_out, C_in, 3, 3]",
                          (avoid_threshold(rng.laplace(0, 0.2, shape).astype(f32)),)))
    return cases


def _binary_wrong(zero="plus", alpha="mean", per_tensor=False):
    def wrong(w):
        w = np.asarray(w, dtype=f32)
        codes = (np.sign(w) if zero == "zero" else np.where(w >= 0, 1, -1)).astype(np.int8)
        flat = np.abs(w).reshape(w.shape[0], -1)
        if alpha == "max":
            a = flat.max(axis=1)
        elif alpha == "signed":
            a = w.reshape(w.shape[0], -1).mean(axis=1)
        else:
            a = flat.mean(axis=1)
        if per_tensor:
            a = np.full(w.shape[0], np.abs(w).mean())
        return codes, a.astype(f32)
    return wrong


register(Exercise(
    id="08.3",
    title="Binary weights with a per-channel scale alpha = mean|w|",
    points=2,
    reference=binarize_weights,
    cases=lambda rng: _lowbit_cases(rng, ternary=False),
    function="binarize_weights",
    hint=(
        "Every weight keeps only its sign; the magnitude of the whole output channel is carried by one "
        "number, the scale that makes alpha times the signs closest to the weights.",
        "That best scale is the mean absolute value over the channel (everything but axis 0). A weight "
        "that is exactly zero gets the code +1, because binary has no zero.",
    ),
    notebook=NOTEBOOK,
    seed=803,
    rtol=1e-6,
    atol=1e-8,
    forbidden=("qlearn.lowbit.binarize", "qlearn.lowbit.ternarize", "qlearn.bridge.qat.binarize_ste",
               "qlearn.bridge.qat.ternarize_ste"),
    wrong_answers={
        "np.sign: sign(0) = 0 is a third level": _binary_wrong(zero="zero"),
        "alpha = max|w|": _binary_wrong(alpha="max"),
        "alpha = mean(w), without the absolute value": _binary_wrong(alpha="signed"),
        "one alpha for the whole tensor": _binary_wrong(per_tensor=True),
    },
))


# --- 08.4 -------------------------------------------------------------------------------------

def ternarize_weights(w):
    """Ternary weights (TWN) with one threshold and one scale per output channel (axis 0).

    Per channel ``c``: ``delta_c = 0.7 * mean|w_c|``; codes are ``sign(w)`` where ``|w| > delta_c``
    and 0 elsewhere (int8, shaped like ``w``); ``alpha_c`` is the mean of ``|w|`` over the kept
    weights of the channel, 0 when none is kept (float32, shape ``(w.shape[0],)``).

    >>> codes, alpha = ternarize_weights(np.array([[0.1, -1.0, 2.0, 0.5]], np.float32))
    >>> codes, alpha
    (array([[ 0, -1,  1,  0]], dtype=int8), array([1.5], dtype=float32))
    """
    w = np.asarray(w, dtype=f32)
    flat = np.abs(w).reshape(w.shape[0], -1)
    delta = f32(0.7) * flat.mean(axis=1, dtype=f32)
    keep = flat > delta[:, None]
    codes = (np.sign(w).reshape(w.shape[0], -1) * keep).astype(np.int8).reshape(w.shape)
    count = keep.sum(axis=1)
    kept_sum = np.where(keep, flat, f32(0)).sum(axis=1, dtype=f32)
    alpha = np.where(count > 0, kept_sum / np.maximum(count, 1), 0).astype(f32)
    return codes, alpha


def _ternary_wrong(threshold="mean", alpha="kept", strict=True, per_tensor=False):
    def wrong(w):
        w = np.asarray(w, dtype=f32)
        flat = np.abs(w).reshape(w.shape[0], -1)
        base = flat.max(axis=1) if threshold == "max" else flat.mean(axis=1)
        if per_tensor:
            base = np.full(w.shape[0], np.abs(w).mean())
        delta = f32(0.7) * base
        keep = flat > delta[:, None] if strict else flat >= delta[:, None]
        codes = (np.sign(w).reshape(w.shape[0], -1) * keep).astype(np.int8).reshape(w.shape)
        if alpha == "all":
            a = flat.mean(axis=1)
        elif alpha == "delta":
            a = delta
        else:
            a = np.where(keep.sum(1) > 0, np.where(keep, flat, 0).sum(1) / np.maximum(keep.sum(1), 1), 0)
        return codes, a.astype(f32)
    return wrong


register(Exercise(
    id="08.4",
    title="Ternary weights with TWN's threshold 0.7 mean|w|",
    points=3,
    reference=ternarize_weights,
    cases=lambda rng: _lowbit_cases(rng, ternary=True),
    function="ternarize_weights",
    hint=(
        "Small weights become exactly zero, the others keep their sign; one threshold and one scale "
        "per output channel.",
        "The threshold is 0.7 times the channel's mean absolute weight, and a weight is kept only if "
        "its magnitude is strictly above it. The scale averages the magnitudes of the kept weights "
        "only, and is 0 for a channel that keeps none.",
    ),
    notebook=NOTEBOOK,
    seed=804,
    rtol=1e-6,
    atol=1e-8,
    forbidden=("qlearn.lowbit.binarize", "qlearn.lowbit.ternarize", "qlearn.bridge.qat.binarize_ste",
               "qlearn.bridge.qat.ternarize_ste"),
    wrong_answers={
        "threshold 0.7 max|w| instead of 0.7 mean|w|": _ternary_wrong(threshold="max"),
        "alpha averaged over all weights, not only the kept ones": _ternary_wrong(alpha="all"),
        "alpha = delta": _ternary_wrong(alpha="delta"),
        "one threshold for the whole tensor": _ternary_wrong(per_tensor=True),
    },
))


# --- 08.5 -------------------------------------------------------------------------------------

#: The fixed subset 08.5 is graded on: the first 500 Fashion-MNIST test images.
MIXED_SUBSET = 500
#: The threshold is the lower subset accuracy of the greedy and knapsack allocations minus this (1.5 points).
THRESHOLD_MARGIN = 0.015


@functools.lru_cache(maxsize=1)
def mixed_precision_table() -> dict:
    """``data/checkpoints/qat_mixed_precision.json``: layers, sizes, choices, the sensitivity table
    (made by ``tools/train_qat.py``)."""
    from qlearn.datasets import data_root

    return json.loads((data_root() / "checkpoints" / "qat_mixed_precision.json").read_text())


class _Target(tuple):
    """The reference allocation (a tuple of ints) plus what the outcome check needs."""

    sizes: tuple[int, ...]
    choices: tuple[int, ...]
    budget: int
    knapsack: tuple[int, ...]


def allocate_bits(sizes, sensitivity, choices, budget):
    """Bits per layer (one per layer, each from ``choices``) with ``sum(sizes * bits) <= budget``,
    spending the bits where the sensitivity table says they matter most.

    ``sizes[l]``: weights in layer ``l``; ``sensitivity[l, j]``: accuracy drop when only layer
    ``l`` is quantized to ``choices[j]`` bits; ``choices`` ascending. Greedy: start at the widest
    choice everywhere and narrow, one step at a time, the layer that loses least per bit saved.
    (The reference returns a tuple that also carries the case's sizes, choices and budget, which
    the outcome check reads; a learner returns an array or a list.)

    >>> tuple(allocate_bits(np.array([100, 10]), np.array([[5.0, 0.1], [9.0, 0.0]]), (2, 8), 280))
    (2, 8)
    """
    out = _Target(int(b) for b in allocate_greedy(sizes, sensitivity, choices, budget))
    out.sizes, out.choices, out.budget = tuple(int(v) for v in sizes), tuple(int(v) for v in choices), int(budget)
    from qlearn.mixed_precision import allocate_dp  # the knapsack: the other sound answer

    out.knapsack = tuple(int(b) for b in allocate_dp(sizes, sensitivity, choices, budget))
    return out


@functools.lru_cache(maxsize=256)
def allocation_accuracy(bits: tuple[int, ...]) -> float:
    """Accuracy on the first ``MIXED_SUBSET`` test images of the shipped ResNet with each layer's
    weights quantized to ``bits`` (per channel, min-max; activations float). Cached."""
    import torch

    from qlearn.bridge.data import make_loader
    from qlearn.bridge.pretrained import load_pretrained
    from qlearn.bridge.ptq import evaluate
    from qlearn.bridge.qat import quantize_weights_only

    table = mixed_precision_table()
    with torch.no_grad():
        model = quantize_weights_only(_base_model(load_pretrained), dict(zip(table["layers"], bits)))
        return evaluate(model, make_loader("test", MIXED_SUBSET, limit=MIXED_SUBSET))


_BASE: list = []


def _base_model(load):
    if not _BASE:
        _BASE.append(load())
    return _BASE[0]


def _compare_allocation(got, expected) -> str | None:
    try:
        arr = np.asarray(got)
    except Exception:
        return f"returned {type(got).__name__}: return an array of bit widths, one per layer"
    if isinstance(got, _Target):
        arr = np.asarray(tuple(got))
    if arr.shape != (len(expected.sizes),) or arr.dtype.kind not in "iu":
        return (f"returned {arr.dtype} of shape {arr.shape}: return {len(expected.sizes)} integer bit widths, "
                f"one per layer")
    bad = sorted({int(b) for b in arr} - set(expected.choices))
    if bad:
        return f"bit widths {bad} are not among the choices {list(expected.choices)}"
    size = int((np.asarray(expected.sizes, dtype=np.int64) * arr.astype(np.int64)).sum())
    if size > expected.budget:
        return f"the allocation takes {size} bits, over the budget of {expected.budget} bits"
    got_acc = allocation_accuracy(tuple(int(b) for b in arr))
    ref_acc = min(allocation_accuracy(tuple(expected)), allocation_accuracy(expected.knapsack))
    threshold = ref_acc - THRESHOLD_MARGIN
    if got_acc < threshold - 1e-9:
        return (f"within budget ({size} of {expected.budget} bits), but the model with these weight bits gets "
                f"{got_acc:.1%} on the {MIXED_SUBSET} test images, below the threshold {threshold:.1%}")
    return None


def _allocation_cases(rng: np.random.Generator) -> list[Case]:
    table = mixed_precision_table()
    sizes = np.asarray(table["sizes"], dtype=np.int64)
    sens = np.asarray(table["sensitivity"], dtype=np.float64)
    choices = tuple(table["choices"])
    total = int(sizes.sum())
    cases = [
        Case("budget = uniform 4-bit size", (sizes.copy(), sens.copy(), choices, 4 * total)),
        Case("budget = uniform 3-bit size: the big layers must go to 2 or 3 bits", (sizes.copy(), sens.copy(), choices, 3 * total)),
        Case("budget = 2.5 bits per weight on average", (sizes.copy(), sens.copy(), choices, int(2.5 * total))),
    ]
    for i in range(2):
        avg = float(rng.uniform(2.6, 4.5))
        cases.append(Case(f"random {i + 1}: between 2.6 and 4.5 bits per weight on average",
                          (sizes.copy(), sens.copy(), choices, int(avg * total))))
    return cases


def _uniform_wrong(sizes, sensitivity, choices, budget):
    n = np.asarray(sizes)
    fitting = [b for b in choices if int(n.sum()) * b <= budget]
    return np.full(n.size, max(fitting), dtype=np.int64)


def _inverted_wrong(sizes, sensitivity, choices, budget):
    """Greedy on minus the sensitivity: narrows the layers that matter most first."""
    return _greedy(sizes, -np.asarray(sensitivity), choices, budget)


register(Exercise(
    id="08.5",
    title="Mixed precision: bits per layer under a size budget",
    points=4,
    reference=allocate_bits,
    cases=_allocation_cases,
    function="allocate_bits",
    hint=(
        "Some layers are small and fragile, others big and robust: bits saved on a big robust layer are "
        "cheap, bits taken from a small fragile one are expensive. Decide by accuracy lost per bit saved.",
        "A greedy works: begin with every layer at the widest choice, and while the model is over "
        "budget, lower by one step the layer whose step down costs the least sensitivity per bit it "
        "saves. A knapsack by dynamic programming over the budget works too.",
        "The size of an allocation is the sum over layers of weights times bits; it must not exceed the "
        "budget. Return one bit width per layer, each taken from the choices.",
    ),
    notebook=NOTEBOOK,
    seed=805,
    compare=_compare_allocation,
    plain_result=False,
    forbidden=("qlearn.mixed_precision.allocate_greedy", "qlearn.mixed_precision.allocate_dp"),
    wrong_answers={
        "uniform: the widest single bit width that fits": _uniform_wrong,
        "inverted: narrows the most sensitive layers first": _inverted_wrong,
        "over budget: every layer at 8 bits": lambda sizes, sensitivity, choices, budget: np.full(len(sizes), 8),
        "bit widths outside the choices": lambda sizes, sensitivity, choices, budget: np.full(len(sizes), 1),
    },
))


# --- questions: predict, then run --------------------------------------------------------------

register(Question(
    id="08.Q1",
    title="Post-training quantization at W4A4 and W2A8",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_answer",
    choices={"a": "both stay within 1 point of float",
             "b": "W4A4 loses a few points; W2A8 collapses towards chance (10 %)",
             "c": "W4A4 collapses towards chance; W2A8 loses a few points",
             "d": "both collapse towards chance"},
    answer="b",
    explanation=("At 4 bits each weight channel still has 16 levels and activations 16; the error is noise "
                 "the network mostly tolerates. At 2 bits a channel has 4 levels: a min-max scale puts "
                 "almost every weight on 0 or on the step next to it, and the function the network "
                 "computes is gone. 8-bit activations cannot save it."),
    hint=("Count the levels per weight channel at 4 bits and at 2 bits, and think where a min-max step "
          "puts the many small weights.",),
))

register(Question(
    id="08.Q2",
    title="LSQ's gradient scale for layer3.1.conv2's weights (per tensor, 4 bits)",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_answer",
    answer=1.0 / math.sqrt(64 * 64 * 9 * 7),
    rtol=0.01,
    explanation=("g = 1 / sqrt(N * Q_P) with N = 64 x 64 x 3 x 3 = 36864 weights and Q_P = 7, the largest "
                 "positive 4-bit code: about 0.00197. Without it, the step size's gradient (a sum over 36864 "
                 "terms) would be hundreds of times larger, relative to the step, than a weight's."),
    hint=("The number of values the scale covers is the weight tensor's element count: output channels "
          "times input channels times the kernel's area.",
          "The largest positive code of a signed 4-bit range is 7."),
))

register(Question(
    id="08.Q3",
    title="Latency of the QAT-int8 model against the PTQ-int8 model",
    points=1,
    notebook=NOTEBOOK,
    variable="q3_answer",
    choices={"a": "QAT-int8 is clearly slower: it learned extra parameters",
             "b": "about the same: both convert to the same int8 modules and kernels",
             "c": "QAT-int8 is clearly faster: training made the weights sparser"},
    answer="b",
    explanation=("convert() turns the fake-quant modules of both flows into the same quantized conv and "
                 "linear modules; only the numbers inside (weights, scales, zero-points) differ. The int8 "
                 "kernels do the same work, so the latency is the same up to timing noise."),
    hint=("What does convert() leave of the fake-quantize modules and the observers?",),
))

register(Question(
    id="08.Q4",
    title="What CPU int8 kernels really run",
    points=1,
    notebook=NOTEBOOK,
    variable="q4_answer",
    choices={"a": "any bit width from 2 to 8 for weights and activations, at the matching speed-up",
             "b": "8-bit activations with 8-bit weights (per tensor or per output channel); lower weight "
                  "bit widths are stored packed and widened to 8 bits (or to float) before the multiply",
             "c": "4-bit activations with 4-bit weights, natively, on every CPU"},
    answer="b",
    explanation=("fbgemm, oneDNN and qnnpack multiply uint8/int8 activations by int8 weights; VNNI and "
                 "ARM's dot-product instructions are int8 too. Sub-byte weights (int4 in torchao, GPTQ, "
                 "llama.cpp) save memory and bandwidth: the kernel unpacks them to int8 or float16 before "
                 "multiplying. Binary and ternary need custom kernels or hardware (XNOR-popcount, "
                 "BitNet-style kernels); per-group scales are a weight-only feature."),
    hint=("Look at the instruction names the engines are built on: what widths do they multiply?",),
))
