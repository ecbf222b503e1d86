"""Lab 04's exercises: correct solutions written in other ways pass, the typical bugs fail.

The generic grading tests check every lab's reference and wrong answers; these add what is
particular to lab 04: float32 or float64 percentiles, ``(1 - c) * old + c * new`` or
``old + c * (new - old)``, division or reciprocal inside the MSE search never fail a correct
solution, the references agree with the library's observers and with torch's moving average, and
every MSE case has the margin the lab promises.
"""

from __future__ import annotations

import labkit
import numpy as np
import pytest
import torch

from qlearn.grading import EXERCISES, QUESTIONS
from qlearn.grading.labs import lab04
from qlearn.observers import EntropyObserver, MovingAverageMinMaxObserver, PercentileObserver
from qlearn.qparams import qrange

EXERCISE_IDS = ("04.1", "04.2", "04.3", "04.4")
QUESTION_IDS = ("04.Q1", "04.Q2", "04.Q3", "04.Q4")
NOTEBOOK = "04_calibration_and_clipping"


def test_lab04_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab04, EXERCISE_IDS + QUESTION_IDS, NOTEBOOK, points=15)


def test_lab04_exports_its_references():
    labkit.assert_module_exports(lab04, {"ema_update", "kl_clip_threshold", "mse_optimal_clip",
                                         "percentile_clip_range"})


def test_importing_lab04_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab04")


# --- correct solutions, written the ways learners write them ---------------------------------

def _percentile_float32(x, p, symmetric=False):
    x = np.asarray(x, np.float32)
    if symmetric:
        t = np.percentile(np.abs(x), p)
        return -t, t
    lo, hi = np.percentile(x, [100 - p, p])
    return np.minimum(lo, 0), np.maximum(hi, 0)


def _quantile_float64(x, p, symmetric=False):
    v = np.asarray(x, np.float64).ravel()
    if symmetric:
        t = float(np.quantile(np.abs(v), p / 100))
        return [-t, t]
    return min(float(np.quantile(v, (100 - p) / 100)), 0.0), max(float(np.quantile(v, p / 100)), 0.0)


def _percentile_by_hand(x, p, symmetric=False):
    # sort and interpolate by hand, as numpy's default (linear) method does
    v = np.sort(np.abs(np.ravel(x)) if symmetric else np.ravel(x)).astype(np.float64)

    def at(q):
        rank = q / 100 * (v.size - 1)
        k = int(np.floor(rank))
        return v[k] + (rank - k) * (v[min(k + 1, v.size - 1)] - v[k])

    if symmetric:
        return -at(p), at(p)
    return min(at(100 - p), 0.0), max(at(p), 0.0)


def _kl_loop(hist, bin_edges, num_levels, damp_zero_bin=False):
    # the notebook's way: one candidate at a time, smoothing as a small helper
    hist = np.asarray(hist, np.float64).copy()
    if damp_zero_bin:
        hist[0] = hist[1]

    def smooth(c):
        zero = c == 0
        return np.where(zero, 1e-4, c - 1e-4 * zero.sum() / (c.size - zero.sum()))

    best_i, best_kl = None, np.inf
    for i in range(num_levels, hist.size + 1):
        p = hist[:i].copy()
        p[-1] += hist[i:].sum()
        level = np.arange(i) * num_levels // i
        q = np.zeros(i)
        for lvl in range(num_levels):
            members = level == lvl
            support = members & (p > 0)
            if support.any():
                q[support] = hist[:i][members].sum() / support.sum()
        p, q = smooth(p), smooth(q)
        p, q = p / p.sum(), q / q.sum()
        kl = float(np.sum(p * np.log(p / q)))
        if kl <= best_kl:
            best_i, best_kl = i, kl
    return float(bin_edges[best_i])


def _kl_float32_edges_list(hist, bin_edges, num_levels, damp_zero_bin=False):
    # all divergences first, float32 threshold returned; np.log of the ratio in one go
    h = np.array(hist, dtype=np.float64)
    if damp_zero_bin:
        h[0] = h[1]
    kls = []
    for i in range(num_levels, len(h) + 1):
        p = np.append(h[:i - 1], h[i - 1:].sum())
        groups = np.array_split(np.arange(i), np.searchsorted(np.arange(i) * num_levels // i, np.arange(1, num_levels)))
        q = np.zeros(i)
        for g in groups:
            nz = g[p[g] > 0]
            if nz.size:
                q[nz] = h[g].sum() / nz.size
        pz, qz = p == 0, q == 0
        p = np.where(pz, 1e-4, p - 1e-4 * pz.sum() / (~pz).sum())
        q = np.where(qz, 1e-4, q - 1e-4 * qz.sum() / (~qz).sum())
        kls.append(np.sum((p / p.sum()) * np.log((p / p.sum()) / (q / q.sum()))))
    k = len(kls) - 1 - int(np.argmin(kls[::-1]))
    return np.float32(bin_edges[num_levels + k])


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
    ("04.1", "np.quantile on float64, a list for the symmetric range", _quantile_float64),
    ("04.1", "sorted and interpolated by hand", _percentile_by_hand),
    ("04.3", "one level at a time, in a loop", _kl_loop),
    ("04.3", "groups by np.array_split at the level boundaries, float32 threshold", _kl_float32_edges_list),
    ("04.2", "division in float32, np.round", _mse_division),
    ("04.2", "division in float64", lambda x, b, c: _mse_division(x, b, c, np.float64)),
    ("04.2", "a loop keeping the first best, 2**(bits - 1) range", _mse_loop_first_best),
    ("04.4", "(1 - c) * old + c * new in Python floats", _ema_convex),
    ("04.4", "float32 arithmetic, a list", _ema_float32_list),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=labkit.solution_ids(SOLUTIONS))
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = labkit.passes(exercise_id, fn)
    assert passed, message


@pytest.mark.parametrize("exercise_id", EXERCISE_IDS)
def test_cases_are_the_same_every_time(exercise_id):
    labkit.assert_cases_deterministic(exercise_id)


# --- the references and the wrong answers ----------------------------------------------------

# The reference passing and every declared wrong answer failing are tested for all labs in
# tests/test_grading.py (test_reference_passes_its_own_check, test_typical_wrong_answers_are_rejected).


def test_the_typical_wrong_answers_are_declared_and_rejected():
    labkit.assert_wrong_answers_declared("04.1", "p and 100 - p swapped", "not widened to contain 0",
                                         "ignores the flag")
    labkit.assert_wrong_answers_declared("04.2", "only the max side", "without the clipping part")
    labkit.assert_wrong_answers_declared("04.3", "never damps", "always damps", "without the clipped values",
                                         "empty ones included", "no smoothing")
    labkit.assert_wrong_answers_declared("04.4", "c applied to the wrong term", "first batch not initialising")


@pytest.mark.parametrize("seed", [1, 2, 20261129])
def test_kl_wrong_answers_are_rejected_on_hidden_seeds_and_solutions_pass(seed):
    ex = EXERCISES["04.3"]
    cases = ex.make_cases(seed)
    for case in cases:
        expected = ex.reference(*case.args)
        assert ex.compare_output(_kl_loop(*case.args), expected) is None, case.name
        assert ex.compare_output(_kl_float32_edges_list(*case.args), expected) is None, case.name
    for name, wrong in ex.wrong_answers.items():
        with labkit.quiet():
            assert any(ex.compare_output(wrong(*c.args), ex.reference(*c.args)) is not None for c in cases), name


def test_kl_reference_is_the_entropy_observer_s_threshold(rng):
    relu = np.maximum(rng.normal(-0.2, 1.0, 20_000), 0).astype(np.float32)
    for damp in (False, True):
        obs = EntropyObserver(bins=512, qmin=0, qmax=255, damp_zero_bin=damp)
        obs(relu)
        hist, edges = obs.histogram()
        assert lab04.kl_clip_threshold(hist, edges, 256, damp) == float(obs.search().threshold)


def test_kl_cases_hold_the_promised_edge_cases():
    cases = EXERCISES["04.3"].make_cases()
    assert any(c.args[3] for c in cases) and any(not c.args[3] for c in cases)  # damped and not
    assert any(len(c.args[0]) == c.args[2] for c in cases)  # a single candidate
    assert any(np.any(c.args[0][1:-1] == 0) for c in cases)  # empty bins inside the histogram
    relu = [c for c in cases if "ReLU" in c.name]
    assert relu[0].args[0][0] > 0.4 * relu[0].args[0].sum()  # a real spike of zeros


QUESTION_ANSWERS = {"04.Q1": ("c", ["a", "b"]), "04.Q2": (99.0, [99.9, 100.0]), "04.Q3": (86, [14, 99, 85.0 - 0.5]),
                    "04.Q4": ("d", ["a", "b", "c"])}


@pytest.mark.parametrize("question_id", QUESTION_IDS)
def test_questions_accept_the_answer_and_reject_the_others(question_id):
    right, wrongs = QUESTION_ANSWERS[question_id]
    assert labkit.passes(question_id, right)[0]
    for wrong in wrongs:
        assert not labkit.passes(question_id, wrong)[0], wrong


def test_question_03_is_the_weight_the_notebook_computes():
    assert round(100 * 0.99**15) == QUESTIONS["04.Q3"].answer


# --- agreement with the library and torch; the promised margins ------------------------------

def test_percentile_reference_equals_the_observer(rng):
    x = rng.standard_t(3, (16, 50)).astype(np.float32)  # both signs: widening to 0 changes nothing
    obs = PercentileObserver(99.9)
    obs(x)
    assert lab04.percentile_clip_range(x, 99.9) == (obs.min_val, obs.max_val)


def test_percentile_reference_widens_to_zero_and_is_symmetric_on_magnitudes():
    x = np.arange(1, 102, dtype=np.float32)  # 1 .. 101
    assert lab04.percentile_clip_range(x, 99.0) == (0.0, 100.0)
    assert lab04.percentile_clip_range(-x, 99.0) == (-100.0, 0.0)
    assert lab04.percentile_clip_range(np.concatenate([-x, x]), 100.0, symmetric=True) == (-101.0, 101.0)


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
