"""Hints come in tiers and never contain code (issue 13, CONVENTIONS "The lab standard").

Every tier of every registered exercise's and question's hint is read by ``labkit.hint_code``, a
heuristic that flags what reads as code rather than words: numpy/torch/math names, calls,
assignments that compute, ``return`` with an expression, ``@``, shifts, slices, backticked code.
The heuristic itself is tested first, on hints that must pass and hints that must not.
"""

from __future__ import annotations

import pytest

import labkit
from qlearn.grading import EXERCISES, QUESTIONS


CLEAN = [
    "Clamp after rounding: a value beyond the range must stop at its edge.",
    "Rounding is half-to-even, as in torch and as numpy's rint does.",
    "An int8 cannot hold 200: a cast before the clamp turns it into -56.",
    "The infinity norm of a row is its largest magnitude; eps goes inside the square root.",
    "Think of the function f(x) on [qmin, qmax] and the case x = 0.5.",
    "Return the new weight and the new bias, in that order.",
    "Each worker sends 2 (p - 1) / p of the gradient in 2 (p - 1) rounds.",
    "Name the argument `scale` in your signature.",
]

CODE = [
    ("Use np.clip to clamp.", "np.clip"),
    ("torch.round rounds half to even.", "torch.round"),
    ("lo = min(xmin, 0) widens the range.", "assignment"),
    ("then s = hi / 127 is the step", "assignment"),
    ("and return a @ b", "return"),
    ("the product a @ b of the codes", "operator"),
    ("round with (p + (1 << (total - 1))) >> total", "operator"),
    ("call calc_qparams(lo, hi, qmin, qmax) on each row", "call"),
    ("convert with q.astype of a wide type: q.astype(np.int32)", "call"),
    ("write `x / scale` first", "`x / scale`"),
    ("index g[..., None] to broadcast", "index"),
    ("a lambda x: x + 1 does it", "keyword"),
    ("loop with for i in range(n)", "keyword"),
    ("return (lo, hi) at the end", "return"),
]


@pytest.mark.parametrize("text", CLEAN)
def test_words_are_not_flagged(text):
    assert labkit.hint_code(text) == []


@pytest.mark.parametrize(("text", "flag"), CODE, ids=[c[0] for c in CODE])
def test_code_is_flagged(text, flag):
    found = labkit.hint_code(text)
    assert any(flag in f for f in found), found


@pytest.mark.parametrize("item_id", [*EXERCISES, *QUESTIONS])
def test_no_hint_contains_code(item_id):
    labkit.assert_hints_without_code(item_id)


def test_the_parametrization_is_not_empty():
    assert len(EXERCISES) >= 20
