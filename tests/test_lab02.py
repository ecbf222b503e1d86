"""Lab 02's exercises: correct solutions written the textbook way pass, the typical bugs fail.

The generic grading tests check every lab's reference and wrong answers. These tests add what is
particular to lab 02: ``x / scale`` versus torch's ``x * (1 / scale)``, float64 versus float32
arithmetic, and numpy's integer promotion must never fail a correct solution, and the edge cases
the lab promises (ties, saturation, constant and all-zero tensors, one-sided ranges) are really
among the inputs.
"""

from __future__ import annotations

import numpy as np
import pytest

from qlearn.grading import EXERCISES, check
from qlearn.grading.labs import lab02

IDS = ("02.1", "02.2", "02.3", "02.4")
EPS32 = np.finfo(np.float32).eps


def _passes(exercise_id, fn):
    result = check(exercise_id, fn, verbose=False)
    return result.passed, result.message


# --- correct solutions, written in the ways learners write them ------------------------------

QUANTIZE_SOLUTIONS = {
    "x / scale, np.round, int32": lambda x, scale, zero_point, qmin, qmax: np.clip(
        np.round(x / scale) + zero_point, qmin, qmax).astype(np.int32),
    "x * (1 / scale) as torch": lambda x, scale, zero_point, qmin, qmax: np.clip(
        np.rint(x * (np.float32(1) / scale)) + zero_point, qmin, qmax).astype(np.int64),
    "float64 division": lambda x, scale, zero_point, qmin, qmax: np.clip(
        np.rint(x.astype(np.float64) / float(scale)) + zero_point, qmin, qmax).astype(np.int16),
    "float64 reciprocal": lambda x, scale, zero_point, qmin, qmax: np.clip(
        np.rint(x.astype(np.float64) * (1.0 / float(scale))) + zero_point, qmin, qmax).astype(np.int32),
    "integer clamp after an int64 cast": lambda x, scale, zero_point, qmin, qmax: np.clip(
        np.rint(x / scale).astype(np.int64) + zero_point, qmin, qmax),
}

DEQUANTIZE_SOLUTIONS = {
    "int32 then times a float32 scale (a float64 result)": lambda q, scale, zero_point: (
        q.astype(np.int32) - zero_point) * scale,
    "float32 all along": lambda q, scale, zero_point: (q.astype(np.float32) - zero_point) * scale,
    "int64, cast to float32, times scale": lambda q, scale, zero_point: (
        q.astype(np.int64) - zero_point).astype(np.float32) * scale,
    "float64 all along": lambda q, scale, zero_point: (q.astype(np.float64) - zero_point) * float(scale),
}


def _qparams_float32(xmin, xmax, qmin, qmax):
    lo, hi = min(xmin, 0.0), max(xmax, 0.0)
    scale = max((hi - lo) / (qmax - qmin), np.finfo(np.float32).eps)
    zero_point = qmin - round(lo / scale)  # Python's round is half-to-even too
    return scale, int(min(max(zero_point, qmin), qmax))


def _qparams_numpy(xmin, xmax, qmin, qmax):
    lo, hi = np.minimum(np.float32(xmin), 0), np.maximum(np.float32(xmax), 0)
    scale = np.maximum((hi - lo) / np.float32(qmax - qmin), EPS32)
    return scale, int(np.clip(qmin - np.rint(lo / scale), qmin, qmax))


def _qparams_float64_cast(xmin, xmax, qmin, qmax):
    lo, hi = min(float(xmin), 0.0), max(float(xmax), 0.0)
    scale = np.float32(max((hi - lo) / (qmax - qmin), float(EPS32)))
    return scale, int(np.clip(qmin - np.rint(lo / float(scale)), qmin, qmax))


def _symmetric_float32(xmin, xmax, qmin, qmax):
    m = max(abs(xmin), abs(xmax))
    return max(m / ((qmax - qmin) / 2), np.finfo(np.float32).eps), 0


def _symmetric_float64_cast(xmin, xmax, qmin, qmax):
    m = max(-min(float(xmin), 0.0), max(float(xmax), 0.0))
    return np.float32(max(m / ((qmax - qmin) / 2), float(EPS32))), 0


SOLUTIONS = (
    [("02.1", name, fn) for name, fn in QUANTIZE_SOLUTIONS.items()]
    + [("02.2", name, fn) for name, fn in DEQUANTIZE_SOLUTIONS.items()]
    + [("02.3", "Python floats and round()", _qparams_float32),
       ("02.3", "numpy float32", _qparams_numpy),
       ("02.3", "float64, cast to float32 at the end", _qparams_float64_cast),
       ("02.4", "abs() and Python floats", _symmetric_float32),
       ("02.4", "float64, cast to float32 at the end", _symmetric_float64_cast)]
)


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=[f"{e} {n}" for e, n, _ in SOLUTIONS])
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = _passes(exercise_id, fn)
    assert passed, message


# --- the references and the wrong answers ----------------------------------------------------

# The reference passing and every declared wrong answer failing are tested for all labs in
# tests/test_grading.py (test_reference_passes_its_own_check, test_typical_wrong_answers_are_rejected).


def test_every_exercise_declares_the_common_wrong_answers():
    names = {e: " | ".join(EXERCISES[e].wrong_answers) for e in IDS}
    assert "half away from zero" in names["02.1"]
    assert "missing clamp" in names["02.1"]
    assert "zero-point sign flipped" in names["02.1"]
    assert "int8 cast" in names["02.1"]
    assert "wraps" in names["02.2"]
    assert "off by one" in names["02.3"]
    assert "half away from zero" in names["02.3"]
    for e in IDS:
        assert "returns zeros" in names[e]


def test_a_rejected_answer_is_told_why():
    message = check("02.2", lambda q, scale, zero_point: (q - zero_point) * scale, verbose=False).message
    assert "case 1 of 10: uint8 codes, zero_point 255" in message  # an edge case, before the random ones
    assert "q.astype(np.int32)" in message


def test_a_half_up_rounding_fails_on_the_tie_case_first_and_is_shown_x_over_scale():
    def half_up(x, scale, zero_point, qmin, qmax):
        v = np.floor(x * (np.float32(1) / scale) + np.float32(0.5))
        return np.clip(v + zero_point, qmin, qmax).astype(np.int32)

    message = check("02.1", half_up, verbose=False).message
    lines = message.splitlines()
    assert lines[0] == "Exercise 02.1 failed: 0/3 points"
    assert lines[1].startswith("  case 1 of 12: ties: x / scale = k + 1/2 rounds half-to-even")
    flat = " ".join(message.split())
    assert "note: at index 0, x / scale = -3.5 lies exactly halfway between -4 and -3" in flat
    assert "np.rint rounds a tie to the even one, -4 (round half up would give -3" in flat


def test_a_float64_scale_is_named_as_the_problem():
    def float64_scale(xmin, xmax, qmin, qmax):
        _, zero_point = _qparams_numpy(xmin, xmax, qmin, qmax)
        lo, hi = min(float(xmin), 0.0), max(float(xmax), 0.0)
        return (hi - lo) / (qmax - qmin), zero_point

    message = check("02.3", float64_scale, verbose=False).message
    assert "not a float32 number" in message


# --- the inputs: the promised edge cases are there, and x / scale never decides a code --------

def test_quantize_inputs_do_not_depend_on_division_or_reciprocal():
    for case in EXERCISES["02.1"].make_cases():
        x, scale = case.args[0], case.args[1]
        by_division = np.rint(x / scale)
        by_reciprocal = np.rint(x * (np.float32(1) / scale))
        in_float64 = np.rint(x.astype(np.float64) / np.float64(scale))
        assert np.array_equal(by_division, by_reciprocal), case.name
        assert np.array_equal(by_division, in_float64), case.name


def test_agreeing_replaces_exactly_the_values_that_disagree():
    scale = np.float32(0.02)
    ties = (np.arange(-100, 100, dtype=np.float32) + np.float32(0.5)) * scale
    disagree = np.rint(ties / scale) != np.rint(ties * (np.float32(1) / scale))
    assert disagree.sum() > 0  # there is something to filter
    kept = lab02._agreeing(ties, scale)
    assert (kept[disagree] == 0).all()
    assert np.array_equal(kept[kept != 0], ties[kept != 0])  # the others stay as they were
    assert np.count_nonzero(kept) > ties.size // 2
    assert np.array_equal(np.rint(kept / scale), np.rint(kept.astype(np.float64) / np.float64(scale)))


def test_quantize_inputs_hold_ties_saturation_and_one_sided_ranges():
    cases = {case.name: case for case in EXERCISES["02.1"].make_cases()}
    ties = next(c for name, c in cases.items() if name.startswith("ties:"))
    x, scale = ties.args[0], ties.args[1]
    v = x / scale
    assert np.all(v - np.floor(v) == 0.5)
    assert any(c.args[2] % 2 == 1 for name, c in cases.items() if name.startswith("ties"))
    big = [c for name, c in cases.items() if name.startswith("saturation")]
    assert any(np.any(c.args[0] / c.args[1] + c.args[2] > c.args[4]) for c in big)
    assert any(np.any(c.args[0] / c.args[1] + c.args[2] < c.args[3]) for c in big)
    zero = next(c for name, c in cases.items() if "all-zero" in name)
    assert not zero.args[0].any()
    neg = next(c for name, c in cases.items() if name.startswith("negative-only"))
    pos = next(c for name, c in cases.items() if name.startswith("positive-only"))
    assert (neg.args[0] < 0).all() and neg.args[2] == neg.args[4]
    assert (pos.args[0] > 0).all() and pos.args[2] == pos.args[3]


def test_dequantize_inputs_wrap_in_their_own_dtype():
    wraps = 0
    for case in EXERCISES["02.2"].make_cases():
        q, _, zero_point = case.args
        wide = q.astype(np.int64) - zero_point
        narrow = (q - np.asarray(zero_point).astype(q.dtype)).astype(np.int64)
        wraps += not np.array_equal(wide, narrow)
    assert wraps >= 3


def test_qparams_inputs_hold_ties_eps_and_one_sided_ranges():
    cases = EXERCISES["02.3"].make_cases()
    ties = 0
    for case in cases:
        xmin, xmax, qmin, qmax = case.args
        scale, zero_point = lab02.compute_qparams(xmin, xmax, qmin, qmax)
        v = min(xmin, 0) / scale
        ties += (v - np.floor(v)) == 0.5
        assert qmin <= zero_point <= qmax
    assert ties >= 2
    args = [c.args for c in cases]
    assert any(a[0] > 0 for a in args) and any(a[1] < 0 for a in args)
    assert any(a[0] == a[1] == 0 for a in args)
    assert any(lab02.compute_qparams(*a)[0] == EPS32 and lab02.compute_qparams(*a)[1] != a[2] for a in args)


def test_cases_are_the_same_every_time():
    for exercise_id in IDS:
        first = EXERCISES[exercise_id].make_cases()
        second = EXERCISES[exercise_id].make_cases()
        for a, b in zip(first, second, strict=True):
            assert a.name == b.name
            for u, v in zip(a.args, b.args, strict=True):
                assert np.array_equal(u, v)


def test_symmetric_qparams_rejects_an_unsigned_range():
    with pytest.raises(ValueError, match="signed code range"):
        lab02.symmetric_qparams(np.float32(-1), np.float32(1), 0, 255)


def test_the_answers_in_the_notebook_hold():
    # Question 1 of the lab's summary: uint8, scale 0.1, zero-point 100.
    from qlearn import dequantize, quantize

    x = np.array([-12.0, 0.05, 0.15], np.float32)
    q = quantize(x, np.float32(0.1), 100, 0, 255)
    assert q.tolist() == [0, 100, 102]
    assert np.allclose(dequantize(q, np.float32(0.1), 100), [-10.0, 0.0, 0.2])
    assert (x[1:] / np.float32(0.1)).tolist() == [0.5, 1.5]  # exact ties in float32 as well
