"""Student versions: the solution notebooks with every solution replaced by a stub that says so.

``python -m qlearn.grading.student`` writes ``notebooks/student/NAME.ipynb`` for every
``notebooks/NAME.ipynb``; ``--check`` writes nothing and exits 1 if a committed student version is
out of date. In a solution notebook, each exercise's solution sits between nbgrader's markers,
inside the body of the learner's function::

    def clamp(x, lo, hi):
        \"\"\"...\"\"\"
        ### BEGIN SOLUTION
        return np.minimum(np.maximum(x, lo), hi)
        ### END SOLUTION

The student version replaces the region, markers included, with one line at the marker's
indentation: ``raise NotImplementedError("Exercise 00.1")``. Outputs and execution counts are
cleared, metadata is cleaned (:func:`qlearn.grading.clean.clean_notebook`) and the JSON is written
deterministically, so building twice gives no diff. Lines between ``### BEGIN HIDDEN TESTS`` and
``### END HIDDEN TESTS`` are removed, markers included.

**Prose for solution readers only** ("You are reading the solution notebook ...") is marked so that
it never reaches the student version, in one of two ways:

- a whole cell (markdown or code) with the cell tag ``solution-only`` is left out of the student
  version. A code cell so tagged must be one that no later cell needs;
- inside a markdown cell, the lines between ``<!-- BEGIN SOLUTION ONLY -->`` and
  ``<!-- END SOLUTION ONLY -->`` (each marker a line of its own) are removed, markers included.
  The markers are HTML comments, so the solution notebook renders without them::

      In **your version** the body is a single line: ``raise NotImplementedError(...)``.
      <!-- BEGIN SOLUTION ONLY -->
      You are reading the **solution notebook**: try each exercise in your version first.
      <!-- END SOLUTION ONLY -->

  A markdown cell left empty by the removal is left out too. Write the text around a marked span
  so that it reads well with and without the span (put the span in a paragraph of its own).

Rules, checked with a clear error:

- **Every solution region lives inside a function body.** A student version must run from top to
  bottom without error before any exercise is done; a stub at top level would stop it at once.
- **The exercise id of a region** comes from the function that encloses it: the registered exercise
  (``qlearn.grading.EXERCISES``) of this lab whose ``function`` is that name. This is the robust
  way: the grader finds the learner's code by the same name, and moving or rewording a heading
  cannot change it. A region in some other function takes the id of the nearest heading above it
  (``### Exercise 02.3 (2 pts): ...``). When both exist they must agree.
"""

from __future__ import annotations

import argparse
import ast
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from qlearn.grading.clean import clean_notebook, dumps_notebook, notebook_lab, read_notebook
from qlearn.grading.exercise import normalize_id
from qlearn.grading.registry import exercises_for_lab

__all__ = [
    "SOLUTION_ONLY_TAG",
    "SolutionOnlyProse",
    "SolutionRegion",
    "StudentVersionError",
    "build_student_notebook",
    "exercise_headings",
    "main",
    "solution_only_prose",
    "solution_regions",
    "stub_line",
    "without_solution_only_prose",
]

_BEGIN = re.compile(r"^(?P<indent>[ \t]*)#+[ \t]*BEGIN SOLUTION[ \t]*$")
_END = re.compile(r"^[ \t]*#+[ \t]*END SOLUTION[ \t]*$")
_BEGIN_HIDDEN = re.compile(r"^[ \t]*#+[ \t]*BEGIN HIDDEN TESTS[ \t]*$")
_END_HIDDEN = re.compile(r"^[ \t]*#+[ \t]*END HIDDEN TESTS[ \t]*$")
_MARKER_WORDS = ("BEGIN SOLUTION", "END SOLUTION", "BEGIN HIDDEN TESTS", "END HIDDEN TESTS")
SOLUTION_ONLY_TAG = "solution-only"  # a cell with this tag is left out of the student version
_BEGIN_PROSE = re.compile(r"^[ \t]*<!--[ \t]*BEGIN SOLUTION ONLY[ \t]*-->[ \t]*$")
_END_PROSE = re.compile(r"^[ \t]*<!--[ \t]*END SOLUTION ONLY[ \t]*-->[ \t]*$")
# "### Exercise 02.3 (2 pts): Quantize a tensor" -> id, points, title (the points and title are optional)
_HEADING = re.compile(
    r"^#{1,6}[ \t]*Exercise[ \t]+(\d{1,2}\.\d+)\b(?:[ \t]*\((\d+)[ \t]*pts?\))?[ \t]*:?[ \t]*(.*)$",
    re.MULTILINE,
)


class StudentVersionError(ValueError):
    """A solution notebook that cannot be turned into a student version (the message says why)."""


@dataclass(frozen=True)
class SolutionRegion:
    """One solution region: cell index, marker lines (0-based, inclusive), and what it solves."""

    cell: int
    start: int
    end: int
    indent: str
    exercise_id: str
    function: str
    lines: tuple[str, ...]  # the solution itself, markers excluded


@dataclass(frozen=True)
class SolutionOnlyProse:
    """Text for solution readers only: a ``solution-only`` cell, or a marked span of a markdown cell.

    ``start`` and ``end`` are the first and last line (0-based, inclusive, markers included; the
    whole cell for a tagged cell); ``lines`` is the text itself, markers excluded.
    """

    cell: int
    start: int
    end: int
    tagged: bool
    lines: tuple[str, ...]


def stub_line(indent: str, exercise_id: str) -> str:
    """The line that replaces a solution region.

    >>> stub_line("    ", "00.1")
    '    raise NotImplementedError("Exercise 00.1")'
    """
    return f'{indent}raise NotImplementedError("Exercise {exercise_id}")'


def exercise_headings(nb: Any) -> list[tuple[int, str, int | None, str]]:
    """Every markdown heading ``Exercise NN.N (k pts): title`` as ``(cell, id, points, title)``."""
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for match in _HEADING.finditer(cell.source):
                points = int(match[2]) if match[2] else None
                found.append((index, normalize_id(match[1]), points, match[3].strip()))
    return found


def _where(name: str, cell: int, line: int | None = None) -> str:
    """``"02_x.ipynb, cell 3, line 5"``: counted from 1, as a reader counts (indexes are from 0)."""
    return f"{name}, cell {cell + 1}" + (f", line {line + 1}" if line is not None else "")


def _marker_spans(lines: list[str], begin: re.Pattern, end: re.Pattern, what: str,
                  where) -> list[tuple[int, int]]:
    spans, start = [], None
    for i, line in enumerate(lines):
        if begin.match(line):
            if start is not None:
                raise StudentVersionError(f"{where(i)}: a second BEGIN {what} before END {what}")
            start = i
        elif end.match(line):
            if start is None:
                raise StudentVersionError(f"{where(i)}: END {what} without BEGIN {what}")
            spans.append((start, i))
            start = None
    if start is not None:
        raise StudentVersionError(f"{where(start)}: BEGIN {what} has no END {what}")
    return spans


def _python_source(lines: list[str]) -> str:
    """The cell as plain Python for ``ast``: IPython magics (``%...``, ``!...``) become ``pass``."""
    out = []
    for line in lines:
        stripped = line.lstrip()
        if stripped.startswith(("%", "!")):
            line = line[: len(line) - len(stripped)] + "pass"
        out.append(line)
    return "\n".join(out)


def _enclosing_functions(tree: ast.AST, line: int) -> list[str]:
    """Names of the functions whose body holds the statement on ``line`` (1-based), innermost first."""
    found = [(node.lineno, node.name) for node in ast.walk(tree)
             if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))
             and node.lineno < line <= node.end_lineno]
    return [name for _, name in sorted(found, reverse=True)]


def _cell_regions(nb: Any, index: int, name: str, lab: str | None,
                  heading_id: str | None) -> list[SolutionRegion]:
    cell = nb.cells[index]
    lines = cell.source.split("\n")
    where = lambda line: _where(name, index, line)  # noqa: E731
    spans = _marker_spans(lines, _BEGIN, _END, "SOLUTION", where)
    marked = {i for span in spans for i in span}
    for i, line in enumerate(lines):
        if i not in marked and any(word in line for word in _MARKER_WORDS[:2]):
            raise StudentVersionError(
                f"{where(i)}: a solution marker must be a line of its own, '### BEGIN SOLUTION' or "
                f"'### END SOLUTION'; got {line.strip()!r}"
            )
    if not spans:
        return []
    if lines[0].lstrip().startswith("%%"):
        raise StudentVersionError(f"{where(0)}: a cell with a cell magic cannot hold a solution region")
    # Where is each stub? Parse the cell as the student will have it, every region already a stub.
    stubbed, stub_lines = list(lines), []
    for start, end in reversed(spans):
        stubbed[start:end + 1] = [stub_line(_BEGIN.match(lines[start])["indent"], "00.0")]
    removed = 0
    for start, end in spans:
        stub_lines.append(start - removed + 1)
        removed += end - start
    try:
        tree = ast.parse(_python_source(stubbed))
    except SyntaxError as exc:
        raise StudentVersionError(
            f"{where(None)}: the cell is not valid Python once its solutions are stubbed ({exc.msg}, "
            f"line {exc.lineno}); check the indentation of the solution markers"
        ) from None
    by_function = {ex.function: ex.id for ex in exercises_for_lab(lab)} if lab else {}
    regions = []
    for (start, end), stub_at in zip(spans, stub_lines):
        functions = _enclosing_functions(tree, stub_at)
        if not functions:
            raise StudentVersionError(
                f"{where(start)}: this solution region is not inside a function body. Student versions "
                f"must run from top to bottom without error, so every solution goes inside the body of "
                f"the learner's function (def ...:), where its stub raises only when the function is called."
            )
        function_id = next((by_function[f] for f in functions if f in by_function), None)
        if function_id and heading_id and function_id != heading_id:
            raise StudentVersionError(
                f"{where(start)}: the solution is in {functions[0]}(), the function of exercise "
                f"{function_id}, but the nearest heading above it is 'Exercise {heading_id}'"
            )
        exercise_id = function_id or heading_id
        if exercise_id is None:
            raise StudentVersionError(
                f"{where(start)}: cannot tell which exercise this solution belongs to: {functions[0]}() is "
                f"not the function of a registered exercise of lab {lab} and no heading "
                f"'### Exercise NN.N (k pts): ...' comes before it"
            )
        body = tuple(lines[start + 1:end])
        regions.append(SolutionRegion(index, start, end, _BEGIN.match(lines[start])["indent"],
                                      exercise_id, functions[0], body))
    return regions


def solution_regions(nb: Any, name: str = "notebook") -> list[SolutionRegion]:
    """Every solution region of a solution notebook, with the exercise id it solves."""
    lab = notebook_lab(nb, name)
    regions, heading_id = [], None
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            headings = _HEADING.findall(cell.source)
            if headings:
                heading_id = normalize_id(headings[-1][0])
        elif cell.cell_type == "code":
            regions.extend(_cell_regions(nb, index, name, lab, heading_id))
    return regions


def _is_solution_only(cell: Any) -> bool:
    return SOLUTION_ONLY_TAG in cell.get("metadata", {}).get("tags", [])


def solution_only_prose(nb: Any, name: str = "notebook") -> list[SolutionOnlyProse]:
    """Every ``solution-only`` cell and every marked span of a markdown cell, in notebook order.

    >>> from nbformat.v4 import new_markdown_cell, new_notebook
    >>> nb = new_notebook(cells=[new_markdown_cell(
    ...     "Shared text.\\n<!-- BEGIN SOLUTION ONLY -->\\nThis is the solution notebook.\\n<!-- END SOLUTION ONLY -->")])
    >>> [(p.cell, p.start, p.end, p.lines) for p in solution_only_prose(nb)]
    [(0, 1, 3, ('This is the solution notebook.',))]
    """
    found = []
    for index, cell in enumerate(nb.cells):
        lines = cell.source.split("\n")
        if _is_solution_only(cell):
            found.append(SolutionOnlyProse(index, 0, len(lines) - 1, True, tuple(lines)))
            continue
        if cell.cell_type != "markdown":
            continue
        where = lambda line, i=index: _where(name, i, line)  # noqa: E731
        for i, line in enumerate(lines):
            if "SOLUTION ONLY" in line and not (_BEGIN_PROSE.match(line) or _END_PROSE.match(line)):
                raise StudentVersionError(
                    f"{where(i)}: a solution-only marker must be a line of its own, "
                    f"'<!-- BEGIN SOLUTION ONLY -->' or '<!-- END SOLUTION ONLY -->'; got {line.strip()!r}"
                )
        spans = _marker_spans(lines, _BEGIN_PROSE, _END_PROSE, "SOLUTION ONLY", where)
        found.extend(SolutionOnlyProse(index, start, end, False, tuple(lines[start + 1:end]))
                     for start, end in spans)
    return found


def without_solution_only_prose(nb: Any, name: str = "notebook") -> Any:
    """``nb`` (changed in place) without its ``solution-only`` cells and marked markdown spans.

    Used for the student versions and for nbgrader's source notebooks (``qlearn.grading.nbgrader``).
    """
    prose: dict[int, list[SolutionOnlyProse]] = {}
    for item in solution_only_prose(nb, name):
        prose.setdefault(item.cell, []).append(item)
    kept = []
    for index, cell in enumerate(nb.cells):
        if _is_solution_only(cell):
            continue
        if index in prose:
            lines = cell.source.split("\n")
            for item in reversed(prose[index]):
                del lines[item.start:item.end + 1]
                if 0 < item.start < len(lines) and not lines[item.start - 1].strip() \
                        and not lines[item.start].strip():
                    del lines[item.start]  # one blank line between the paragraphs around the span, not two
            while lines and not lines[-1].strip():  # no trailing blank lines where a span ended the cell
                lines.pop()
            if not any(line.strip() for line in lines):
                continue
            cell.source = "\n".join(lines)
        kept.append(cell)
    nb.cells = kept
    return nb


def build_student_notebook(nb: Any, name: str = "notebook") -> Any:
    """Return the student version of the solution notebook ``nb`` (``nb`` itself is not changed).

    ``name`` (the file name, such as ``"02_affine_quantization.ipynb"``) is used in error messages
    and gives the lab when the notebook metadata has no ``{"qlearn": {"lab": ...}}``. Solution-only
    cells and marked markdown spans are left out (see the module docstring).
    """
    student = without_solution_only_prose(clean_notebook(nb), name)
    regions: dict[int, list[SolutionRegion]] = {}
    for region in solution_regions(student, name):
        regions.setdefault(region.cell, []).append(region)
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        for region in reversed(regions.get(index, [])):
            lines[region.start:region.end + 1] = [stub_line(region.indent, region.exercise_id)]
        hidden = _marker_spans(lines, _BEGIN_HIDDEN, _END_HIDDEN, "HIDDEN TESTS",
                               lambda line, i=index: _where(name, i, line))
        for start, end in reversed(hidden):
            del lines[start:end + 1]
        cell.source = "\n".join(lines)
        cell.outputs = []
        cell.execution_count = None
    return student


def _default_folder() -> Path:
    here = Path.cwd() / "notebooks"
    if here.is_dir():
        return here
    import qlearn

    return Path(qlearn.__file__).resolve().parents[1] / "notebooks"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qlearn.grading.student",
        description=("Build notebooks/student/NAME.ipynb (solutions replaced by stubs) "
                     "from notebooks/NAME.ipynb."),
    )
    parser.add_argument("--check", action="store_true",
                        help="write nothing; exit 1 if a committed student version is out of date")
    parser.add_argument("--notebooks", type=Path, default=None, metavar="DIR",
                        help="the folder of solution notebooks (default: ./notebooks)")
    parser.add_argument("--out", type=Path, default=None, metavar="DIR",
                        help="where the student versions go (default: the notebooks folder's student/); "
                             "use a scratch folder to look at a student version without touching the course")
    args = parser.parse_args(argv)
    folder = args.notebooks or _default_folder()
    out_folder = args.out or folder / "student"
    sources = sorted(folder.glob("*.ipynb"))
    if not sources:
        print(f"no notebooks found in {folder}", file=sys.stderr)
        return 1
    problems = []
    for source in sources:
        target = out_folder / source.name
        try:
            text = dumps_notebook(build_student_notebook(read_notebook(source), source.name))
        except (StudentVersionError, ValueError, OSError) as exc:
            problems.append(f"{source}: {exc}")
            continue
        current = target.read_text(encoding="utf-8") if target.exists() else None
        if current == text:
            continue
        if args.check:
            problems.append(f"{target} is out of date" if current is not None else f"{target} is missing")
        else:
            out_folder.mkdir(parents=True, exist_ok=True)
            target.write_text(text, encoding="utf-8")
            print(f"wrote {target}")
    names = {source.name for source in sources}
    for orphan in sorted(out_folder.glob("*.ipynb")):
        if orphan.name not in names:
            problems.append(f"{orphan} has no solution notebook {folder / orphan.name}; delete it")
    if problems:
        print("\n".join(problems), file=sys.stderr)
        if args.check:
            print("regenerate the student versions with: python -m qlearn.grading.student", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
