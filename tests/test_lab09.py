"""Lab 09's exercises and questions: correct solutions written the usual ways pass, the typical bugs
fail, the cases hold the edge cases they promise, and the references agree with the library and
with torch (the oracle).

tests/test_grading.py already checks, for every exercise, that the reference passes, that every
declared wrong answer is rejected and that the cases are deterministic; these tests add what is
particular to lab 09.
"""

from __future__ import annotations

import math

import labkit
import numpy as np
import pytest
import torch

from qlearn.comm_cost import ring_allreduce_time
from qlearn.compression import compress, qsgd
from qlearn.grading import EXERCISES
from qlearn.grading.labs import lab09

IDS = ("09.1", "09.2", "09.3", "09.4", "09.Q1", "09.Q2", "09.Q3", "09.Q4")
NOTEBOOK = "09_gradient_quantization"


def test_lab09_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab09, IDS, NOTEBOOK, points=17)


def test_lab09_exports_what_it_documents():
    labkit.assert_module_exports(lab09, {"allreduce_time", "compress_int8", "ef_sgd", "qsgd_quantize"})
    for module in ("qlearn.compression", "qlearn.comm_cost", "qlearn.bridge.ddp_hooks", "qlearn.bridge.ddp_worker"):
        labkit.assert_module_exports(module)


def test_importing_lab09_and_the_numpy_core_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab09")
    labkit.assert_no_torch_import("qlearn.compression", also=("matplotlib",))
    labkit.assert_no_torch_import("qlearn.comm_cost", also=("matplotlib",))


@pytest.mark.parametrize("exercise_id", ["09.1", "09.2", "09.3"])
def test_cases_are_deterministic(exercise_id):
    labkit.assert_cases_deterministic(exercise_id)


def test_torch_cases_of_09_4_are_deterministic():
    # pickle bytes of a torch tensor hold its storage's address, so compare values (and dtypes) instead
    first, second = EXERCISES["09.4"].make_cases(), EXERCISES["09.4"].make_cases()
    assert len(first) >= 4 and [c.name for c in first] == [c.name for c in second]
    for a, b in zip(first, second):
        for x, y in zip(a.args, b.args):
            if isinstance(x, torch.Tensor):
                assert x.dtype == y.dtype and torch.equal(x, y), a.name
            else:
                assert x == y, a.name
    hidden = EXERCISES["09.4"].make_cases(seed=20261129)
    assert sorted(c.name for c in hidden) == sorted(c.name for c in first)


# --- correct solutions, written the ways learners write them ---------------------------------

def _time_seconds_first(num_params, bits, workers, bandwidth_gbit, latency):
    if workers == 1:
        return 0.0
    nbytes = -(-num_params * bits // 8)
    beta = 8 / (bandwidth_gbit * 1e9)
    return 2 * (workers - 1) * latency + 2 * (workers - 1) / workers * nbytes * beta


def _qsgd_loop(g, s, seed):
    rng = np.random.default_rng(seed)
    u = rng.random(g.shape)
    norm = np.linalg.norm(g)
    codes = np.zeros(g.shape, dtype=int)
    if norm == 0:
        return 0.0, codes
    for i in np.ndindex(g.shape):
        level = math.floor(abs(g[i]) * s / norm + u[i])
        codes[i] = level if g[i] >= 0 else -level
    return float(norm), codes


def _qsgd_coin(g, s, seed):
    u = np.random.default_rng(seed).random(g.shape)
    norm = np.sqrt((g ** 2).sum())
    if norm == 0:
        return 0.0, np.zeros_like(g, dtype=np.int32)
    r = np.abs(g) / norm * s
    low = np.floor(r)
    # floor(r + u) is low + 1 exactly when u >= 1 - (r - low)
    return norm, (np.sign(g) * (low + (u >= 1 - (r - low)))).astype(np.int32)


def _ef_with_lists(targets, lr, steps, compressor, k, error_feedback):
    workers, d = len(targets), len(targets[0])
    w = np.zeros(d)
    memory = [np.zeros(d) for _ in range(workers)]
    history = [w]
    for _ in range(steps):
        deltas = []
        for i in range(workers):
            p = lr * (w - targets[i]) + memory[i]
            delta = compress(compressor, p, k=k)
            memory[i] = p - delta if error_feedback else memory[i]
            deltas.append(delta)
        w = w - np.mean(deltas, axis=0)
        history.append(w)
    return np.stack(history)


def _int8_reciprocal(grad, residual, seed):
    g = grad + residual
    scale = (g.abs().max() / 127).clamp(min=torch.finfo(torch.float32).eps)
    u = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed))
    q = (g * (1 / scale) + u).floor().clamp(-127, 127).to(torch.int8)
    return q, scale, g - q.float() * scale


def _int8_manual_seed_generator(grad, residual, seed):
    gen = torch.Generator()
    gen.manual_seed(seed)
    g = torch.add(grad, residual)
    m = torch.max(torch.abs(g))
    scale = torch.maximum(m / 127, torch.tensor(torch.finfo(torch.float32).eps))
    noise = torch.rand(*g.shape, generator=gen)
    codes = torch.floor(g / scale + noise)
    codes = torch.where(codes > 127, 127.0, torch.where(codes < -127, -127.0, codes)).to(torch.int8)
    return codes, scale, g - codes.to(torch.float32) * scale


SOLUTIONS = [
    ("09.1", "beta = 8 / bandwidth, integer ceil", _time_seconds_first),
    ("09.1", "math.ceil and float", lambda n, b, p, bw, lat: 2 * (p - 1) * lat
     + 2 * (p - 1) / p * math.ceil(n * b / 8) * 8 / bw / 1e9),
    ("09.2", "a loop with math.floor", _qsgd_loop),
    ("09.2", "the up-coin written as a comparison", _qsgd_coin),
    ("09.3", "lists and np.mean", _ef_with_lists),
    ("09.4", "reciprocal of the scale", _int8_reciprocal),
    ("09.4", "a generator seeded in two steps, torch.where clamp", _int8_manual_seed_generator),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=labkit.solution_ids(SOLUTIONS))
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = labkit.passes(exercise_id, fn)
    assert passed, message


def test_typical_wrong_answers_are_declared():
    labkit.assert_wrong_answers_declared("09.1", "Gbyte", "2 (p-1)/p", "latency")
    labkit.assert_wrong_answers_declared("09.2", "deterministic rounding", "max", "sign")
    labkit.assert_wrong_answers_declared("09.3", "no error feedback", "shared", "averaging")
    labkit.assert_wrong_answers_declared("09.4", "nearest", "residual", "clamping", "generator")


def test_09_4_tells_a_float_code_and_a_numpy_answer_apart():
    message = labkit.assert_rejected("09.4", lambda g, r, seed: tuple(
        t.numpy() for t in lab09.compress_int8(g, r, seed)), says="must be a torch.Tensor")
    assert "codes" in message


def test_questions_accept_their_answer_and_reject_the_others():
    for qid, right, wrong in (("09.Q1", "b", "a"), ("09.Q2", 0.21, 0.09), ("09.Q3", "b", "c"),
                              ("09.Q4", "c", "a")):
        assert labkit.passes(qid, right)[0]
        assert not labkit.passes(qid, wrong)[0]


# --- the edge cases the lab promises ---------------------------------------------------------

def test_09_4_cases_include_the_clamp_case_where_float32_rounds_up_to_128():
    case = next(c for c in EXERCISES["09.4"].make_cases() if "clamp before" in c.name)
    g, _, seed = case.args
    u = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed))
    assert bool((torch.floor(g / (g.abs().max() / 127) + u) == 128).any())


def test_09_2_and_09_4_cases_hold_the_promised_edge_cases():
    names = " | ".join(c.name for c in EXERCISES["09.2"].make_cases())
    for needle in ("zero gradient", "one-hot", "s = 1", "2-D"):
        assert needle in names
    names = " | ".join(c.name for c in EXERCISES["09.4"].make_cases())
    for needle in ("all-zero", "residual", "negative", "2-D"):
        assert needle in names


# --- references against the library and torch (oracles) --------------------------------------

def test_allreduce_time_reference_is_the_cost_model():
    assert lab09.allreduce_time(11_689_512, 32, 8, 10.0, 5e-6) == ring_allreduce_time(46_758_048, 8, 10.0, 5e-6)


def test_qsgd_reference_is_the_library_qsgd():
    g = np.random.default_rng(1).normal(0, 1, 30)
    norm, codes = lab09.qsgd_quantize(g, 4, 5)
    lib_norm, lib_codes = qsgd(g, 4, np.random.default_rng(5))
    assert norm == lib_norm and np.array_equal(codes, lib_codes)


def test_int8_reference_dequantizes_like_torchs_qint8():
    g = torch.from_numpy(np.random.default_rng(2).normal(0, 0.05, 40).astype(np.float32))
    codes, scale, residual = lab09.compress_int8(g, torch.zeros(40), 3)
    q = torch._make_per_tensor_quantized_tensor(codes, float(scale), 0)
    torch.testing.assert_close(q.dequantize() + residual, g, rtol=0, atol=1e-7)
    # rounding to nearest with torch's own quantizer lands within one step of our stochastic codes
    nearest = torch.quantize_per_tensor(g, float(scale), 0, torch.qint8).int_repr()
    assert int((nearest.int() - codes.int()).abs().max()) <= 1


def test_ef_sgd_without_feedback_stalls_and_with_it_converges():
    targets = np.array([[4.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    optimum = targets.mean(axis=0)
    for compressor in ("sign", "topk"):
        stalled = lab09.ef_sgd(targets, 0.02, 1000, compressor, 1, False)[-1]
        fixed = lab09.ef_sgd(targets, 0.02, 1000, compressor, 1, True)[-1]
        assert np.linalg.norm(stalled - optimum) > 0.25
        assert np.linalg.norm(fixed - optimum) < 0.05
