"""Lab 05's exercises: correct solutions written the usual ways pass, the typical bugs fail.

What is particular to lab 05: requantization has several correct roundings (gemmlowp's two steps,
one rounding in int64, a float64 product), and the check must accept all of them, so its inputs
keep only the accumulators on which they agree; the edge cases the lab promises (int16 wrap,
uint8 zero-point wrap, saturation, renormalisation of M0, fractions that truncation gets wrong)
must really be among the inputs.
"""

from __future__ import annotations

import math

import labkit
import numpy as np
import pytest

from qlearn import intops
from qlearn.grading import EXERCISES, QUESTIONS
from qlearn.grading.labs import lab05

EXERCISE_IDS = ("05.1", "05.2", "05.3", "05.4")
QUESTION_IDS = ("05.Q1", "05.Q2", "05.Q3")
IDS = EXERCISE_IDS + QUESTION_IDS
NOTEBOOK = "05_integer_only_inference"


def test_lab05_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab05, IDS, NOTEBOOK, points=18)


def test_lab05_exports_its_references():
    labkit.assert_module_exports(lab05, {"conv2d_int8", "int_matmul", "quantize_multiplier", "requantize"})


def test_importing_lab05_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab05")


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


def _conv(rounding):
    """An honest 05.4: the zero-point term folded per channel, windows by slicing, three roundings."""
    def conv2d_int8(x_q, s_x, z_x, w_q, s_w, bias, s_y, z_y, stride=1, padding=0):
        c_out, _, kh, kw = w_q.shape
        w = w_q.astype(np.int64)
        folded = intops.quantize_bias(bias, s_x, s_w).astype(np.int64) - z_x * w.reshape(c_out, -1).sum(1)
        x = np.pad(x_q.astype(np.int64), ((0, 0), (0, 0), (padding, padding), (padding, padding)),
                   constant_values=z_x)
        h_out = (x.shape[2] - kh) // stride + 1
        w_out = (x.shape[3] - kw) // stride + 1
        acc = np.zeros((len(x), c_out, h_out, w_out), np.int64)
        for i in range(kh):
            for j in range(kw):
                window = x[:, :, i:i + stride * h_out:stride, j:j + stride * w_out:stride]
                acc += np.einsum("nchw,oc->nohw", window, w[:, :, i, j])
        acc += folded[None, :, None, None]
        out = np.empty_like(acc)
        for c in range(c_out):
            M = s_x * float(s_w[c]) / s_y
            M0, shift = _multiplier_frexp(M)
            if rounding == "gemmlowp":
                out[:, c] = _requantize_gemmlowp(acc[:, c], M0, shift, z_y, 0, 255)
            elif rounding == "float32":  # qnnpack's requantization: float32 product, ties to even
                scale = np.float32(np.float32(s_x) * np.float32(s_w[c]) / np.float32(s_y))
                out[:, c] = np.clip(np.rint(acc[:, c].astype(np.float32) * scale) + z_y, 0, 255)
            else:
                out[:, c] = _requantize_single(acc[:, c], M0, shift, z_y, 0, 255)
        return out.astype(np.uint8)
    return conv2d_int8


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
    ("05.4", "windows by slicing, one rounding in int64", _conv("single")),
    ("05.4", "windows by slicing, gemmlowp's two roundings", _conv("gemmlowp")),
    ("05.4", "windows by slicing, float32 requantization (qnnpack's)", _conv("float32")),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=labkit.solution_ids(SOLUTIONS))
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = labkit.passes(exercise_id, fn)
    assert passed, message


@pytest.mark.parametrize("rounding", ["single", "gemmlowp", "float32"])
@pytest.mark.parametrize("seed", [1, 2, 3, 20261129])
def test_conv_accepts_every_correct_rounding_on_hidden_seeds(rounding, seed):
    # the grader draws secret seeds: a correct rounding must pass there too, not only on the visible one
    ex = EXERCISES["05.4"]
    for case in ex.make_cases(seed):
        assert ex.compare_output(_conv(rounding)(*case.args), ex.reference(*case.args)) is None, case.name


@pytest.mark.parametrize("seed", [504, 7, 20261129])
def test_conv_rejects_every_wrong_answer_on_other_seeds(seed):
    ex = EXERCISES["05.4"]
    cases = ex.make_cases(seed)
    for name, wrong in ex.wrong_answers.items():
        with labkit.quiet():
            rejected = any(ex.compare_output(wrong(*c.args), ex.reference(*c.args)) is not None for c in cases)
        assert rejected, name


def test_conv_reference_agrees_with_torch_quantized_conv_per_channel():
    torch = pytest.importorskip("torch")
    from qlearn.bridge import supported_engines
    from qlearn.bridge.reference_layers import torch_conv2d_codes

    for case in EXERCISES["05.4"].make_cases()[:6]:  # per-tensor-like and per-channel scales 100x apart
        x_q, s_x, z_x, w_q, s_w, bias, s_y, z_y, stride, padding = case.args
        if x_q.max() > 127:
            continue  # 8-bit inputs can saturate fbgemm's pair sums (lab 05, section 3)
        ours = lab05.conv2d_int8(*case.args).astype(np.int64)
        x_t = torch._make_per_tensor_quantized_tensor(torch.from_numpy(x_q), s_x, z_x)
        w_t = torch._make_per_channel_quantized_tensor(torch.from_numpy(w_q), torch.from_numpy(s_w.astype(np.float64)),
                                                       torch.zeros(len(s_w), dtype=torch.int64), 0)
        for engine in [e for e in ("fbgemm", "x86", "qnnpack") if e in supported_engines()]:
            theirs = torch_conv2d_codes(engine, x_t, w_t, bias, s_y, z_y, stride, padding)
            diff = np.abs(ours - theirs)
            assert diff.max() <= 1 and np.mean(diff == 0) > 0.99, (case.name, engine)


QUESTION_ANSWERS = {"05.Q1": (26, [25, 16, 32]), "05.Q2": ("b", ["a", "c", "d"]), "05.Q3": ("b", ["a", "c", "d"])}


@pytest.mark.parametrize("question_id", QUESTION_IDS)
def test_questions_accept_the_answer_and_reject_the_others(question_id):
    right, wrongs = QUESTION_ANSWERS[question_id]
    assert labkit.passes(question_id, right)[0]
    for wrong in wrongs:
        assert not labkit.passes(question_id, wrong)[0], wrong


def test_question_answers_are_what_the_notebook_computes():
    # 05.Q1: the worst sum of a 3x3 convolution over 64 channels, sign bit included
    assert (576 * 255 * 128).bit_length() + 1 == QUESTIONS["05.Q1"].answer
    # 05.Q2: a floor errs by -1/2 on average over fractions spread evenly
    acc = np.random.default_rng(0).integers(-100_000, 100_000, 100_000)
    M0, shift = intops.quantize_multiplier(0.0042)
    floor = (acc * M0) >> (31 + shift)
    assert abs(np.mean(floor - acc * 0.0042) + 0.5) < 0.01 and QUESTIONS["05.Q2"].answer == "b"


# --- the references and the wrong answers ----------------------------------------------------

# The reference passing and every declared wrong answer failing are tested for all labs in
# tests/test_grading.py (test_reference_passes_its_own_check, test_typical_wrong_answers_are_rejected).


def test_every_exercise_declares_the_typical_wrong_answers():
    labkit.assert_wrong_answers_declared("05.1", "int16", "int8", "zero-point", "wraps")
    labkit.assert_wrong_answers_declared("05.2", "outside [2**30, 2**31)", "sign flipped", "truncates",
                                         "renormalisation", "off by one")
    labkit.assert_wrong_answers_declared("05.3", "truncates", "missing saturation", "sign flipped", "off by one",
                                         "int32")
    labkit.assert_wrong_answers_declared("05.4", "code 0 instead of the zero-point", "one multiplier",
                                         "floors", "without saturating", "flips the kernel")


def test_a_rejected_answer_is_told_why():
    labkit.assert_rejected("05.1", EXERCISES["05.1"].wrong_answers["accumulates in int16 (the sums wrap)"],
                           says=("wrap around",))
    labkit.assert_rejected("05.3", EXERCISES["05.3"].wrong_answers["multiplies in int32 (the product wraps)"],
                           says=("bits does that product need",))
    labkit.assert_rejected("05.4", EXERCISES["05.4"].wrong_answers["floors instead of rounding (a plain >> shift)"],
                           says=("codes are identical",))


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


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_cases_are_the_same_every_time(exercise_id):
    labkit.assert_cases_deterministic(exercise_id)


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
