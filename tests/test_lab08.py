"""Lab 08's exercises: honest solutions written other ways pass, the typical bugs fail, and the
references agree with PyTorch (the oracle): ``torch.fake_quantize_per_tensor_affine`` and its
gradient bit for bit, the LSQ kernel's scale gradient, and LSQ through autograd.

The generic grading tests (``tests/test_grading.py``) already check that every reference passes
and every declared wrong answer fails; these tests add what is particular to lab 08.
"""

from __future__ import annotations

import math

import labkit
import numpy as np
import pytest
import torch

from qlearn.grading import EXERCISES
from qlearn.grading.labs import lab08
from qlearn.lowbit import binarize, ternarize

EXERCISE_IDS = ("08.1", "08.2", "08.3", "08.4", "08.5")
QUESTION_IDS = ("08.Q1", "08.Q2", "08.Q3", "08.Q4")


def test_lab08_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab08, EXERCISE_IDS + QUESTION_IDS, "08_qat_and_mixed_precision", points=19)
    assert all(len(EXERCISES[i].wrong_answers) >= 4 for i in EXERCISE_IDS)


def test_exports():
    labkit.assert_module_exports(lab08)


def test_importing_the_lab_module_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab08")


def _same(a, b) -> bool:
    """Equal by value: tensors with torch.equal (their pickle holds the storage's address)."""
    if isinstance(a, torch.Tensor) or isinstance(b, torch.Tensor):
        return type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape and torch.equal(a, b)
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return type(a) is type(b) and a.dtype == b.dtype and np.array_equal(a, b)
    if isinstance(a, (tuple, list)):
        return type(a) is type(b) and len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b))
    return type(a) is type(b) and a == b


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_cases_deterministic(exercise_id):
    first, second = EXERCISES[exercise_id].make_cases(), EXERCISES[exercise_id].make_cases()
    assert len(first) >= 4
    for a, b in zip(first, second, strict=True):
        assert a.name == b.name and _same(a.args, b.args), a.name
    hidden = EXERCISES[exercise_id].make_cases(seed=20261129)
    assert sorted(c.name for c in hidden) == sorted(c.name for c in first)


# --- oracle: the references against PyTorch -------------------------------------------------------

def test_ste_reference_is_bit_exact_with_torch_on_every_case():
    for seed in (None, 1, 2):
        for case in EXERCISES["08.1"].make_cases(seed):
            x, scale, zp, lo, hi, grad = case.args
            xr = x.clone().requires_grad_(True)
            y = torch.fake_quantize_per_tensor_affine(xr, scale, zp, lo, hi)
            y.backward(grad)
            ours, our_grad = lab08.ste_forward_backward(*case.args)
            assert torch.equal(ours, y.detach()), case.name
            assert torch.equal(our_grad, xr.grad), case.name


def test_the_reciprocal_case_really_separates_division_from_the_reciprocal():
    case = next(c for c in EXERCISES["08.1"].make_cases() if "reciprocal" in c.name)
    x, scale = case.args[0], case.args[1]
    s = torch.tensor(scale, dtype=torch.float32)
    assert not torch.equal(torch.round(x / s), torch.round(x * (1.0 / s)))


def test_lsq_reference_matches_torch_kernel_on_every_case():
    for seed in (None, 1, 2):
        for case in EXERCISES["08.2"].make_cases(seed):
            x, scale, zp, lo, hi, grad = case.args
            s = scale.clone().requires_grad_(True)
            g = 1 / math.sqrt(x.numel() * hi)
            torch._fake_quantize_learnable_per_tensor_affine(x, s, torch.tensor([float(zp)]), lo, hi, g).backward(grad)
            ours = lab08.lsq_scale_grad(*case.args)
            assert ours.shape == (1,) and ours.dtype == torch.float32
            torch.testing.assert_close(ours, s.grad, rtol=1e-5, atol=1e-6, msg=case.name)


def test_lsq_reference_matches_autograd_with_the_detach_tricks():
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(5000, generator=gen)
    grad = torch.randn(5000, generator=gen)
    scale = torch.tensor([0.27])
    ours = lab08.lsq_scale_grad(x, scale, 0, -8, 7, grad)
    s = scale.clone().requires_grad_(True)
    factor = 1 / math.sqrt(x.numel() * 7)
    s_scaled = s * factor + (s - s * factor).detach()
    v = x * (1.0 / s_scaled)
    r = torch.round(v).detach()
    q = torch.where(r < -8, -8.0, torch.where(r > 7, 7.0, v + (r - v).detach()))  # round first, as torch does
    (q * s_scaled).backward(grad)
    torch.testing.assert_close(ours, s.grad, rtol=1e-4, atol=1e-6)


def test_torch_lsq_backward_treats_a_negative_zero_point_as_zero():
    """The quirk lab08's docstring describes: why 08.2's cases keep zero_point >= 0."""
    s = torch.tensor([1.0], requires_grad=True)
    torch._fake_quantize_learnable_per_tensor_affine(
        torch.tensor([-100.0]), s, torch.tensor([-1.0]), -4, 3, 1.0).backward(torch.ones(1))
    assert s.grad.item() == -4.0  # the formula (quant_min - zero_point) would give -3
    assert all(c.args[2] >= 0 for seed in (None, 5) for c in EXERCISES["08.2"].make_cases(seed))


def test_lowbit_references_agree_with_the_library():
    for case in EXERCISES["08.4"].make_cases():
        w = case.args[0]
        codes, alpha = lab08.ternarize_weights(w)
        lib_codes, lib_alpha = ternarize(w, axis=0)
        np.testing.assert_array_equal(codes, lib_codes)
        np.testing.assert_allclose(alpha, lib_alpha.ravel(), rtol=1e-6)
        codes, alpha = lab08.binarize_weights(w)
        lib_codes, lib_alpha = binarize(w, axis=0)
        np.testing.assert_array_equal(codes, lib_codes)
        np.testing.assert_allclose(alpha, lib_alpha.ravel(), rtol=1e-6)


# --- other honest solutions pass ------------------------------------------------------------------

class _STEViaWhere(torch.autograd.Function):
    @staticmethod
    def forward(ctx, x, scale, zero_point, quant_min, quant_max):
        inv = torch.tensor(1.0, dtype=torch.float32) / torch.tensor(scale, dtype=torch.float32)
        q = torch.round(x * inv) + zero_point
        ctx.inside = torch.logical_and(q >= quant_min, q <= quant_max)
        return (q.clamp(quant_min, quant_max) - zero_point) * torch.tensor(scale, dtype=torch.float32)

    @staticmethod
    def backward(ctx, grad_output):
        return torch.where(ctx.inside, grad_output, torch.zeros_like(grad_output)), None, None, None, None


def _ste_solution(x, scale, zero_point, quant_min, quant_max, grad_output):
    x = x.detach().clone().requires_grad_(True)
    y = _STEViaWhere.apply(x, scale, zero_point, quant_min, quant_max)
    y.backward(grad_output)
    return y.detach(), x.grad


def _lsq_solution(x, scale, zero_point, quant_min, quant_max, grad_output):
    s = scale[0]
    v = x * (1.0 / s)
    r = torch.round(v)
    q = r + zero_point
    d = torch.zeros_like(x)
    inside = (q >= quant_min) & (q <= quant_max)
    d[inside] = ((q[inside] - zero_point) * s - x[inside]) * (1.0 / s)
    d[q < quant_min] = quant_min - zero_point
    d[q > quant_max] = quant_max - zero_point
    return (torch.sum(d * grad_output) / math.sqrt(x.numel() * quant_max)).reshape(1)


def _binary_solution(w):
    codes = np.sign(w).astype(np.int8)
    codes[codes == 0] = 1
    return codes, np.array([np.mean(np.abs(c)) for c in w], dtype=np.float32)


def _ternary_solution(w):
    codes = np.zeros(w.shape, np.int8)
    alpha = np.zeros(w.shape[0], np.float32)
    for c in range(w.shape[0]):
        a = np.abs(w[c])
        keep = a > 0.7 * a.mean()
        codes[c][keep] = np.sign(w[c][keep])
        alpha[c] = a[keep].mean() if keep.any() else 0.0
    return codes, alpha


def _dp_solution(sizes, sensitivity, choices, budget):
    """Exact knapsack over the budget in units of the sizes' gcd."""
    unit = math.gcd(*[int(n) for n in sizes])
    cap = budget // unit
    best = {0: (0.0, ())}
    for n, row in zip(sizes, sensitivity):
        new = {}
        for used, (cost, picks) in best.items():
            for b, s in zip(choices, row):
                u = used + int(n) // unit * b
                if u <= cap and (u not in new or cost + s < new[u][0]):
                    new[u] = (cost + s, picks + (b,))
        # keep only the Pareto-optimal states (less used and lower cost)
        kept, low = {}, math.inf
        for u in sorted(new):
            if new[u][0] < low:
                kept[u], low = new[u], new[u][0]
        best = kept
    return np.array(min(best.values())[1])


SOLUTIONS = [
    ("08.1", "torch.where in the backward, mask on ctx", _ste_solution),
    ("08.2", "boolean indexing, division by sqrt at the end", _lsq_solution),
    ("08.3", "np.sign then fix the zeros, a loop for alpha", _binary_solution),
    ("08.4", "a loop over channels", _ternary_solution),
    ("08.5", "knapsack by dynamic programming", _dp_solution),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=labkit.solution_ids(SOLUTIONS))
def test_correct_solutions_pass(exercise_id, name, fn):
    passed, message = labkit.passes(exercise_id, fn)
    assert passed, message


def test_delegating_to_torch_fake_quantize_is_rejected():
    def lazy(x, scale, zero_point, quant_min, quant_max, grad_output):
        x = x.detach().clone().requires_grad_(True)
        y = torch.fake_quantize_per_tensor_affine(x, scale, zero_point, quant_min, quant_max)
        y.backward(grad_output)
        return y.detach(), x.grad

    passed, message = labkit.passes("08.1", lazy)
    assert not passed and "fake_quantize_per_tensor_affine" in message


def test_allocation_outcome_rejects_bad_allocations_with_reasons():
    labkit.assert_rejected("08.5", lambda sizes, sensitivity, choices, budget: np.full(len(sizes), 8),
                           says=("over the budget",))
    labkit.assert_rejected("08.5", lambda sizes, sensitivity, choices, budget: np.full(len(sizes), 5),
                           says=("not among the choices",))
    labkit.assert_rejected("08.5", lab08._uniform_wrong, says=("below the threshold",))


def test_the_mixed_precision_target_holds_on_the_graded_subset():
    """At the size of uniform 4-bit, the reference allocation beats uniform 4-bit by >= 2 points."""
    table = lab08.mixed_precision_table()
    sizes = np.array(table["sizes"])
    bits = lab08.allocate_bits(sizes, np.array(table["sensitivity"]), tuple(table["choices"]), 4 * int(sizes.sum()))
    uniform = lab08.allocation_accuracy((4,) * len(sizes))
    assert lab08.allocation_accuracy(tuple(bits)) >= uniform + 0.02
