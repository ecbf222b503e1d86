"""Lab 01 exercises: edge-case coverage, other correct answers accepted, the questions' answers hold.

The generic tests in tests/test_grading.py already prove, for every exercise, that the reference
passes and every declared wrong answer is rejected; these add what is particular to lab 01.
"""

import math

import labkit
import numpy as np
import pytest

from qlearn.formats import FORMATS, FloatFormat, decompose, representable_values, round_to_format
from qlearn.grading import EXERCISES
from qlearn.grading.labs import lab01
from qlearn.grading.registry import get_item

IDS = ("01.1", "01.2", "01.3", "01.4", "01.5", "01.Q1", "01.Q2")


def test_lab01_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab01, IDS, "01_number_formats", points=12)


def test_lab01_exports_what_it_documents():
    labkit.assert_module_exports(lab01, {"decode_float", "encode_float", "qrange", "round_to_format",
                                         "saturate_cast"})


def test_importing_lab01_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab01")


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

    assert labkit.passes("01.1", shifts)[0]


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

    assert labkit.passes("01.2", min_max)[0]


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

    assert labkit.passes("01.3", ldexp)[0]


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
    passed, message = labkit.passes("01.4", solution)
    assert passed, message


# --- 01.5 -------------------------------------------------------------------------------------

def test_encode_float_golden_table():
    e4m3, fp16 = FORMATS["fp8_e4m3"], FORMATS["fp16"]
    assert lab01.encode_float(-1.75, e4m3) == (1, 7, 6)
    assert lab01.encode_float(1.97, e4m3) == (0, 8, 0)  # rounds up to 2.0: the next binade
    assert lab01.encode_float(1000.0, e4m3) == (0, 15, 6)  # saturates at 448
    assert lab01.encode_float(0.0155, e4m3) == (0, 1, 0)  # from the subnormals up to the smallest normal
    assert lab01.encode_float(-0.0, e4m3) == (1, 0, 0)
    assert lab01.encode_float(2.0**-24, fp16) == (0, 0, 1)
    assert lab01.encode_float(65504.0, fp16) == (0, 30, 1023)
    assert all(type(v) is int for v in lab01.encode_float(0.1, fp16))


@pytest.mark.parametrize("name", ["fp16", "bf16", "fp8_e4m3", "fp8_e5m2"])
def test_encode_then_decode_gives_the_rounded_value(name):
    fmt = FORMATS[name]
    rng = np.random.default_rng(5)
    x = (rng.choice([-1.0, 1.0], 300) * 2.0 ** rng.uniform(-20, 20, 300)).astype(np.float32)
    for v, r in zip(x, round_to_format(x, fmt)):
        assert lab01.decode_float(*lab01.encode_float(float(v), fmt), fmt) == float(r)


def test_encode_cases_cover_ties_carries_subnormals_saturation_and_signed_zero():
    names = " | ".join(c.name for c in EXERCISES["01.5"].make_cases())
    for word in ("tie", "next binade", "subnormal", "smallest normal", "saturates", "negative zero", "bias 11"):
        assert word in names, word


def _encode_by_search(x, fmt):
    # the nearest of all the format's values by brute force, ties to the even mantissa
    values = np.asarray(representable_values(fmt), dtype=np.float64)
    a = min(abs(float(np.float32(x))), fmt.max)
    d = np.abs(values - a)
    best = np.flatnonzero(d == d.min())
    r = float(values[best[0]]) if len(best) == 1 else float(values[best[decompose(values[best[0]], fmt).mantissa % 2]])
    sign = int(math.copysign(1.0, x) < 0)
    if r == 0.0:
        return sign, 0, 0
    if r < fmt.smallest_normal:
        return sign, 0, round(r / fmt.smallest_subnormal)
    k = math.floor(math.log2(r))
    return sign, k + fmt.bias, round((r / 2.0**k - 1) * 2**fmt.man_bits)


def _encode_frexp(x, fmt):
    sign = 1 if np.signbit(x) else 0
    a = abs(float(x))
    e = max(math.frexp(a)[1] - 1, 1 - fmt.bias) if a else 1 - fmt.bias
    ulp = 2.0 ** (e - fmt.man_bits)
    r = min(round(a / ulp) * ulp, fmt.max)  # Python's round: half to even
    if r == 0:
        return sign, 0, 0
    e = math.frexp(r)[1] - 1
    if e < 1 - fmt.bias:
        return sign, 0, int(r / 2.0 ** (1 - fmt.bias - fmt.man_bits))
    return sign, e + fmt.bias, int((r / 2.0**e - 1) * 2**fmt.man_bits)


@pytest.mark.parametrize("solution", [_encode_frexp])
def test_encode_float_other_correct_answers_pass(solution):
    passed, message = labkit.passes("01.5", solution)
    assert passed, message


def test_encode_by_search_agrees_with_the_reference_on_small_formats():
    for case in EXERCISES["01.5"].make_cases():
        x, fmt = case.args
        if fmt.bits <= 8:
            assert _encode_by_search(x, fmt) == lab01.encode_float(x, fmt), case.name


def test_encode_float_called_on_the_library_is_delegation():
    passed, message = labkit.passes("01.5", lambda x, fmt: tuple(decompose(x, fmt)[:3]))
    assert not passed and "decompose" in message


# --- the questions ----------------------------------------------------------------------------

def test_question_01_q1_counts_the_finite_e5m2_patterns():
    fmt = FORMATS["fp8_e5m2"]
    values = [lab01.decode_float(s, e, m, fmt) for s in (0, 1) for e in range(32) for m in range(4)]
    finite = sum(math.isfinite(v) for v in values)
    assert finite == get_item("01.Q1").answer == 248
    assert labkit.passes("01.Q1", 248)[0] and not labkit.passes("01.Q1", 256)[0]


def test_question_01_q2_fp16_sum_stalls_at_one():
    total = np.float16(1.0)
    for _ in range(10_000):
        total = np.float16(total + np.float16(1e-4))
    assert total == 1.0 and get_item("01.Q2").answer == "c"
    assert labkit.passes("01.Q2", " C ")[0] and not labkit.passes("01.Q2", "a")[0]
