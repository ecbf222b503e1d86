"""The catalogue of exercises: every lab module registers its own, ``EXERCISES`` shows them all.

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

from qlearn.grading.exercise import Exercise, id_sort_key, normalize_id

__all__ = ["EXERCISES", "exercises_for_lab", "get_exercise", "notebook_lab", "register"]

_REGISTRY: dict[str, Exercise] = {}
_LAB_MODULE = re.compile(r"^lab\d{2}$")
_LAB_PREFIX = re.compile(r"^(\d{2})_")
_state = {"loaded": False, "loading": False}


def register(exercise: Exercise) -> Exercise:
    """Add ``exercise`` to the catalogue and return it; a second exercise with the same id is an error."""
    if not isinstance(exercise, Exercise):
        raise TypeError(f"register() takes an Exercise, got {type(exercise).__name__}")
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


def get_exercise(exercise_id: str) -> Exercise:
    """The exercise with this id (``"2.3"`` is read as ``"02.3"``); unknown ids list the valid ones."""
    try:
        key = normalize_id(exercise_id)
    except (TypeError, ValueError):
        key = None
    if key is None or key not in EXERCISES:
        valid = ", ".join(EXERCISES) or "(none registered)"
        raise ValueError(f"unknown exercise id {exercise_id!r}; the valid ids are: {valid}")
    return EXERCISES[key]


def exercises_for_lab(lab: str | int) -> list[Exercise]:
    """The exercises of one lab (``"02"`` or ``2``), in id order."""
    lab = f"{int(lab):02d}"
    return [ex for ex in EXERCISES.values() if ex.lab == lab]


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
