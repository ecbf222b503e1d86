"""What an exercise is: a reference function, the inputs it is checked on, and how answers compare.

An :class:`Exercise` never stores expected outputs. Its ``cases`` function builds the inputs from a
seeded generator (random cases plus the edge cases that catch typical bugs: ties, saturation, a
constant tensor, negative ranges, ...) and :func:`qlearn.grading.check` computes every expected
output by calling ``reference`` on a deep copy of those inputs.

A lab module (``qlearn/grading/labs/labNN.py``) declares its exercises like this::

    register(Exercise(
        id="00.2", title="Count the integer codes in [qmin, qmax]", points=1,
        reference=_num_codes, cases=_num_codes_cases, function="num_codes",
        hint=("Both ends of the range are codes.",                  # tier 1: the concept
              "Count a small range by hand, such as 0 to 3."),      # tier 2: a specific pointer
        notebook="00_welcome",
        wrong_answers={"off by one": lambda qmin, qmax: qmax - qmin},
    ))

``hint`` is one string or a tuple of tiers, from the concept to a specific pointer, never code; a
failed ``check`` shows tier 1 and says how to ask for the next (``check("00.2", num_codes, hint=2)``).
Graded questions (ids ``NN.QK``) are :class:`~qlearn.grading.question.Question` objects.
"""

from __future__ import annotations

import keyword
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

import numpy as np

from qlearn.grading.compare import compare_values

__all__ = ["Case", "Exercise", "hint_tiers", "is_question_id", "normalize_id"]

_ID = re.compile(r"^(\d{1,2})\.([Qq]?)(\d+)$")


def normalize_id(exercise_id: object) -> str:
    """Return an exercise or question id in its canonical form: ``"2.3"`` becomes ``"02.3"``,
    ``"6.q1"`` becomes ``"06.Q1"`` (a graded question, :class:`~qlearn.grading.question.Question`).

    >>> normalize_id("2.3"), normalize_id("02.10"), normalize_id("6.q1"), normalize_id(" 06.Q12 ")
    ('02.3', '02.10', '06.Q1', '06.Q12')
    """
    if not isinstance(exercise_id, str):
        raise TypeError(f"an exercise id must be a string such as '02.3' (or '02.Q1' for a question), "
                        f"got {exercise_id!r}")
    match = _ID.match(exercise_id.strip())
    if match is None:
        raise ValueError(f"an exercise id looks like '02.3' (lab.number), a question id like '02.Q1'; "
                         f"got {exercise_id!r}")
    return f"{int(match[1]):02d}.{'Q' if match[2] else ''}{int(match[3])}"


def is_question_id(item_id: str) -> bool:
    """Whether a (normalized) id is a graded question's, ``"06.Q1"``, rather than an exercise's.

    >>> is_question_id("06.Q1"), is_question_id("06.1")
    (True, False)
    """
    return item_id.split(".", 1)[1].startswith("Q")


def id_sort_key(exercise_id: str) -> tuple[int, int, int]:
    """Sort ids numerically, so that ``"02.10"`` comes after ``"02.9"``; a lab's questions
    (``"02.Q1"``) come after its exercises.

    >>> sorted(["02.Q1", "02.10", "01.2", "02.9"], key=id_sort_key)
    ['01.2', '02.9', '02.10', '02.Q1']
    """
    lab, number = normalize_id(exercise_id).split(".")
    question = number.startswith("Q")
    return int(lab), int(question), int(number.lstrip("Q"))


def hint_tiers(hint: object, owner: str) -> tuple[str, ...]:
    """The tiers of a hint: a str is one tier, a tuple (or list) of str is several, from the concept
    to a specific pointer. ``owner`` ("Exercise 06.2") names the culprit in the error.

    >>> hint_tiers("Think of the range.", "Exercise 09.1")
    ('Think of the range.',)
    >>> hint_tiers(("Concept.", "Pointer."), "Exercise 09.1")
    ('Concept.', 'Pointer.')
    """
    tiers = (hint,) if isinstance(hint, str) else hint
    if not isinstance(tiers, (tuple, list)) or not tiers or not all(
            isinstance(t, str) and t.strip() for t in tiers):
        raise ValueError(f"{owner}: hint must be a non-empty string or a tuple of non-empty strings "
                         f"(tier 1 the concept, later tiers more specific), got {hint!r}")
    return tuple(tiers)


@dataclass(frozen=True)
class Case:
    """One input for an exercise: ``fn(*args, **kwargs)``, with a name that says what it tests.

    >>> Case("ties: x = (k + 0.5) * scale", args=(1.5,)).name
    'ties: x = (k + 0.5) * scale'
    """

    name: str
    args: tuple = ()
    kwargs: Mapping[str, Any] = field(default_factory=dict, hash=False)

    @property
    def random(self) -> bool:
        """Whether this is a random case (its name says "random"); ``make_cases`` runs these last.

        >>> Case("random 2-D values", (1,)).random, Case("ties", (1,)).random
        (True, False)
        """
        return "random" in self.name.lower()

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or not self.name.strip():
            raise ValueError(f"Case.name must be a non-empty string, got {self.name!r}")
        if not isinstance(self.args, tuple):
            raise TypeError(f"Case.args must be a tuple, got {type(self.args).__name__} "
                            f"for case {self.name!r}")
        if not isinstance(self.kwargs, Mapping):
            raise TypeError(f"Case.kwargs must be a dict, got {type(self.kwargs).__name__} "
                            f"for case {self.name!r}")


@dataclass(frozen=True)
class Exercise:
    """A graded exercise: ``id`` such as ``"02.3"``, its ``points``, and how to check an answer.

    - ``reference(*args, **kwargs)``: the correct implementation; expected outputs come from it.
    - ``cases(rng) -> list[Case]``: the inputs, built from ``np.random.default_rng(seed)``.
    - ``function``: the name the notebook gives the learner's function (the grader looks it up).
    - ``notebook``: the notebook's file name without ``.ipynb`` (``"02_affine_quantization"``).
    - ``compare(got, expected) -> str | None``: ``None`` when ``got`` is right, else a short reason.
      By default :func:`compare_values` with this exercise's ``rtol``, ``atol`` and ``strict_dtype``:
      exact equality (shape, dtype kind and values) unless a tolerance is given.
    - ``wrong_answers``: typical buggy implementations, by name; the test suite checks that each
      is rejected ("round half away from zero", "missing clamp", "int8 cast that wraps", ...).
    - ``forbidden``: dotted names of the library callables that do this exercise's job (qlearn
      functions and classes, and torch functions that do the same). A solution that calls one, or
      anything defined in ``qlearn.grading``, earns nothing (see :mod:`qlearn.grading.delegation`).
    - ``allowed``: dotted names of the library helpers a solution may use; ``check`` names them
      when it rejects a delegating solution (numpy and the standard library are always allowed).
    - ``explain(case, got, expected) -> str | None``: an extra line for the feedback on a wrong
      answer (02.1 shows ``x / scale`` when the first wrong code sits on a tie).
    - ``plain_result``: the result must be plain data (numbers, plain ndarrays, tuples of them;
      see :func:`~qlearn.grading.compare.plain_problem`). Only an exercise whose answer is an
      object (10.2 returns the calibrated model) sets it to False and checks the type itself.

    ``make_cases(seed)`` builds the cases; the default seed is ``seed``, the one the notebook's
    check uses, and the grader passes a secret one: the random cases change, the edge cases stay.

    >>> ex = Exercise(id="9.1", title="Double", points=1, reference=lambda x: 2 * x,
    ...               cases=lambda rng: [Case("one", (1,)), Case("random", (int(rng.integers(9)),))],
    ...               function="double", hint="Twice x.", notebook="09_demo",
    ...               forbidden=("operator.mul",), allowed=("operator.add",))
    >>> ex.id, ex.forbidden, [c.name for c in ex.make_cases()]
    ('09.1', ('operator.mul',), ['one', 'random'])
    >>> ex.make_cases()[1] == ex.make_cases()[1], ex.make_cases(seed=12345)[1].args[0] != ex.make_cases()[1].args[0]
    (True, True)
    """

    id: str
    title: str
    points: int
    reference: Callable[..., Any]
    cases: Callable[[np.random.Generator], list[Case]]
    function: str
    hint: str | tuple[str, ...]
    notebook: str
    compare: Callable[[Any, Any], str | None] | None = None
    seed: int = 0
    rtol: float = 0.0
    atol: float = 0.0
    strict_dtype: bool = False
    wrong_answers: Mapping[str, Callable[..., Any]] = field(default_factory=dict, hash=False)
    forbidden: tuple[str, ...] = ()
    allowed: tuple[str, ...] = ()
    explain: Callable[[Case, Any, Any], str | None] | None = None
    plain_result: bool = True

    def __post_init__(self) -> None:
        object.__setattr__(self, "id", normalize_id(self.id))
        if is_question_id(self.id):
            raise ValueError(f"Exercise {self.id}: an id of the form NN.QK is a graded question's; "
                             f"register a qlearn.grading.Question for it, or number the exercise NN.K")
        if not isinstance(self.points, int) or isinstance(self.points, bool) or self.points < 1:
            raise ValueError(f"Exercise {self.id}: points must be a positive int, got {self.points!r}")
        for name in ("reference", "cases"):
            if not callable(getattr(self, name)):
                raise TypeError(f"Exercise {self.id}: {name} must be callable, got {getattr(self, name)!r}")
        if not (isinstance(self.function, str) and self.function.isidentifier()
                and not keyword.iskeyword(self.function)):
            raise ValueError(f"Exercise {self.id}: function must be a Python name, got {self.function!r}")
        if not isinstance(self.title, str) or not self.title.strip():
            raise ValueError(f"Exercise {self.id}: title must be a non-empty string")
        object.__setattr__(self, "hint", hint_tiers(self.hint, f"Exercise {self.id}"))
        if not isinstance(self.notebook, str) or not self.notebook.startswith(self.lab + "_"):
            raise ValueError(
                f"Exercise {self.id}: notebook must be the notebook's name without .ipynb and start "
                f"with its lab number, such as '{self.lab}_topic'; got {self.notebook!r}"
            )
        for name in ("compare", "explain"):
            if getattr(self, name) is not None and not callable(getattr(self, name)):
                raise TypeError(f"Exercise {self.id}: {name} must be callable or None, got {getattr(self, name)!r}")
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise TypeError(f"Exercise {self.id}: seed must be an int, got {self.seed!r}")
        if self.rtol < 0 or self.atol < 0:
            raise ValueError(f"Exercise {self.id}: rtol and atol must be >= 0, got {self.rtol}, {self.atol}")
        for name, wrong in self.wrong_answers.items():
            if not callable(wrong):
                raise TypeError(f"Exercise {self.id}: wrong_answers[{name!r}] must be callable")
        object.__setattr__(self, "wrong_answers", MappingProxyType(dict(self.wrong_answers)))
        for name in ("forbidden", "allowed"):
            names = getattr(self, name)
            if isinstance(names, str) or not all(
                    isinstance(n, str) and n and all(p.isidentifier() for p in n.split(".")) for n in names):
                raise TypeError(f"Exercise {self.id}: {name} must be a tuple of dotted names such as "
                                f"('qlearn.affine.quantize',), got {names!r}")
            object.__setattr__(self, name, tuple(names))

    @property
    def lab(self) -> str:
        """The two-digit lab number, ``"02"`` for exercise ``"02.3"``."""
        return self.id.split(".")[0]

    @property
    def hints(self) -> tuple[str, ...]:
        """The hint's tiers (``hint`` is stored as this tuple, a str given as one tier)."""
        return self.hint

    def make_cases(self, seed: int | None = None) -> list[Case]:
        """Build the cases from ``np.random.default_rng(seed)``; ``seed=None`` means ``self.seed``.

        The notebook's check uses the default, visible seed; the grader passes a secret seed, which
        changes the random cases and keeps the named edge cases.
        """
        if seed is None:
            seed = self.seed
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise TypeError(f"Exercise {self.id}: make_cases(seed) needs an int seed, got {seed!r}")
        cases = list(self.cases(np.random.default_rng(seed)))
        if not cases:
            raise ValueError(f"Exercise {self.id}: cases() returned no case")
        # the named edge cases first: a learner sees the tie or saturation case that fails, not a random one
        cases.sort(key=lambda case: isinstance(case, Case) and case.random)
        names = [case.name for case in cases]
        for case in cases:
            if not isinstance(case, Case):
                raise TypeError(f"Exercise {self.id}: cases() must return Case objects, got {case!r}")
        duplicates = sorted({name for name in names if names.count(name) > 1})
        if duplicates:
            raise ValueError(f"Exercise {self.id}: case names must be unique, repeated: {duplicates}")
        return cases

    def compare_output(self, got: Any, expected: Any) -> str | None:
        """``None`` if ``got`` matches ``expected`` for this exercise, else the reason it does not."""
        if self.compare is not None:
            return self.compare(got, expected)
        return compare_values(got, expected, rtol=self.rtol, atol=self.atol, strict_dtype=self.strict_dtype)
