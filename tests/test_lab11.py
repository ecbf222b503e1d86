"""Lab 11's exercises and questions: correct solutions written other ways pass, typical bugs fail.

tests/test_grading.py already runs, for every exercise: the reference passes, delegating to it is
rejected, the cases are deterministic, and every declared wrong answer is rejected. Here: what is
particular to lab 11 (division or reciprocal, float32 or float64, loops or vectorised code, and
the edge cases the lab promises), and the questions' answers against what the model computes.
"""

from __future__ import annotations

import numpy as np
import pytest

import labkit
from qlearn.grading import EXERCISES, check
from qlearn.grading.labs import lab11

IDS = ("11.1", "11.2", "11.3", "11.4", "11.Q1", "11.Q2", "11.Q3")
NOTEBOOK = "11_transformer_quantization"
f32 = np.float32
EPS = np.finfo(np.float32).eps


def test_lab11_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab11, IDS, NOTEBOOK, points=3 + 4 + 4 + 2 + 1 + 1 + 1)


def test_lab11_exports():
    labkit.assert_module_exports(lab11, {"quantize_w4", "quantize_w8", "retrieval_agreement", "w4a16_linear"})


def test_importing_lab11_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab11", also=("transformers",))


def test_importing_weight_only_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.weight_only", also=("matplotlib",))


@pytest.mark.parametrize("exercise_id", IDS[:4])
def test_cases_deterministic(exercise_id):
    labkit.assert_cases_deterministic(exercise_id)


# --- correct solutions, written the ways learners write them -----------------------------------

def _w8_float64(weight):
    w = np.asarray(weight, np.float64)
    scale = np.maximum(np.abs(w).max(axis=1) / 127.0, float(EPS))
    return np.clip(np.rint(w * (1.0 / scale[:, None])), -127, 127).astype(np.int32), scale


def _w8_loop(weight):
    q = np.zeros(weight.shape, dtype=np.int64)
    scales = []
    for r, row in enumerate(weight):
        s = max(float(np.max(np.abs(row))) / 127, float(np.finfo(np.float32).eps))
        scales.append(s)
        for j, v in enumerate(row):
            q[r, j] = min(max(round(float(v) / s), -127), 127)  # Python's round is half-to-even
    return q, np.array(scales, dtype=np.float32)


def _w4_float64_keepdims(weight, group_size):
    w = np.asarray(weight, np.float64)
    g = w.reshape(w.shape[0], -1, group_size)
    lo = np.minimum(g.min(axis=2, keepdims=True), 0)
    hi = np.maximum(g.max(axis=2, keepdims=True), 0)
    scale = np.maximum((hi - lo) / 15, float(EPS))
    zp = np.clip(-np.round(lo / scale), 0, 15)
    q = np.clip(np.round(g / scale) + zp, 0, 15).astype(np.uint8).reshape(w.shape)
    packed = np.zeros((w.shape[0], w.shape[1] // 2), np.uint8)
    for k in range(w.shape[1] // 2):
        packed[:, k] = q[:, 2 * k] + 16 * q[:, 2 * k + 1]
    return packed, scale[..., 0].astype(np.float32), zp[..., 0].astype(np.int64)


def _w4_with_reshape_pairs(weight, group_size):
    w = weight.astype(np.float32)
    out, n = w.shape
    g = w.reshape(out, n // group_size, group_size)
    lo, hi = np.minimum(g.min(-1), 0), np.maximum(g.max(-1), 0)
    scale = np.maximum((hi - lo) / 15, np.finfo(np.float32).eps).astype(np.float32)
    inv = np.float32(1) / scale
    zp = np.clip(-np.rint(lo * inv), 0, 15)
    q = np.clip(np.rint(g * inv[..., None]) + zp[..., None], 0, 15).astype(np.uint8)
    pairs = q.reshape(out, n // 2, 2)
    return (pairs[..., 0] | (pairs[..., 1] << np.uint8(4))), scale, zp.astype(np.uint8)


def _w4_linear_loops(x, packed, scale, zero_point, group_size, bias=None):
    out, half = packed.shape
    w = np.zeros((out, 2 * half), np.float32)
    for r in range(out):
        for k in range(half):
            byte = int(packed[r, k])
            for j, code in ((2 * k, byte % 16), (2 * k + 1, byte // 16)):
                g = j // group_size
                w[r, j] = (code - int(zero_point[r, g])) * scale[r, g]
    y = np.tensordot(x, w, axes=([-1], [1]))
    return y if bias is None else y + bias


def _w4_linear_float64(x, packed, scale, zero_point, group_size, bias=None):
    q = np.stack([packed & 15, packed >> 4], axis=-1).reshape(packed.shape[0], -1).astype(np.float64)
    z = np.kron(zero_point.astype(np.float64), np.ones((1, group_size)))
    s = np.kron(scale.astype(np.float64), np.ones((1, group_size)))
    y = np.einsum("...i,oi->...o", x.astype(np.float64), (q - z) * s)
    return y + (0 if bias is None else bias)


def _agreement_einsum(reference, embeddings):
    def nn_index(e):
        e = e / np.sqrt((e * e).sum(1, keepdims=True))
        s = np.einsum("id,jd->ij", e, e)
        s[np.arange(len(s)), np.arange(len(s))] = -2.0
        return np.argmax(s, axis=1)
    return float((nn_index(reference) == nn_index(embeddings)).sum() / len(reference))


def _agreement_loops(reference, embeddings):
    def nn_index(e):
        best = []
        for i in range(len(e)):
            sims = [(np.dot(e[i], e[j]) / (np.linalg.norm(e[i]) * np.linalg.norm(e[j])), j)
                    for j in range(len(e)) if j != i]
            best.append(max(sims)[1])
        return best
    a, b = nn_index(reference), nn_index(embeddings)
    return sum(x == y for x, y in zip(a, b)) / len(a)


SOLUTIONS = [
    ("11.1", "float64 with the reciprocal, int32 codes", _w8_float64),
    ("11.1", "a Python loop with round()", _w8_loop),
    ("11.2", "float64, keepdims, a loop over the bytes", _w4_float64_keepdims),
    ("11.2", "float32 reciprocal, pairs by reshape", _w4_with_reshape_pairs),
    ("11.3", "loops over bytes, tensordot", _w4_linear_loops),
    ("11.3", "float64 with kron and einsum", _w4_linear_float64),
    ("11.4", "einsum and a -2 diagonal", _agreement_einsum),
    ("11.4", "loops over pairs", _agreement_loops),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=labkit.solution_ids(SOLUTIONS))
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = labkit.passes(exercise_id, fn)
    assert passed, message


def test_wrong_answers_declared():
    labkit.assert_wrong_answers_declared("11.1", "per tensor", "input channel", "128", "truncates", "eps")
    labkit.assert_wrong_answers_declared("11.2", "nibbles swapped", "symmetric", "widened", "columns")
    labkit.assert_wrong_answers_declared("11.3", "nibbles swapped", "sign-extends", "zero-point", "tiles", "bias")
    labkit.assert_wrong_answers_declared("11.4", "own nearest", "dot product", "Euclidean")


def test_feedback_names_the_bug():
    message = labkit.assert_rejected("11.2", EXERCISES["11.2"].wrong_answers["returns the codes unpacked"])
    assert "packed" in message
    labkit.assert_rejected("11.1", EXERCISES["11.1"].wrong_answers["one scale per tensor instead of per output channel"],
                           says=("scale",))


def test_cases_include_the_promised_edge_cases():
    names = {i: " | ".join(c.name for c in EXERCISES[i].make_cases()) for i in IDS[:4]}
    for needle in ("all-zero row", "square", "outlier", "negative"):
        assert needle in names["11.1"]
    for needle in ("groups of 2", "one group per row", "positive-only", "negative-only", "all-zero group", "ROW"):
        assert needle in names["11.2"]
    for needle in ("bias=None", "[2, 5, 32]", "single input vector"):
        assert needle in names["11.3"]
    for needle in ("identical", "scaled by 3", "different lengths"):
        assert needle in names["11.4"]


def test_every_case_agrees_between_division_and_reciprocal():
    """No correct way of writing 11.1 or 11.2 can fail on a tie (the cases are drawn so)."""
    for case in EXERCISES["11.1"].make_cases() + EXERCISES["11.1"].make_cases(seed=987):
        ways = lab11._w8_ways(case.args[0])
        assert all(np.array_equal(ways[0], w) for w in ways[1:]), case.name
    for case in EXERCISES["11.2"].make_cases() + EXERCISES["11.2"].make_cases(seed=987):
        ways = lab11._w4_ways(*case.args)
        assert all(np.array_equal(ways[0][0], q) and np.array_equal(ways[0][1], z) for q, z in ways[1:]), case.name


def test_w4_reference_packing_matches_the_library_layout():
    from qlearn.packing import unpack

    w = np.random.default_rng(3).normal(0, 0.1, (4, 16)).astype(f32)
    packed, scale, zero_point = lab11.quantize_w4(w, 8)
    codes = unpack(packed.reshape(-1), 4, w.size).reshape(w.shape).astype(int)
    np.testing.assert_allclose((codes - np.repeat(zero_point, 8, 1)) * np.repeat(scale, 8, 1), w,
                               atol=float(scale.max()) / 2 + 1e-7)


# --- the questions ------------------------------------------------------------------------------

@pytest.mark.parametrize("qid, right, wrong", [("11.Q1", "a", "c"), ("11.Q2", 5.12, 8.0), ("11.Q3", "a", "b")])
def test_questions_accept_the_answer_only(qid, right, wrong):
    assert labkit.passes(qid, right)[0]
    assert not labkit.passes(qid, wrong)[0]
    assert not check(qid, None, verbose=False).passed


def test_q2_answer_is_what_the_library_stores():
    from qlearn.weight_only import linear_weight_bytes

    ratio = linear_weight_bytes(384, 1536, "fp32") / linear_weight_bytes(384, 1536, "w4", group_size=16)
    assert labkit.passes("11.Q2", round(ratio, 2))[0]


def test_q1_answer_is_what_the_model_holds():
    """30522 x 384 word embeddings against 36 Linear layers (architecture arithmetic, no model needed)."""
    embeddings = (30522 + 512 + 2) * 384
    linear = 6 * (4 * 384 * 384 + 2 * 384 * 1536)
    ffn, attention = 6 * 2 * 384 * 1536, 6 * 4 * 384 * 384
    assert embeddings > max(linear, ffn, attention)
    from qlearn.grading.registry import get_question

    assert get_question("11.Q1").answer == "a"
