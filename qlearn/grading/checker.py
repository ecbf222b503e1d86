"""Checking a learner's function against an exercise's reference, with friendly feedback.

``check("02.3", quantize_tensor)`` runs every case of exercise 02.3, the named edge cases first.
Each call gets its own deep copy of the inputs, so a function that changes its input in place
cannot spoil the next case or the expected value. The feedback stops at the first failing case and
shows its input, the expected and the returned value, the reason, and the exercise's hint.
Everything printed is deterministic (fixed seeds, fixed formatting), so notebooks that show it can
be compared output for output. In a notebook the feedback is also shown as HTML, with a green ✓ or
a red ✗ and a text label; its plain-text version is the same text as outside a notebook.

Delegation earns nothing: the learner's call runs under a :class:`~qlearn.grading.delegation.Watcher`,
and a solution that calls the library's implementation of its exercise (``Exercise.forbidden``) or
anything in ``qlearn.grading`` gets status ``"delegated"`` and 0 points.

The grader reuses the pieces: :func:`run_cases` (run and compare in one process) and
:func:`compare_case` (compare a result that came back from another process as plain data), and
:func:`failure_message` to word the feedback.
"""

from __future__ import annotations

import copy
import html
import inspect
import os
import re
import sys
import textwrap
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from qlearn.grading.compare import format_value, plain_problem
from qlearn.grading.delegation import DelegationError, Watcher
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question, grade_answer
from qlearn.grading.registry import get_exercise, get_item

__all__ = ["CaseResult", "CheckResult", "check", "compare_case", "evaluate", "evaluate_question",
           "expected_output", "failure_message", "feedback_html", "hint_lines", "hint_tier", "implementation",
           "reference", "run_case", "run_cases"]

_LABEL = 12  # width of the "  expected: " column
STATUSES = ("passed", "failed", "error", "not done", "delegated")
_deepcopy = copy.deepcopy


@dataclass(frozen=True)
class CheckResult:
    """The outcome of :func:`check`.

    ``implementation`` is the learner's function if it passed, else the exercise's reference, so
    that the demos after an exercise keep working before the exercise is done. (The reference lives
    in ``qlearn.grading``: a solution that calls it, under any name, is rejected as delegated.)
    ``status`` is one of ``"passed"``, ``"failed"`` (a wrong answer), ``"error"`` (an exception),
    ``"not done"`` or ``"delegated"`` (it called the library's implementation of the exercise).
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

    def _repr_html_(self) -> str:
        return feedback_html(self.status, self.message)

    def _ipython_display_(self) -> None:
        # A check cell ends with ``check(...)``: its feedback is already shown, show nothing more.
        if not self.shown:
            _show(self.status, self.message)


_MARKS = {  # status: (symbol, label, accent colour, background, text colour); all pass WCAG AA contrast
    "passed": ("\u2713", "Passed", "#1a7f37", "#e6f4ea", "#0b3d1b"),
    "failed": ("\u2717", "Failed", "#cf222e", "#fdecea", "#6e0b10"),
    "error": ("\u2717", "Error", "#cf222e", "#fdecea", "#6e0b10"),
    "delegated": ("\u2717", "Not accepted", "#cf222e", "#fdecea", "#6e0b10"),
    "not done": ("\u25cb", "Not done yet", "#9a6700", "#fff8e1", "#4d3800"),
}


def feedback_html(status: str, message: str) -> str:
    """The feedback as HTML: a coloured box with a ✓/✗ marker and a text label, then the message.

    The colour is never the only signal: the label ("Passed", "Failed", ...) says it in words, and
    ``role="status"`` lets a screen reader announce it.

    >>> print(feedback_html("passed", "Exercise 00.2 passed: 1/1 points (10 cases)"))
    <div class="qlearn-check qlearn-check-passed" role="status" style="border-left: 6px solid #1a7f37; background: #e6f4ea; color: #0b3d1b; padding: 0.4em 0.8em; margin: 0.2em 0"><strong><span aria-hidden="true">✓</span> Passed</strong><pre style="margin: 0.2em 0 0 0; background: transparent; color: inherit; white-space: pre-wrap">Exercise 00.2 passed: 1/1 points (10 cases)</pre></div>
    """
    symbol, label, accent, background, text = _MARKS.get(status, _MARKS["failed"])
    css = f"border-left: 6px solid {accent}; background: {background}; color: {text}; padding: 0.4em 0.8em; margin: 0.2em 0"
    slug = status.replace(" ", "-")
    return (f'<div class="qlearn-check qlearn-check-{slug}" role="status" style="{css}">'
            f'<strong><span aria-hidden="true">{symbol}</span> {label}</strong>'
            f'<pre style="margin: 0.2em 0 0 0; background: transparent; color: inherit; white-space: pre-wrap">'
            f"{html.escape(message, quote=False)}</pre></div>")


def _in_notebook() -> bool:
    shell = sys.modules.get("IPython")
    try:
        return shell is not None and shell.get_ipython() is not None and hasattr(shell.get_ipython(), "kernel")
    except Exception:
        return False


def _show(status: str, message: str) -> None:
    """Show the feedback: HTML with a plain-text fallback in a notebook, plain text elsewhere."""
    if _in_notebook():
        from IPython.display import display

        display({"text/plain": message, "text/html": feedback_html(status, message)}, raw=True)
    else:
        sys.stdout.write(message + "\n")  # one write: it shows as one piece of output


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


def hint_tier(item: Exercise | Question, hint: Any) -> int | None:
    """The hint tier a ``check(..., hint=k)`` asks for: ``None`` (the default: tier 1 after a failure),
    or ``k`` in ``1..len(item.hints)``; anything else is an error that says which tiers exist.

    >>> hint_tier(get_exercise("00.2"), None), hint_tier(get_exercise("00.2"), 1)
    (None, 1)
    """
    if hint is None:
        return None
    count = len(item.hints)
    what = f"{'question' if isinstance(item, Question) else 'exercise'} {item.id}"
    tiers = "hint=1" if count == 1 else ", ".join(f"hint={k}" for k in range(1, count)) + f" or hint={count}"
    if not isinstance(hint, int) or isinstance(hint, bool):
        raise TypeError(f"hint must be a tier number, such as hint=2; {what} has {count} "
                        f"hint{'s' if count > 1 else ''}: ask for {tiers} (got hint={hint!r})")
    if not 1 <= hint <= count:
        raise ValueError(f"{what} has {'only one hint' if count == 1 else f'{count} hints'}: ask for "
                         f"{tiers} (got hint={hint})")
    return hint


def _call_text(item: Exercise | Question, tier: int) -> str:
    name = item.variable if isinstance(item, Question) else item.function
    return f'check("{item.id}", {name}, hint={tier})'


def hint_lines(item: Exercise | Question, tier: int | None = None) -> list[str]:
    """The feedback's hint: tier ``tier`` (default 1), labelled ``hint`` when there is only one tier and
    ``hint k/n`` otherwise, followed by how to ask for the next tier if there is one.

    >>> ex = Exercise(id="99.1", title="t", points=1, reference=abs, cases=lambda rng: [], function="f",
    ...               hint=("The concept.", "A pointer."), notebook="99_demo")
    >>> print("\\n".join(hint_lines(ex)))
      hint 1/2: The concept.
      more:     check("99.1", f, hint=2) shows hint 2 of 2
    >>> print(hint_lines(ex, 2)[0])
      hint 2/2: A pointer.
    """
    tiers = item.hints
    k = tier or 1
    label = "hint" if len(tiers) == 1 else f"hint {k}/{len(tiers)}"
    lines = [_block(label, textwrap.fill(tiers[k - 1], width=96 - _LABEL))]
    if k < len(tiers):
        lines.append(_block("more", f"{_call_text(item, k + 1)} shows hint {k + 1} of {len(tiers)}"))
    return lines


def _hint(exercise: Exercise, tier: int | None = None) -> str:
    return "\n".join(hint_lines(exercise, tier))


def _case_line(number: int, total: int, case: Case) -> str:
    return f"  case {number} of {total}: {case.name}"


# --- running and comparing one case -----------------------------------------------------------

@dataclass
class CaseResult:
    """What happened on one case: ``status`` (one of ``STATUSES``), and the details.

    ``reason`` says why a ``"failed"`` answer is wrong (or names the forbidden call of a
    ``"delegated"`` one); ``error`` holds the exception of an ``"error"``; ``got`` is the returned
    value (``None`` unless the call returned).
    """

    case: Case
    status: str
    reason: str | None = None
    got: Any = None
    error: BaseException | None = None
    expected: Any = None
    note: str | None = None


def expected_output(exercise: Exercise, case: Case) -> Any:
    """The reference's output on ``case`` (computed on a deep copy of its inputs).

    >>> ex = get_exercise("00.2")
    >>> expected_output(ex, ex.make_cases()[0])
    256
    """
    try:
        return exercise.reference(*_deepcopy(case.args), **_deepcopy(dict(case.kwargs)))
    except Exception as exc:  # a bug in the exercise, not in the learner's code
        raise RuntimeError(f"the reference of exercise {exercise.id} failed on case {case.name!r}: {exc!r}") from exc


def compare_case(exercise: Exercise, case: Case, got: Any, expected: Any = None, *,
                 has_expected: bool = False) -> str | None:
    """``None`` if ``got`` is the right answer to ``case``, else the reason it is not.

    The expected value comes from the reference (pass ``expected`` with ``has_expected=True`` to
    reuse one). ``got`` must be plain data (see :func:`~qlearn.grading.compare.plain_problem`)
    unless the exercise says otherwise. The grader calls this in its parent process with ``got``
    decoded from what the sandboxed child sent back.

    >>> ex = get_exercise("00.2")
    >>> case = ex.make_cases()[0]                      # int8: [-128, 127]
    >>> compare_case(ex, case, 256) is None, compare_case(ex, case, 255)
    (True, 'returned 255, expected 256')
    """
    if not has_expected:
        expected = expected_output(exercise, case)
    if exercise.plain_result:
        problem = plain_problem(got)
        if problem is not None:
            return problem
    try:
        return exercise.compare_output(got, expected)
    except Exception as exc:
        return f"the returned value could not be compared ({type(exc).__name__}: {exc})"


def run_case(exercise: Exercise, case: Case, fn: Callable[..., Any], *, watcher: Watcher | None = None,
             expected: Any = None, has_expected: bool = False) -> CaseResult:
    """Run ``fn`` on one case (under ``watcher`` if given) and compare its result.

    >>> ex = get_exercise("00.2")
    >>> run_case(ex, ex.make_cases()[0], lambda qmin, qmax: qmax - qmin).status
    'failed'
    """
    if not has_expected:
        expected = expected_output(exercise, case)
    args, kwargs = _deepcopy(case.args), _deepcopy(dict(case.kwargs))
    for attempt in range(2):
        try:
            if watcher is None:
                got = fn(*args, **kwargs)
            else:
                got = watcher.call(fn, *args, **kwargs)
        except NotImplementedError as exc:
            outcome = CaseResult(case, "not done", error=exc, expected=expected)
        except Exception as exc:
            outcome = CaseResult(case, "error", error=exc, expected=expected)
        else:
            outcome = CaseResult(case, "passed", got=got, expected=expected)
        if watcher is not None and watcher.violation is not None:
            return CaseResult(case, "delegated", reason=watcher.violation.describe(exercise.id), expected=expected)
        if watcher is not None and attempt == 0 and watcher.stale():  # fn imported a package just now
            watcher.refresh()
            args, kwargs = _deepcopy(case.args), _deepcopy(dict(case.kwargs))
            continue
        break
    if outcome.status == "passed":
        reason = compare_case(exercise, case, outcome.got, expected, has_expected=True)
        if reason is not None:
            outcome.status, outcome.reason = "failed", reason
            if exercise.explain is not None:
                try:
                    outcome.note = exercise.explain(case, outcome.got, expected)
                except Exception:
                    outcome.note = None
    return outcome


def uses_torch(exercise: Exercise, cases: Sequence[Case]) -> bool:
    """Whether ``exercise`` may use torch: its ``allowed`` names torch, or its inputs hold torch objects.
    Any other exercise works on numpy inputs and is to be written with numpy: a call into torch
    counts as delegation (torch's kernels would do its job under names no list can enumerate).

    >>> from qlearn.grading import get_exercise
    >>> ex = get_exercise("02.1")
    >>> uses_torch(ex, ex.make_cases()), uses_torch(get_exercise("10.2"), [])
    (False, True)
    """
    allows = any(name == "torch" or name.startswith("torch.") for name in exercise.allowed)
    return allows or _holds_torch([(c.args, dict(c.kwargs)) for c in cases])


def _holds_torch(value: Any) -> bool:
    """Whether ``value`` (nested tuples, lists, dicts) holds a torch object: such an exercise may use
    torch; one on numpy inputs may not (torch's kernels would do its job under other names)."""
    if isinstance(value, (list, tuple)):
        return any(_holds_torch(v) for v in value)
    if isinstance(value, dict):
        return any(_holds_torch(v) for v in value.values())
    return type(value).__module__.split(".")[0] == "torch"


def run_cases(exercise: Exercise, fn: Callable[..., Any], cases: Sequence[Case] | None = None, *,
              seed: int | None = None, watch: bool = True, stop_at_first: bool = True) -> list[CaseResult]:
    """Run ``fn`` on ``cases`` (default: ``exercise.make_cases(seed)``) and compare every result.

    With ``watch`` (the default) a solution that calls a forbidden callable is ``"delegated"``.
    With ``stop_at_first`` the list ends at the first case that does not pass.

    >>> ex = get_exercise("00.2")
    >>> [r.status for r in run_cases(ex, lambda qmin, qmax: qmax - qmin + 1)][:3]
    ['passed', 'passed', 'passed']
    >>> [(r.case.name, r.status) for r in run_cases(ex, lambda qmin, qmax: 256)]
    [('int8: [-128, 127]', 'passed'), ('uint8: [0, 255]', 'passed'), ('int4: [-8, 7]', 'failed')]
    """
    if cases is None:
        cases = exercise.make_cases(seed)
    watcher = Watcher(exercise, no_torch=not uses_torch(exercise, cases)) if watch else None
    results = []
    for case in cases:
        result = run_case(exercise, case, fn, watcher=watcher)
        results.append(result)
        if stop_at_first and result.status != "passed":
            break
    return results


# --- wording the feedback ---------------------------------------------------------------------

def _allowed_text(exercise: Exercise) -> str:
    allowed = ", ".join(exercise.allowed)
    return "numpy, Python's standard library" + (f", and {allowed}" if allowed else "")


def failure_message(exercise: Exercise, result: CaseResult, number: int, total: int, fn: Callable[..., Any],
                    *, hidden: bool = False, hint: int | None = None) -> str:
    """The feedback for a case that did not pass; ``hidden`` leaves out inputs and expected values;
    ``hint`` is the tier to show (default 1; a "not done" answer shows one only when asked).

    >>> ex = get_exercise("00.2")
    >>> result = run_case(ex, ex.make_cases()[0], lambda qmin, qmax: qmax - qmin)
    >>> print(failure_message(ex, result, 1, 10, None).splitlines()[0])
    Exercise 00.2 failed: 0/1 points
    """
    head, zero = f"Exercise {exercise.id}", f"0/{exercise.points} points"
    case = result.case
    if result.status == "not done":
        return (f"{head} is not done yet: {zero}\n"
                f"  Replace `raise NotImplementedError(...)` in {getattr(fn, '__name__', 'your function')}() "
                f"with your code,\n  run that cell, then run this check again."
                + ("\n" + _hint(exercise, hint) if hint is not None else ""))
    if result.status == "delegated":
        return "\n".join([
            f"{head} failed: {zero}: it hands the work to code it must not use",
            _block("called", textwrap.fill((result.reason or "").removeprefix("your function called "),
                                           width=96 - _LABEL)),
            _block("why", textwrap.fill(
                f"exercise {exercise.id} asks you to write this step yourself, so a solution that calls the "
                f"library's own version of it, or anything in qlearn.grading (reference, implementation, "
                f"check, EXERCISES), earns no points, whatever name it is called by.", width=96 - _LABEL)),
            _block("allowed", textwrap.fill(_allowed_text(exercise), width=96 - _LABEL)),
        ])
    if result.status == "error":
        lines = [f"{head} raised an error: {zero}", _case_line(number, total, case)]
        if not hidden:
            lines.append(_block("input", _inputs(exercise, case)))
        lines += [_block("error", _error_text(result.error, fn)), _hint(exercise, hint)]
        return "\n".join(lines)
    lines = [f"{head} failed: {zero}", _case_line(number, total, case)]
    if not hidden:
        exact = exercise.strict_dtype
        lines += [
            _block("input", _inputs(exercise, case)),
            _block("expected", format_value(result.expected, exact_dtype=exact)),
            _block("returned", format_value(result.got)),
            _block("problem", result.reason or ""),
        ]
        if result.note:
            lines.append(_block("note", textwrap.fill(result.note, width=96 - _LABEL)))
    lines.append(_hint(exercise, hint))
    return "\n".join(lines)


def evaluate(exercise: Exercise, fn: Callable[..., Any], *, seed: int | None = None,
             watch: bool = True, hint: int | None = None) -> tuple[str, str]:
    """``(status, message)``: what :func:`check` would report, without printing it.

    Runs the cases of ``exercise.make_cases(seed)`` (edge cases first) and stops at the first
    problem. ``watch=False`` judges the answers alone: the test suite uses it to show that the
    references pass and the wrong answers fail on their merits (both live in ``qlearn.grading``,
    so under the watch they are rejected as delegated before any answer is compared).

    >>> evaluate(get_exercise("00.2"), lambda qmin, qmax: qmax - qmin + 1)
    ('passed', 'Exercise 00.2 passed: 1/1 points (10 cases)')
    >>> evaluate(get_exercise("00.2"), get_exercise("00.2").reference)[0]
    'delegated'
    """
    tier = hint_tier(exercise, hint)
    cases = exercise.make_cases(seed)
    results = run_cases(exercise, fn, cases, watch=watch)
    last = results[-1]
    if last.status != "passed":
        return last.status, failure_message(exercise, last, len(results), len(cases), fn, hint=tier)
    return "passed", f"Exercise {exercise.id} passed: {exercise.points}/{exercise.points} points ({len(cases)} cases)"


def _nbgrader_running() -> bool:
    """True while nbgrader autogrades or validates the notebook: it sets ``NBGRADER_EXECUTION``."""
    return os.environ.get("NBGRADER_EXECUTION") in ("autograde", "validate")


def evaluate_question(question: Question, value: Any, *, hint: int | None = None) -> tuple[str, str]:
    """``(status, message)`` for an answer to a graded question: what :func:`check` reports.

    The grader words its feedback with this function too (on the literal the notebook assigns),
    so the notebook's check and the grader always agree. The explanation is shown on a pass only.
    """
    tier = hint_tier(question, hint)
    status, problem = grade_answer(question, value)
    head, points = f"Question {question.id}", question.points
    if status == "passed":
        return status, (f"{head} passed: {points}/{points} points\n"
                        + _block("why", textwrap.fill(question.explanation, width=96 - _LABEL)))
    if status == "not done":
        lines = [f"{head} is not answered yet: 0/{points} points",
                 f"  Replace None in `{question.variable} = None` with your answer ({question.expected_form()}),",
                 "  run that cell, then run this check again."]
        if tier is not None:
            lines += hint_lines(question, tier)
        return status, "\n".join(lines)
    return status, "\n".join([f"{head} failed: 0/{points} points", _block("problem", problem),
                              *hint_lines(question, tier)])


def check(exercise_id: str, fn: Callable[..., Any], *, hint: int | None = None,
          verbose: bool = True) -> CheckResult:
    """Check the learner's ``fn`` on every case of an exercise and print the feedback.

    ``NotImplementedError`` counts as "not done yet"; any other exception is reported with its
    type, message and the case that raised it. A call to the library's implementation of the
    exercise, or into ``qlearn.grading``, is "delegated". Points are all or nothing. While nbgrader
    autogrades or validates a notebook (``NBGRADER_EXECUTION``), a graded check that does not pass
    also raises ``AssertionError``: that is how nbgrader withholds a test cell's points.

    A failure shows the first failing case and tier 1 of the hint, and says how to ask for the next
    tier: ``check("02.1", quantize_tensor, hint=2)`` shows tier 2 (a tier that does not exist is a
    ``ValueError`` naming the ones that do).

    For a graded question (id ``"NN.QK"``), ``fn`` is the answer: ``check("06.Q1", q1_answer)``
    (``None``: "not answered yet"); the explanation is shown once it is right.

    >>> result = check("00.2", lambda qmin, qmax: qmax - qmin + 1)
    Exercise 00.2 passed: 1/1 points (10 cases)
    >>> result.points, result.implementation(0, 3)
    (1, 4)
    """
    item = get_item(exercise_id)
    if isinstance(item, Question):
        status, message = evaluate_question(item, fn, hint=hint)
        passed = status == "passed"
        if verbose:
            _show(status, message)
        result = CheckResult(exercise_id=item.id, passed=passed, points=item.points if passed else 0,
                             max_points=item.points, message=message, implementation=None, status=status,
                             shown=verbose)
        if verbose and not passed and _nbgrader_running():
            caller = sys._getframe(1).f_globals
            if item.variable in caller and fn is caller[item.variable]:
                raise AssertionError(message.split("\n", 1)[0])
        return result
    exercise = item
    if not callable(fn):
        raise TypeError(
            f"check({exercise.id!r}, fn) needs your function {exercise.function}, got {format_value(fn)}"
        )
    status, message = evaluate(exercise, fn, hint=hint)
    passed = status == "passed"
    if verbose:
        _show(status, message)
    result = CheckResult(
        exercise_id=exercise.id,
        passed=passed,
        points=exercise.points if passed else 0,
        max_points=exercise.points,
        message=message,
        implementation=fn if passed else exercise.reference,
        status=status,
        shown=verbose,
    )
    # nbgrader awards a test cell's points unless the cell raises. Only the graded call raises:
    # the object bound to the exercise's function name where check() was called (a locked check
    # cell always passes that one). Demos that check another function on purpose, and
    # implementation() (verbose=False), never raise, so the rest of the lab keeps working.
    if verbose and not passed and _nbgrader_running():
        caller = sys._getframe(1).f_globals
        if fn is caller.get(exercise.function):
            raise AssertionError(message.split("\n", 1)[0])
    return result


def reference(exercise_id: str) -> Callable[..., Any]:
    """The reference implementation of an exercise.

    >>> reference("00.2")(-128, 127)
    256
    """
    return get_exercise(exercise_id).reference


def implementation(exercise_id: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    """``fn`` if it passes the exercise's check (run silently), else the reference implementation.

    Demos call it so that they work before the exercise is done, and use the learner's code after.
    The fallback cannot become an answer: it is the reference, defined in ``qlearn.grading``, so
    a solution that calls it (directly, or through ``implementation``) is rejected as delegated.

    >>> implementation("00.2", lambda qmin, qmax: qmax - qmin)(0, 3)   # wrong: the reference is used
    4
    """
    return check(exercise_id, fn, verbose=False).implementation
