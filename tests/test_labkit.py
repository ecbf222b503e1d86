"""The shared lab-test helper (tests/labkit.py) and tools/exercise_sizes.py: each assertion passes on
a good lab and fails on a bad one."""

from __future__ import annotations

import importlib.util
import json
import types
from pathlib import Path

import numpy as np
import pytest

import labkit
from qlearn.grading import EXERCISES, Case, Exercise, register
from qlearn.grading import registry
from qlearn.grading.labs import lab00

ROOT = Path(__file__).resolve().parents[1]
LAB00 = [ex.id for ex in EXERCISES.values() if ex.lab == "00"]


def test_passes_and_rejected():
    assert labkit.passes("00.2", lambda qmin, qmax: qmax - qmin + 1) == (True, "Exercise 00.2 passed: 1/1 points (10 cases)")
    passed, message = labkit.passes("00.2", EXERCISES["00.2"].reference)  # the reference is delegation
    assert not passed and "qlearn.grading" in message
    assert labkit.unwatched("00.2", EXERCISES["00.2"].reference)[0] == "passed"
    assert "hint" in labkit.assert_rejected("00.2", lambda qmin, qmax: qmax - qmin, says="case 1 of")
    with pytest.raises(AssertionError, match="accepts this wrong answer"):
        labkit.assert_rejected("00.2", lambda qmin, qmax: qmax - qmin + 1)
    with pytest.raises(AssertionError, match="does not say"):
        labkit.assert_rejected("00.2", lambda qmin, qmax: qmax - qmin, says="no such words")


def test_assert_lab_registers():
    labkit.assert_lab_registers(lab00, LAB00 + labkit.lab_ids("00")[len(LAB00):], "00_welcome")
    with pytest.raises(AssertionError, match="the test expects"):
        labkit.assert_lab_registers(lab00, LAB00[:-1], "00_welcome")
    with pytest.raises(AssertionError, match="another notebook"):
        labkit.assert_lab_registers("00", labkit.lab_ids("00"), "00_other")
    with pytest.raises(AssertionError, match="points"):
        labkit.assert_lab_registers(0, labkit.lab_ids(0), "00_welcome", points=999)


def _module(name="labfake", **attrs):
    module = types.ModuleType(name)
    for key, value in attrs.items():
        if callable(value):
            value.__module__ = name
        setattr(module, key, value)
    return module


def test_assert_module_exports():
    labkit.assert_module_exports(lab00)

    def f():
        pass

    def g():
        pass

    labkit.assert_module_exports(_module(__all__=["f", "g"], f=f, g=g), {"f", "g"})
    with pytest.raises(AssertionError, match="leaves them out of __all__"):
        labkit.assert_module_exports(_module(__all__=["f"], f=f, g=g))
    with pytest.raises(AssertionError, match="does not define"):
        labkit.assert_module_exports(_module(__all__=["f", "h"], f=f))
    with pytest.raises(AssertionError, match="repeats"):
        labkit.assert_module_exports(_module(__all__=["f", "f"], f=f))
    with pytest.raises(AssertionError, match="no explicit __all__"):
        labkit.assert_module_exports(_module(f=f))
    with pytest.raises(AssertionError, match="missing"):
        labkit.assert_module_exports(_module(__all__=["f"], f=f), {"f", "g"})


def test_assert_no_torch_import():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab00", also=("matplotlib",))
    with pytest.raises(AssertionError, match="imports \\['torch'\\]"):
        labkit.assert_no_torch_import("torch.nn")
    with pytest.raises(AssertionError, match="failed"):
        labkit.assert_no_torch_import("qlearn.no_such_module")


@pytest.fixture
def private(monkeypatch):
    assert len(EXERCISES) > 0
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return registry


def _exercise(**overrides):
    fields = dict(id="99.1", title="Double", points=1, reference=lambda x: 2 * x, function="double", hint="Twice.",
                  notebook="99_test", cases=lambda rng: [Case("one", (1,)), Case("two", (2,)), Case("three", (3,)),
                                                         Case("random", (int(rng.integers(100)),))],
                  wrong_answers={"adds one": lambda x: x + 1})
    fields.update(overrides)
    return register(Exercise(**fields))


def test_assert_cases_deterministic(private):
    for exercise_id in LAB00:
        labkit.assert_cases_deterministic(exercise_id)
    _exercise()
    labkit.assert_cases_deterministic("99.1")
    state = np.random.default_rng(5)
    _exercise(id="99.2", cases=lambda rng: [Case(n, (float(state.normal()),)) for n in "abcd"])
    with pytest.raises(AssertionError, match="differs between two calls"):
        labkit.assert_cases_deterministic("99.2")
    _exercise(id="99.3", cases=lambda rng: [Case(f"case {rng.integers(9)}", (1,)), Case("b", (2,)),
                                            Case("c", (3,)), Case("d", (4,))])
    with pytest.raises(AssertionError, match="case names"):
        labkit.assert_cases_deterministic("99.3")
    with pytest.raises(AssertionError, match="fewer than 9"):
        labkit.assert_cases_deterministic("99.1", min_cases=9)


def test_assert_wrong_answers_declared(private):
    _exercise()
    labkit.assert_wrong_answers_declared("99.1", "adds one")
    with pytest.raises(AssertionError, match="no wrong answer about"):
        labkit.assert_wrong_answers_declared("99.1", "wraps")
    _exercise(id="99.2", wrong_answers={"not wrong at all": lambda x: x * 2})
    with pytest.raises(AssertionError, match="accepts the wrong answer 'not wrong at all'"):
        labkit.assert_wrong_answers_declared("99.2")


def test_solution_ids():
    assert labkit.solution_ids([("06.1", "a loop", None), ("06.2", "numpy", None)]) == ["06.1 a loop", "06.2 numpy"]


# --- tools/exercise_sizes.py -------------------------------------------------------------------

def _sizes_tool():
    spec = importlib.util.spec_from_file_location("exercise_sizes", ROOT / "tools" / "exercise_sizes.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_code_lines_count_code_only():
    tool = _sizes_tool()
    assert tool.code_lines(["    # a comment", "", "   ", "    x = 1", "    return x  # done"]) == 2


def test_targets_are_measured():
    tool = _sizes_tool()
    good = {"00": {"00.1": 1, "00.2": 10}, "01": {"01.1": 6, "01.2": 12}, "02": {"02.1": 10, "02.2": 7}}
    assert [met for met, _ in tool.targets(good)] == [True, True, True]
    bad = {"00": {"00.1": 1}, "01": {"01.1": 1, "01.2": 5}, "02": {"02.1": 9}}
    met = tool.targets(bad)
    assert [m for m, _ in met] == [False, False, False]
    assert "01.1" in met[1][1] and "00, 01, 02" in met[2][1]  # lab 00 too needs a 10+ line exercise


def _notebook(tmp_path, body_lines):
    body = "\n".join(f"    {line}" for line in body_lines)
    cells = [{"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
              "source": f"def clamp(x, lo, hi):\n    ### BEGIN SOLUTION\n{body}\n    ### END SOLUTION"},
             {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
              "source": "def num_codes(qmin, qmax):\n    ### BEGIN SOLUTION\n    return qmax - qmin + 1\n"
                        "    ### END SOLUTION"}]
    path = tmp_path / "00_welcome.ipynb"
    path.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": cells}))
    return path


def test_the_tool_prints_the_table_and_exits_1_on_a_missed_target(tmp_path, capsys):
    tool = _sizes_tool()
    path = _notebook(tmp_path, ["# clamp from below", "y = x", "", "return y"])
    assert tool.exercise_sizes(path) == {"00.1": 2, "00.2": 1}
    assert tool.main([str(path)]) == 1
    out = capsys.readouterr().out
    assert "MISS median over all labs: 1.5 lines" in out and "PASS one-liners outside lab 00: 0" in out
    path = _notebook(tmp_path, [f"y{i} = {i}" for i in range(11)] + ["return x"])
    assert tool.main([str(path)]) == 0  # the median of 12 and 1 is 6.5; lab 00 may have one-liners
    out = capsys.readouterr().out
    assert "PASS median over all labs: 6.5 lines" in out and "PASS labs without an exercise of 10+" in out


def test_a_notebook_whose_regions_cannot_be_read_is_an_error_line(tmp_path, capsys):
    tool = _sizes_tool()
    good = _notebook(tmp_path, [f"y{i} = {i}" for i in range(11)] + ["return x"])
    broken = tmp_path / "01_broken.ipynb"
    broken.write_text(json.dumps({"nbformat": 4, "nbformat_minor": 5, "metadata": {}, "cells": [
        {"cell_type": "code", "metadata": {}, "execution_count": None, "outputs": [],
         "source": "### BEGIN SOLUTION\nx = 1\n### END SOLUTION"}]}))
    assert tool.main([str(good), str(broken)]) == 1
    out = capsys.readouterr().out
    assert "ERROR 01_broken.ipynb: " in out and "not inside a function body" in out
