"""The grading machinery: exercises, the registry, check() and its feedback, and every lab's checks.

The generic tests at the end run over ALL registered exercises: each reference passes its own
check, and the answers a check must reject (the input returned unchanged, all zeros, every wrong
answer the lab declares) are rejected.
"""

from __future__ import annotations

import copy
import importlib
import pkgutil
import sys
import warnings

import numpy as np
import pytest

from qlearn.grading import (
    EXERCISES,
    Case,
    CheckResult,
    Exercise,
    check,
    compare_values,
    exercises_for_lab,
    format_value,
    implementation,
    reference,
    register,
)
from qlearn.grading import labs, registry
from qlearn.grading.checker import run_cases
from labkit import same_value as _same

# --- a private exercise for the machinery tests ---------------------------------------------------

SHARED = np.arange(4, dtype=np.float32)  # the same array object in every call of _cases


def _double(x):
    """2 x."""
    return np.asarray(x) * 2


def _cases(rng):
    return [
        Case("shared input", (SHARED,)),
        Case("random values", (rng.normal(size=5).astype(np.float32),)),
        Case("negative values", (np.array([-1.5, -2.0], np.float32),)),
    ]


def _make(**overrides) -> Exercise:
    fields = dict(id="99.1", title="Double", points=2, reference=_double, cases=_cases, function="double",
                  hint="Multiply by two.", notebook="99_test")
    fields.update(overrides)
    return Exercise(**fields)


@pytest.fixture
def exercise(monkeypatch):
    """Exercise 99.1 registered in a private copy of the catalogue."""
    assert len(EXERCISES) > 0  # load the labs first, so that they land in the real catalogue
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    return register(_make())


# --- Exercise and Case ----------------------------------------------------------------------------

def test_exercise_normalizes_its_id_and_knows_its_lab():
    ex = _make(id="9.1", notebook="09_x")
    assert ex.id == "09.1" and ex.lab == "09"


@pytest.mark.parametrize("overrides, message", [
    ({"id": "2-3"}, "looks like '02.3'"),
    ({"points": 0}, "points must be a positive int"),
    ({"points": True}, "points must be a positive int"),
    ({"function": "not a name"}, "function must be a Python name"),
    ({"function": "lambda"}, "function must be a Python name"),
    ({"notebook": "02_wrong_lab"}, "start with its lab number"),
    ({"hint": " "}, "hint must be a non-empty string"),
    ({"rtol": -1.0}, "rtol and atol must be >= 0"),
])
def test_exercise_rejects_bad_fields(overrides, message):
    with pytest.raises(ValueError, match=message):
        _make(**overrides)


def test_exercise_rejects_non_callables():
    with pytest.raises(TypeError, match="reference must be callable"):
        _make(reference=3)
    with pytest.raises(TypeError, match=r"wrong_answers\['x'\] must be callable"):
        _make(wrong_answers={"x": 1})


def test_wrong_answers_are_read_only():
    ex = _make(wrong_answers={"zero": lambda x: 0 * x})
    with pytest.raises(TypeError):
        ex.wrong_answers["other"] = abs


def test_case_checks_its_fields():
    assert Case("x", (1,)).kwargs == {}
    with pytest.raises(TypeError, match="args must be a tuple"):
        Case("x", [1])
    with pytest.raises(ValueError, match="non-empty"):
        Case("", (1,))


def test_make_cases_rejects_duplicate_names_and_empty_lists():
    with pytest.raises(ValueError, match="case names must be unique"):
        _make(cases=lambda rng: [Case("a", (1,)), Case("a", (2,))]).make_cases()
    with pytest.raises(ValueError, match="no case"):
        _make(cases=lambda rng: []).make_cases()


# --- the registry ---------------------------------------------------------------------------------

def test_duplicate_id_is_an_error(exercise):
    with pytest.raises(ValueError, match="99.1 is already registered"):
        register(_make())


def test_register_takes_only_exercises(exercise):
    with pytest.raises(TypeError):
        register("99.2")


def test_exercises_is_a_read_only_mapping_in_numeric_order(exercise):
    with pytest.raises(TypeError):
        EXERCISES["99.9"] = exercise  # type: ignore[index]
    ids = list(EXERCISES)
    assert ids == sorted(ids, key=lambda i: tuple(int(p) for p in i.split(".")))
    assert EXERCISES["99.1"] is exercise and "99.1" in EXERCISES
    assert exercises_for_lab("99") == [exercise] == exercises_for_lab(99)


def test_every_lab_module_is_imported_and_registers_exercises():
    names = [m.name for m in pkgutil.iter_modules(labs.__path__) if registry._LAB_MODULE.match(m.name)]
    assert "lab00" in names
    assert len(EXERCISES) > 0
    for name in names:
        assert f"qlearn.grading.labs.{name}" in sys.modules
        assert exercises_for_lab(name[3:]), f"{name}.py registers no exercise"


def test_unknown_id_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"unknown exercise id '77.7'; the valid ids are: 00\.1, 00\.2"):
        check("77.7", abs)
    with pytest.raises(ValueError, match="unknown exercise id"):
        reference("nonsense")


def test_short_ids_are_accepted():
    assert check("0.2", lambda qmin, qmax: qmax - qmin + 1, verbose=False).passed


# --- check() and its feedback ---------------------------------------------------------------------

def test_pass_message_and_result(exercise, capsys):
    result = check("99.1", lambda x: x * 2)
    assert capsys.readouterr().out == "Exercise 99.1 passed: 2/2 points (3 cases)\n"
    assert (result.exercise_id, result.passed, result.points, result.max_points) == ("99.1", True, 2, 2)
    assert result.status == "passed" and result.message == "Exercise 99.1 passed: 2/2 points (3 cases)"


def test_not_done_yet(exercise, capsys):
    def double(x):
        raise NotImplementedError("Exercise 99.1")

    result = check("99.1", double)
    out = capsys.readouterr().out
    assert out.startswith("Exercise 99.1 is not done yet: 0/2 points\n")
    assert "Traceback" not in out and "double()" in out
    assert (result.passed, result.points, result.status) == (False, 0, "not done")
    assert result.implementation is _double


def test_failure_feedback_shows_case_input_expected_returned_and_hint(exercise, capsys):
    result = check("99.1", lambda x: x * 3)
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == "Exercise 99.1 failed: 0/2 points"
    assert lines[1] == "  case 1 of 3: shared input"
    assert lines[2] == "  input:    x = array([0., 1., 2., 3.], dtype=float32)"
    assert lines[3] == "  expected: array([0., 2., 4., 6.], any float dtype)"
    assert lines[4] == "  returned: array([0., 3., 6., 9.], dtype=float32)"
    assert lines[5] == "  problem:  3 of 4 values differ; the first at index 1: returned 3.0, expected 2.0"
    assert lines[6] == "  hint:     Multiply by two."
    assert result.status == "failed" and result.points == 0 and result.message == out.rstrip("\n")


def test_feedback_stops_at_the_first_failing_case(exercise):
    result = check("99.1", lambda x: np.where(x < -1, x, 2 * x), verbose=False)
    assert "case 2 of 3: negative values" in result.message  # edge cases run before random ones
    assert "case 1" not in result.message and "case 3" not in result.message


def test_named_edge_cases_run_before_random_ones(exercise):
    names = [case.name for case in EXERCISES["99.1"].make_cases()]
    assert names == ["shared input", "negative values", "random values"]
    for ex_id in ALL_IDS:
        flags = [case.random for case in EXERCISES[ex_id].make_cases()]
        assert flags == sorted(flags), f"exercise {ex_id}: a random case runs before an edge case"


def test_an_exception_is_reported_briefly_with_the_case(exercise, capsys):
    def double(x):
        y = x * 2
        return y + undefined_name  # noqa: F821

    result = check("99.1", double)
    out = capsys.readouterr().out
    assert out.startswith("Exercise 99.1 raised an error: 0/2 points\n  case 1 of 3: shared input\n")
    assert "NameError: name 'undefined_name' is not defined" in out
    assert f"(raised in double, line {double.__code__.co_firstlineno + 2})" in out
    assert "hint:     Multiply by two." in out
    assert "Traceback" not in out and "File " not in out
    assert (result.passed, result.points, result.status) == (False, 0, "error")
    assert result.implementation is _double


def test_inputs_are_deep_copied_for_every_call(exercise):
    def double_in_place(x):
        x *= 2  # changes its input: only its own copy
        return x

    before = SHARED.copy()
    for _ in range(2):  # a second check still sees the original inputs
        assert check("99.1", double_in_place, verbose=False).passed
    np.testing.assert_array_equal(SHARED, before)


def test_reference_also_gets_a_copy(exercise, monkeypatch):
    def spoiling_reference(x):
        out = np.asarray(x) * 2
        x[...] = 0  # would change the learner's input if they shared it
        return out

    monkeypatch.setitem(registry._REGISTRY, "99.1", _make(reference=spoiling_reference))
    assert check("99.1", lambda x: x * 2, verbose=False).passed


def test_a_bug_in_the_reference_is_not_blamed_on_the_learner(exercise, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "99.1", _make(reference=lambda x: 1 / 0))
    with pytest.raises(RuntimeError, match="the reference of exercise 99.1 failed"):
        check("99.1", lambda x: x, verbose=False)


def test_a_custom_compare_is_used_and_its_errors_are_failures(exercise, monkeypatch):
    monkeypatch.setitem(registry._REGISTRY, "99.1", _make(compare=lambda got, exp: "always wrong"))
    assert "problem:  always wrong" in check("99.1", lambda x: x * 2, verbose=False).message

    def broken(got, expected):
        raise KeyError("oops")

    monkeypatch.setitem(registry._REGISTRY, "99.1", _make(compare=broken))
    result = check("99.1", lambda x: x * 2, verbose=False)
    assert not result.passed and "could not be compared (KeyError" in result.message


def test_check_needs_a_callable(exercise):
    with pytest.raises(TypeError, match="needs your function double"):
        check("99.1", 3)


def test_feedback_is_deterministic(exercise):
    messages = {check("99.1", lambda x: x + 1, verbose=False).message for _ in range(3)}
    assert len(messages) == 1


def test_implementation_falls_back_to_the_reference_silently(exercise, capsys):
    def right(x):
        return x * 2

    assert implementation("99.1", right) is right
    assert implementation("99.1", lambda x: x) is _double
    assert reference("99.1") is _double
    assert capsys.readouterr().out == ""


def test_check_result_repr_and_notebook_display(exercise, capsys):
    result = check("99.1", lambda x: x * 2, verbose=False)
    assert repr(result) == ("CheckResult(exercise_id='99.1', passed=True, points=2, max_points=2, "
                            "status='passed')")
    result._ipython_display_()  # shown in a notebook when it was not printed yet
    assert capsys.readouterr().out == result.message + "\n"
    printed = check("99.1", lambda x: x * 2)
    capsys.readouterr()
    printed._ipython_display_()  # already printed: a check cell shows the message once
    assert capsys.readouterr().out == ""
    assert isinstance(printed, CheckResult)


def test_pass_and_fail_look_different_in_html_with_the_same_plain_text(exercise):
    from qlearn.grading.checker import feedback_html

    passed = check("99.1", lambda x: x * 2, verbose=False)
    failed = check("99.1", lambda x: x * 3, verbose=False)
    good, bad = passed._repr_html_(), failed._repr_html_()
    assert "qlearn-check-passed" in good and "\u2713" in good and "Passed" in good and "#1a7f37" in good
    assert "qlearn-check-failed" in bad and "\u2717" in bad and "Failed" in bad and "#cf222e" in bad
    for html_text, result in ((good, passed), (bad, failed)):
        assert 'role="status"' in html_text
        assert result.message.splitlines()[0] in html_text  # the words a browser test looks for
    assert "Exercise 99.1 passed: 2/2 points" in good and "Exercise 99.1 failed: 0/2 points" in bad
    assert "&lt;b&gt;" in feedback_html("failed", "<b>")  # the message is escaped
    assert feedback_html("not done", "x") != feedback_html("failed", "x") != feedback_html("passed", "x")


def test_a_notebook_gets_an_html_bundle_whose_plain_text_is_the_message(exercise, monkeypatch):
    from qlearn.grading import checker

    shown = []
    monkeypatch.setattr(checker, "_in_notebook", lambda: True)
    monkeypatch.setitem(sys.modules, "IPython.display", type(sys)("IPython.display"))
    sys.modules["IPython.display"].display = lambda bundle, raw: shown.append((bundle, raw))
    result = check("99.1", lambda x: x * 2)
    (bundle, raw), = shown
    assert raw is True and bundle["text/plain"] == result.message
    assert bundle["text/html"] == result._repr_html_()


def test_the_expected_value_names_a_dtype_only_when_it_is_required():
    wrong = check("02.1", lambda x, s, z, qmin, qmax: np.zeros(np.shape(x), np.int32), verbose=False).message
    assert "any integer dtype" in wrong and "dtype=int8" not in wrong.split("returned:")[0]
    strict = check("01.2", lambda x, dtype: np.zeros(np.shape(x), dtype), verbose=False).message
    assert "expected: array(" in strict and "dtype=int8" in strict.split("returned:")[0]


# --- compare_values and format_value --------------------------------------------------------------

i8, u8, f32 = np.int8, np.uint8, np.float32


@pytest.mark.parametrize("got, expected, kwargs, reason", [
    (np.array([1, 2], i8), np.array([1, 2], i8), {}, None),
    (np.array([1, 2], np.int64), np.array([1, 2], i8), {}, None),  # same kind: integers
    (np.array([1, 2], u8), np.array([1, 2], i8), {}, None),
    (np.array([1, 2], np.int64), np.array([1, 2], i8), {"strict_dtype": True},
     "returned dtype int64, expected dtype int8"),
    (np.array([1.0, 2.0]), np.array([1, 2], i8), {},
     "returned dtype float64, expected an integer dtype such as int8"),
    (np.array([1, 2, 3], i8), np.array([1, 2], i8), {}, "returned shape (3,), expected shape (2,)"),
    ([1, 2], np.array([1, 2], i8), {}, "expected a numpy array, got a list of 2 items; convert it with np.asarray(...)"),
    (np.array([[1, 2], [3, 5]], i8), np.array([[1, 2], [3, 4]], i8), {},
     "1 of 4 values differ; the first at index (1, 1): returned 5, expected 4"),
    (np.array([np.nan, 1.0], f32), np.array([np.nan, 1.0], f32), {}, None),
    (np.array([1.0000001], f32), np.array([1.0], f32), {}, "1 of 1 values differ; the first at index 0: "
     "returned 1.0000001, expected 1.0"),
    (np.array([1.0000001], f32), np.array([1.0], f32), {"rtol": 1e-6}, None),
    (256, 256, {}, None),
    (np.int64(256), 256, {}, None),
    (256.0, 256, {}, "expected an integer, got float 256.0"),
    (True, 1, {}, "expected an integer, got bool True"),
    (255, 256, {}, "returned 255, expected 256"),
    (0.1 + 0.2, 0.3, {}, "returned 0.30000000000000004, expected 0.3"),
    (0.1 + 0.2, 0.3, {"rtol": 1e-9}, None),
    (np.float32(0.5), 0.5, {}, None),
    (np.array(0.5), 0.5, {}, None),  # a 0-d array is the number it holds
    (float("nan"), float("nan"), {}, None),
    (float("inf"), float("inf"), {"rtol": 0.1}, None),
    ("0.5", 0.5, {}, "expected a number, got str '0.5'"),
    (np.bool_(True), True, {}, None),
    (1, True, {}, "expected a bool (True or False), got int 1"),
    ((f32(0.5), 3), (f32(0.5), 3), {}, None),
    ([f32(0.5), 3], (f32(0.5), 3), {}, None),
    ((f32(0.5), 4), (f32(0.5), 3), {}, "item 1 (of 2): returned 4, expected 3"),
    ((f32(0.5),), (f32(0.5), 3), {}, "returned 1 items, expected 2"),
    (np.array([0.5, 3.0]), (0.5, 3), {}, "expected a tuple of 2 items, got an array of dtype float64 and shape (2,)"),
    ({"a": 1}, {"a": 1}, {}, None),
    ({"b": 1}, {"a": 1}, {}, "returned keys ['b'], expected keys ['a']"),
    (None, None, {}, None),
    (0, None, {}, "expected None, got int 0"),
    ("int8", "int8", {}, None),
])
def test_compare_values(got, expected, kwargs, reason):
    assert compare_values(got, expected, **kwargs) == reason


def test_format_value_is_short_and_free_of_memory_addresses():
    assert format_value(np.arange(3, dtype=np.int8)) == "array([0, 1, 2], dtype=int8)"
    long = format_value(np.linspace(0, 1, 1000, dtype=np.float32))
    assert "..." in long and "shape=(1000,)" in long and len(long) < 200
    assert "0x" not in format_value(lambda: None) and "0x" not in format_value(object())
    assert format_value((1,)) == "(1,)"


# --- every registered exercise --------------------------------------------------------------------

ALL_IDS = list(EXERCISES)
WRONG = [(ex_id, name) for ex_id in ALL_IDS for name in EXERCISES[ex_id].wrong_answers]


def _zeros_like(value):
    if isinstance(value, np.ndarray):
        return np.zeros_like(value)
    if type(value).__module__.split(".")[0] == "torch" and hasattr(value, "dtype") and hasattr(value, "shape"):
        import torch

        return torch.zeros_like(value)
    if isinstance(value, dict):
        return {k: _zeros_like(v) for k, v in value.items()}
    if isinstance(value, (tuple, list)):
        return type(value)(_zeros_like(v) for v in value)
    if isinstance(value, (bool, np.bool_)):
        return False
    if isinstance(value, (int, np.integer)):
        return 0
    if isinstance(value, (float, np.floating)):
        return 0.0
    return value


@pytest.fixture
def quiet():
    with warnings.catch_warnings():  # wrong answers may overflow or divide by zero on purpose
        warnings.simplefilter("ignore")
        yield


def test_lab00_is_registered_with_its_wrong_answers():
    assert [ex.id for ex in exercises_for_lab("00")] == ["00.1", "00.2", "00.3", "00.4"]
    assert [ex.function for ex in exercises_for_lab("00")] == [
        "clamp", "num_codes", "relative_error", "bits_for_error"]
    assert [q.id for q in registry.questions_for_lab("00")] == ["00.Q1"]
    assert [item.id for item in registry.items_for_lab("00")] == ["00.1", "00.2", "00.3", "00.4", "00.Q1"]
    assert all(len(ex.wrong_answers) >= 3 for ex in exercises_for_lab("00"))


def _unwatched_status(ex_id, fn):
    """The outcome of ``fn`` on every case, judged on its answers alone (no delegation watch).

    The references and wrong answers live in ``qlearn.grading``, so ``check`` would reject them as
    delegated before looking at a single answer; these tests are about the answers.
    """
    results = run_cases(EXERCISES[ex_id], fn, watch=False)
    return results[-1].status, results


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_reference_passes_its_own_cases(ex_id):
    ex = EXERCISES[ex_id]
    status, results = _unwatched_status(ex_id, ex.reference)
    assert status == "passed", (results[-1].case.name, results[-1].reason, results[-1].error)
    assert len(results) == len(ex.make_cases())


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_the_reference_itself_is_rejected_by_check(ex_id):
    result = check(ex_id, EXERCISES[ex_id].reference, verbose=False)
    assert (result.status, result.points) == ("delegated", 0)
    assert result.message.startswith(f"Exercise {ex_id} failed: 0/{EXERCISES[ex_id].points} points")
    assert "qlearn.grading" in result.message


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_cases_are_deterministic_and_varied(ex_id):
    ex = EXERCISES[ex_id]
    first, second = ex.make_cases(), ex.make_cases()
    assert [c.name for c in first] == [c.name for c in second]
    for a, b in zip(first, second, strict=True):  # torch tensors pickle their storage address: by value
        assert _same(a.args, b.args) and _same(dict(a.kwargs), dict(b.kwargs)), (
            f"case {a.name!r} differs between two calls: cases() must depend on its rng only")
    assert len(first) >= 4, "a check needs random cases and edge cases"


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_the_input_returned_unchanged_fails(ex_id, quiet):
    result = check(ex_id, lambda *args, **kwargs: args[0], verbose=False)
    assert not result.passed and result.status in ("failed", "error")
    assert _unwatched_status(ex_id, lambda *args, **kwargs: args[0])[0] in ("failed", "error")


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_zeros_fail(ex_id, quiet):
    ex = EXERCISES[ex_id]
    status, _ = _unwatched_status(
        ex_id, lambda *args, **kwargs: _zeros_like(ex.reference(*copy.deepcopy(args), **kwargs)))
    assert status in ("failed", "error")


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_not_implemented_is_not_done_yet(ex_id):
    def stub(*args, **kwargs):
        raise NotImplementedError(f"Exercise {ex_id}")

    result = check(ex_id, stub, verbose=False)
    assert (result.status, result.points) == ("not done", 0)
    assert result.message.startswith(f"Exercise {ex_id} is not done yet: 0/{EXERCISES[ex_id].points} points")
    assert result.implementation is EXERCISES[ex_id].reference


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_every_exercise_declares_wrong_answers(ex_id):
    assert EXERCISES[ex_id].wrong_answers, f"exercise {ex_id} declares no typical wrong answer to reject"


@pytest.mark.parametrize("ex_id, name", WRONG, ids=[f"{i}-{n}" for i, n in WRONG])
def test_typical_wrong_answers_are_rejected(ex_id, name, quiet):
    status, _ = _unwatched_status(ex_id, EXERCISES[ex_id].wrong_answers[name])
    assert status in ("failed", "error"), f"exercise {ex_id} accepts the wrong answer {name!r}"


def test_lab_modules_import_cleanly_on_their_own():
    # a lab module imported directly (before EXERCISES is used) must not register twice
    module = importlib.import_module("qlearn.grading.labs.lab00")
    assert module.clamp is EXERCISES["00.1"].reference


def test_checks_stay_light_no_torch_plots_or_notebook_tools():
    # check() runs in every notebook and in the grader's last cell: loading every lab's
    # exercises must not pull in torch, matplotlib, widgets or nbformat (seconds of start-up each)
    import subprocess

    # exercises and questions (a lab whose references or cases need torch import it inside them).
    # Checking a numpy exercise, passing or failing, and a question must not load torch either: the
    # comparison and the codec know tensors only once torch is loaded by someone else.
    code = ("import sys; from qlearn.grading import EXERCISES, QUESTIONS, check; len(EXERCISES); len(QUESTIONS); "
            "assert check('00.2', lambda qmin, qmax: qmax - qmin + 1, verbose=False).passed; "
            "assert not check('00.2', lambda qmin, qmax: qmax - qmin, verbose=False).passed; "
            "[check(q, None, verbose=False) for q in QUESTIONS]; "
            "print(sorted(m for m in ('torch', 'matplotlib', 'ipywidgets', 'nbformat') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "[]"
    # the test can fail: a lab module that imports torch at its top is seen
    code = code.replace("import sys;", "import sys, torch;", 1)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, check=True)
    assert out.stdout.strip() == "['torch']"
