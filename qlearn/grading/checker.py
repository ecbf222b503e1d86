"""Checking a learner's function against an exercise's reference, with friendly feedback.

``check("02.3", quantize_tensor)`` runs every case of exercise 02.3. Each call gets its own deep
copy of the inputs, so a function that changes its input in place cannot spoil the next case or the
expected value. The feedback stops at the first failing case and shows its input, the expected and
the returned value, the reason, and the exercise's hint. Everything printed is deterministic (fixed
seeds, fixed formatting), so notebooks that show it can be compared output for output.
"""

from __future__ import annotations

import copy
import inspect
import re
import sys
import textwrap
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from qlearn.grading.compare import format_value
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.registry import get_exercise

__all__ = ["CheckResult", "check", "implementation", "reference"]

_LABEL = 12  # width of the "  expected: " column
STATUSES = ("passed", "failed", "error", "not done")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`check`.

    ``implementation`` is the learner's function if it passed, else the exercise's reference, so
    that the demos after an exercise keep working before the exercise is done. ``status`` is one of
    ``"passed"``, ``"failed"`` (a wrong answer), ``"error"`` (an exception) or ``"not done"``.
    """

    exercise_id: str
    passed: bool
    points: int
    max_points: int
    message: str
    implementation: Callable[..., Any]
    status: str = "passed"
    shown: bool = field(default=False, repr=False, compare=False)

    def __repr__(self) -> str:  # no function repr: it holds a memory address
        return (f"CheckResult(exercise_id={self.exercise_id!r}, passed={self.passed}, "
                f"points={self.points}, max_points={self.max_points}, status={self.status!r})")

    def _ipython_display_(self) -> None:
        # A check cell ends with ``check(...)``: its message is already printed, show nothing more.
        if not self.shown:
            sys.stdout.write(self.message + "\n")


def _block(label: str, text: str) -> str:
    """``  label:  text``, with the text's later lines indented under its first one."""
    head = f"  {label}:".ljust(_LABEL)
    return head + text.replace("\n", "\n" + " " * _LABEL)


def _inputs(exercise: Exercise, case: Case) -> str:
    try:
        bound = inspect.signature(exercise.reference).bind(*case.args, **case.kwargs)
        items = list(bound.arguments.items())
    except (TypeError, ValueError):
        items = [(f"arg{i}", a) for i, a in enumerate(case.args)] + list(case.kwargs.items())
    if not items:
        return "(no arguments)"
    return "\n".join(
        f"{name} = " + format_value(value).replace("\n", "\n" + " " * (len(name) + 3))
        for name, value in items
    )


def _error_text(exc: BaseException, fn: Callable[..., Any]) -> str:
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", f"{type(exc).__name__}: {exc}")
    if len(text) > 300:
        text = text[:297] + "..."
    code = getattr(fn, "__code__", None)
    frames = [f for f in traceback.extract_tb(exc.__traceback__)
              if code is not None and f.filename == code.co_filename]
    if frames:
        text += f"\n(raised in {frames[-1].name}, line {frames[-1].lineno})"
    return text


def _hint(exercise: Exercise) -> str:
    return _block("hint", textwrap.fill(exercise.hint, width=96 - _LABEL))


def _case_line(number: int, total: int, case: Case) -> str:
    return f"  case {number} of {total}: {case.name}"


def _run_cases(exercise: Exercise, fn: Callable[..., Any]) -> tuple[str, str]:
    """Run every case; return ``(status, message)``."""
    ex = exercise
    cases = ex.make_cases()
    head = f"Exercise {ex.id}"
    zero = f"0/{ex.points} points"
    for number, case in enumerate(cases, start=1):
        try:
            expected = ex.reference(*copy.deepcopy(case.args), **copy.deepcopy(dict(case.kwargs)))
        except Exception as exc:  # a bug in the exercise, not in the learner's code
            raise RuntimeError(
                f"the reference of exercise {ex.id} failed on case {case.name!r}: {exc!r}"
            ) from exc
        try:
            got = fn(*copy.deepcopy(case.args), **copy.deepcopy(dict(case.kwargs)))
        except NotImplementedError:
            return "not done", (
                f"{head} is not done yet: {zero}\n"
                f"  Replace `raise NotImplementedError(...)` in {getattr(fn, '__name__', 'your function')}() "
                f"with your code,\n  run that cell, then run this check again."
            )
        except Exception as exc:
            return "error", "\n".join([
                f"{head} raised an error: {zero}",
                _case_line(number, len(cases), case),
                _block("input", _inputs(ex, case)),
                _block("error", _error_text(exc, fn)),
                _hint(ex),
            ])
        try:
            reason = ex.compare_output(got, expected)
        except Exception as exc:
            reason = f"the returned value could not be compared ({type(exc).__name__}: {exc})"
        if reason is not None:
            return "failed", "\n".join([
                f"{head} failed: {zero}",
                _case_line(number, len(cases), case),
                _block("input", _inputs(ex, case)),
                _block("expected", format_value(expected)),
                _block("returned", format_value(got)),
                _block("problem", reason),
                _hint(ex),
            ])
    return "passed", f"{head} passed: {ex.points}/{ex.points} points ({len(cases)} cases)"


def check(exercise_id: str, fn: Callable[..., Any], *, verbose: bool = True) -> CheckResult:
    """Check the learner's ``fn`` on every case of an exercise and print the feedback.

    ``NotImplementedError`` counts as "not done yet"; any other exception is reported with its
    type, message and the case that raised it. Points are all or nothing.

    >>> result = check("00.2", lambda qmin, qmax: qmax - qmin + 1)
    Exercise 00.2 passed: 1/1 points (10 cases)
    >>> result.points, result.implementation(0, 3)
    (1, 4)
    """
    exercise = get_exercise(exercise_id)
    if not callable(fn):
        raise TypeError(
            f"check({exercise.id!r}, fn) needs your function {exercise.function}, got {format_value(fn)}"
        )
    status, message = _run_cases(exercise, fn)
    passed = status == "passed"
    if verbose:
        sys.stdout.write(message + "\n")  # one write: a notebook shows it as one piece of output
    return CheckResult(
        exercise_id=exercise.id,
        passed=passed,
        points=exercise.points if passed else 0,
        max_points=exercise.points,
        message=message,
        implementation=fn if passed else exercise.reference,
        status=status,
        shown=verbose,
    )


def reference(exercise_id: str) -> Callable[..., Any]:
    """The reference implementation of an exercise.

    >>> reference("00.2")(-128, 127)
    256
    """
    return get_exercise(exercise_id).reference


def implementation(exercise_id: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` if it passes the exercise's check (run silently), else the reference implementation.

    Demos call it so that they work before the exercise is done, and use the learner's code after.

    >>> implementation("00.2", lambda qmin, qmax: qmax - qmin)(0, 3)   # wrong: the reference is used
    4
    """
    return check(exercise_id, fn, verbose=False).implementation
