"""Torch values in grader cases: the sandbox codec carries dense tensors both ways (built fresh from
their bytes, never unpickled), compare_values compares them, and torch is loaded only when needed.
"""

from __future__ import annotations

import json
import subprocess
import sys

import numpy as np
import pytest
import torch

from qlearn.grading import EXERCISES, Case, Exercise, register
from qlearn.grading import registry
from qlearn.grading._plain import TORCH_DTYPES, PlainError, Unsupported, carries_tensors, decode, encode
from qlearn.grading.compare import compare_values, format_value, plain_problem
from qlearn.grading.grade import GradeOptions, grade_notebook


def _round_trip(value):
    return decode(json.loads(json.dumps(encode(value))))


def _bits(t):
    """A tensor's exact content, comparable for every dtype (float8 has no == on some builds)."""
    t = t.detach().resolve_conj().contiguous()
    return str(t.dtype), tuple(t.shape), bytes(t.reshape(-1).view(torch.uint8).numpy())


TENSORS = {
    "int8 2-D": torch.arange(-3, 3, dtype=torch.int8).reshape(2, 3),
    "uint8": torch.tensor([0, 255], dtype=torch.uint8),
    "float32 requires_grad": torch.linspace(-1, 1, 7, requires_grad=True),
    "float64 0-d": torch.tensor(2.5, dtype=torch.float64),
    "bfloat16": torch.tensor([1.5, -0.0078125], dtype=torch.bfloat16),
    "float16 with inf and nan": torch.tensor([float("inf"), float("nan"), -0.0], dtype=torch.float16),
    "float8 e4m3fn": torch.tensor([0.5, 448.0]).to(torch.float8_e4m3fn),
    "bool": torch.tensor([[True], [False]]),
    "int64 extremes": torch.tensor([-(2**63), 2**63 - 1]),
    "uint32": torch.tensor([0, 2**32 - 1], dtype=torch.int64).to(torch.uint32),
    "complex64 conjugated": torch.tensor([1 + 2j], dtype=torch.complex64).conj(),
    "empty": torch.zeros(0, 3),
    "transposed (not contiguous)": torch.arange(12, dtype=torch.int32).reshape(3, 4).t(),
    "a Parameter": torch.nn.Parameter(torch.ones(2, 2)),
}


@pytest.mark.parametrize("name", TENSORS)
def test_a_tensor_crosses_as_a_fresh_plain_tensor(name):
    original = TENSORS[name]
    back = _round_trip((original, [original]))
    assert type(back[0]) is torch.Tensor and type(back[1][0]) is torch.Tensor
    assert _bits(back[0]) == _bits(original.resolve_conj())
    assert not back[0].requires_grad and back[0].is_contiguous()
    assert back[0] is not back[1][0]
    if back[0].numel():
        assert back[0].data_ptr() != original.data_ptr()


def test_every_declared_dtype_exists_in_this_torch_and_has_its_size():
    for name, size in TORCH_DTYPES.items():
        assert getattr(torch, name).itemsize == size, name


@pytest.mark.parametrize(("value", "why"), [
    (torch.ones(2).to_sparse(), "not dense"),
    (torch.ones(2, device="meta"), "not dense"),
])
def test_tensors_that_are_not_dense_do_not_cross(value, why):
    assert why in encode(value)["x"]


def test_a_quantized_tensor_or_a_subclass_does_not_cross():
    with pytest.warns(UserWarning):
        q = torch.quantize_per_tensor(torch.ones(2), 0.1, 0, torch.qint8)
    assert encode(q) == {"x": "a tensor of dtype torch.qint8"}

    class Liar(torch.Tensor):
        def __eq__(self, other):
            return True

    assert encode(torch.ones(2).as_subclass(Liar)) == {"x": "Liar"}
    assert isinstance(_round_trip(torch.ones(2).as_subclass(Liar)), Unsupported)


@pytest.mark.parametrize("data", [
    {"tt": "qint8", "s": [1], "b": "AA=="},
    {"tt": "float32", "s": [2], "b": "AAAAAA=="},          # 4 bytes for 2 float32
    {"tt": "float32", "s": [-1], "b": ""},
    {"tt": "float32", "s": "2", "b": ""},
    {"tt": ["float32"], "s": [1], "b": "AAAAAA=="},
    {"tt": "float32", "s": [10**9], "b": ""},
    {"tt": "float32", "s": [1], "b": "not base64!"},
])
def test_malformed_tensor_data_is_refused(data):
    with pytest.raises(PlainError):
        decode(data)


def test_carries_tensors_finds_them_anywhere():
    assert carries_tensors(encode((1, {"k": [np.zeros(2), torch.zeros(1)]})))
    assert not carries_tensors(encode((1, {"k": [np.zeros(2), "tt"]})))
    assert not carries_tensors(json.loads(json.dumps(encode({"tt": 1, "s": 2, "b": 3}))))


# --- compare_values on tensors ------------------------------------------------------------------

E = torch.tensor([1.0, 2.0, 3.0])


@pytest.mark.parametrize(("got", "expected", "kwargs", "reason"), [
    (torch.tensor([1.0, 2.0, 3.0]), E, {}, None),
    (torch.tensor([1.0, 2.0, 3.0], requires_grad=True), E, {}, None),
    (torch.nn.Parameter(torch.tensor([1.0, 2.0, 3.0])), E, {}, None),
    (torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), E, {}, None),
    (torch.tensor([1.0, 2.0, 3.0], dtype=torch.float64), E, {"strict_dtype": True},
     "returned dtype torch.float64, expected dtype torch.float32"),
    (torch.tensor([1.0, 2.0, 3.0001]), E, {}, "1 of 3 values differ; the first at index 2"),
    (torch.tensor([1.0, 2.0, 3.0001]), E, {"rtol": 1e-3}, None),
    (torch.tensor([1.0, 2.0, 3.01]), E, {"atol": 1e-3}, "1 of 3 values differ (tolerance"),
    (torch.tensor([1, 2, 3]), E, {}, "returned dtype torch.int64, expected a float dtype"),
    (torch.tensor([[1.0, 2.0, 3.0]]), E, {}, "returned shape (1, 3), expected shape (3,)"),
    (np.array([1.0, 2.0, 3.0], np.float32), E, {}, "expected a torch tensor, got an array"),
    ([1.0, 2.0, 3.0], E, {}, "expected a torch tensor, got a list"),
    (torch.tensor([1.0, 2.0, 3.0]), np.array([1.0, 2.0, 3.0]), {}, "expected a numpy array, got a torch tensor"),
    (torch.tensor(float("nan")), torch.tensor(float("nan")), {}, None),
    (torch.tensor(2.0), torch.tensor(2.5), {}, "returned 2.0, expected 2.5"),
    (torch.tensor([-128, 127], dtype=torch.int8), torch.tensor([-128, 127], dtype=torch.int32), {}, None),
    (torch.tensor([-128, 127], dtype=torch.int8), torch.tensor([-128, 126], dtype=torch.int8), {},
     "1 of 2 values differ; the first at index 1: returned 127, expected 126"),
    (torch.tensor([1.5], dtype=torch.bfloat16), torch.tensor([1.5], dtype=torch.bfloat16), {}, None),
    (torch.tensor([1.5], dtype=torch.bfloat16), torch.tensor([1.75], dtype=torch.bfloat16), {}, "values differ"),
    ((torch.tensor([1]), 3), (torch.tensor([1]), 3), {}, None),
    ((torch.tensor([1]), 3), (torch.tensor([2]), 3), {}, "item 0 (of 2)"),
    (torch.ones(3).to_sparse(), E, {}, "not dense"),
])
def test_compare_values_on_tensors(got, expected, kwargs, reason):
    result = compare_values(got, expected, **kwargs)
    if reason is None:
        assert result is None
    else:
        assert result is not None and reason in result, result


def test_a_tensor_whose_eq_lies_is_refused():
    class Liar(torch.Tensor):
        def __eq__(self, other):
            return torch.ones(self.shape, dtype=torch.bool)

    reason = compare_values(torch.zeros(3).as_subclass(Liar), E)
    assert reason == "returned a Liar, a subclass of torch.Tensor: return a plain tensor"
    assert plain_problem(torch.zeros(3)) is None


def test_a_patched_tensor_eq_changes_nothing(monkeypatch):
    monkeypatch.setattr(torch.Tensor, "__eq__", lambda self, other: torch.ones(self.shape, dtype=torch.bool))
    monkeypatch.setattr(torch, "equal", lambda a, b: True)
    assert compare_values(torch.zeros(3), E) is not None


def test_tensors_are_shown_briefly_and_deterministically():
    assert format_value(torch.tensor([1.0, 2.5])) == "tensor([1. , 2.5], dtype=torch.float32)"
    assert format_value(torch.arange(30, dtype=torch.int8)) == (
        "tensor([ 0,  1,  2, ..., 27, 28, 29], dtype=torch.int8, shape=(30,))")
    assert format_value(torch.tensor([1, 2]), exact_dtype=False) == "tensor([1, 2], any integer dtype)"


def test_comparing_numpy_values_never_imports_torch():
    code = ("import sys, numpy as np; from qlearn.grading.compare import compare_values, format_value; "
            "from qlearn.grading._plain import encode, decode; "
            "compare_values(np.zeros(2), np.ones(2)); format_value((np.zeros(2), 1.5)); "
            "decode(encode((np.zeros(2), 1, [2.5]))); print('torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "False"


# --- the grader, end to end ---------------------------------------------------------------------

def _tensor_cases(rng):
    return [Case("int8 codes", (torch.tensor([-128, 0, 127], dtype=torch.int8),)),
            Case("float32 matrix", (torch.arange(6, dtype=torch.float32).reshape(2, 3),)),
            Case("bfloat16", (torch.tensor([1.5, -2.0], dtype=torch.bfloat16),)),
            Case("random float32", (torch.from_numpy(rng.normal(size=4).astype(np.float32)),))]


def _numpy_cases(rng):
    return [Case("zeros", (np.zeros(2),)), Case("ones", (np.ones(3),)), Case("random", (rng.normal(size=2),))]


@pytest.fixture
def torch_lab(monkeypatch):
    assert len(EXERCISES) > 0
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_QUESTIONS", dict(registry._QUESTIONS))
    register(Exercise(id="98.1", title="Negate a tensor", points=2, reference=lambda t: -t.to(torch.float32),
                      cases=_tensor_cases, function="negate", hint="Flip the sign, in float32.",
                      notebook="98_torch", allowed=("torch",)))
    register(Exercise(id="98.2", title="Is torch loaded?", points=1, reference=lambda x: False,
                      cases=_numpy_cases, function="torch_loaded", hint="It should not be.",
                      notebook="98_torch"))


def _notebook(tmp_path, name, negate):
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [], "source": source}
             for source in ("import sys\nimport torch", negate,
                            "def torch_loaded(x):\n    return 'torch' in sys.modules")]
    path = tmp_path / name / "98_torch.ipynb"
    path.parent.mkdir()
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    return path


@pytest.mark.parametrize(("negate", "points", "says"), [
    ("def negate(t):\n    return -t.float()", 2, None),
    ("def negate(t):\n    t = t.float()\n    t.requires_grad_(True)\n    return -t", 2, None),
    ("def negate(t):\n    return -t.double()", 2, None),          # any float dtype, as for arrays
    ("def negate(t):\n    return (-t.float()).numpy()", 0, "expected a torch tensor"),
    ("def negate(t):\n    return -t", 0, "returned dtype torch.int8, expected a float dtype"),
])
def test_the_grader_carries_tensors_both_ways(torch_lab, tmp_path, negate, points, says):
    path = _notebook(tmp_path, "n", negate)
    grade = grade_notebook(path, GradeOptions(execute=False, hidden_seeds=(7,)))
    assert grade.error is None, grade.error
    rows = {row["id"]: row for row in grade.exercises}
    assert rows["98.1"]["points"] == points, rows["98.1"]["message"]
    if says:
        assert says in rows["98.1"]["message"], rows["98.1"]["message"]
    # the numpy exercise ran in a child that never loaded torch, although the notebook imports it
    assert rows["98.2"]["points"] == 1, rows["98.2"]["message"]
