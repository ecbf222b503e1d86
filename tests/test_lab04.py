"""Lab 04's exercises: correct solutions written in other ways pass, the typical bugs fail.

The generic grading tests check every lab's reference and wrong answers; these add what is
particular to lab 04: float32 or float64 percentiles, ``(1 - c) * old + c * new`` or
``old + c * (new - old)``, division or reciprocal inside the MSE search never fail a correct
solution, the references agree with the library's observers and with torch's moving average, and
every MSE case has the margin the lab promises.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlearn.grading import EXERCISES, check
from qlearn.grading.labs import lab04
from qlearn.observers import MovingAverageMinMaxObserver, PercentileObserver
from qlearn.qparams import qrange

IDS = ("04.1", "04.2", "04.3")


def _passes(exercise_id, fn):
    result = check(exercise_id, fn, verbose=False)
    return result.passed, result.message


# --- correct solutions, written the ways learners write them ---------------------------------

def _percentile_float32(x, p):
    lo, hi = np.percentile(np.asarray(x, np.float32), [100 - p, p])
    return lo, hi


def _quantile_float64(x, p):
    v = np.asarray(x, np.float64).ravel()
    return float(np.quantile(v, (100 - p) / 100)), float(np.quantile(v, p / 100))


def _mse_division(x, bits, candidates, dtype=np.float32):
    qmin, qmax = qrange(bits)
    x = np.asarray(x, dtype)
    errors = []
    for t in candidates:
        s = dtype(t) / dtype((qmax - qmin) / 2)
        x_hat = np.clip(np.round(x / s), qmin, qmax) * s
        errors.append(np.mean((x - x_hat) ** 2))
    return candidates[int(np.argmin(errors))]


def _mse_loop_first_best(x, bits, candidates):
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    best, best_error = None, np.inf
    for t in candidates:
        s = t / ((qmax - qmin) / 2)
        q = np.clip(np.rint(np.asarray(x, np.float64) / s), qmin, qmax)
        error = float(np.mean((np.asarray(x, np.float64) - q * s) ** 2))
        if error < best_error:
            best, best_error = t, error
    return best


def _ema_convex(old_min, old_max, x, c):
    if old_min is None:
        return float(np.min(x)), float(np.max(x))
    return (1 - c) * float(old_min) + c * float(np.min(x)), (1 - c) * float(old_max) + c * float(np.max(x))


def _ema_float32_list(old_min, old_max, x, c):
    lo, hi = np.float32(np.min(x)), np.float32(np.max(x))
    if old_min is None and old_max is None:
        return [lo, hi]
    c = np.float32(c)
    return [old_min * (1 - c) + lo * c, old_max * (1 - c) + hi * c]


SOLUTIONS = [
    ("04.1", "np.percentile on float32, one call", _percentile_float32),
    ("04.1", "np.quantile on float64", _quantile_float64),
    ("04.2", "division in float32, np.round", _mse_division),
    ("04.2", "division in float64", lambda x, b, c: _mse_division(x, b, c, np.float64)),
    ("04.2", "a loop keeping the first best, 2**(bits - 1) range", _mse_loop_first_best),
    ("04.3", "(1 - c) * old + c * new in Python floats", _ema_convex),
    ("04.3", "float32 arithmetic, a list", _ema_float32_list),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=[f"{e} {n}" for e, n, _ in SOLUTIONS])
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = _passes(exercise_id, fn)
    assert passed, message


# --- the references and the wrong answers ----------------------------------------------------

# The reference passing and every declared wrong answer failing are tested for all labs in
# tests/test_grading.py (test_reference_passes_its_own_check, test_typical_wrong_answers_are_rejected).


def test_the_brief_s_wrong_answers_are_declared():
    names = {e: " | ".join(EXERCISES[e].wrong_answers) for e in IDS}
    assert "p and 100 - p swapped" in names["04.1"]
    assert "only the max side" in names["04.2"] and "without the clipping part" in names["04.2"]
    assert "c applied to the wrong term" in names["04.3"] and "first batch not initialising" in names["04.3"]


# --- agreement with the library and torch; the promised margins ------------------------------

def test_percentile_reference_equals_the_observer(rng):
    x = rng.standard_t(3, (16, 50)).astype(np.float32)
    obs = PercentileObserver(99.9)
    obs(x)
    assert lab04.percentile_clip_range(x, 99.9) == (obs.min_val, obs.max_val)


def test_ema_reference_equals_torch_moving_average_observer(rng):
    batches = [rng.normal(0, 1 + k, (4, 8)).astype(np.float32) for k in range(5)]
    theirs = torch.ao.quantization.MovingAverageMinMaxObserver(averaging_constant=0.05)
    ours = MovingAverageMinMaxObserver(0.05)
    lo = hi = None
    for b in batches:
        theirs(torch.from_numpy(b))
        ours(b)
        lo, hi = lab04.ema_update(lo, hi, b, 0.05)
    assert (lo, hi) == (theirs.min_val.item(), theirs.max_val.item()) == (ours.min_val, ours.max_val)


def test_mse_cases_have_a_clear_winner():
    for case in EXERCISES["04.2"].make_cases():
        x, bits, candidates = case.args
        if len(candidates) == 1:
            continue
        curves = lab04._errors_all_ways(np.asarray(x, np.float32), bits, np.asarray(candidates))
        assert len({int(np.argmin(c)) for c in curves}) == 1, case.name
        first, second = np.sort(curves[0])[:2]
        assert second > first * 1.001, case.name


def test_mse_reference_docstring_example_clips_the_outlier():
    x = np.concatenate([np.linspace(-1, 1, 1001), [10.0]]).astype(np.float32)
    assert lab04.mse_optimal_clip(x, 4, [1.0, 3.0, 10.0]) == 3.0
    assert lab04.mse_optimal_clip(x, 8, [1.0, 3.0, 10.0]) == 10.0   # more bits: clip less
