"""The shared helper of the lab tests (``tests/test_labNN.py``): what every lab's tests used to copy.

Import it as ``import labkit`` (pytest puts ``tests/`` on ``sys.path``: the folder has no
``__init__.py``) or ``from labkit import passes, ...``::

    import labkit
    from qlearn.grading.labs import lab06

    IDS = ("06.1", "06.2", "06.Q1")

    def test_lab06_registers_its_exercises():
        labkit.assert_lab_registers(lab06, IDS, "06_pruning_fundamentals")

    def test_lab06_exports_what_it_documents():
        labkit.assert_module_exports(lab06, {"magnitude_mask", "prune_loop"})

    def test_importing_lab06_does_not_import_torch():
        labkit.assert_no_torch_import("qlearn.grading.labs.lab06")

    @pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=labkit.solution_ids(SOLUTIONS))
    def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
        passed, message = labkit.passes(exercise_id, fn)
        assert passed, message

Every assertion here can fail: each one compares against something the test states, never a
value against itself.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import pickle
import re
import subprocess
import sys
import warnings
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np

from qlearn.grading import EXERCISES, check
from qlearn.grading.checker import evaluate, run_cases

__all__ = [
    "NOTEBOOKS",
    "assert_cases_deterministic",
    "assert_lab_registers",
    "assert_module_exports",
    "assert_hints_without_code",
    "assert_no_torch_import",
    "assert_rejected",
    "assert_wrong_answers_declared",
    "hint_code",
    "lab_ids",
    "passes",
    "quiet",
    "solution_ids",
    "unwatched",
]

NOTEBOOKS = Path(__file__).resolve().parents[1] / "notebooks"


def passes(exercise_id: str, fn: Callable[..., Any]) -> tuple[bool, str]:
    """``(passed, message)`` of ``check(exercise_id, fn)`` run silently (with the delegation watch).

    For a question, ``fn`` is the answer value: ``passes("06.Q1", "b")``.
    Use it for correct solutions written the ways learners write them: ``assert passed, message``.
    """
    result = check(exercise_id, fn, verbose=False)
    return result.passed, result.message


def unwatched(exercise_id: str, fn: Callable[..., Any], *, seed: int | None = None) -> tuple[str, str]:
    """``(status, message)`` judged on the answers alone, without the delegation watch.

    The references and declared wrong answers live in ``qlearn.grading``: under the watch ``check``
    rejects them as "delegated" before comparing a single answer. Status is one of ``"passed"``,
    ``"failed"``, ``"error"``, ``"not done"``.
    """
    return evaluate(EXERCISES[exercise_id], fn, seed=seed, watch=False)


def assert_rejected(exercise_id: str, fn: Callable[..., Any], *, says: str | Sequence[str] = ()) -> str:
    """Assert that ``fn`` fails exercise ``exercise_id`` on its answers (``"failed"`` or ``"error"``,
    not watched) and that the feedback contains every text in ``says``; returns the feedback."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # a wrong answer may overflow or divide by zero on purpose
        status, message = unwatched(exercise_id, fn)
    assert status in ("failed", "error"), f"exercise {exercise_id} accepts this wrong answer:\n{message}"
    for text in [says] if isinstance(says, str) else says:
        assert text in message, f"the feedback of {exercise_id} does not say {text!r}:\n{message}"
    return message


def lab_ids(lab: str | int | ModuleType) -> list[str]:
    """The ids registered for a lab, exercises and questions, in id order (``"06.1"``, ..., ``"06.Q1"``).

    ``lab`` is the lab module (``lab06``), or its number (``"06"`` or ``6``).
    """
    number = _lab_number(lab)
    ids = [i for i in EXERCISES if i.startswith(number + ".")]
    try:
        from qlearn.grading import QUESTIONS
    except ImportError:  # before graded questions existed
        return ids
    return ids + [i for i in QUESTIONS if i.startswith(number + ".")]


def _lab_number(lab: str | int | ModuleType) -> str:
    if isinstance(lab, ModuleType):
        name = lab.__name__.rsplit(".", 1)[-1]
        assert name.startswith("lab") and name[3:].isdigit(), f"{lab.__name__} is not a labNN module"
        return name[3:]
    return f"{int(lab):02d}"


def _item(item_id: str) -> Any:
    if item_id in EXERCISES:
        return EXERCISES[item_id]
    from qlearn.grading import QUESTIONS

    return QUESTIONS[item_id]


def assert_lab_registers(lab: str | int | ModuleType, ids: Iterable[str], notebook: str, *,
                         points: int | None = None) -> None:
    """Assert that the lab registers exactly ``ids`` (exercises and questions), all for ``notebook``.

    ``notebook`` is the file name without ``.ipynb``; the file must exist in ``notebooks/``.
    With ``points``, the total of the lab's registered points must equal it. For every exercise
    whose reference the lab module defines, the name the notebook uses (``Exercise.function``) is
    also the module's name for it, so the tests and the notebook say the same thing.
    """
    ids = list(ids)
    registered = lab_ids(lab)
    assert sorted(registered) == sorted(ids), (
        f"lab {_lab_number(lab)} registers {registered}, the test expects {ids}")
    items = [_item(i) for i in ids]
    wrong = {i.id: i.notebook for i in items if i.notebook != notebook}
    assert not wrong, f"these ids belong to another notebook than {notebook!r}: {wrong}"
    assert (NOTEBOOKS / f"{notebook}.ipynb").is_file(), f"no notebook notebooks/{notebook}.ipynb"
    if points is not None:
        total = sum(i.points for i in items)
        assert total == points, f"lab {_lab_number(lab)} is worth {total} points, the test expects {points}"
    if isinstance(lab, ModuleType):
        for item in items:
            reference = getattr(item, "reference", None)
            if reference is not None and getattr(reference, "__module__", None) == lab.__name__:
                assert getattr(lab, item.function, None) is reference, (
                    f"exercise {item.id}: {lab.__name__}.{item.function} is not its reference "
                    f"({reference.__name__}); the notebook's name and the module's should agree")


def assert_module_exports(module: ModuleType | str, expected: Iterable[str] | None = None) -> None:
    """Assert that ``module.__all__`` is explicit and honest.

    - it exists, is a list or tuple of unique strings, and every name in it exists;
    - every public function and class *defined in* the module (not imported) is in it;
    - with ``expected``, it is exactly that set of names.
    """
    if isinstance(module, str):
        module = importlib.import_module(module)
    names = getattr(module, "__all__", None)
    assert isinstance(names, (list, tuple)), f"{module.__name__} has no explicit __all__ list"
    assert all(isinstance(n, str) for n in names), f"{module.__name__}.__all__ holds a non-string"
    repeated = sorted({n for n in names if list(names).count(n) > 1})
    assert not repeated, f"{module.__name__}.__all__ repeats {repeated}"
    missing = [n for n in names if not hasattr(module, n)]
    assert not missing, f"{module.__name__}.__all__ names what the module does not define: {missing}"
    public = sorted(
        name for name, value in vars(module).items()
        if not name.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
        and getattr(value, "__module__", None) == module.__name__
    )
    unlisted = [n for n in public if n not in names]
    assert not unlisted, f"{module.__name__} defines public {unlisted} but leaves them out of __all__"
    if expected is not None:
        expected = set(expected)
        assert set(names) == expected, (
            f"{module.__name__}.__all__ is {sorted(names)}; expected {sorted(expected)} "
            f"(extra: {sorted(set(names) - expected)}, missing: {sorted(expected - set(names))})")


def assert_no_torch_import(module_name: str, *, also: Sequence[str] = ()) -> None:
    """Assert that importing ``module_name`` in a fresh interpreter does not import torch.

    ``also`` names more packages that must stay out (``("matplotlib", "ipywidgets")``). The check
    runs in a subprocess, so what this test session already imported does not matter.
    """
    banned = ("torch", *also)
    code = (f"import sys, importlib; importlib.import_module({module_name!r}); "
            f"print(sorted(m for m in {banned!r} if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=180)
    assert out.returncode == 0, f"importing {module_name} failed:\n{out.stderr[-2000:]}"
    assert out.stdout.strip() == "[]", f"importing {module_name} imports {out.stdout.strip()}"


def assert_cases_deterministic(exercise_id: str, *, min_cases: int = 4) -> None:
    """Assert that the exercise's cases are the same on every call (names and inputs, byte for byte)
    and that there are at least ``min_cases`` of them; a different seed keeps the case names."""
    ex = EXERCISES[exercise_id]
    first, second = ex.make_cases(), ex.make_cases()
    assert [c.name for c in first] == [c.name for c in second]
    assert len(first) >= min_cases, f"exercise {exercise_id} has {len(first)} cases, fewer than {min_cases}"
    for a, b in zip(first, second, strict=True):
        assert _same(a.args, b.args) and _same(dict(a.kwargs), dict(b.kwargs)), (
            f"exercise {exercise_id}: case {a.name!r} differs between two calls; cases() must depend "
            f"on its rng only")
    hidden = ex.make_cases(seed=20261129)
    assert sorted(c.name for c in hidden) == sorted(c.name for c in first), (
        f"exercise {exercise_id}: another seed changes the case names; only the random inputs should change")


def same_value(a: Any, b: Any) -> bool:
    """True when ``a`` and ``b`` are the same value: same types all the way down, torch tensors by type,
    dtype, shape and elements (``torch.equal``, or identical bits so that NaN == NaN), arrays by dtype,
    shape and bytes, anything else by its pickle bytes. (A tensor's pickle holds its storage address,
    so two equal tensors never pickle the same.)"""
    if _is_tensor(a) or _is_tensor(b):
        return (type(a) is type(b) and a.dtype == b.dtype and tuple(a.shape) == tuple(b.shape)
                and _tensor_equal(a, b))
    if isinstance(a, np.ndarray) or isinstance(b, np.ndarray):
        return (type(a) is type(b) and a.dtype == b.dtype and a.shape == b.shape
                and (a.dtype == object and all(same_value(x, y) for x, y in zip(a.ravel(), b.ravel()))
                     or a.dtype != object and np.ascontiguousarray(a).tobytes() == np.ascontiguousarray(b).tobytes()))
    if isinstance(a, (tuple, list)) or isinstance(b, (tuple, list)):
        return (type(a) is type(b) and len(a) == len(b)
                and all(same_value(x, y) for x, y in zip(a, b)))
    if isinstance(a, dict) or isinstance(b, dict):
        return (type(a) is type(b) and list(a) == list(b)
                and all(same_value(a[k], b[k]) for k in a))
    if type(a) is not type(b):
        return False
    try:
        return pickle.dumps(a) == pickle.dumps(b)
    except Exception:  # not picklable (a torch module, a generator): compare its state if it has one
        if callable(getattr(a, "state_dict", None)):
            return same_value(dict(a.state_dict()), dict(b.state_dict()))
        return True


_same = same_value


def _is_tensor(value: Any) -> bool:
    torch = sys.modules.get("torch")
    return torch is not None and isinstance(value, torch.Tensor)


def _tensor_equal(a: Any, b: Any) -> bool:
    import torch

    a, b = a.detach().cpu(), b.detach().cpu()
    try:
        if torch.equal(a, b):
            return True
    except RuntimeError:  # dtypes torch.equal does not implement (float8): the bits decide
        pass
    bits = [t.contiguous().reshape(-1).view(torch.uint8) for t in (a, b)]
    return torch.equal(bits[0], bits[1])


def assert_wrong_answers_declared(exercise_id: str, *words: str) -> None:
    """Assert that the exercise declares wrong answers whose names mention each of ``words``
    (``"half away from zero"``, ``"missing clamp"``, ...), and that each one is rejected."""
    ex = EXERCISES[exercise_id]
    names = " | ".join(ex.wrong_answers)
    missing = [w for w in words if w not in names]
    assert not missing, f"exercise {exercise_id} declares no wrong answer about {missing}; it has: {names}"
    for name, wrong in ex.wrong_answers.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            status, _ = unwatched(exercise_id, wrong)
        assert status in ("failed", "error"), f"exercise {exercise_id} accepts the wrong answer {name!r}"


def solution_ids(solutions: Sequence[tuple]) -> list[str]:
    """Test ids for a ``[(exercise_id, name, fn), ...]`` table: ``"06.2 a loop over rows"``."""
    return [f"{row[0]} {row[1]}" for row in solutions]


@contextlib.contextmanager
def _quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def quiet():
    """A context manager that silences warnings (wrong answers overflow on purpose; torch.ao's
    deprecation notices): ``with labkit.quiet(): ...``. For a fixture, write in the test module::

        @pytest.fixture
        def quiet():
            with labkit.quiet():
                yield
    """
    return _quiet()


# --- hints without code ---------------------------------------------------------------------------

_LIBRARY = re.compile(r"\b(?:np|numpy|torch|math|nn|scipy)\.[A-Za-z_]\w*")
_BACKTICKS = re.compile(r"`([^`]+)`")
_CALL = re.compile(r"(?<![\w.])(?:[A-Za-z_]\w{1,}(?:\.[A-Za-z_]\w*)*|[A-Za-z_]\w*(?:\.[A-Za-z_]\w*)+)\((?=[^)]*\w)")
_METHOD = re.compile(r"\.[A-Za-z_]\w*\(")
_ASSIGN = re.compile(r"(?<![\w.=<>!~+\-*/%&|^])([A-Za-z_]\w*(?:\s*,\s*[A-Za-z_]\w*)*)\s*=(?!=)\s*([^;,.]*(?:\.\d[^;,.]*)*)")
_RETURN = re.compile(r"\breturn\s+(?:\(|\[|[A-Za-z_][\w.]*\s*(?:\(|\[|[-+*/@%]|\bif\b))")
_MATMUL = re.compile(r"[\w)\]]\s*@\s*[\w(]")
_SHIFT = re.compile(r"[\w)\]]\s*(?:<<|>>)\s*[\w(]")
_KEYWORDS = re.compile(r"\blambda\b[^:]*:|\bdef\s+\w+\(|\bimport\s+\w|\bfor\s+\w+\s+in\s+(?:range|enumerate|zip)\b")
_SLICE = re.compile(r"\w\[[^\]]*(?::|\.\.\.|None)[^\]]*\]")
_OPERATOR = re.compile(r"[-+*/@%<>&|^=\[\](){}]")


def hint_code(text: str) -> list[str]:
    """The fragments of a hint that look like code; ``[]`` when it reads as words.

    A hint names the concept or points at the idea; it never hands out code. Flagged: a backticked
    span that is not one plain name; a numpy/torch/math name (``np.clip``); a call (``min(x, 0)``,
    ``.astype(``; single-letter maths such as ``f(x)`` is allowed); an assignment whose right side
    calls or computes (``lo = min(x, 0)``; ``x = 0.5`` is allowed); ``return`` followed by an
    expression; ``@``, ``<<``, ``>>`` between operands; ``lambda``, ``def``, ``import``,
    ``for i in range``; a slice or ``None`` index (``[..., None]``).

    >>> hint_code("Clamp after rounding: a value beyond the range must stop at its edge.")
    []
    >>> hint_code("Use np.clip, then return q.astype(np.int32)")
    ['np.clip', 'np.int32', 'call: q.astype(', 'call: .astype(', 'return q.astype(']
    """
    found: list[str] = []
    for span in _BACKTICKS.findall(text):
        if not re.fullmatch(r"\s*[A-Za-z_]\w*\s*", span):
            found.append(f"`{span}`")
    found += _LIBRARY.findall(text)
    found += [f"call: {m.group(0)}" for m in _CALL.finditer(text) if len(m.group(0).rstrip("(")) > 1]
    found += [f"call: {m.group(0)}" for m in _METHOD.finditer(text)]
    for match in _ASSIGN.finditer(text):
        right = match.group(2).strip()
        if re.search(r"\w\(", right) or re.search(r"[\w)\]]\s*[-+*/@%]\s*[\w(]", right):
            found.append(f"assignment: {match.group(0).strip()}")
    found += [m.group(0) for m in _RETURN.finditer(text)]
    found += [f"operator: {m.group(0)}" for m in _MATMUL.finditer(text)]
    found += [f"operator: {m.group(0)}" for m in _SHIFT.finditer(text)]
    found += [f"keyword: {m.group(0)}" for m in _KEYWORDS.finditer(text)]
    found += [f"index: {m.group(0)}" for m in _SLICE.finditer(text)]
    return list(dict.fromkeys(found))


def assert_hints_without_code(item_id: str) -> None:
    """Assert that no tier of the hint of exercise or question ``item_id`` contains code."""
    item = _item(item_id)
    problems = [(k, fragments) for k, tier in enumerate(item.hints, start=1) if (fragments := hint_code(tier))]
    assert not problems, f"{item_id}: hints must not contain code; " + "; ".join(
        f"tier {k} has {', '.join(fragments)}" for k, fragments in problems)
