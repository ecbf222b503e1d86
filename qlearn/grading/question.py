"""Graded questions: "predict, then run", answered with a choice or a number that ``check`` grades.

A lab module registers a question next to its exercises::

    register(Question(
        id="06.Q1", title="Which layer loses the most accuracy at 50% sparsity?", points=1,
        notebook="06_pruning_fundamentals", variable="q1_answer",
        choices={"a": "the first convolution", "b": "the last linear layer", "c": "they lose the same"},
        answer="a",
        explanation="The first convolution has the fewest weights per output: each one carries more.",
        hint=("Count the weights that feed one output of each layer.",
              "Fewer weights per output means each pruned weight removes a larger share."),
    ))

and the notebook asks it in a markdown cell, then lets the learner answer in a code cell::

    ### BEGIN SOLUTION
    q1_answer = "a"
    ### END SOLUTION
    check("06.Q1", q1_answer)

The student version turns the solution region into ``q1_answer = None  # your answer``, and the
check then says "not answered yet". The cell that runs the experiment comes after the question.

One function, :func:`grade_answer`, grades an answer: ``check`` calls it on the value in the kernel,
the grader (``python -m qlearn.grade``) on the literal the notebook assigns to ``variable`` (read
with ``ast.literal_eval``, no code runs), so the two always agree.

- multiple choice (``choices`` is a dict): the answer is a choice key, a str; case and surrounding
  blanks are ignored (``" B "`` is ``"b"``); anything else is wrong and the feedback lists the keys;
- numeric (``choices=None``): the answer is a real number (``bool`` and strings are not); it is right
  when ``|value - answer| <= atol + rtol * |answer|`` (exact with the default tolerances 0);
- ``None`` (the student version's placeholder): "not answered yet", 0 points;
- the ``explanation`` is shown once the answer is right, never before.
"""

from __future__ import annotations

import ast
import keyword
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from qlearn.grading.exercise import hint_tiers, is_question_id, normalize_id

__all__ = ["Question", "grade_answer", "read_answer"]


@dataclass(frozen=True)
class Question:
    """A graded question, ``id`` such as ``"06.Q1"``: multiple choice or numeric.

    - ``variable``: the name the notebook assigns the answer to (``q1_answer``); the grader reads it;
    - ``choices``: ``{"a": "text", ...}`` for multiple choice, ``None`` for a numeric answer;
    - ``answer``: a key of ``choices``, or a number;
    - ``rtol``, ``atol``: the tolerance of a numeric answer (both 0: exact);
    - ``explanation``: why; shown once the question is answered correctly;
    - ``hint``: one str or a tuple of tiers, shown after a wrong answer (``check(id, v, hint=2)``).

    >>> q = Question(id="9.q1", title="Codes of int4", points=1, notebook="09_demo", variable="q1_answer",
    ...              choices=None, answer=16, explanation="2**4 bit patterns.", hint="Count bit patterns.")
    >>> q.id, q.lab, q.numeric
    ('09.Q1', '09', True)
    """

    id: str
    title: str
    points: int
    notebook: str
    variable: str
    answer: Any
    explanation: str
    hint: str | tuple[str, ...]
    choices: Mapping[str, str] | None = field(default=None, hash=False)
    rtol: float = 0.0
    atol: float = 0.0

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", normalize_id(self.id))
        who = f"Question {self.id}"
        if not is_question_id(self.id):
            raise ValueError(f"{who}: a question's id has the form NN.QK, such as '06.Q1'")
        if not isinstance(self.points, int) or isinstance(self.points, bool) or self.points < 1:
            raise ValueError(f"{who}: points must be a positive int, got {self.points!r}")
        for name in ("title", "explanation"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"{who}: {name} must be a non-empty string")
        if not isinstance(self.notebook, str) or not self.notebook.startswith(self.lab + "_"):
            raise ValueError(f"{who}: notebook must be the notebook's name without .ipynb and start with "
                             f"its lab number, such as '{self.lab}_topic'; got {self.notebook!r}")
        if not (isinstance(self.variable, str) and self.variable.isidentifier()
                and not keyword.iskeyword(self.variable)):
            raise ValueError(f"{who}: variable must be a Python name such as 'q1_answer', got {self.variable!r}")
        object.__setattr__(self, "hint", hint_tiers(self.hint, who))
        if self.choices is not None:
            if not isinstance(self.choices, Mapping) or len(self.choices) < 2:
                raise TypeError(f"{who}: choices must be a dict of at least two {{key: text}}, or None "
                                f"for a numeric answer; got {self.choices!r}")
            keys = list(self.choices)
            if not all(isinstance(k, str) and k.strip() == k and k for k in keys) or not all(
                    isinstance(v, str) and v.strip() for v in self.choices.values()):
                raise ValueError(f"{who}: choice keys and texts must be non-empty strings without "
                                 f"surrounding blanks, got {dict(self.choices)!r}")
            if len({k.casefold() for k in keys}) != len(keys):
                raise ValueError(f"{who}: choice keys must differ in more than case, got {keys}")
            if not isinstance(self.answer, str) or self.answer not in self.choices:
                raise ValueError(f"{who}: answer must be one of the choice keys {keys}, got {self.answer!r}")
            if self.rtol or self.atol:
                raise ValueError(f"{who}: rtol and atol are for numeric answers; a choice is exact")
            object.__setattr__(self, "choices", MappingProxyType(dict(self.choices)))
        else:
            if not _is_number(self.answer) or not math.isfinite(self.answer):
                raise ValueError(f"{who}: a numeric question's answer must be a finite int or float, "
                                 f"got {self.answer!r} (or give choices for a multiple-choice question)")
        for name in ("rtol", "atol"):
            value = getattr(self, name)
            if not _is_number(value) or not value >= 0:
                raise ValueError(f"{who}: {name} must be a number >= 0, got {value!r}")

    @property
    def lab(self) -> str:
        """The two-digit lab number, ``"06"`` for question ``"06.Q1"``."""
        return self.id.split(".")[0]

    @property
    def numeric(self) -> bool:
        """Whether the answer is a number (no ``choices``)."""
        return self.choices is None

    @property
    def hints(self) -> tuple[str, ...]:
        """The hint's tiers."""
        return self.hint

    def expected_form(self) -> str:
        """What an answer looks like, for the feedback: ``one of 'a', 'b', 'c'`` or ``a number``."""
        if self.numeric:
            return "a number"
        return "one of " + ", ".join(repr(k) for k in self.choices)


def _is_number(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _choice(question: Question, value: str) -> str | None:
    wanted = value.strip().casefold()
    return next((key for key in question.choices if key.casefold() == wanted), None)


def grade_answer(question: Question, value: Any) -> tuple[str, str]:
    """``(status, problem)`` of an answer: status ``"passed"``, ``"failed"`` or ``"not done"`` (the
    answer is ``None``); ``problem`` says what is wrong ("" when it passed or is not done).

    >>> q = Question(id="9.q1", title="t", points=1, notebook="09_demo", variable="a", answer="b",
    ...              choices={"a": "one", "b": "two"}, explanation="e", hint="h")
    >>> grade_answer(q, " B "), grade_answer(q, "a"), grade_answer(q, None)
    (('passed', ''), ('failed', "'a' is not the right choice"), ('not done', ''))
    >>> grade_answer(q, "z")
    ('failed', "'z' is not one of the choices: answer with one of 'a', 'b'")
    """
    if value is None:
        return "not done", ""
    if not question.numeric:
        if not isinstance(value, str):
            return "failed", (f"the answer is a choice key, a str such as {next(iter(question.choices))!r}; "
                              f"got {_short(value)}")
        key = _choice(question, value)
        if key is None:
            return "failed", f"{_short(value)} is not one of the choices: answer with {question.expected_form()}"
        if key != question.answer:
            return "failed", f"{key!r} is not the right choice"
        return "passed", ""
    if not _is_number(value):
        return "failed", f"the answer is a number (an int or a float), got {_short(value)}"
    try:
        number = float(value)
    except (OverflowError, ValueError):
        return "failed", f"{_short(value)} is not a finite number"
    if not math.isfinite(number):
        return "failed", f"{_short(value)} is not a finite number"
    if abs(number - question.answer) > question.atol + question.rtol * abs(question.answer):
        return "failed", f"{_short(value)} is not the right value" + _tolerance_text(question)
    return "passed", ""


def _tolerance_text(question: Question) -> str:
    if not question.rtol and not question.atol:
        return " (it must be exact)"
    parts = ([f"{question.rtol:g} relative"] if question.rtol else []) + (
        [f"{question.atol:g} absolute"] if question.atol else [])
    return f" (within {' + '.join(parts)} tolerance)"


def _short(value: Any) -> str:
    text = repr(value)
    if isinstance(value, float) or (isinstance(value, numbers.Real) and not isinstance(value, int)):
        text = f"{float(value):.6g}"
    return text if len(text) <= 60 else text[:57] + "..."


def _python_source(source: str) -> str:
    """A cell as plain Python: IPython magics and shell lines (``%...``, ``!...``) become ``pass``."""
    out = []
    for line in source.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass"
        out.append(line)
    return "\n".join(out)


def read_answer(cells: list[str], variable: str) -> tuple[str, Any]:
    """The answer a notebook gives: the value of the LAST top-level assignment to ``variable`` in the
    code cells ``cells`` (their sources, in order), read with ``ast.literal_eval``: no code runs.

    Returns ``("found", value)``, ``("missing", None)`` when no cell assigns ``variable`` at the top
    level (assignments inside a function, a loop or an ``if`` do not count), or ``("not literal",
    source)`` when the last assignment is an expression rather than a literal. Cells that are not
    valid Python are skipped.

    >>> read_answer(['q1_answer = None  # your answer', 'x = 1', 'q1_answer = " b "'], "q1_answer")
    ('found', ' b ')
    >>> read_answer(['q2 = -0.25', 'if True:\\n    q2 = 3'], "q2"), read_answer(['q = f()'], "q")
    (('found', -0.25), ('not literal', 'f()'))
    """
    last = None
    for source in cells:
        try:
            tree = ast.parse(_python_source(source))
        except (SyntaxError, ValueError, RecursionError, MemoryError):
            continue
        for node in tree.body:
            if isinstance(node, ast.Assign):
                targets = node.targets
            elif isinstance(node, ast.AnnAssign) and node.value is not None:
                targets = [node.target]
            else:
                continue
            if any(isinstance(t, ast.Name) and t.id == variable for t in targets):
                last = node.value
    if last is None:
        return "missing", None
    try:
        return "found", ast.literal_eval(last)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        text = ast.unparse(last)
        return "not literal", text if len(text) <= 60 else text[:57] + "..."
