"""Grading for the qlearn labs: the exercise catalogue, ``check``, student versions, the grader.

In a notebook::

    from qlearn.grading import check, implementation
    check("02.3", quantize_tensor)          # prints "Exercise 02.3 passed: 3/3 points (12 cases)"

- ``EXERCISES``: every exercise of every lab, by id (the lab modules are ``grading/labs/labNN.py``);
- ``check(id, fn)``: run an exercise's cases against ``fn`` and print friendly feedback (HTML with
  a ✓/✗ marker in a notebook); a solution that calls the library's implementation of its exercise
  (``Exercise.forbidden``) or anything in ``qlearn.grading`` is rejected as "delegated"; a failure
  shows tier 1 of the exercise's hint, ``check(id, fn, hint=2)`` the next tier;
- ``QUESTIONS``, ``Question``: graded "predict, then run" questions (ids ``NN.QK``), answered in the
  notebook as ``q1_answer = "b"`` and checked with ``check("06.Q1", q1_answer)``;
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
from qlearn.grading.question import Question
from qlearn.grading.registry import (
    EXERCISES,
    QUESTIONS,
    exercises_for_lab,
    get_exercise,
    get_question,
    questions_for_lab,
    register,
)

__all__ = [
    "EXERCISES",
    "QUESTIONS",
    "Case",
    "CheckResult",
    "DelegationError",
    "Exercise",
    "Question",
    "check",
    "compare_case",
    "compare_values",
    "exercises_for_lab",
    "format_value",
    "get_exercise",
    "get_question",
    "implementation",
    "questions_for_lab",
    "reference",
    "register",
    "run_cases",
]
