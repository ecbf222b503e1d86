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

**Graded questions** (:class:`~qlearn.grading.question.Question`, ids ``NN.QK``) are answered at
the top level of a cell; the region holds one assignment of a literal to the question's ``variable``
and becomes ``q1_answer = None  # your answer``, for which the check says "not answered yet"::

    ### BEGIN SOLUTION
    q1_answer = "b"
    ### END SOLUTION

**Prose answers graded by hand**: a markdown cell tagged ``manual-grade`` holds the model answer in
the solution notebook; the student version replaces its text with ``YOUR ANSWER HERE`` (nbgrader's
words for a markdown answer cell).

Rules, checked with a clear error:

- **Every exercise's solution region lives inside a function body.** A student version must run
  from top to bottom without error before any exercise is done; a stub at top level would stop it
  at once. Only a question's region sits at the top level: its stub assigns ``None``.
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
from qlearn.grading.exercise import is_question_id, normalize_id
from qlearn.grading.registry import exercises_for_lab, questions_for_lab

__all__ = [
    "MANUAL_ANSWER",
    "MANUAL_GRADE_TAG",
    "SOLUTION_ONLY_TAG",
    "SolutionOnlyProse",
    "SolutionRegion",
    "StudentVersionError",
    "build_student_notebook",
    "exercise_headings",
    "manual_answer_cells",
    "question_headings",
    "question_stub_line",
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
MANUAL_GRADE_TAG = "manual-grade"  # a markdown answer cell graded by hand (its text is the model answer)
MANUAL_ANSWER = "YOUR ANSWER HERE"  # what the student version (and nbgrader's release) puts in its place
_BEGIN_PROSE = re.compile(r"^[ \t]*<!--[ \t]*BEGIN SOLUTION ONLY[ \t]*-->[ \t]*$")
_END_PROSE = re.compile(r"^[ \t]*<!--[ \t]*END SOLUTION ONLY[ \t]*-->[ \t]*$")
# "### Exercise 02.3 (2 pts): Quantize a tensor" -> id, points, title (the points and title are optional)
_HEADING = re.compile(
    r"^#{1,6}[ \t]*Exercise[ \t]+(\d{1,2}\.\d+)\b(?:[ \t]*\((\d+)[ \t]*pts?\))?[ \t]*:?[ \t]*(.*)$",
    re.MULTILINE,
)
# "### Question 6.Q1 (1 pt): ..." or "**Question 6.4 (2 pts, graded by hand)**": id, points, by hand
_QUESTION_HEADING = re.compile(
    r"^[#*_ \t]*Question[ \t]+(\d{1,2})\.([Qq]?\d+)\b(?:[ \t]*\((\d+)[ \t]*pts?"
    r"(?P<hand>[ \t]*,[ \t]*graded[ \t]+by[ \t]+hand)?[ \t]*\))?",
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
    function: str  # the enclosing function; for a question, its variable
    lines: tuple[str, ...]  # the solution itself, markers excluded

    @property
    def question(self) -> bool:
        """Whether this region answers a graded question (``NN.QK``) rather than an exercise."""
        return is_question_id(self.exercise_id)

    def stub(self) -> str:
        """The line that replaces this region in the student version."""
        if self.question:
            return question_stub_line(self.indent, self.function)
        return stub_line(self.indent, self.exercise_id)


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


def question_stub_line(indent: str, variable: str) -> str:
    """The line that replaces a question's solution region.

    >>> question_stub_line("", "q1_answer")
    'q1_answer = None  # your answer'
    """
    return f"{indent}{variable} = None  # your answer"


def question_headings(nb: Any) -> list[tuple[int, str, int | None, bool]]:
    """Every heading ``Question 6.Q1 (1 pt): ...`` or ``Question 6.4 (2 pts, graded by hand)`` as
    ``(cell, id, points, by_hand)``: the id normalized (``"06.Q1"``, ``"06.4"``), points ``None``
    when the heading gives none.
    """
    found = []
    for index, cell in enumerate(nb.cells):
        if cell.cell_type == "markdown":
            for match in _QUESTION_HEADING.finditer(cell.source):
                points = int(match[3]) if match[3] else None
                found.append((index, normalize_id(f"{match[1]}.{match[2]}"), points, bool(match["hand"])))
    return found


def manual_answer_cells(nb: Any, name: str = "notebook") -> list[tuple[int, str, int]]:
    """The markdown answer cells graded by hand (tag ``manual-grade``) as ``(cell, question id, points)``.

    The question and its points come from the nearest heading ``Question 6.4 (2 pts, graded by hand)``
    at or above the answer cell (the question cell just above it, usually). Errors name the cell: an
    answer cell that is not markdown, no such heading above it, a heading without points or without
    "graded by hand", or two answer cells for one question.
    """
    headings = question_headings(nb)
    found, used = [], {}
    for index, cell in enumerate(nb.cells):
        if MANUAL_GRADE_TAG not in cell.get("metadata", {}).get("tags", []):
            continue
        where = _where(name, index)
        if cell.cell_type != "markdown":
            raise StudentVersionError(f"{where}: the tag {MANUAL_GRADE_TAG!r} marks a markdown answer cell "
                                      f"graded by hand; this is a {cell.cell_type} cell")
        above = [h for h in headings if h[0] <= index]
        if not above:
            raise StudentVersionError(
                f"{where}: an answer graded by hand needs a question above it with a heading such as "
                f"'**Question 6.4 (2 pts, graded by hand)**'")
        heading_cell, question_id, points, by_hand = above[-1]
        if points is None or not by_hand:
            raise StudentVersionError(
                f"{_where(name, heading_cell)}: the heading of question {question_id} must give its points "
                f"and say it is graded by hand, such as 'Question {question_id} ({points or 2} pts, graded by "
                f"hand)': the answer in cell {index + 1} is graded by hand")
        if question_id in used:
            raise StudentVersionError(f"{where}: question {question_id} already has its answer cell "
                                      f"(cell {used[question_id] + 1}); give each question one answer cell")
        used[question_id] = index
        found.append((index, question_id, points))
    return found


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
    by_variable = {q.variable: q.id for q in questions_for_lab(lab)} if lab else {}
    regions = []
    for (start, end), stub_at in zip(spans, stub_lines):
        functions = _enclosing_functions(tree, stub_at)
        indent = _BEGIN.match(lines[start])["indent"]
        if not functions and not indent:
            variable = _question_variable(lines[start + 1:end], by_variable, where(start))
            if variable is not None:
                regions.append(SolutionRegion(index, start, end, indent, by_variable[variable], variable,
                                              tuple(lines[start + 1:end])))
                continue
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


def _question_variable(body: list[str], by_variable: dict[str, str], where: str) -> str | None:
    """The question variable a top-level region assigns, or ``None`` if it assigns none. A region
    that assigns one must hold exactly that assignment, of a literal (the grader reads it so)."""
    try:
        tree = ast.parse(_python_source(body))
    except SyntaxError:
        return None
    targets = [t.id for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
               for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
               if isinstance(t, ast.Name)]
    variables = [t for t in targets if t in by_variable]
    if not variables:
        return None
    variable = variables[0]
    node = tree.body[0] if len(tree.body) == 1 else None
    ok = getattr(node, "value", None) is not None and len(set(variables)) == 1
    if ok:
        try:
            ast.literal_eval(node.value)
        except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
            ok = False
    if not ok:
        raise StudentVersionError(
            f"{where}: the answer region of question {by_variable[variable]} must hold exactly one "
            f"assignment of a literal, such as {variable} = \"b\" or {variable} = 0.25 (the grader reads "
            f"the literal; no code runs)")
    return variable


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
    for index, _question, _points in manual_answer_cells(student, name):
        student.cells[index].source = MANUAL_ANSWER
    regions: dict[int, list[SolutionRegion]] = {}
    for region in solution_regions(student, name):
        regions.setdefault(region.cell, []).append(region)
    for index, cell in enumerate(student.cells):
        if cell.cell_type != "code":
            continue
        lines = cell.source.split("\n")
        for region in reversed(regions.get(index, [])):
            lines[region.start:region.end + 1] = [region.stub()]
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
