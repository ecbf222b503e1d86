"""The catalogue of exercises and graded questions: every lab module registers its own,
``EXERCISES`` shows all the exercises, ``QUESTIONS`` all the questions (ids ``NN.QK``).

Lab modules live in ``qlearn/grading/labs/`` and are named ``labNN.py``. ``EXERCISES`` imports all
of them (found with ``pkgutil``) the first time it is used, so a new lab needs no edit here.
"""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

from qlearn.grading.exercise import Exercise, id_sort_key, is_question_id, normalize_id
from qlearn.grading.question import Question

__all__ = ["EXERCISES", "QUESTIONS", "exercises_for_lab", "get_exercise", "get_item", "get_question",
           "items_for_lab", "notebook_lab", "questions_for_lab", "register"]

_REGISTRY: dict[str, Exercise] = {}
_QUESTIONS: dict[str, Question] = {}
_LAB_MODULE = re.compile(r"^lab\d{2}$")
_LAB_PREFIX = re.compile(r"^(\d{2})_")
_state = {"loaded": False, "loading": False}


def register(exercise: Exercise | Question) -> Exercise | Question:
    """Add an exercise or a question to the catalogue and return it; a second one with the same id is
    an error, and so is a question whose ``variable`` another question of its notebook already uses."""
    if isinstance(exercise, Question):
        if exercise.id in _QUESTIONS:
            raise ValueError(f"question {exercise.id} is already registered (by the notebook "
                             f"{_QUESTIONS[exercise.id].notebook!r}); each id must be unique")
        twin = next((q for q in _QUESTIONS.values()
                     if q.notebook == exercise.notebook and q.variable == exercise.variable), None)
        if twin is not None:
            raise ValueError(f"question {exercise.id}: its variable {exercise.variable!r} is already the answer "
                             f"of question {twin.id} in {exercise.notebook!r}; give each question its own name")
        _QUESTIONS[exercise.id] = exercise
        return exercise
    if not isinstance(exercise, Exercise):
        raise TypeError(f"register() takes an Exercise or a Question, got {type(exercise).__name__}")
    if exercise.id in _REGISTRY:
        raise ValueError(
            f"exercise {exercise.id} is already registered (by the notebook "
            f"{_REGISTRY[exercise.id].notebook!r}); each id must be unique"
        )
    _REGISTRY[exercise.id] = exercise
    return exercise


def _load_labs() -> None:
    """Import every ``qlearn/grading/labs/labNN.py`` once; their import registers the exercises."""
    if _state["loaded"] or _state["loading"]:
        return
    _state["loading"] = True
    try:
        from qlearn.grading import labs

        for module in sorted(pkgutil.iter_modules(labs.__path__), key=lambda m: m.name):
            if _LAB_MODULE.match(module.name):
                importlib.import_module(f"{labs.__name__}.{module.name}")
        _state["loaded"] = True
    finally:
        _state["loading"] = False


class _Exercises(Mapping):
    """A read-only view of the catalogue, ``id -> Exercise``, in numeric id order."""

    def __getitem__(self, exercise_id: str) -> Exercise:
        _load_labs()
        return _REGISTRY[exercise_id]

    def __iter__(self) -> Iterator[str]:
        _load_labs()
        return iter(sorted(_REGISTRY, key=id_sort_key))

    def __len__(self) -> int:
        _load_labs()
        return len(_REGISTRY)

    def __contains__(self, exercise_id: object) -> bool:
        _load_labs()
        return exercise_id in _REGISTRY

    def __repr__(self) -> str:
        return f"<EXERCISES: {len(self)} exercises: {', '.join(self)}>"


EXERCISES: Mapping[str, Exercise] = _Exercises()


class _Questions(Mapping):
    """A read-only view of the graded questions, ``id -> Question``, in id order."""

    def __getitem__(self, question_id: str) -> Question:
        _load_labs()
        return _QUESTIONS[question_id]

    def __iter__(self) -> Iterator[str]:
        _load_labs()
        return iter(sorted(_QUESTIONS, key=id_sort_key))

    def __len__(self) -> int:
        _load_labs()
        return len(_QUESTIONS)

    def __contains__(self, question_id: object) -> bool:
        _load_labs()
        return question_id in _QUESTIONS

    def __repr__(self) -> str:
        return f"<QUESTIONS: {len(self)} questions: {', '.join(self)}>"


QUESTIONS: Mapping[str, Question] = _Questions()


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise with this id (``"2.3"`` is read as ``"02.3"``); unknown ids list the valid ones."""
    try:
        key = normalize_id(exercise_id)
    except (TypeError, ValueError):
        key = None
    if key is None or key not in EXERCISES:
        valid = ", ".join(EXERCISES) or "(none registered)"
        extra = f" (graded questions such as {key} are in QUESTIONS)" if key and is_question_id(key) else ""
        raise ValueError(f"unknown exercise id {exercise_id!r}; the valid ids are: {valid}{extra}")
    return EXERCISES[key]


def get_question(question_id: str) -> Question:
    """The question with this id (``"6.q1"`` is read as ``"06.Q1"``); unknown ids list the valid ones."""
    try:
        key = normalize_id(question_id)
    except (TypeError, ValueError):
        key = None
    if key is None or key not in QUESTIONS:
        valid = ", ".join(QUESTIONS) or "(none registered)"
        raise ValueError(f"unknown question id {question_id!r}; the valid question ids are: {valid}")
    return QUESTIONS[key]


def get_item(item_id: str) -> Exercise | Question:
    """The exercise or the question with this id; unknown ids list the valid ones of both kinds."""
    try:
        key = normalize_id(item_id)
    except (TypeError, ValueError):
        key = None
    if key is not None and key in QUESTIONS:
        return QUESTIONS[key]
    if key is not None and key in EXERCISES:
        return EXERCISES[key]
    valid = ", ".join([*EXERCISES, *QUESTIONS]) or "(none registered)"
    raise ValueError(f"unknown exercise id {item_id!r}; the valid ids are: {valid}")


def exercises_for_lab(lab: str | int) -> list[Exercise]:
    """The exercises of one lab (``"02"`` or ``2``), in id order."""
    lab = f"{int(lab):02d}"
    return [ex for ex in EXERCISES.values() if ex.lab == lab]


def questions_for_lab(lab: str | int) -> list[Question]:
    """The graded questions of one lab (``"06"`` or ``6``), in id order."""
    lab = f"{int(lab):02d}"
    return [q for q in QUESTIONS.values() if q.lab == lab]


def items_for_lab(lab: str | int) -> list[Exercise | Question]:
    """Everything graded automatically in one lab: its exercises, then its questions."""
    return [*exercises_for_lab(lab), *questions_for_lab(lab)]


def notebook_lab(nb: Any, path: str | Path | None = None) -> str | None:
    """The lab of a notebook: metadata ``{"qlearn": {"lab": "02"}}``, else the file name ``02_...``."""
    lab = nb.get("metadata", {}).get("qlearn", {}).get("lab")
    if lab is not None:
        if not re.fullmatch(r"\d{1,2}", str(lab)):
            raise ValueError(f'the notebook metadata {{"qlearn": {{"lab": ...}}}} must be a lab number such '
                             f"as '02', got {lab!r}")
        return f"{int(lab):02d}"
    if path is not None:
        match = _LAB_PREFIX.match(Path(path).name)
        if match:
            return match[1]
    return None
