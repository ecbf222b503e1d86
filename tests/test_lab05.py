"""Lab 05's exercises: correct solutions written the usual ways pass, the typical bugs fail.

What is particular to lab 05: requantization has several correct roundings (gemmlowp's two steps,
one rounding in int64, a float64 product), and the check must accept all of them, so its inputs
keep only the accumulators on which they agree; the edge cases the lab promises (int16 wrap,
uint8 zero-point wrap, saturation, renormalisation of M0, fractions that truncation gets wrong)
must really be among the inputs.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from qlearn.grading import EXERCISES, check
from qlearn.grading.checker import evaluate
from qlearn.grading.labs import lab05

IDS = ("05.1", "05.2", "05.3")


def _passes(exercise_id, fn):
    result = check(exercise_id, fn, verbose=False)
    return result.passed, result.message


# --- correct solutions, written in the ways learners write them ------------------------------

def _matmul_int32(a_q, b_q, a_zero_point, b_zero_point):
    return (a_q.astype(np.int32) - a_zero_point) @ (b_q.astype(np.int32) - b_zero_point)


def _matmul_int64_loop(a_q, b_q, a_zero_point, b_zero_point):
    a = a_q.astype(np.int64) - a_zero_point
    b = b_q.astype(np.int64) - b_zero_point
    out = np.zeros((a.shape[0], b.shape[1]), np.int64)
    for k in range(a.shape[1]):
        out += np.outer(a[:, k], b[k])
    return out


def _matmul_expanded(a_q, b_q, a_zero_point, b_zero_point):
    # Jacob et al. 2018, section 2.3: the zero-point terms expanded
    a, b = a_q.astype(np.int32), b_q.astype(np.int32)
    k = a.shape[1]
    return (a @ b - b_zero_point * a.sum(1, keepdims=True) - a_zero_point * b.sum(0, keepdims=True)
            + k * a_zero_point * b_zero_point)


def _multiplier_frexp(M):
    q, e = math.frexp(M)
    M0, shift = round(q * 2**31), -e
    if M0 == 2**31:
        M0, shift = M0 // 2, shift - 1
    return M0, shift


def _multiplier_loop(M):
    shift = 0
    while M < 0.5:
        M, shift = M * 2, shift + 1
    M0 = int(np.round(M * 2**31))
    return (2**30, shift - 1) if M0 == 2**31 else (M0, shift)


def _multiplier_log2(M):
    shift = -math.floor(math.log2(M)) - 1
    M0 = int(np.rint(M * 2.0 ** (31 + shift)))
    return (M0 // 2, shift - 1) if M0 == 2**31 else (M0, shift)


def _requantize_single(acc, M0, shift, output_zero_point, qmin, qmax):
    total = 31 + shift
    y = (acc.astype(np.int64) * M0 + (1 << (total - 1))) >> total
    return np.clip(y + output_zero_point, qmin, qmax).astype(np.int32)


def _requantize_gemmlowp(acc, M0, shift, output_zero_point, qmin, qmax):
    ab = acc.astype(np.int64) * M0
    nudged = ab + np.where(ab >= 0, 1 << 30, 1 - (1 << 30))
    high = np.where(nudged >= 0, nudged >> 31, -((-nudged) >> 31))
    mask = (1 << shift) - 1
    y = (high >> shift) + ((high & mask) > (mask >> 1) + (high < 0))
    return np.clip(y + output_zero_point, qmin, qmax)


def _requantize_float64(acc, M0, shift, output_zero_point, qmin, qmax):
    return np.clip(np.rint(acc * (M0 / 2 ** (31 + shift))) + output_zero_point, qmin, qmax).astype(np.int64)


def _requantize_uint8_result(acc, M0, shift, output_zero_point, qmin, qmax):
    y = _requantize_single(acc, M0, shift, output_zero_point, qmin, qmax)
    return y.astype(np.uint8) if qmin >= 0 and qmax <= 255 else y.astype(np.int8)


SOLUTIONS = [
    ("05.1", "int32, then @", _matmul_int32),
    ("05.1", "int64, a loop over k", _matmul_int64_loop),
    ("05.1", "zero-point terms expanded (Jacob et al. 2018)", _matmul_expanded),
    ("05.2", "math.frexp and round()", _multiplier_frexp),
    ("05.2", "a doubling loop and np.round", _multiplier_loop),
    ("05.2", "math.log2", _multiplier_log2),
    ("05.3", "one rounding in int64", _requantize_single),
    ("05.3", "gemmlowp's two roundings", _requantize_gemmlowp),
    ("05.3", "a float64 product", _requantize_float64),
    ("05.3", "one rounding, returned as uint8/int8", _requantize_uint8_result),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=[f"{e} {n}" for e, n, _ in SOLUTIONS])
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = _passes(exercise_id, fn)
    assert passed, message


# --- the references and the wrong answers ----------------------------------------------------

# The reference passing and every declared wrong answer failing are tested for all labs in
# tests/test_grading.py (test_reference_passes_its_own_check, test_typical_wrong_answers_are_rejected).


def test_every_exercise_declares_the_typical_wrong_answers():
    names = {e: " | ".join(EXERCISES[e].wrong_answers) for e in IDS}
    for word in ("int16", "int8", "zero-point", "wraps"):
        assert word in names["05.1"]
    for word in ("outside [2**30, 2**31)", "sign flipped", "truncates", "renormalisation", "off by one"):
        assert word in names["05.2"]
    for word in ("truncates", "missing saturation", "sign flipped", "off by one", "int32"):
        assert word in names["05.3"]


def test_a_rejected_answer_is_told_why():
    message = evaluate(EXERCISES["05.1"], EXERCISES["05.1"].wrong_answers["accumulates in int16 (the sums wrap)"],
                       watch=False)[1]
    assert "int16 accumulator" in message
    message = evaluate(EXERCISES["05.3"], EXERCISES["05.3"].wrong_answers["multiplies in int32 (the product wraps)"],
                       watch=False)[1]
    assert "int64" in message


# --- the inputs ------------------------------------------------------------------------------------

def test_int_matmul_inputs_wrap_in_int16_and_in_the_codes_dtype():
    wrap16 = wrap_zp = 0
    for case in EXERCISES["05.1"].make_cases():
        a, b, za, zb = case.args
        exact = (a.astype(np.int64) - za) @ (b.astype(np.int64) - zb)
        wrap16 += bool(np.any(np.abs(exact) > 2**15 - 1))
        wrap_zp += not np.array_equal(a - np.asarray(za).astype(a.dtype), a.astype(np.int64) - za)
        assert np.all(np.abs(exact) < 2**31)
    assert wrap16 >= 3 and wrap_zp >= 2


def test_multiplier_inputs_have_no_ties_and_hold_the_edge_cases():
    renormalised = fractions_above_half = 0
    for case in EXERCISES["05.2"].make_cases():
        (M,) = case.args
        q, _ = math.frexp(M)
        frac = q * 2**31 - math.floor(q * 2**31)
        assert frac != 0.5, case.name  # numpy and TFLite round a tie differently
        fractions_above_half += frac > 0.5
        renormalised += lab05.quantize_multiplier(M)[0] == 2**30 and q != 0.5
    assert renormalised >= 2 and fractions_above_half >= 3
    assert any(lab05.quantize_multiplier(c.args[0])[1] == -1 for c in EXERCISES["05.2"].make_cases())


def test_requantize_inputs_agree_on_every_rounding_and_few_are_dropped():
    total = dropped = 0
    for case in EXERCISES["05.3"].make_cases():
        acc, M0, shift = case.args[:3]
        results = lab05._roundings(acc, M0, shift)
        for r in results[1:]:
            assert np.array_equal(r, results[0]), case.name
        total += acc.size
        dropped += int(np.sum(acc == 0))
    assert dropped < 0.05 * total + 8  # the all-zero case holds 8 on purpose


def test_requantize_inputs_saturate_and_need_int64():
    saturating = int64_needed = 0
    for case in EXERCISES["05.3"].make_cases():
        acc, M0, shift, zp, qmin, qmax = case.args
        y = lab05._roundings(acc, M0, shift)[0] + zp
        saturating += bool(np.any((y < qmin) | (y > qmax)))
        int64_needed += bool(np.any(np.abs(acc.astype(np.int64) * M0) > 2**31))
    assert saturating >= 2 and int64_needed >= 5


def test_agreeing_replaces_exactly_the_disagreeing_values():
    M0, shift = 2**30, 9  # M = 2**-10: acc = 512 (mod 1024) is an exact tie
    acc = np.array([512, 2560, -512, 700, 100], np.int64)  # 0.5, 2.5, -0.5
    kept = lab05._agreeing(acc, M0, shift)
    assert kept.tolist() == [0, 0, 0, 700, 100]


def test_cases_are_the_same_every_time():
    for exercise_id in IDS:
        first = EXERCISES[exercise_id].make_cases()
        second = EXERCISES[exercise_id].make_cases()
        for a, b in zip(first, second, strict=True):
            assert a.name == b.name
            for u, v in zip(a.args, b.args, strict=True):
                assert np.array_equal(u, v)


def test_the_answers_in_the_notebook_hold():
    from qlearn.intops import quantize_multiplier

    # question 1: zero-point 128, int8 weights; a 3x3 convolution over 256 channels
    assert max(abs(q - 128) for q in (0, 255)) * 128 == 16_384
    k = 256 * 9
    assert k == 2304 and k * 16_384 == 37_748_736 and 2**25 < k * 16_384 < 2**26
    # question 2: M = 0.05 * 0.002 / 0.1 = 0.001 = 0.512 * 2**-9
    M = 0.05 * 0.002 / 0.1
    assert quantize_multiplier(M) == (1_099_511_628, 9)
    assert math.isclose(M, 0.512 * 2**-9)
