"""Grade lab notebooks: the score never comes from the learner's kernel.

    python -m qlearn.grade PATH... [--lab NN] [--json] [--csv FILE] [--feedback DIR] [--cases FILE.py]
                                   [--jobs N] [--hidden-seeds K] [--seed S] [--no-execute] ...

(``python -m qlearn.grading.grade`` is the same command.) PATH is a notebook or a folder, searched
recursively for ``*.ipynb`` (``.ipynb_checkpoints`` skipped). Every notebook is read before any is
run, so no submission can change another's file.

For each notebook:

1. **The lab is fixed by the assignment**: ``--lab``, else the file name (``02_*.ipynb``). Metadata
   ``{"qlearn": {"lab": ...}}`` that disagrees is an error, and so are an unknown lab and a lab with
   no exercises. The report always counts the lab's full maximum.
2. **Feedback run** (skipped with ``--no-execute``): the notebook runs headlessly in a sandbox (see
   :mod:`qlearn.grading._sandbox`) so that the learner's errors and outputs can be reported. A
   timeout or a dead kernel is reported as ``run_error``; nothing printed there counts.
3. **Scoring**, in a parent that never runs learner code. The code cells are read with ``ast``
   (:mod:`qlearn.grading._sandbox_extract`: imports, ``def``/``class`` and simple constants). For
   each exercise a fresh child process (:mod:`qlearn.grading._runner`, sandboxed, limited, without
   ``qlearn.grading`` and with the exercise's forbidden callables disarmed) runs that source and
   calls the function on every case input: the visible cases, hidden cases from secret seeds, and
   the instructor's cases (``--cases``). It returns plain data only (JSON; arrays as
   dtype/shape/base64, :mod:`qlearn.grading._plain`). The parent validates each line (known case,
   once, in order, plain values), computes every expected value itself with the reference, and
   compares. An exercise over its time limit (``--exercise-timeout``) costs only that exercise.
4. **Graded questions** (``NN.QK``, :mod:`qlearn.grading.question`): no code runs. The answer is the
   literal of the last top-level assignment to the question's variable (``q1_answer = "b"``), read
   with ``ast.literal_eval``, and graded by the same function as the notebook's ``check``, so the
   two always agree. An expression instead of a literal earns nothing, and the feedback says why.

Exit status: 0 when every notebook was graded (whatever the scores); 1 when one could not be read,
run or graded (the reason is in the JSON and on stderr), after all the others are graded.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import copy
import csv
import json
import os
import random
import re
import selectors
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from qlearn.grading import _sandbox
from qlearn.grading._plain import PlainError, Unsupported, carries_tensors, decode, encode
from qlearn.grading._sandbox_extract import extract, imported_packages, needed_for
from qlearn.grading.checker import compare_case, evaluate_question, hint_lines, uses_torch
from qlearn.grading.compare import format_value
from qlearn.grading.exercise import Case, Exercise, is_question_id
from qlearn.grading.question import Question, read_answer
from qlearn.grading.registry import EXERCISES, exercises_for_lab, items_for_lab

__all__ = ["GradeOptions", "NotebookGrade", "find_notebooks", "grade_notebook", "grade_notebooks",
           "load_instructor_cases", "main"]

DEFAULT_TIMEOUT = 120  # seconds per cell of the feedback run
DEFAULT_NOTEBOOK_TIMEOUT = 900  # seconds for the whole feedback run
DEFAULT_EXERCISE_TIMEOUT = 60  # seconds for one exercise's child (start-up, the notebook's imports, all cases)
DEFAULT_MEMORY_MB = 4096  # address-space limit of every sandboxed process (torch alone maps ~2 GB)
DEFAULT_HIDDEN_SEEDS = 2
_MAX_OUTPUT = 64 * 2**20  # bytes a child may send back
_MAX_FEEDBACK_OUTPUT = 16 * 2**20  # bytes of outputs the feedback run keeps (they are held in memory)
_STARTUP_TIMEOUT = 300  # seconds for a child to set itself up (imports on a busy machine), before learner code
_PACKAGE = Path(__file__).resolve().parent.parent  # .../qlearn
_GRADING = Path(__file__).resolve().parent


def _checkout_secrets() -> tuple[Path | None, list[Path]]:
    """When qlearn runs from a source checkout (an editable install), the checkout holds the
    solutions: the solution notebooks, the tests' honest solutions, the git history. Return the
    checkout and its folders that a scoring child must not see: all but the package itself and
    the folders that hold the running Python (a ``.venv`` inside the checkout)."""
    checkout = _PACKAGE.parent
    if not (checkout / "pyproject.toml").is_file():
        return None, []  # an installed package: nothing but the package sits beside it
    keep = {_PACKAGE, Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve()}
    folders = []
    for entry in sorted(checkout.iterdir()):
        entry = entry.resolve()
        if entry.is_dir() and not any(k == entry or entry in k.parents for k in keep):
            folders.append(entry)
    return checkout, folders
_STATUSES = ("passed", "failed", "error", "not done", "not found", "delegated", "timeout", "invalid output",
             "not graded")  # "not graded": the notebook itself could not be graded (see its "error")


@dataclass
class GradeOptions:
    """How to grade: limits, hidden cases, the fixed lab. Defaults match the command line's."""

    lab: str | None = None
    timeout: float = DEFAULT_TIMEOUT
    notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT
    exercise_timeout: float = DEFAULT_EXERCISE_TIMEOUT
    memory_mb: int = DEFAULT_MEMORY_MB
    hidden_seeds: tuple[int, ...] | None = None  # None: secret seeds picked per run
    instructor_cases: dict[str, list[Case]] = field(default_factory=dict)
    execute: bool = True
    hide: tuple[Path, ...] = ()


@dataclass
class NotebookGrade:
    """One notebook's grade. ``error``: why it could not be graded; ``run_error``: why the feedback
    run did not finish (the score does not depend on it)."""

    notebook: str
    lab: str | None = None
    score: int = 0
    max_score: int = 0
    exercises: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None
    run_error: str | None = None
    notes: list[str] = field(default_factory=list)


# --- finding and reading ------------------------------------------------------------------------

def find_notebooks(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The notebooks named by ``paths`` (folders searched recursively), and the paths that do not exist."""
    found, missing = [], []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.ipynb"))
                         if ".ipynb_checkpoints" not in p.relative_to(path).parts and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            missing.append(str(path))
    return list(dict.fromkeys(found)), missing


def _parse(text: bytes) -> dict:
    """The notebook as a dict, or ``ValueError`` saying why it cannot be read."""
    try:
        data = json.loads(text.decode("utf-8"))
    except UnicodeDecodeError as exc:
        raise ValueError(f"cannot read the file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a readable notebook (invalid JSON: {exc})") from None
    except RecursionError:
        raise ValueError("not a readable notebook (its JSON is nested too deeply)") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError("not a readable notebook (no list of cells)")
    if data.get("nbformat") != 4:
        raise ValueError(f"not a readable notebook (nbformat {data.get('nbformat')!r}; only 4 is supported)")
    return data


def _known_labs() -> str:
    return ", ".join(sorted({ex.lab for ex in EXERCISES.values()}))


def _lab_of(path: Path, data: dict, fixed: str | None) -> str:
    """The assignment's lab (``--lab`` or the file name); ``ValueError`` if unknown or contradicted."""
    if fixed is not None:
        lab = fixed
    else:
        match = re.match(r"^(\d{2})_", path.name)
        if match is None:
            raise ValueError("cannot tell which lab this is: the file name does not start with NN_ "
                             "(such as 02_affine_quantization.ipynb); pass --lab NN")
        lab = match[1]
    if not exercises_for_lab(lab):
        raise ValueError(f"lab {lab} is unknown or has no exercises; the labs with exercises are: {_known_labs()}")
    meta = data.get("metadata") if isinstance(data.get("metadata"), dict) else {}
    qmeta = meta.get("qlearn")
    if qmeta is not None:
        claimed = qmeta.get("lab") if isinstance(qmeta, dict) else qmeta
        if claimed is not None and not (re.fullmatch(r"\d{1,2}", str(claimed)) and int(claimed) == int(lab)):
            raise ValueError(f'the notebook metadata says {{"qlearn": {{"lab": {claimed!r}}}}}, but this '
                             f"assignment is lab {lab}: a notebook of another lab is not graded")
    return lab


def _code_cells(data: dict) -> list[str]:
    cells = []
    for cell in data["cells"]:
        if isinstance(cell, dict) and cell.get("cell_type") == "code":
            source = cell.get("source", "")
            cells.append("".join(source) if isinstance(source, list) else str(source))
    return cells


# --- cases ------------------------------------------------------------------------------------

def _cases_for_seed(exercise: Exercise, seed: int | None) -> list[Case]:
    return list(exercise.make_cases(seed=seed))


def _encode_case(case: Case) -> tuple[Any, Any]:
    args, kwargs = encode(tuple(case.args)), encode(dict(case.kwargs))
    text = json.dumps([args, kwargs])
    if '"x"' in text and re.search(r'\{"x": ', text):
        raise ValueError(f"case {case.name!r} has an input that cannot be sent as plain data")
    return args, kwargs


def build_cases(exercise: Exercise, options: GradeOptions) -> list[tuple[Case, str, Any, Any]]:
    """Every case the grader runs: ``(case, kind, args, kwargs)``, kind ``visible``/``hidden``/``instructor``.

    Hidden cases are those of the secret seeds that differ from every visible case.
    """
    out, seen = [], set()
    for kind, cases in ([("visible", _cases_for_seed(exercise, None))]
                        + [("hidden", _cases_for_seed(exercise, s)) for s in options.hidden_seeds or ()]
                        + [("instructor", options.instructor_cases.get(exercise.id, []))]):
        for case in cases:
            args, kwargs = _encode_case(case)
            key = json.dumps([args, kwargs], sort_keys=True)
            if key in seen:
                continue
            seen.add(key)
            out.append((case, kind, args, kwargs))
    return out


def load_instructor_cases(path: Path) -> dict[str, list[Case]]:
    """Instructor cases from a Python file (trusted: it runs in the grader).

    The file defines ``CASES``, a dict from exercise id to a list of ``Case`` objects or to a
    function ``rng -> list[Case]`` (called with ``np.random.default_rng(0)``)::

        import numpy as np
        from qlearn.grading import Case

        CASES = {
            "02.1": [Case("all values on ties", (np.array([0.5, 1.5, 2.5], np.float32), np.float32(1.0), 0, -128, 127))],
            "00.2": lambda rng: [Case("uint16", (0, 65535))],
        }

    The arguments must be plain data (arrays, numbers, strings, tuples, lists, dicts). Expected
    values come from the reference, as for every case; the feedback never shows them.
    """
    namespace: dict[str, Any] = {"__name__": "qlearn_instructor_cases", "__file__": str(path)}
    exec(compile(Path(path).read_text(encoding="utf-8"), str(path), "exec"), namespace)
    raw = namespace.get("CASES")
    if not isinstance(raw, dict):
        raise ValueError(f"{path}: define CASES = {{'02.1': [Case(...), ...], ...}} (got {type(raw).__name__})")
    from qlearn.grading.exercise import normalize_id

    cases: dict[str, list[Case]] = {}
    for key, value in raw.items():
        exercise_id = normalize_id(key)
        if exercise_id not in EXERCISES:
            raise ValueError(f"{path}: unknown exercise id {key!r}")
        items = value(np.random.default_rng(0)) if callable(value) else value
        if not all(isinstance(c, Case) for c in items):
            raise TypeError(f"{path}: CASES[{key!r}] must hold Case objects")
        for case in items:
            _encode_case(case)
        cases[exercise_id] = list(items)
    return cases


# --- the scoring child --------------------------------------------------------------------------

def _child_source() -> str:
    if "child" not in _CACHE:
        _CACHE["child"] = "\n".join((_GRADING / name).read_text(encoding="utf-8")
                                     for name in ("_plain.py", "_disarm.py", "_runner.py"))
    return _CACHE["child"]


_CACHE: dict[str, Any] = {}


def _nproc_limit() -> int:
    uid = os.getuid()
    count = 0
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        try:
            if entry.name.isdigit() and entry.stat().st_uid == uid:
                count += 1
        except OSError:
            continue
    return count + 256


def _checkout_job() -> dict:
    """The checkout that a scoring child may not read, but for the running Python inside it."""
    checkout, _ = _checkout_secrets()
    if checkout is None:
        return {"root": None, "readable": []}
    return {"root": str(checkout), "readable": sorted({str(Path(sys.prefix).resolve()),
                                                       str(Path(sys.base_prefix).resolve())})}


def _run_child(job: dict, *, root: Path, workdir: Path, token: str, timeout: float,
               hide: tuple[Path, ...]) -> tuple[bytes, bool]:
    """Run one scoring child; return what it wrote and whether it ran out of time."""
    env = _sandbox.clean_env(root / "home", token)
    argv = _sandbox.wrap([sys.executable, "-I", "-c", _child_source()], root=root, workdir=workdir, env=env,
                         hide=[_GRADING, *_checkout_secrets()[1], *hide])
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                            stderr=None if os.environ.get("QLEARN_GRADE_DEBUG") else subprocess.DEVNULL,
                            cwd=workdir, env=env, start_new_session=True)
    chunks, size, timed_out = [], 0, False
    try:
        try:
            proc.stdin.write(json.dumps(job).encode())
            proc.stdin.close()
        except OSError:
            pass
        deadline = time.monotonic() + _STARTUP_TIMEOUT  # until the child says it is ready
        ready = False
        with selectors.DefaultSelector() as selector:
            selector.register(proc.stdout, selectors.EVENT_READ)
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    timed_out = True
                    break
                if not selector.select(timeout=min(left, 1.0)):
                    continue
                data = os.read(proc.stdout.fileno(), 1 << 16)
                if not data:
                    break
                chunks.append(data)
                size += len(data)
                if not ready and b"\n" in b"".join(chunks):
                    ready = True  # the learner's code starts now: the exercise's own time limit
                    deadline = time.monotonic() + timeout
                if size > _MAX_OUTPUT:
                    break
    finally:
        _sandbox.kill_group(proc.pid)
        proc.kill()
        proc.wait()
        proc.stdout.close()
        if not _sandbox.bwrap_available():
            _sandbox.kill_token(token)
    return b"".join(chunks), timed_out


def _read_rows(raw: bytes, n_cases: int) -> list[dict]:
    """The child's lines, validated: ``ValueError`` for anything malformed, duplicated or out of order."""
    rows = []
    lines = raw.decode("utf-8", errors="replace").splitlines()
    if not lines or lines[0] != '{"ready": true}':
        raise ValueError("the grader's child did not start (out of memory? no Python?)")
    for number, line in enumerate(lines[1:], start=2):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except (ValueError, RecursionError):  # not JSON, nested too deeply, an int too long
            raise ValueError(f"line {number} is not JSON") from None
        if type(row) is not dict or type(row.get("case")) is not int:
            raise ValueError(f"line {number} is not a result row")
        status = row.get("status")
        if status not in ("ok", "not done", "delegated", "error", "missing"):
            raise ValueError(f"line {number} has an unknown status")
        if row["case"] != len(rows) or row["case"] >= n_cases:
            raise ValueError(f"line {number} is for case {row['case']}, expected case {len(rows)}")
        if rows and rows[-1]["status"] != "ok":
            raise ValueError(f"line {number} comes after the final result")
        rows.append(row)
    return rows


def _has_unsupported(value: Any) -> str | None:
    if isinstance(value, Unsupported):
        return value.type_name
    if isinstance(value, (list, tuple)):
        for item in value:
            found = _has_unsupported(item)
            if found:
                return found
    if isinstance(value, dict):
        for item in value.values():
            found = _has_unsupported(item)
            if found:
                return found
    return None


def _calibrate_from_summary(summary: Any, case: Case) -> Any:
    """Exercise 10.2: rebuild, from the child's summary, the outcome the lab's check looks at."""
    if type(summary) is not dict or "returned" not in summary:
        raise PlainError("bad calibrate summary")
    returned = summary["returned"]
    if returned == "none":
        return None
    if returned not in ("same", "copy"):
        value = decode(returned)
        return value if not isinstance(value, Unsupported) else f"<a {value.type_name}>"
    model = copy.deepcopy(case.args[0])  # one deep copy, as the check gives the learner's function
    if returned == "copy":
        model = copy.deepcopy(model)
    logs = summary.get("logs")
    if type(logs) is not dict or set(logs) != set(model.observers):
        raise PlainError("bad observer logs")
    for name, log in logs.items():
        if type(log) is not list or len(log) > 10_000:
            raise PlainError("bad observer log")
        entries = []
        for entry in log:
            if (type(entry) is not list or len(entry) != 4 or type(entry[0]) is not bool
                    or type(entry[1]) is not bool or type(entry[2]) is not int
                    or type(entry[3]) not in (int, float)):
                raise PlainError("bad observer log entry")
            entries.append(tuple(entry))
        model.observers[name].log = entries
    if type(summary.get("training")) is not bool:
        raise PlainError("bad training flag")
    model.training = summary["training"]
    return model


_RESULT_MODES = {"10.2": ("calibrate", _calibrate_from_summary)}


def _compare(exercise: Exercise, case: Case, got: Any) -> str | None:
    """``None`` if ``got`` is right for ``case``; the expected value is computed here, in the parent."""
    return compare_case(exercise, case, got)


def _inputs(case: Case) -> str:
    items = [f"arg{i} = {format_value(a)}" for i, a in enumerate(case.args)]
    items += [f"{k} = {format_value(v)}" for k, v in case.kwargs.items()]
    return "\n".join(items) or "(no arguments)"


def _indent(label: str, text: str) -> str:
    head = f"  {label}:".ljust(12)
    return head + text.replace("\n", "\n" + " " * 12)


def _feedback(exercise: Exercise, status: str, number: int, total: int, case: Case, kind: str,
              detail: str, got: Any = None) -> str:
    head = f"Exercise {exercise.id}"
    zero = f"0/{exercise.points} points"
    where = f"  case {number} of {total}: {case.name}" + ("" if kind == "visible" else f" ({kind} case)")
    lines = [f"{head} {status}: {zero}", where, _indent("input", _inputs(case))]
    if status == "failed":
        if kind == "visible":
            lines.append(_indent("expected", format_value(_expected(exercise, case))))
        lines += [_indent("returned", format_value(got)), _indent("problem", detail)]
    else:
        lines.append(_indent("error", detail))
    lines += hint_lines(exercise)
    return "\n".join(lines)


def _expected(exercise: Exercise, case: Case) -> Any:
    try:
        return exercise.reference(*copy.deepcopy(case.args), **copy.deepcopy(dict(case.kwargs)))
    except Exception as exc:  # noqa: BLE001
        return f"<the reference failed: {type(exc).__name__}>"


def _score_exercise(exercise: Exercise, statements, options: GradeOptions, *, root: Path, workdir: Path,
                    token: str) -> dict[str, Any]:
    row = {"id": exercise.id, "points": 0, "max_points": exercise.points, "passed": False,
           "status": "error", "message": "", "cases": 0, "hidden_cases": 0}
    cases = build_cases(exercise, options)
    row["cases"] = len(cases)
    row["hidden_cases"] = sum(kind != "visible" for _, kind, _, _ in cases)
    mode, rebuild = _RESULT_MODES.get(exercise.id, ("value", None))
    statements = needed_for(statements, exercise.function)
    job = {"exercise": exercise.id, "function": exercise.function, "statements": statements,
           "refused": [] if uses_torch(exercise, [c for c, _, _, _ in cases]) else ["torch"],
           "top_imports": sorted(imported_packages(statements)), "forbidden": list(getattr(exercise, "forbidden", ())),
           "cases": [a for _, _, a, _ in cases], "kwargs": [k for _, _, _, k in cases], "result": mode,
           "tensors": carries_tensors([[a, k] for _, _, a, k in cases]),
           "protected": [str(_PACKAGE)], "checkout": _checkout_job(), "writable": [str(root)] + (["/tmp"] if _sandbox.bwrap_available() else []),
           "limits": {"memory": options.memory_mb * 2**20, "cpu": int(options.exercise_timeout) + 5,
                      "nproc": _nproc_limit()}}
    raw, timed_out = _run_child(job, root=root, workdir=workdir, token=token, timeout=options.exercise_timeout,
                                hide=options.hide)
    try:
        rows = _read_rows(raw, len(cases))
    except ValueError as exc:
        row.update(status="invalid output", message=f"Exercise {exercise.id}: the grader received output it "
                   f"cannot trust ({exc}); 0/{exercise.points} points")
        return row
    total = len(cases)
    for index, result in enumerate(rows):
        case, kind, _, _ = cases[index]
        status = result["status"]
        if status == "missing":
            notes = [n for n in result.get("notes", []) if isinstance(n, str)][:5]
            row.update(status="not found", message=(
                f"Exercise {exercise.id}: no function named {exercise.function}() was found in the notebook: "
                f"0/{exercise.points} points" + "".join(f"\n  {n[:300]}" for n in notes)))
            return row
        if status == "not done":
            row.update(status="not done", message=f"Exercise {exercise.id} is not done yet: 0/{exercise.points} points")
            return row
        if status == "delegated":
            text = str(result.get("error", ""))[:500]
            row.update(status="delegated", message=(
                f"Exercise {exercise.id} delegated its work: 0/{exercise.points} points\n  {text}\n"
                f"  A solution may not call the library's implementation of its own exercise, nor "
                f"anything in qlearn.grading."))
            return row
        if status == "error":
            text = str(result.get("error", ""))[:400]
            refused = [name for name in job["refused"] if f"name '{name}' is not defined" in text]
            if refused:
                text += (f"\n({refused[0]} is not available while this exercise is graded: it asks for numpy "
                         f"and the helpers its feedback names)")
            elif text.startswith("NameError"):
                text += ("\n(the grader runs only your notebook's imports, def/class statements and assignments "
                         "to plain names at the top level of a cell: define this name inside your function or "
                         "there, not inside a loop, an if or a with)")
            row.update(status="error", message=_feedback(exercise, "raised an error", index + 1, total, case,
                                                         kind, text))
            return row
        try:
            got = rebuild(result.get("value"), case) if rebuild else decode(result.get("value"))
        except (PlainError, RecursionError) as exc:
            row.update(status="invalid output",
                       message=f"Exercise {exercise.id}: case {index + 1} sent a value the grader cannot read "
                               f"({exc}); 0/{exercise.points} points")
            return row
        bad = _has_unsupported(got)
        reason = (f"returned a {bad}, which is not plain data: return a plain numpy array or Python numbers "
                  f"(tuples and lists of them)") if bad else _compare(exercise, case, got)
        if reason is not None:
            row.update(status="failed", message=_feedback(exercise, "failed", index + 1, total, case, kind,
                                                          reason, got))
            return row
    if len(rows) < total:
        if timed_out:
            row.update(status="timeout", message=(
                f"Exercise {exercise.id} did not finish within {options.exercise_timeout:g} s "
                f"(after {len(rows)} of {total} cases): 0/{exercise.points} points"))
        else:
            row.update(status="error", message=(
                f"Exercise {exercise.id}: the process running your function stopped after {len(rows)} of "
                f"{total} cases (out of memory? a crash?): 0/{exercise.points} points"))
        return row
    row.update(points=exercise.points, passed=True, status="passed",
               message=f"Exercise {exercise.id} passed: {exercise.points}/{exercise.points} points ({total} cases)")
    return row


def _score_question(question: Question, cells: list[str]) -> dict[str, Any]:
    """Grade a question from the literal the notebook assigns to its variable: no code runs."""
    row = {"id": question.id, "points": 0, "max_points": question.points, "passed": False,
           "status": "error", "message": "", "cases": 0, "hidden_cases": 0}
    found, value = read_answer(cells, question.variable)
    if found == "missing":
        row.update(status="not found", message=(
            f"Question {question.id}: no line {question.variable} = <your answer> was found at the top level "
            f"of a code cell: 0/{question.points} points"))
        return row
    if found == "not literal":
        row.update(status="error", message=(
            f"Question {question.id}: the answer must be written as a literal, such as {question.variable} = "
            f"{'0.25' if question.numeric else repr(next(iter(question.choices)))}; the grader reads it and "
            f"runs no code, and the last line found is {question.variable} = {value}: 0/{question.points} points"))
        return row
    status, message = evaluate_question(question, value)
    row.update(status=status, message=message, passed=status == "passed",
               points=question.points if status == "passed" else 0)
    return row


def _validate(rows: list[dict], exercises: list[Exercise | Question]) -> None:
    """Every row: an id from the catalogue, once each, integer points in [0, max]."""
    ids = [row["id"] for row in rows]
    if ids != [ex.id for ex in exercises]:
        raise RuntimeError(f"grader bug: rows {ids} do not match the lab's exercises and questions")
    for row, ex in zip(rows, exercises):
        points = row["points"]
        if type(points) is not int or not 0 <= points <= ex.points or row["max_points"] != ex.points:
            raise RuntimeError(f"grader bug: exercise {ex.id} has points {points!r}")
        if row["status"] not in _STATUSES:
            raise RuntimeError(f"grader bug: exercise {ex.id} has status {row['status']!r}")


# --- the feedback run (the notebook's own kernel) ----------------------------------------------

def _kernel_manager_class(root: Path, workdir: Path, env: dict[str, str], options: GradeOptions):
    """A kernel manager that starts ipykernel on this interpreter, limited and sandboxed."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    sandboxed = _sandbox.bwrap_available()
    limits = _sandbox.limit_prefix(options.memory_mb * 2**20, _nproc_limit(), int(options.notebook_timeout) + 60)

    class Specs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            spec = get_kernel_dict(extra_arguments=["--IPKernelApp.log_level=ERROR"])
            argv = _sandbox.wrap(limits + spec["argv"], root=root, workdir=workdir, env=env,
                                 hide=list(options.hide))
            return KernelSpec(argv=argv, display_name=spec["display_name"], language="python",
                              resource_dir=RESOURCES)

    class Manager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return Specs(data_dir=self.data_dir)

        def __init__(self, **kwargs: Any) -> None:
            super().__init__(**kwargs)
            kdir = root / "k"
            kdir.mkdir(exist_ok=True)
            self.connection_file = str(kdir / "kernel.json")
            if sandboxed:  # no network in the sandbox: the kernel talks over unix sockets in its folder
                self.transport = "ipc"
                self.ip = str(kdir / "s")

    return Manager


def _describe_cell(cell: Any, index: int) -> str:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    first = first if len(first) <= 40 else first[:37] + "..."
    return f"cell {index + 1} ({first!r})"


async def _stop_kernel(client) -> None:
    atexit.unregister(client._cleanup_kernel)
    if getattr(client, "km", None) is not None:
        try:
            await client._async_cleanup_kernel()
        except Exception:  # noqa: BLE001 - already dead or never started
            pass


async def _execute(data: dict, root: Path, workdir: Path, token: str, options: GradeOptions) -> str | None:
    """Run the notebook for the learner's feedback; return why it did not finish, or ``None``."""
    import nbformat
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:  # noqa: BLE001
        return f"not a readable notebook ({type(exc).__name__}: {str(exc)[:200]})"
    env = _sandbox.clean_env(root / "home", token)
    running = {"cell": None}
    flooded = threading.Event()

    class BudgetClient(NotebookClient):
        """Keeps at most ``_MAX_FEEDBACK_OUTPUT`` bytes of outputs: the grader holds them in memory."""

        kept = 0

        def output(self, outs, msg, display_id, cell_index):  # noqa: D102 - nbclient's hook
            self.kept += len(json.dumps(msg.get("content", {}), default=str))
            if self.kept > _MAX_FEEDBACK_OUTPUT:
                if not flooded.is_set():
                    flooded.set()
                    stop()
                return None
            return super().output(outs, msg, display_id, cell_index)

    client = BudgetClient(
        nb, timeout=options.timeout, allow_errors=True, kernel_name="python3", shell_timeout_interval=1,
        kernel_manager_class=_kernel_manager_class(root, workdir, env, options), shutdown_kernel="immediate",
        resources={"metadata": {"path": str(workdir)}},
        on_cell_start=lambda cell, cell_index: running.update(cell=_describe_cell(cell, cell_index)),
    )
    out_of_time = threading.Event()

    def stop() -> None:
        out_of_time.set()
        process = getattr(getattr(getattr(client, "km", None), "provisioner", None), "process", None)
        if process is not None:
            _sandbox.kill_group(process.pid)
            process.kill()

    guard = threading.Timer(options.notebook_timeout, stop)
    guard.daemon = True
    guard.start()
    pid = None
    try:
        # the kernel's own stdout/stderr go nowhere: nothing it writes can reach the grader's output
        await client.async_execute(env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    except Exception as exc:  # noqa: BLE001 - every failure to run is reported
        where = running["cell"]
        if flooded.is_set():
            return (f"{where} printed more than {_MAX_FEEDBACK_OUTPUT // 2**20} MB of output; the grader stopped "
                    f"the feedback run there")
        if out_of_time.is_set():
            return f"the notebook did not finish within {options.notebook_timeout:g} s (it was at {where})"
        if isinstance(exc, CellTimeoutError):
            return f"{where} did not finish within {options.timeout:g} s (an endless loop? a long computation?)"
        if isinstance(exc, DeadKernelError):
            return f"the kernel died while running {where}"
        return f"the notebook could not be run ({type(exc).__name__}: {str(exc)[:300]})"
    finally:
        guard.cancel()
        process = getattr(getattr(getattr(client, "km", None), "provisioner", None), "process", None)
        pid = getattr(process, "pid", None)
        await _stop_kernel(client)
        if pid is not None:
            _sandbox.kill_group(pid)
        _sandbox.kill_token(token)
    if flooded.is_set():
        return (f"{running['cell']} printed more than {_MAX_FEEDBACK_OUTPUT // 2**20} MB of output; the grader "
                f"stopped the feedback run there")
    return None


# --- one notebook ---------------------------------------------------------------------------------

def _grade_one(path: Path, text: bytes | None, options: GradeOptions, scratch: Path) -> NotebookGrade:
    grade = NotebookGrade(notebook=str(path))
    if text is None:
        grade.error = "cannot read the file"
        return grade
    try:
        data = _parse(text)
        lab = _lab_of(path, data, options.lab)
    except ValueError as exc:
        grade.error = str(exc)
        if options.lab is not None and exercises_for_lab(options.lab):
            exercises = items_for_lab(options.lab)
            grade.lab, grade.max_score = options.lab, sum(ex.points for ex in exercises)
        elif re.match(r"^(\d{2})_", path.name) and exercises_for_lab(path.name[:2]):
            exercises = items_for_lab(path.name[:2])
            grade.lab, grade.max_score = path.name[:2], sum(ex.points for ex in exercises)
        else:
            exercises = []
        grade.exercises = [{"id": ex.id, "points": 0, "max_points": ex.points, "passed": False,
                            "status": "not graded", "message": ""} for ex in exercises]
        return grade
    exercises = items_for_lab(lab)
    grade.lab, grade.max_score = lab, sum(ex.points for ex in exercises)
    root = Path(tempfile.mkdtemp(prefix="g", dir=scratch))
    token = _sandbox.new_token()
    try:
        (root / "home").mkdir()
        workdir = root / "work"
        _sandbox.copy_submission(path, text, workdir)
        if options.execute:
            grade.run_error = asyncio.run(_execute(data, root, workdir, token, options))
        statements, _, notes = extract(_code_cells(data))
        grade.notes = notes
        rows = []
        for exercise in exercises:
            if isinstance(exercise, Question):
                rows.append(_score_question(exercise, _code_cells(data)))
                continue
            # each exercise in a fresh copy of the folder: one cannot prepare files for the next
            shutil.rmtree(workdir, ignore_errors=True)
            _sandbox.copy_submission(path, text, workdir)
            try:
                rows.append(_score_exercise(exercise, statements, options, root=root, workdir=workdir,
                                            token=token))
            except Exception as exc:  # noqa: BLE001 - a grader failure costs this exercise, reported
                rows.append({"id": exercise.id, "points": 0, "max_points": exercise.points, "passed": False,
                             "status": "error", "message": f"the grader failed: {type(exc).__name__}: {exc}",
                             "cases": 0, "hidden_cases": 0})
        _validate(rows, exercises)
        grade.exercises = rows
        grade.score = sum(row["points"] for row in rows)
    except Exception as exc:  # noqa: BLE001 - reported, then the next notebook
        grade.error = f"the grader failed on this notebook ({type(exc).__name__}: {str(exc)[:300]})"
        grade.score = 0
    finally:
        _sandbox.kill_token(token)
        shutil.rmtree(root, ignore_errors=True)
    return grade


def _hide_list(paths: list[Path]) -> tuple[Path, ...]:
    """The submission folders to hide from every sandbox (never one holding Python or qlearn)."""
    keep = [Path(sys.prefix).resolve(), Path(sys.base_prefix).resolve(), _PACKAGE, Path(tempfile.gettempdir()).resolve()]
    hidden = []
    for folder in sorted({p.resolve().parent for p in paths}):
        if any(k == folder or folder in k.parents for k in keep) or folder == Path("/"):
            continue
        hidden.append(folder)
    return tuple(hidden)


def grade_notebook(path: str | Path, options: GradeOptions | None = None, **kwargs: Any) -> NotebookGrade:
    """Grade one notebook (see the module doc)."""
    return grade_notebooks([Path(path)], options, **kwargs)[0]


def grade_notebooks(paths: list[Path], options: GradeOptions | None = None, *, jobs: int = 1,
                    progress: bool = False, **kwargs: Any) -> list[NotebookGrade]:
    """Grade several notebooks, ``jobs`` at a time, in the order given; one failure never stops the rest."""
    options = options or GradeOptions(**kwargs)
    len(EXERCISES)  # load the catalogue once, before the worker threads read it
    if options.hidden_seeds is None:
        options.hidden_seeds = tuple(random.SystemRandom().randrange(1, 2**31) for _ in range(DEFAULT_HIDDEN_SEEDS))
    if not options.hide:
        options.hide = _hide_list(paths)
    texts: list[bytes | None] = []
    for path in paths:  # read everything first: no submission can change another's file
        try:
            texts.append(Path(path).read_bytes())
        except OSError:
            texts.append(None)
    if not _sandbox.bwrap_available():
        print("note: bubblewrap (/usr/bin/bwrap) is not available: submissions run without a read-only "
              "system view, network isolation or a private /tmp (see the README)", file=sys.stderr)
    results: list[NotebookGrade | None] = [None] * len(paths)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), unit="notebook", file=sys.stderr, desc="grading")
    with tempfile.TemporaryDirectory(prefix="qlearn-grade-") as scratch:
        with ThreadPoolExecutor(max_workers=max(1, jobs)) as pool:
            futures = {pool.submit(_grade_one, Path(p), t, options, Path(scratch)): i
                       for i, (p, t) in enumerate(zip(paths, texts))}
            for future in as_completed(futures):
                index = futures[future]
                try:
                    grade = future.result()
                except Exception as exc:  # noqa: BLE001 - one notebook's failure never costs another
                    grade = NotebookGrade(notebook=str(paths[index]),
                                          error=f"the grader failed on this notebook ({type(exc).__name__}: "
                                                f"{str(exc)[:200]})")
                results[index] = grade
                problem = grade.error or grade.run_error
                if problem:
                    line = f"error: {grade.notebook}: {problem}"
                    if bar is not None:
                        bar.write(line, file=sys.stderr)
                    else:
                        print(line, file=sys.stderr, flush=True)
                if bar is not None:
                    bar.update(1)
    if bar is not None:
        bar.close()
    return [r for r in results if r is not None]


# --- reports --------------------------------------------------------------------------------------

def _table(grades: list[NotebookGrade]) -> str:
    width = max([len("notebook")] + [len(g.notebook) for g in grades])
    lines = [f"{'notebook':<{width}}  {'score':>7}  exercises"]
    for g in grades:
        if g.error:
            lines.append(f"{g.notebook:<{width}}  {'ERROR':>7}  {g.error}")
            continue
        per = "  ".join(f"{row['id']} {row['points']}/{row['max_points']}" for row in g.exercises)
        lines.append(f"{g.notebook:<{width}}  {f'{g.score}/{g.max_score}':>7}  {per or '(no exercises)'}")
    return "\n".join(lines)


def write_csv(grades: list[NotebookGrade], path: Path) -> None:
    """One row per submission, one column per exercise (in id order), then the total and any error."""
    ids: list[str] = []
    for grade in grades:
        for row in grade.exercises:
            if row["id"] not in ids:
                ids.append(row["id"])
    from qlearn.grading.exercise import id_sort_key

    ids.sort(key=id_sort_key)
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(["notebook", "lab", *ids, "score", "max_score", "error"])
        for grade in grades:
            points = {row["id"]: row["points"] for row in grade.exercises}
            writer.writerow([grade.notebook, grade.lab or "", *[points.get(i, "") for i in ids], grade.score,
                             grade.max_score, grade.error or grade.run_error or ""])


def feedback_markdown(grade: NotebookGrade) -> str:
    """The learner's feedback: score, each exercise's message (hidden cases show no expected value)."""
    lines = [f"# Feedback: {Path(grade.notebook).name}", ""]
    if grade.lab:
        lines.append(f"Lab {grade.lab}: **{grade.score}/{grade.max_score} points**")
        lines.append("")
    if grade.error:
        lines += [f"**This notebook could not be graded:** {grade.error}", ""]
    if grade.run_error:
        lines += [f"**Running the notebook:** {grade.run_error}", ""]
    for note in grade.notes:
        lines.append(f"- note: {note}")
    if grade.notes:
        lines.append("")
    for row in grade.exercises:
        mark = "passed" if row["passed"] else row["status"]
        kind = "Question" if is_question_id(row["id"]) else "Exercise"
        lines += [f"## {kind} {row['id']}: {row['points']}/{row['max_points']} ({mark})", ""]
        if row.get("message"):
            lines += ["```", row["message"], "```", ""]
    return "\n".join(lines)


def _feedback_name(notebook: str, used: set[str]) -> str:
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", str(Path(notebook).with_suffix("")).strip("/"))[-120:] or "notebook"
    name, n = f"{stem}.md", 2
    while name in used:
        name, n = f"{stem}-{n}.md", n + 1
    used.add(name)
    return name


def write_feedback(grades: list[NotebookGrade], folder: Path) -> list[Path]:
    """One Markdown file per submission in ``folder``; returns their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    used: set[str] = set()
    out = []
    for grade in grades:
        target = folder / _feedback_name(grade.notebook, used)
        target.write_text(feedback_markdown(grade), encoding="utf-8")
        out.append(target)
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qlearn.grade",
        description="Grade lab notebooks: scores come from a sandboxed re-run of the learner's functions, "
                    "never from the notebook's own kernel.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="notebooks and/or folders")
    parser.add_argument("--lab", metavar="NN", help="the assignment's lab (default: the file name's NN_ prefix)")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--csv", type=Path, metavar="FILE", help="write a gradebook: one row per submission")
    parser.add_argument("--feedback", type=Path, metavar="DIR", help="write one Markdown feedback file per submission")
    parser.add_argument("--cases", type=Path, metavar="FILE.py", help="instructor cases (see the README)")
    parser.add_argument("--jobs", type=int, default=os.cpu_count() or 1, metavar="N",
                        help="grade N notebooks at a time (default: the number of cores)")
    parser.add_argument("--hidden-seeds", type=int, default=DEFAULT_HIDDEN_SEEDS, metavar="K",
                        help=f"secret seeds of hidden cases per exercise (default {DEFAULT_HIDDEN_SEEDS})")
    parser.add_argument("--seed", type=int, metavar="S", help="derive the hidden seeds from S (reproducible)")
    parser.add_argument("--no-execute", action="store_true",
                        help="skip the feedback run of each notebook (scores do not depend on it)")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"feedback run: time limit per cell (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--notebook-timeout", type=float, default=DEFAULT_NOTEBOOK_TIMEOUT, metavar="SECONDS",
                        help=f"feedback run: time limit per notebook (default {DEFAULT_NOTEBOOK_TIMEOUT})")
    parser.add_argument("--exercise-timeout", type=float, default=DEFAULT_EXERCISE_TIMEOUT, metavar="SECONDS",
                        help=f"time limit per exercise when scoring (default {DEFAULT_EXERCISE_TIMEOUT})")
    parser.add_argument("--memory", type=int, default=DEFAULT_MEMORY_MB, metavar="MB",
                        help=f"address-space limit of each sandboxed process (default {DEFAULT_MEMORY_MB})")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.notebook_timeout <= 0 or args.exercise_timeout <= 0:
        parser.error("timeouts must be positive")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")
    if args.hidden_seeds < 0:
        parser.error("--hidden-seeds must be >= 0")
    lab = None
    if args.lab is not None:
        if not re.fullmatch(r"\d{1,2}", args.lab):
            parser.error(f"--lab must be a lab number such as 02, got {args.lab!r}")
        lab = f"{int(args.lab):02d}"
        if not exercises_for_lab(lab):
            parser.error(f"--lab {lab}: unknown lab or no exercises; the labs with exercises are: {_known_labs()}")
    instructor = {}
    if args.cases is not None:
        try:
            instructor = load_instructor_cases(args.cases)
        except Exception as exc:  # noqa: BLE001 - the instructor's file: say what is wrong
            parser.error(f"--cases {args.cases}: {type(exc).__name__}: {exc}")
    rng = random.Random(args.seed) if args.seed is not None else random.SystemRandom()
    seeds = tuple(rng.randrange(1, 2**31) for _ in range(args.hidden_seeds))
    options = GradeOptions(lab=lab, timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                           exercise_timeout=args.exercise_timeout, memory_mb=args.memory,
                           hidden_seeds=seeds, instructor_cases=instructor, execute=not args.no_execute)

    notebooks, missing = find_notebooks(args.paths)
    for path in missing:
        print(f"error: {path}: no such file or folder", file=sys.stderr)
    if not notebooks:
        print("error: no notebooks to grade", file=sys.stderr)
        return 1
    grades = grade_notebooks(notebooks, options, jobs=args.jobs, progress=not args.no_progress)
    if args.csv:
        write_csv(grades, args.csv)
    if args.feedback:
        write_feedback(grades, args.feedback)
    if args.json:
        print(json.dumps([asdict(g) for g in grades], indent=1))
    else:
        print(_table(grades))
    return 1 if missing or any(g.error or g.run_error for g in grades) else 0


if __name__ == "__main__":
    sys.exit(main())
