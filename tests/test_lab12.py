"""Lab 12's exercises and questions: correct solutions pass, typical bugs fail, and the references
agree with ONNX Runtime (the oracle): its QuantizeLinear/DequantizeLinear kernels for 12.1, and its
calibration arithmetic (``compute_scale_zp``) for 12.2.

The generic grading tests (``tests/test_grading.py``) already check that every reference passes and
every declared wrong answer fails; these tests add what is particular to lab 12.
"""

from __future__ import annotations

import labkit
import numpy as np
import pytest

from qlearn.grading import EXERCISES
from qlearn.grading.labs import lab12
from qlearn.grading.labs.lab12 import minmax_qparams, qdq_pair

IDS = ("12.1", "12.2", "12.Q1", "12.Q2")
f32 = np.float32


def test_lab12_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab12, IDS, "12_deployment_runtimes", points=9)


def test_exports():
    labkit.assert_module_exports(lab12, ["minmax_qparams", "qdq_pair"])


def test_importing_the_lab_module_does_not_import_torch_or_onnx():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab12", also=("onnx", "onnxruntime"))


@pytest.mark.parametrize("exercise_id", ["12.1", "12.2"])
def test_cases_are_the_same_every_time(exercise_id):
    labkit.assert_cases_deterministic(exercise_id)


@pytest.mark.parametrize(("question_id", "right", "wrongs"),
                         [("12.Q1", "b", "acd"), ("12.Q2", "a", "bcd")])
def test_questions_accept_the_answer_and_reject_the_others(question_id, right, wrongs):
    assert labkit.passes(question_id, right)[0]
    for wrong in wrongs:
        assert not labkit.passes(question_id, wrong)[0], wrong


def test_question_2_matches_numpy_float16():
    assert np.float16(1e-8) == 0 and np.float16(2.0 ** -24) > 0


# --- solutions written another way pass ---------------------------------------------------------

def _qdq_loop(x, scale, zero_point, axis=1):
    """Per-axis by moving the axis first and looping over the channels."""
    x = np.asarray(x, np.float32)
    zp = np.asarray(zero_point)
    lo, hi = np.iinfo(zp.dtype).min, np.iinfo(zp.dtype).max
    scale = np.asarray(scale, np.float32)
    if scale.ndim == 0:
        q = np.clip(np.round(x / scale) + int(zp), lo, hi).astype(zp.dtype)
        return q, ((q.astype(np.int64) - int(zp)) * scale).astype(np.float32)
    moved = np.moveaxis(x, axis, 0)
    q = np.empty(moved.shape, zp.dtype)
    out = np.empty(moved.shape, np.float32)
    for c in range(moved.shape[0]):
        q[c] = np.clip(np.round(moved[c] / scale[c]) + int(zp[c]), lo, hi)
        out[c] = (q[c].astype(np.int64) - int(zp[c])) * scale[c]
    return np.moveaxis(q, 0, axis), np.moveaxis(out, 0, axis)


def _minmax_two_pass(feeds, input_name, qmin, qmax, symmetric=False):
    arrays = []
    for feed in feeds:
        if feed is None:
            break
        arrays.append(np.asarray(feed[input_name], np.float32).ravel())
    if not arrays:
        raise ValueError("no feeds")
    allv = np.concatenate(arrays)
    rmin, rmax = min(float(allv.min()), 0.0), max(float(allv.max()), 0.0)
    if symmetric:
        rmax = max(abs(rmin), rmax)
        rmin = -rmax
    scale = (rmax - rmin) / (qmax - qmin)
    if scale < np.finfo(np.float32).tiny:
        return 1.0, 0
    zp = np.round((qmin + qmax) / 2) if symmetric else np.round(qmin - rmin / scale)
    return float(np.float32(scale)), int(zp)


SOLUTIONS = [("12.1", "a loop over channels", _qdq_loop), ("12.2", "concatenate, then min/max", _minmax_two_pass)]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=labkit.solution_ids(SOLUTIONS))
def test_correct_solutions_pass(exercise_id, name, fn):
    passed, message = labkit.passes(exercise_id, fn)
    assert passed, message


def test_wrong_answers_are_declared():
    labkit.assert_wrong_answers_declared("12.1", "half away", "wraps", "zero-point", "axis 0")
    labkit.assert_wrong_answers_declared("12.2", "contain 0", "first batch", "None", "sign", "symmetric")


def test_qdq_rejects_division_by_reciprocal_only_if_cases_differ():
    # a float64 division would agree on these cases too; what matters is the rounding and saturation
    q, _ = qdq_pair(np.array([0.5, 1.5, 2.5, -2.5], f32), f32(1.0), np.int8(0))
    assert q.tolist() == [0, 2, 2, -2]


# --- the oracle: ONNX Runtime -------------------------------------------------------------------

def _ort_qdq(x, scale, zero_point, axis):
    ort = pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (lab 12's dependency)")
    onnx = pytest.importorskip("onnx", reason="onnx is not installed (lab 12's dependency)")
    from onnx import TensorProto, helper, numpy_helper

    zp = np.asarray(zero_point)
    qtype = TensorProto.UINT8 if zp.dtype == np.uint8 else TensorProto.INT8
    inits = [numpy_helper.from_array(np.asarray(scale, f32), "s"), numpy_helper.from_array(zp, "z")]
    nodes = [helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], axis=axis),
             helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], axis=axis)]
    graph = helper.make_graph(nodes, "qdq", [helper.make_tensor_value_info("x", TensorProto.FLOAT, list(x.shape))],
                              [helper.make_tensor_value_info("q", qtype, list(x.shape)),
                               helper.make_tensor_value_info("y", TensorProto.FLOAT, list(x.shape))], inits)
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 21)])
    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL  # keep the pair unfused
    session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"x": x})


@pytest.mark.parametrize("case_index", range(9))
def test_qdq_pair_agrees_with_onnxruntime(case_index):
    case = lab12._qdq_cases(np.random.default_rng(1201))[case_index]
    args = case.args
    axis = args[3] if len(args) > 3 else 1
    x = np.asarray(args[0], f32)
    axis_ort = axis if np.asarray(args[1]).ndim == 1 else 1 if x.ndim > 1 else 0
    q_ort, y_ort = _ort_qdq(x, args[1], args[2], axis_ort)
    q, y = qdq_pair(*args)
    assert q.dtype == q_ort.dtype
    np.testing.assert_array_equal(q, q_ort)
    np.testing.assert_array_equal(y, y_ort)


def test_qdq_pair_agrees_with_onnxruntime_on_many_random_values():
    rng = np.random.default_rng(7)
    x = rng.normal(0, 3, 20000).astype(f32)
    for scale, zp in [(f32(0.0137), np.uint8(131)), (f32(0.021), np.int8(-3))]:
        q_ort, y_ort = _ort_qdq(x, scale, zp, 0)
        q, y = qdq_pair(x, scale, zp)
        np.testing.assert_array_equal(q, q_ort)
        np.testing.assert_array_equal(y, y_ort)


@pytest.mark.parametrize("case_index", range(10))
def test_minmax_qparams_agrees_with_onnxruntime_compute_scale_zp(case_index):
    pytest.importorskip("onnxruntime", reason="onnxruntime is not installed (lab 12's dependency)")
    from onnxruntime.quantization.quant_utils import compute_scale_zp

    case = lab12._minmax_cases(np.random.default_rng(1202))[case_index]
    feeds, name, qmin, qmax = case.args[:4]
    symmetric = case.args[4] if len(case.args) > 4 else False
    seen = []
    for feed in feeds:
        if feed is None:
            break
        seen.append(feed[name].ravel())
    values = np.concatenate(seen)
    qtype = np.uint8 if qmin >= 0 else np.int8
    zp, scale = compute_scale_zp(values.min(), values.max(), np.array(qmin, qtype), np.array(qmax, qtype),
                                 symmetric=symmetric)
    assert minmax_qparams(*case.args) == (float(scale), int(zp))


def test_minmax_qparams_without_feeds_is_an_error():
    with pytest.raises(ValueError, match="no feed"):
        minmax_qparams([None, {"x": np.ones(2, f32)}], "x", 0, 255)
