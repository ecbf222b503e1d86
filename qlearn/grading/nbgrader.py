"""nbgrader cell metadata for the solution notebooks, so that nbgrader can take them as they are.

``python -m qlearn.grading.nbgrader NOTEBOOK...`` writes the metadata into each solution notebook
(in place; outputs and everything else stay as they are); ``--check`` writes nothing and exits 1 if
a notebook's metadata is missing or out of date. Running it twice changes nothing.
``--out DIR`` leaves the notebooks alone and writes the notebooks for an nbgrader course's
``source/labNN`` folder into DIR (:func:`nbgrader_source`: with the metadata, without the prose for
solution readers only); ``--print-config`` prints the ``nbgrader_config.py`` settings the labs need.

What each cell gets, in nbgrader's own format (``cell.metadata.nbgrader``, ``schema_version: 3``,
the format nbgrader's "Create Assignment" toolbar writes):

======================================  =====================================================
cell                                    ``metadata.nbgrader``
======================================  =====================================================
a learner's function (``### BEGIN       ``solution: true``, ``grade_id: "ex02_1"``: an
SOLUTION`` inside ``def quantize_...``) "autograded answer"
its check, ``check("02.1",              ``grade: true``, ``points`` (from the catalogue
quantize_tensor)``                      ``qlearn.grading.EXERCISES``), ``locked: true``,
                                        ``grade_id: "check02_1"``: an "autograder test"
the heading cell "Exercise 02.1 (3      ``locked: true``, ``grade_id: "text02_1"``: read-only
pts): ..."
a question's answer (``### BEGIN        ``solution: true``, ``grade_id: "ex06_Q1"``
SOLUTION`` around ``q1_answer = "b"``)
its check, ``check("06.Q1",             ``grade: true``, ``points`` (from ``QUESTIONS``),
q1_answer)``                            ``locked: true``, ``grade_id: "check06_Q1"``
a markdown answer cell tagged           ``solution: true``, ``grade: true``, ``points`` from the
``manual-grade``                        heading "Question 6.4 (2 pts, graded by hand)" at or
                                        above it, ``grade_id: "manual06_4"``: nbgrader's
                                        "manually graded answer"
a question's heading cell "Question     ``locked: true``, ``grade_id: "question06_4"``
6.4 ..." (auto or by hand)              (``"question06_Q1"``)
the cell that imports ``check``         ``locked: true``, ``grade_id: "setup"``: read-only
======================================  =====================================================

A prose answer graded by hand: the question's markdown cell carries its points in its heading, the
answer cell below it is tagged ``manual-grade`` (its text in the solution notebook is the model
answer; the student version, like nbgrader's release, shows ``YOUR ANSWER HERE``)::

    **Question 6.4 (2 pts, graded by hand)** Why does the first layer lose more accuracy?

    <the answer cell, tagged manual-grade>

grade_ids come from the exercise ids, not from cell positions, so they stay the same when cells are
added or moved. A check cell is the one that calls ``check("NN.N", fn)`` with the exercise's own
function (its ``function`` in the catalogue); demo cells that call ``check`` on other functions (lab
00 shows a wrong answer on purpose) are not graded. nbgrader restores locked and graded cells from
its database before it autogrades, so a learner who edits a check into ``pass`` gains nothing, and
``generate_assignment`` makes those cells read-only in the release.

nbgrader awards a test cell's points when the cell raises no error: ``check`` raises
``AssertionError`` on anything but a pass while nbgrader runs the notebook (nbgrader sets
``NBGRADER_EXECUTION`` to ``"autograde"`` or ``"validate"``), and only then.

Metadata that an author wrote by hand (any grade_id not of the forms above, such as ``ex02_1``,
``check02_1``, ``text02_1__02_2`` or ``setup_2``; e.g. a manually graded prose question) is kept as
it is. Errors, each naming the notebook and cell:

- an exercise of the lab without a solution region, or without a check cell, or checked twice
  (nbgrader would award its points twice);
- a check cell that also holds a solution (nbgrader would take it for a manually graded answer);
- a solution marker not written exactly ``### BEGIN SOLUTION`` / ``### END SOLUTION``, or that
  text anywhere else, markdown included: nbgrader's ``generate_assignment`` replaces every line that
  contains it, in every cell, and refuses a notebook where it finds one outside a solution cell
  (nbgrader must be configured with these delimiters: :data:`NBGRADER_CONFIG`);
- a grade_id used twice.

Used by the instructors' nbgrader workflow (README, "Using nbgrader") and tests/test_nbgrader.py.
"""

from __future__ import annotations

import argparse
import ast
import copy
import re
import sys
from pathlib import Path
from typing import Any

from qlearn.grading.clean import dumps_notebook, read_notebook
from qlearn.grading.exercise import normalize_id
from qlearn.grading.question import Question
from qlearn.grading.registry import exercises_for_lab, notebook_lab, questions_for_lab
from qlearn.grading.student import exercise_headings, manual_answer_cells, question_headings, solution_regions

__all__ = ["BEGIN_SOLUTION", "END_SOLUTION", "NBGRADER_CONFIG", "NbgraderMetadataError", "SCHEMA_VERSION",
           "add_nbgrader_metadata", "grade_id", "main", "nbgrader_cells", "nbgrader_source"]

SCHEMA_VERSION = 3
# The grade_ids this module writes (and removes when stale): ex02_1, check02_1, text02_1__02_2, setup_2
_OURS = re.compile(r"^(?:(?:ex|check|text|question)\d{2}_Q?\d+(?:__\d{2}_Q?\d+)*|manual\d{2}_Q?\d+"
                   r"|setup(?:_\d+)?)$")
# nbgrader's delimiters, as NBGRADER_CONFIG sets them: the exact markers of our solution regions
BEGIN_SOLUTION, END_SOLUTION = "### BEGIN SOLUTION", "### END SOLUTION"
_MARKERS = (BEGIN_SOLUTION, END_SOLUTION)

#: The nbgrader settings the labs need, for the course's ``nbgrader_config.py`` (README, "Using
#: nbgrader"). nbgrader replaces every line that *contains* a delimiter, in every cell; the default
#: delimiter "BEGIN SOLUTION" would also match the ``<!-- BEGIN SOLUTION ONLY -->`` prose markers of
#: the solution notebooks, so the delimiters are set to our exact markers.
NBGRADER_CONFIG = f"""\
c = get_config()  # noqa: F821 (nbgrader defines it)
c.ClearSolutions.begin_solution_delimeter = {BEGIN_SOLUTION!r}
c.ClearSolutions.end_solution_delimeter = {END_SOLUTION!r}
c.Execute.timeout = 300  # seconds per cell; a lab runs in under a minute on 2 cores
"""


class NbgraderMetadataError(ValueError):
    """A solution notebook that cannot carry consistent nbgrader metadata (the message says why)."""


def grade_id(kind: str, exercise_ids: list[str] | tuple[str, ...]) -> str:
    """The grade_id of a cell: its kind, then its exercise ids with ``_`` for ``.``.

    nbgrader accepts letters, digits, ``_`` and ``-`` in a grade_id.

    >>> grade_id("ex", ["02.1"]), grade_id("check", ["02.1"]), grade_id("text", ["00.2", "00.3"])
    ('ex02_1', 'check02_1', 'text00_2__00_3')
    >>> grade_id("check", ["6.q1"]), grade_id("manual", ["06.4"])
    ('check06_Q1', 'manual06_4')
    """
    return kind + "__".join(normalize_id(i).replace(".", "_") for i in exercise_ids)


def _meta(grade_id_: str, *, solution: bool = False, grade: bool = False, locked: bool = False,
          points: int | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"grade": grade, "grade_id": grade_id_, "locked": locked,
                            "schema_version": SCHEMA_VERSION, "solution": solution, "task": False}
    if points is not None:
        meta["points"] = points
    return meta


def _python_source(source: str) -> str:
    """The cell as plain Python for ``ast``: IPython magics (``%...``, ``!...``) become ``pass``."""
    out = []
    for line in source.split("\n"):
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass"
        out.append(line)
    return "\n".join(out)


def _check_calls(source: str) -> list[tuple[str, str | None]]:
    """Every ``check("NN.N", name, ...)`` call in a cell as ``(exercise id, name or None)``."""
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return []
    calls = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call) or len(node.args) < 1:
            continue
        func = node.func
        name = func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else None
        first = node.args[0]
        if name != "check" or not (isinstance(first, ast.Constant) and isinstance(first.value, str)):
            continue
        try:
            exercise_id = normalize_id(first.value)
        except ValueError:
            continue
        fn = node.args[1] if len(node.args) > 1 else None
        calls.append((exercise_id, fn.id if isinstance(fn, ast.Name) else None))
    return calls


def _imports_check(source: str) -> bool:
    """Does the cell import ``check`` from ``qlearn.grading``?"""
    try:
        tree = ast.parse(_python_source(source))
    except SyntaxError:
        return False
    return any(isinstance(node, ast.ImportFrom) and (node.module or "").startswith("qlearn.grading")
               and any(alias.name == "check" for alias in node.names)
               for node in ast.walk(tree))


def _answer_name(item: Any) -> str:
    """The name a check cell passes: the exercise's function, or the question's variable."""
    return item.variable if isinstance(item, Question) else item.function


def _where(name: str, index: int) -> str:
    return f"{name}, cell {index + 1}"


def nbgrader_cells(nb: Any, name: str = "notebook") -> dict[int, dict[str, Any]]:
    """The nbgrader metadata this module gives each cell, ``{cell index: metadata}``.

    ``name`` (the file name) is used in error messages and gives the lab when the notebook metadata
    has none. Raises :class:`NbgraderMetadataError` when the notebook cannot be graded consistently:

    >>> from nbformat.v4 import new_code_cell, new_notebook
    >>> nb = new_notebook(cells=[new_code_cell('check("00.1", clamp)')])
    >>> nbgrader_cells(nb, "00_welcome.ipynb")  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    qlearn.grading.nbgrader.NbgraderMetadataError: 00_welcome.ipynb: exercise 00.1 (clamp) of lab 00 has no solution region ...
    """
    lab = notebook_lab(nb, name)
    if lab is None:
        raise NbgraderMetadataError(
            f"{name}: cannot tell which lab this is; name it NN_topic.ipynb or set the notebook "
            f"metadata {{\"qlearn\": {{\"lab\": \"NN\"}}}}"
        )
    catalogue = {ex.id: ex for ex in exercises_for_lab(lab)}
    if not catalogue:
        raise NbgraderMetadataError(f"{name}: lab {lab} has no exercises in qlearn.grading.EXERCISES")
    catalogue.update({q.id: q for q in questions_for_lab(lab)})
    try:
        regions = solution_regions(nb, name)
        manual = manual_answer_cells(nb, name)
    except ValueError as exc:
        raise NbgraderMetadataError(str(exc)) from None

    solved: dict[int, list[str]] = {}
    for region in regions:
        ids = solved.setdefault(region.cell, [])
        if region.exercise_id not in ids:
            ids.append(region.exercise_id)
    marked_lines = {(r.cell, line) for r in regions for line in (r.start, r.end)}
    for region in regions:
        lines = nb.cells[region.cell].source.split("\n")
        for number, marker in ((region.start, BEGIN_SOLUTION), (region.end, END_SOLUTION)):
            if lines[number].strip() != marker:
                raise NbgraderMetadataError(
                    f"{_where(name, region.cell)}, line {number + 1}: write the marker exactly as "
                    f"{marker!r} (got {lines[number].strip()!r}); nbgrader looks for that text"
                )

    cells: dict[int, dict[str, Any]] = {}
    checked: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        lines = cell.source.split("\n")
        for number, line in enumerate(lines):
            if any(marker in line for marker in _MARKERS) and (index, number) not in marked_lines:
                raise NbgraderMetadataError(
                    f"{_where(name, index)}, line {number + 1}: {line.strip()!r} contains a solution "
                    f"marker outside a solution region. nbgrader's generate_assignment replaces every "
                    f"line that contains {BEGIN_SOLUTION!r} or {END_SOLUTION!r} in any cell, markdown "
                    f"included, and stops on a cell that is not a solution cell; reword this line so "
                    f"that it does not contain the marker text (in markdown, write "
                    f"'<code>### BEGIN&nbsp;SOLUTION</code>': it shows the same)"
                )
        if cell.cell_type != "code":
            continue
        graded = [exercise_id for exercise_id, fn in _check_calls(cell.source)
                  if exercise_id in catalogue and fn == _answer_name(catalogue[exercise_id])]
        graded = list(dict.fromkeys(graded))
        if graded and index in solved:
            raise NbgraderMetadataError(
                f"{_where(name, index)}: this cell holds both the solution of {', '.join(solved[index])} "
                f"and the check of {', '.join(graded)}; nbgrader would take it for a manually graded "
                f"answer. Put the check call in a cell of its own after the solution (for a question "
                f"too: the answer cell, then a cell check({graded[0]!r}, ...))"
            )
        for exercise_id in graded:
            if exercise_id in checked:
                raise NbgraderMetadataError(
                    f"{_where(name, index)}: exercise {exercise_id} is checked here and in cell "
                    f"{checked[exercise_id] + 1}; nbgrader would award its points twice. Check the "
                    f"learner's {_answer_name(catalogue[exercise_id])} once, or check a copy under "
                    f"another name in a demo"
                )
            checked[exercise_id] = index
        if index in solved:
            cells[index] = _meta(grade_id("ex", solved[index]), solution=True)
        elif graded:
            points = sum(catalogue[i].points for i in graded)
            cells[index] = _meta(grade_id("check", graded), grade=True, locked=True, points=points)

    done = {exercise_id for ids in solved.values() for exercise_id in ids}
    for exercise_id, exercise in catalogue.items():
        if isinstance(exercise, Question):
            if exercise_id not in done:
                raise NbgraderMetadataError(
                    f"{name}: question {exercise_id} of lab {lab} has no answer region (a cell with "
                    f"### BEGIN SOLUTION, {exercise.variable} = <the answer>, ### END SOLUTION at its top level)")
            if exercise_id not in checked:
                raise NbgraderMetadataError(
                    f"{name}: question {exercise_id} of lab {lab} has no check cell; add a cell "
                    f"check({exercise_id!r}, {exercise.variable}) after its answer cell so that nbgrader "
                    f"can award its {exercise.points} points")
            continue
        if exercise_id not in done:
            raise NbgraderMetadataError(
                f"{name}: exercise {exercise_id} ({exercise.function}) of lab {lab} has no solution "
                f"region (### BEGIN SOLUTION ... ### END SOLUTION inside def {exercise.function})"
            )
        if exercise_id not in checked:
            raise NbgraderMetadataError(
                f"{name}: exercise {exercise_id} of lab {lab} has no check cell; add a cell "
                f"check({exercise_id!r}, {exercise.function}) after its solution so that nbgrader can "
                f"award its {exercise.points} points"
            )

    for index, question_id, points in manual:
        cells[index] = _meta(grade_id("manual", [question_id]), solution=True, grade=True, points=points)
    manual_ids = {question_id for _, question_id, _ in manual}

    headings: dict[int, list[str]] = {}
    for index, exercise_id, _points, _title in exercise_headings(nb):
        if exercise_id in catalogue and exercise_id not in headings.setdefault(index, []):
            headings[index].append(exercise_id)
    asked: dict[int, list[str]] = {}
    for index, question_id, _points, _by_hand in question_headings(nb):
        if ((question_id in catalogue or question_id in manual_ids)
                and question_id not in asked.setdefault(index, [])):
            asked[index].append(question_id)
    for index, ids in headings.items():
        if ids and index not in cells:
            cells[index] = _meta(grade_id("text", ids), locked=True)
    for index, ids in asked.items():
        if ids and index not in cells:
            cells[index] = _meta(grade_id("question", ids), locked=True)

    setups = [index for index, cell in enumerate(nb.cells)
              if cell.cell_type == "code" and index not in cells and _imports_check(cell.source)]
    for number, index in enumerate(setups, start=1):
        cells[index] = _meta("setup" if number == 1 else f"setup_{number}", locked=True)

    seen: dict[str, int] = {}
    for index, cell in enumerate(nb.cells):
        meta = cells.get(index)
        if meta is None:
            meta = cell.get("metadata", {}).get("nbgrader")
            if not meta or _OURS.match(str(meta.get("grade_id", ""))):
                continue  # no metadata, or ours and stale: it will be removed
        gid = meta.get("grade_id")
        if gid is None:
            continue
        if gid in seen:
            raise NbgraderMetadataError(
                f"{_where(name, index)}: grade_id {gid!r} is also the grade_id of cell {seen[gid] + 1}; "
                f"nbgrader needs each to be unique"
            )
        seen[gid] = index
    return cells


def add_nbgrader_metadata(nb: Any, name: str = "notebook") -> Any:
    """A copy of the solution notebook ``nb`` with this module's nbgrader metadata on its cells.

    Stale metadata written by this module (a grade_id such as ``ex02_1``, ``check02_1``,
    ``text02_1`` or ``setup``) is removed from cells that no longer qualify; every other metadata stays.
    Idempotent: ``add_nbgrader_metadata(add_nbgrader_metadata(nb))`` equals
    ``add_nbgrader_metadata(nb)``.
    """
    wanted = nbgrader_cells(nb, name)
    out = copy.deepcopy(nb)
    for index, cell in enumerate(out.cells):
        metadata = cell.setdefault("metadata", {})
        if index in wanted:
            metadata["nbgrader"] = copy.deepcopy(wanted[index])
        elif "nbgrader" in metadata and _OURS.match(str(metadata["nbgrader"].get("grade_id", ""))):
            del metadata["nbgrader"]
    return out


def _without_solution_only_prose(nb: Any, name: str) -> Any:
    """A copy of ``nb`` without the prose for solution readers only, as in the student versions."""
    from qlearn.grading.student import without_solution_only_prose  # the student versions' own markup

    return without_solution_only_prose(copy.deepcopy(nb), name)


def nbgrader_source(nb: Any, name: str = "notebook") -> Any:
    """The notebook to put in an nbgrader course's ``source/`` folder: the solution notebook with its
    nbgrader metadata, without the prose for solution readers only (a ``solution-only`` cell or a
    ``<!-- BEGIN SOLUTION ONLY -->`` span, as the student versions leave them out). nbgrader's
    ``generate_assignment`` then removes the solutions, as ``python -m qlearn.grading.student`` does.
    """
    add_nbgrader_metadata(nb, name)  # the full notebook must be consistent too: raise on it
    return add_nbgrader_metadata(_without_solution_only_prose(nb, name), name)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qlearn.grading.nbgrader",
        description=("Write nbgrader cell metadata (solution cells, autograded check cells with their "
                     "points, read-only cells) into solution notebooks, in place."),
    )
    parser.add_argument("notebooks", nargs="*", type=Path, metavar="NOTEBOOK")
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a notebook's nbgrader metadata is missing or stale")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="write DIR/NAME.ipynb instead of changing the notebooks, without the "
                             "prose for solution readers only: an nbgrader course's source/labNN folder")
    parser.add_argument("--print-config", action="store_true",
                        help="print the nbgrader_config.py settings the labs need, and exit")
    args = parser.parse_args(argv)
    if args.print_config:
        sys.stdout.write(NBGRADER_CONFIG)
        return 0
    if not args.notebooks:
        parser.error("give at least one NOTEBOOK (or --print-config)")
    if args.check and args.out:
        parser.error("--check writes nothing: use it without --out")
    problems, stale = [], []
    for path in args.notebooks:
        try:
            text = path.read_text(encoding="utf-8")
            nb = read_notebook(path)
            if args.out is not None:
                new = dumps_notebook(nbgrader_source(nb, path.name))
            else:
                new = dumps_notebook(add_nbgrader_metadata(nb, path.name))
        except (ValueError, OSError) as exc:
            problems.append(f"{path}: {exc}" if str(path) not in str(exc) else str(exc))
            continue
        if args.out is not None:
            args.out.mkdir(parents=True, exist_ok=True)
            (args.out / path.name).write_text(new, encoding="utf-8")
            print(f"wrote {args.out / path.name}")
            continue
        if new == text:
            continue
        stale.append(path)
        if not args.check:
            path.write_text(new, encoding="utf-8")
            print(f"wrote nbgrader metadata into {path}")
    if args.check and stale:
        names = " ".join(str(p) for p in stale)
        problems.append(f"nbgrader metadata missing or out of date: {names}\n"
                        f"fix with: python -m qlearn.grading.nbgrader {names}")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
