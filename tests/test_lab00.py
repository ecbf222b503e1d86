"""Lab 00's exercises and question: other correct answers pass, the promised edge cases are there.

The generic tests in tests/test_grading.py already prove, for every exercise, that the reference
passes and every declared wrong answer is rejected; tests/browser/test_lab00.py drives the lab in a
real browser. These add what is particular to lab 00.
"""

from __future__ import annotations

import labkit
import numpy as np
import pytest

from qlearn.grading import EXERCISES
from qlearn.grading.labs import lab00

IDS = ("00.1", "00.2", "00.3", "00.4", "00.Q1")


def test_lab00_registers_its_exercises_and_question():
    labkit.assert_lab_registers(lab00, IDS, "00_welcome", points=6)


def test_lab00_exports_what_it_documents():
    labkit.assert_module_exports(lab00, {"bits_for_error", "clamp", "num_codes", "relative_error"})


def test_importing_lab00_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab00")


def _bits_float32(x, target):
    x = np.asarray(x, np.float32)
    m = np.abs(x).max()
    for bits in range(2, 17):
        n = np.float32(2 ** (bits - 1) - 1)
        step = m / n if m > 0 else np.float32(1)
        x_hat = np.clip(np.round(x / step), -n, n) * step
        size = np.sqrt(np.sum(x.astype(np.float64) ** 2))
        error = np.sqrt(np.sum((x.astype(np.float64) - x_hat) ** 2))
        if (error / size if size else 0.0) <= target:
            return bits
    return None


def _bits_while(x, target):
    x = np.asarray(x, np.float64)
    bits, m = 2, float(np.max(np.abs(x)))
    while bits <= 16:
        n = 2 ** (bits - 1) - 1
        step = m / n or 1.0
        err = np.linalg.norm(x - np.clip(np.rint(x / step), -n, n) * step)
        size = np.linalg.norm(x)
        if (err / size if size else 0.0) <= target:
            return bits
        bits += 1
    return None


SOLUTIONS = [
    ("00.1", "np.clip", lambda x, lo, hi: np.clip(x, lo, hi)),
    ("00.2", "len(range(...))", lambda qmin, qmax: len(range(int(qmin), int(qmax) + 1))),
    ("00.4", "float32 arithmetic, np.round", _bits_float32),
    ("00.4", "a while loop with its own norms", _bits_while),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=labkit.solution_ids(SOLUTIONS))
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = labkit.passes(exercise_id, fn)
    assert passed, message


def test_bits_for_error_targets_sit_between_two_widths():
    # every random target lies well between the errors of two neighbouring widths, so float32 and
    # float64 solutions agree on the answer
    for case in EXERCISES["00.4"].make_cases(seed=7):
        x, target = case.args
        errors = [lab00._grid_error(x, b) for b in range(2, 17)]
        assert all(e == 0 or target == 0 or abs(np.log(e / target)) > 0.05 for e in errors), case.name


def test_bits_for_error_golden():
    x = np.array([-1.0, -0.3, 0.2, 0.7, 1.0])
    assert (lab00.bits_for_error(x, 0.1), lab00.bits_for_error(x, 0.01), lab00.bits_for_error(x, 0.0)) == (3, 6, None)
    assert lab00.bits_for_error(np.zeros(3), 0.0) == 2
    assert lab00.bits_for_error(np.array([-1.5, -0.5, 0.0, 1.0, 1.5]), 0.0) == 3  # on the 3-bit grid


def test_question_00_q1():
    assert labkit.passes("00.Q1", "B")[0] and not labkit.passes("00.Q1", "c")[0]
