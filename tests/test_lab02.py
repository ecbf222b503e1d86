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

import labkit
from qlearn.grading import EXERCISES, check
from qlearn.grading.labs import lab02

IDS = ("02.1", "02.2", "02.3", "02.4", "02.5", "02.Q1", "02.Q2")
EPS32 = np.finfo(np.float32).eps
_passes = labkit.passes


def test_lab02_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab02, IDS, "02_affine_quantization", points=15)


def test_lab02_exports_what_it_documents():
    labkit.assert_module_exports(lab02, {"compute_qparams", "fake_quantize_tensor", "quantize_pow2",
                                         "quantize_tensor", "symmetric_qparams"})


def test_importing_lab02_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab02")


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

def _fake_int32_times_scale(x, scale, zero_point, qmin, qmax):  # a float64 x_hat
    v = np.round(x / scale) + zero_point
    q = np.clip(v, qmin, qmax).astype(np.int32)
    return (q - zero_point) * scale, (v < qmin) | (v > qmax)


def _fake_float64(x, scale, zero_point, qmin, qmax):
    v = np.rint(x.astype(np.float64) * (1.0 / float(scale))) + zero_point
    clipped = np.logical_or(v < qmin, v > qmax)
    return (np.clip(v, qmin, qmax) - zero_point) * float(scale), clipped


def _fake_loop(x, scale, zero_point, qmin, qmax):
    x_hat, clipped = np.zeros(x.shape, np.float32), np.zeros(x.shape, bool)
    for i in np.ndindex(x.shape):
        code = round(float(x[i] / scale)) + zero_point  # Python's round: half to even
        clipped[i] = not qmin <= code <= qmax
        x_hat[i] = (min(max(code, qmin), qmax) - zero_point) * scale
    return x_hat, clipped


FAKE_QUANTIZE_SOLUTIONS = {
    "int32 codes times a float32 scale (a float64 result)": _fake_int32_times_scale,
    "float64 with torch's reciprocal": _fake_float64,
    "a Python loop": _fake_loop,
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
    + [("02.2", name, fn) for name, fn in FAKE_QUANTIZE_SOLUTIONS.items()]
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
    names = {e: " | ".join(EXERCISES[e].wrong_answers) for e in IDS if "Q" not in e}
    assert "half away from zero" in names["02.1"]
    assert "missing clamp" in names["02.1"]
    assert "zero-point sign flipped" in names["02.1"]
    assert "int8 cast" in names["02.1"]
    assert "clipped where the code sits at qmin or qmax" in names["02.2"]
    assert "beyond the grid's real ends" in names["02.2"]
    assert "off by one" in names["02.3"]
    assert "half away from zero" in names["02.3"]
    assert "rounds the step to the nearest power of two" in names["02.5"]
    assert "missing clamp" in names["02.5"]
    for e in ("02.1", "02.3", "02.4"):
        assert "returns zeros" in names[e]


def test_a_rejected_answer_is_told_why():
    def clipped_at_the_ends(x, scale, zero_point, qmin, qmax):
        q = np.clip(np.rint(x / scale) + zero_point, qmin, qmax)
        return ((q - zero_point) * scale).astype(np.float32), (q == qmin) | (q == qmax)

    message = check("02.2", clipped_at_the_ends, verbose=False).message
    assert message.splitlines()[1].startswith("  case ") and "clipped:" in message
    assert "hint 1/3" in message and "hint=2" in message


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


def test_round_trip_inputs_hold_values_just_past_the_grid():
    # a value beyond the grid's real end that still rounds to the end code (not clipped), and a tie
    # just past qmax that rounds to qmax + 1 (clipped): the two definitions of "clipped" disagree there
    beyond_not_clipped = tie_clipped = 0
    for case in EXERCISES["02.2"].make_cases():
        x, scale, zero_point, qmin, qmax = case.args
        v = np.rint(x / scale) + zero_point
        real = (x / scale + zero_point > qmax) | (x / scale + zero_point < qmin)
        beyond_not_clipped += int(np.sum(real & (v >= qmin) & (v <= qmax)))
        tie_clipped += int(np.sum((x / scale + zero_point == qmax + 0.5) & (v > qmax)))
    assert beyond_not_clipped >= 2 and tie_clipped >= 1


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


# --- 02.5: power-of-two scales ------------------------------------------------------------------

def test_quantize_pow2_golden_table():
    q, scale, zero_point = lab02.quantize_pow2(np.array([-1.0, 0.3, 2.0], np.float32), 0, 255)
    assert (q.tolist(), scale, zero_point) == ([0, 83, 192], np.float32(2.0**-6), 64)
    _, scale, _ = lab02.quantize_pow2(np.array([-1.0, 0.25, 0.875], np.float32), 0, 15)
    assert scale == 0.125  # the step 1.875 / 15 is a power of two already
    q, scale, zero_point = lab02.quantize_pow2(np.zeros(3, np.float32), -128, 127)
    assert scale == 2.0**-23 and zero_point == -128 and q.tolist() == [-128] * 3


def _pow2_float32_log2(x, qmin, qmax):
    lo, hi = min(x.min(), np.float32(0)), max(x.max(), np.float32(0))
    step = max((hi - lo) / np.float32(qmax - qmin), EPS32)
    scale = np.float32(2) ** np.ceil(np.log2(step))
    zero_point = int(np.clip(qmin - np.rint(lo / scale), qmin, qmax))
    return np.clip(np.rint(x / scale) + zero_point, qmin, qmax).astype(np.int64), scale, zero_point


def _pow2_doubling(x, qmin, qmax):
    lo, hi = min(float(x.min()), 0.0), max(float(x.max()), 0.0)
    step = max((hi - lo) / (qmax - qmin), float(EPS32))
    scale = 2.0**-30
    while scale < step:
        scale *= 2
    while scale / 2 >= step:
        scale /= 2
    zero_point = min(max(qmin - round(lo / scale), qmin), qmax)
    q = np.clip(np.rint(x.astype(np.float64) / scale) + zero_point, qmin, qmax).astype(np.int32)
    return q, np.float32(scale), zero_point


@pytest.mark.parametrize("solution", [_pow2_float32_log2, _pow2_doubling], ids=["float32 log2", "doubling loop"])
def test_quantize_pow2_other_correct_answers_pass(solution):
    passed, message = _passes("02.5", solution)
    assert passed, message


def test_pow2_inputs_do_not_depend_on_how_the_exponent_is_computed():
    cases = EXERCISES["02.5"].make_cases()
    for case in cases:
        assert len(lab02._pow2_exponents(*case.args)) == 1, case.name
    needs_clamp = [c for c in cases if np.any(np.rint(c.args[0] / lab02.quantize_pow2(*c.args)[1])
                                              + lab02.quantize_pow2(*c.args)[2] > c.args[2])]
    assert needs_clamp, "no case where the codes need the clamp"


def test_pow2_scale_never_clips_and_costs_at_most_a_factor_two():
    rng = np.random.default_rng(1)
    for _ in range(50):
        x = rng.normal(0, rng.uniform(0.01, 100), 64).astype(np.float32)
        q, scale, zero_point = lab02.quantize_pow2(x, 0, 255)
        free, _ = lab02.compute_qparams(x.min(), x.max(), 0, 255)
        assert 1 <= scale / free < 2
        assert np.log2(scale) == np.round(np.log2(scale))


# --- the questions ----------------------------------------------------------------------------

def test_question_02_q1_is_what_quantize_gives():
    code = lab02.quantize_tensor(np.array([0.625], np.float32), np.float32(0.25), 3, 0, 7)[0]
    assert code == 5 and _passes("02.Q1", 5)[0] and not _passes("02.Q1", 6)[0]


def test_question_02_q2_the_loss_is_below_one_bit():
    assert _passes("02.Q2", "c")[0] and not _passes("02.Q2", "b")[0]
    assert 20 * np.log10(2) < 6.03
