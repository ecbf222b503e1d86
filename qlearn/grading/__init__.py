"""Grading for the qlearn labs: the exercise catalogue, ``check``, student versions, the grader.

In a notebook::

    from qlearn.grading import check, implementation
    check("02.3", quantize_tensor)          # prints "Exercise 02.3 passed: 3/3 points (12 cases)"

- ``EXERCISES``: every exercise of every lab, by id (the lab modules are ``grading/labs/labNN.py``);
- ``check(id, fn)``: run an exercise's cases against ``fn`` and print friendly feedback (HTML with
  a ✓/✗ marker in a notebook); a solution that calls the library's implementation of its exercise
  (``Exercise.forbidden``) or anything in ``qlearn.grading`` is rejected as "delegated";
- ``reference(id)``, ``implementation(id, fn)``: the reference, or ``fn`` once it passes;
- for the grader: ``Exercise.make_cases(seed)`` (hidden cases), ``run_cases``, ``compare_case``,
  and ``qlearn.grading.delegation`` (``Watcher``, ``disarm``, ``DelegationError``);
- ``python -m qlearn.grading.student [--check]``: build ``notebooks/student/`` from the solutions;
- ``python -m qlearn.grading.clean NOTEBOOK...``: renumber execution counts, strip metadata noise;
- ``python -m qlearn.grade PATH...`` (``qlearn.grading.grade``): grade notebooks; scores come from a
  sandboxed re-run of the learner's functions, never from the notebook's kernel.
"""

from qlearn.grading.checker import CheckResult, check, compare_case, implementation, reference, run_cases
from qlearn.grading.compare import compare_values, format_value
from qlearn.grading.delegation import DelegationError
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.registry import EXERCISES, exercises_for_lab, get_exercise, register

__all__ = [
    "EXERCISES",
    "Case",
    "CheckResult",
    "DelegationError",
    "Exercise",
    "check",
    "compare_case",
    "compare_values",
    "exercises_for_lab",
    "format_value",
    "get_exercise",
    "implementation",
    "reference",
    "register",
    "run_cases",
]
