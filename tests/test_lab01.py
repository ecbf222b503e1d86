"""Lab 01 exercises: references, edge-case coverage, wrong answers rejected, other correct answers accepted."""

import math

import numpy as np
import pytest

from qlearn.formats import FORMATS, FloatFormat, decompose, representable_values
from qlearn.grading import EXERCISES, check
from qlearn.grading.checker import evaluate
from qlearn.grading.labs import lab01

LAB01 = ["01.1", "01.2", "01.3", "01.4"]


@pytest.mark.parametrize("exercise_id", LAB01)
def test_reference_passes_and_cases_are_deterministic(exercise_id):
    ex = EXERCISES[exercise_id]
    assert ex.notebook == "01_number_formats"
    assert evaluate(ex, ex.reference, watch=False)[0] == "passed"  # the reference lives in qlearn.grading
    first, second = ex.make_cases(), ex.make_cases()
    assert [c.name for c in first] == [c.name for c in second]
    for a, b in zip(first, second):
        for x, y in zip(a.args, b.args):
            if isinstance(x, np.ndarray):
                assert np.array_equal(x, y)


@pytest.mark.parametrize(
    ("exercise_id", "wrong"),
    [(i, name) for i in LAB01 for name in EXERCISES[i].wrong_answers],
)
def test_wrong_answers_are_rejected(exercise_id, wrong):
    status, _ = evaluate(EXERCISES[exercise_id], EXERCISES[exercise_id].wrong_answers[wrong], watch=False)
    assert status == "failed"


# --- 01.1 -------------------------------------------------------------------------------------

def test_qrange_golden_table():
    assert lab01.qrange(8) == (-128, 127)
    assert lab01.qrange(8, False) == (0, 255)
    assert lab01.qrange(1) == (-1, 0)
    assert lab01.qrange(1, signed=False) == (0, 1)
    assert lab01.qrange(32, signed=False) == (0, 4294967295)
    assert all(type(v) is int for v in lab01.qrange(32))


def test_qrange_other_correct_answers_pass():
    def shifts(bits, signed=True):
        return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if signed else (0, (1 << bits) - 1)

    assert check("01.1", shifts, verbose=False).passed


# --- 01.2 -------------------------------------------------------------------------------------

def test_saturate_cast_golden():
    out = lab01.saturate_cast(np.array([-300, -5, 200, 255]), np.int8)
    assert out.dtype == np.int8 and out.tolist() == [-128, -5, 127, 127]
    out = lab01.saturate_cast(np.array([-1.0, 300.0], np.float32), "uint8")
    assert out.dtype == np.uint8 and out.tolist() == [0, 255]


def test_saturate_cast_cases_contain_the_trap():
    # at least one case where a plain cast wraps (so the trap is exercised), one fully inside
    cases = EXERCISES["01.2"].make_cases()
    wraps = [c for c in cases if np.issubdtype(np.asarray(c.args[0]).dtype, np.integer)
             and not np.array_equal(np.asarray(c.args[0]).astype(c.args[1]), c.args[0])]
    assert len(wraps) >= 5
    assert any("classic trap" in c.name for c in cases)


def test_saturate_cast_other_correct_answers_pass():
    def min_max(x, dtype):
        info = np.iinfo(dtype)
        return np.minimum(np.maximum(x, info.min), info.max).astype(dtype)

    assert check("01.2", min_max, verbose=False).passed


# --- 01.3 -------------------------------------------------------------------------------------

@pytest.mark.parametrize("name", ["fp16", "fp8_e4m3", "fp8_e5m2"])
def test_decode_float_inverts_decompose(name):
    fmt = FORMATS[name]
    for v in representable_values(fmt)[:: 1 if fmt.bits == 8 else 37]:
        for value in (float(v), -float(v)):
            f = decompose(value, fmt)
            assert lab01.decode_float(f.sign, f.exponent, f.mantissa, fmt) == value


def test_decode_float_specials():
    e4m3, e5m2 = FORMATS["fp8_e4m3"], FORMATS["fp8_e5m2"]
    assert lab01.decode_float(0, 15, 6, e4m3) == 448.0
    assert math.isnan(lab01.decode_float(1, 15, 7, e4m3))
    assert lab01.decode_float(1, 31, 0, e5m2) == -math.inf
    assert math.isnan(lab01.decode_float(0, 31, 1, e5m2))
    assert lab01.decode_float(0, 0, 1, FloatFormat(4, 3, bias=11, ieee=False)) == 2.0**-13


def test_decode_float_other_correct_answers_pass():
    def ldexp(sign, exponent, mantissa, fmt):
        M, top = fmt.man_bits, 2**fmt.exp_bits - 1
        if exponent == top and fmt.ieee:
            return (-1) ** sign * math.inf if mantissa == 0 else math.nan
        if exponent == top and mantissa == 2**M - 1:
            return math.nan
        if exponent == 0:
            return (-1) ** sign * math.ldexp(mantissa, 1 - fmt.bias - M)
        return (-1) ** sign * math.ldexp(2**M + mantissa, exponent - fmt.bias - M)

    assert check("01.3", ldexp, verbose=False).passed


# --- 01.4 -------------------------------------------------------------------------------------

def _is_tie(x, fmt):
    v = np.asarray(representable_values(fmt), dtype=np.float64)
    mid = (v[:-1] + v[1:]) / 2
    return np.isin(np.abs(np.asarray(x, dtype=np.float64)), mid)


def test_round_cases_cover_ties_subnormals_and_overflow():
    ties = subnormals = overflows = 0
    for case in EXERCISES["01.4"].make_cases():
        x, fmt = np.asarray(case.args[0], dtype=np.float64), case.args[1]
        assert np.all(np.isfinite(x))
        if fmt.bits <= 16:
            ties += int(_is_tie(x, fmt).sum())
        subnormals += int(np.sum((np.abs(x) > 0) & (np.abs(x) < fmt.smallest_normal)))
        overflows += int(np.sum(np.abs(x) > fmt.max))
    assert ties >= 500 and subnormals >= 50 and overflows >= 10


def test_round_to_format_golden():
    e4m3 = FORMATS["fp8_e4m3"]
    x = np.array([1.0625, 1.1875, 2.0**-10, 3 * 2.0**-10, 464.0, 470.0, -0.3], np.float32)
    expected = [1.0, 1.25, 0.0, 2.0**-8, 448.0, 448.0, -0.3125]
    assert lab01.round_to_format(x, e4m3).tolist() == expected


def _round_log2(x, fmt):
    x = np.asarray(x, dtype=np.float64)
    a = np.abs(x)
    with np.errstate(divide="ignore"):
        k = np.maximum(np.floor(np.log2(a)), 1 - fmt.bias)
    ulp = 2.0 ** (k - fmt.man_bits)
    return np.copysign(np.minimum(np.round(a / ulp) * ulp, fmt.max), x)


def _round_float32(x, fmt):
    x = np.asarray(x, dtype=np.float32)
    a = np.abs(x)
    _, k = np.frexp(a)
    ulp = np.ldexp(np.float32(1), np.maximum(k - 1, 1 - fmt.bias) - fmt.man_bits).astype(np.float32)
    return np.sign(x) * np.minimum(np.rint(a / ulp) * ulp, np.float32(fmt.max))


def _round_python(x, fmt):
    out = []
    for v in np.asarray(x, dtype=np.float64).ravel():
        k = max(math.frexp(abs(v))[1] - 1, 1 - fmt.bias)
        ulp = 2.0 ** (k - fmt.man_bits)
        out.append(math.copysign(min(round(abs(v) / ulp) * ulp, fmt.max), v))
    return np.array(out).reshape(np.shape(x))


@pytest.mark.parametrize("solution", [_round_log2, _round_float32, _round_python])
def test_round_to_format_other_correct_answers_pass(solution):
    assert check("01.4", solution, verbose=False).passed
