"""nbgrader for real: the solution notebooks carry nbgrader metadata, and nbgrader grades them.

First the metadata writer (``qlearn.grading.nbgrader``) on every solution notebook and on small
notebooks made here; then ``check`` under nbgrader; then the round trip with nbgrader itself:
``generate_assignment`` on a copy of a lab (metadata written by our CLI, so this works whether or not
the committed notebook already carries it), then ``autograde`` on two submissions. The solution
notebook must get full marks and the untouched release (nbgrader's student version) zero.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from qlearn.grading import EXERCISES, check, exercises_for_lab, implementation, questions_for_lab
from qlearn.grading.clean import dumps_notebook, read_notebook, write_notebook
from qlearn.grading.nbgrader import (
    NBGRADER_CONFIG,
    SCHEMA_VERSION,
    NbgraderMetadataError,
    add_nbgrader_metadata,
    nbgrader_cells,
    nbgrader_source,
)
from qlearn.grading.nbgrader import main as nbgrader_main
from qlearn.grading.registry import notebook_lab
from qlearn.grading.student import solution_only_prose, solution_regions

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIX = "python -m qlearn.grading.nbgrader"


# --- the metadata on the repository's solution notebooks --------------------------------------------

@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_every_exercise_has_a_solution_cell_and_a_locked_check_cell_with_its_points(path):
    nb = read_notebook(path)
    cells = nbgrader_cells(nb, path.name)
    lab = notebook_lab(nb, path.name)
    catalogue = {ex.id: ex for ex in exercises_for_lab(lab)}
    by_id = {meta["grade_id"]: (index, meta) for index, meta in cells.items()}
    assert len(by_id) == len(cells), "grade_ids must be unique"
    for exercise_id, exercise in catalogue.items():
        key = exercise_id.replace(".", "_")
        index, meta = by_id[f"ex{key}"]
        assert meta["solution"] and not meta["grade"] and not meta["locked"]
        # the region sits in the learner's function, or in a helper (a class) the function uses
        assert any(f"def {exercise.function}(" in c.source for c in nb.cells if c.cell_type == "code")
        index, meta = by_id[f"check{key}"]
        assert meta["grade"] and meta["locked"] and not meta["solution"]
        assert meta["points"] == exercise.points
        assert f'check("{exercise_id}", {exercise.function})' in nb.cells[index].source
        assert f"text{key}" in by_id, f"the heading of exercise {exercise_id} is not read-only"
    questions = questions_for_lab(lab)
    for question in questions:
        key = question.id.replace(".", "_")
        index, meta = by_id[f"ex{key}"]
        assert meta["solution"] and not meta["grade"] and not meta["locked"]
        assert f"{question.variable} = " in nb.cells[index].source
        index, meta = by_id[f"check{key}"]
        assert meta["grade"] and meta["locked"] and not meta["solution"] and meta["points"] == question.points
        assert f'check("{question.id}", {question.variable})' in nb.cells[index].source
    manual = {gid: meta for gid, (_, meta) in by_id.items() if gid.startswith("manual")}
    assert all(meta["solution"] and meta["grade"] and not meta["locked"] and meta["points"] >= 1
               for meta in manual.values())
    graded = sum(meta.get("points", 0) for meta in cells.values() if meta["grade"])
    assert graded == (sum(ex.points for ex in catalogue.values()) + sum(q.points for q in questions)
                      + sum(meta["points"] for meta in manual.values()))
    assert all(meta["schema_version"] == SCHEMA_VERSION for meta in cells.values())
    assert by_id["setup"][1]["locked"], "the cell that imports check must be read-only"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_writing_the_metadata_twice_changes_nothing(path):
    once = add_nbgrader_metadata(read_notebook(path), path.name)
    assert dumps_notebook(add_nbgrader_metadata(once, path.name)) == dumps_notebook(once)


def test_committed_solution_notebooks_carry_up_to_date_metadata(capsys):
    code = nbgrader_main(["--check", *map(str, NOTEBOOKS)])
    assert code == 0, f"{capsys.readouterr().err}\n(write it with: {FIX} notebooks/*.ipynb)"


# --- the metadata writer on small notebooks --------------------------------------------------------

def _lab00(*cells):
    nb = new_notebook(cells=list(cells))
    nb.metadata["qlearn"] = {"lab": "00"}
    return nb


def _solution(function, args, body):
    return new_code_cell(f"def {function}({args}):\n    ### BEGIN SOLUTION\n    {body}\n    ### END SOLUTION")


LAB00 = [
    new_code_cell("import numpy as np\nfrom qlearn.grading import check, implementation"),
    new_markdown_cell("### Exercise 00.1 (1 pt): Clamp"),
    _solution("clamp", "x, lo, hi", "return np.minimum(np.maximum(x, lo), hi)"),
    new_code_cell('check("00.1", clamp)'),
    new_markdown_cell("### Exercise 00.2 (1 pt): Count"),
    _solution("num_codes", "qmin, qmax", "return int(qmax) - int(qmin) + 1"),
    new_code_cell('check("00.2", num_codes)'),
    new_markdown_cell("### Exercise 00.3 (1 pt): Relative error"),
    _solution("relative_error", "x, x_hat", "return 0.0"),
    new_code_cell('result = check("00.3", relative_error)'),
]
_WRITTEN_HERE = ("00.1", "00.2", "00.3")


def _rest_of_lab00():
    """Cells for every lab 00 exercise and question after 00.3 (heading, solution or answer, check), built
    from the catalogue so that the small notebook stays a complete lab 00; and their grade_ids in order."""
    cells, ids = [], []
    for ex in exercises_for_lab("00"):
        if ex.id in _WRITTEN_HERE:
            continue
        key = ex.id.replace(".", "_")
        cells += [new_markdown_cell(f"### Exercise {ex.id} ({ex.points} pts): {ex.title}"),
                  _solution(ex.function, "*args", "return None"),
                  new_code_cell(f'check("{ex.id}", {ex.function})')]
        ids += [f"text{key}", f"ex{key}", f"check{key}"]
    for question in questions_for_lab("00"):
        key = question.id.replace(".", "_")
        cells += [new_markdown_cell(f"### Question {question.id} ({question.points} pt): predict, then run"),
                  new_code_cell(f"### BEGIN SOLUTION\n{question.variable} = {question.answer!r}\n"
                                f"### END SOLUTION"),
                  new_code_cell(f'check("{question.id}", {question.variable})')]
        ids += [f"question{key}", f"ex{key}", f"check{key}"]
    return cells, ids


REST, REST_IDS = _rest_of_lab00()
LAB00 += REST


def _ids(nb):
    return {index: meta["grade_id"] for index, meta in nbgrader_cells(nb).items()}


def test_small_notebook_gets_stable_grade_ids_and_demo_checks_stay_ungraded():
    cells = list(LAB00)
    cells.insert(4, new_code_cell('def clamp_wrong(x, lo, hi):\n    return x\n\n\ncheck("00.1", clamp_wrong)'))
    assert _ids(_lab00(*cells)) == {0: "setup", 1: "text00_1", 2: "ex00_1", 3: "check00_1", 5: "text00_2",
                                    6: "ex00_2", 7: "check00_2", 8: "text00_3", 9: "ex00_3", 10: "check00_3",
                                    **dict(enumerate(REST_IDS, start=11))}
    # The ids come from the exercises, not from the cell positions.
    assert set(_ids(_lab00(new_markdown_cell("Intro"), *cells)).values()) == set(_ids(_lab00(*cells)).values())


def test_stale_metadata_of_ours_is_removed_and_hand_written_metadata_is_kept():
    manual = new_markdown_cell("Explain why (graded by hand).")
    manual.metadata["nbgrader"] = {"grade": True, "grade_id": "text_why_round_half_even", "locked": False,
                                   "points": 2, "schema_version": 3, "solution": True, "task": False}
    stale = new_code_cell("print('not a check any more')")
    stale.metadata["nbgrader"] = {"grade": True, "grade_id": "check00_9", "locked": True, "points": 1,
                                  "schema_version": 3, "solution": False, "task": False}
    out = add_nbgrader_metadata(_lab00(*LAB00, manual, stale))
    assert out.cells[-2].metadata["nbgrader"]["grade_id"] == "text_why_round_half_even"
    assert "nbgrader" not in out.cells[-1].metadata


@pytest.mark.parametrize("broken, message", [
    (lambda cells: cells[:3] + cells[4:], "00.1 of lab 00 has no check cell"),
    (lambda cells: cells + [new_code_cell('check("00.2", num_codes)')], "points twice"),
    (lambda cells: cells[:5] + [new_code_cell(cells[5].source + '\n\n\ncheck("00.2", num_codes)')] + cells[7:],
     "both the solution"),
    (lambda cells: cells[:1] + [new_markdown_cell("    ### BEGIN SOLUTION")] + cells[1:], "outside a solution"),
    (lambda cells: cells[:2] + [new_code_cell(cells[2].source.replace("### BEGIN", "# BEGIN"))] + cells[3:],
     "exactly as '### BEGIN SOLUTION'"),
    (lambda cells: cells[:8] + cells[9:], r"00\.3 \(relative_error\) of lab 00 has no solution region"),
], ids=["no check", "checked twice", "check in the solution cell", "marker in markdown", "loose marker",
        "no solution"])
def test_notebooks_that_nbgrader_cannot_grade_consistently_are_errors(broken, message):
    with pytest.raises(NbgraderMetadataError, match=message):
        nbgrader_cells(_lab00(*broken(list(LAB00))), "00_welcome.ipynb")


def test_the_nbgrader_source_has_the_metadata_and_no_prose_for_solution_readers_only():
    tagged = new_markdown_cell("You are reading the solution notebook.")
    tagged.metadata["tags"] = ["solution-only"]
    span = new_markdown_cell("Shared.\n<!-- BEGIN SOLUTION ONLY -->\nThe solutions are below.\n"
                             "<!-- END SOLUTION ONLY -->")
    nb = _lab00(tagged, *LAB00[:2], span, *LAB00[2:])
    source = nbgrader_source(nb, "00_welcome.ipynb")
    expected = [cell.source for cell in LAB00]
    assert [cell.source for cell in source.cells] == expected[:2] + ["Shared."] + expected[2:]
    assert {meta["grade_id"] for meta in nbgrader_cells(source).values()} == set(_ids(_lab00(*LAB00)).values())
    assert dumps_notebook(nbgrader_source(source, "00_welcome.ipynb")) == dumps_notebook(source)


def test_cli_writes_then_check_passes(tmp_path, capsys):
    path = tmp_path / "00_welcome.ipynb"
    write_notebook(_lab00(*LAB00), path)
    assert nbgrader_main(["--check", str(path)]) == 1
    assert FIX in capsys.readouterr().err
    assert nbgrader_main([str(path)]) == 0
    text = path.read_text()
    assert nbgrader_main(["--check", str(path)]) == 0
    assert nbgrader_main([str(path)]) == 0 and path.read_text() == text
    out = tmp_path / "course" / "source" / "lab00"
    assert nbgrader_main(["--out", str(out), str(path)]) == 0
    assert (out / path.name).read_text() == text and path.read_text() == text
    capsys.readouterr()
    assert nbgrader_main(["--print-config"]) == 0
    assert "begin_solution_delimeter = '### BEGIN SOLUTION'" in capsys.readouterr().out


# --- check() under nbgrader -------------------------------------------------------------------------

def _num_codes(qmin, qmax):
    return int(qmax) - int(qmin) + 1


def _not_started(qmin, qmax):
    raise NotImplementedError("Exercise 00.2")


def _check_cell(num_codes):
    """Run the check cell of exercise 00.2 as a notebook runs it: in a namespace holding ``num_codes``."""
    namespace = {"check": check, "num_codes": num_codes}
    exec('result = check("00.2", num_codes)', namespace)
    return namespace["result"]


@pytest.mark.parametrize("mode", ["autograde", "validate"])
def test_check_raises_under_nbgrader_on_anything_but_a_pass(monkeypatch, capsys, mode):
    monkeypatch.setenv("NBGRADER_EXECUTION", mode)
    assert _check_cell(_num_codes).passed
    for wrong in (_not_started, lambda qmin, qmax: qmax - qmin, lambda qmin, qmax: 1 / 0):
        with pytest.raises(AssertionError, match=r"Exercise 00\.2"):
            _check_cell(wrong)
    # The feedback is still printed before the error, and a silent check never raises: the demos
    # after an exercise fall back to a working implementation, as they do outside nbgrader.
    assert "0/1 points" in capsys.readouterr().out
    assert implementation("00.2", _not_started)(0, 3) == 4


def test_check_does_not_raise_outside_nbgrader(monkeypatch):
    monkeypatch.delenv("NBGRADER_EXECUTION", raising=False)
    assert _check_cell(_not_started).status == "not done"
    monkeypatch.setenv("NBGRADER_EXECUTION", "something else")
    assert not _check_cell(lambda qmin, qmax: qmax - qmin).passed


# --- the round trip with nbgrader itself ------------------------------------------------------------

# Runs in a fresh process: nbgrader's traitlets applications and its environment changes stay out of
# pytest's process. One process for all steps, because importing nbgrader takes seconds.
DRIVER = textwrap.dedent('''
    import json, shutil, sys
    from pathlib import Path
    from traitlets.config import Config
    from nbgrader.api import Gradebook
    from nbgrader.apps import NbGraderAPI

    root, assignment, notebook = Path(sys.argv[1]), sys.argv[2], sys.argv[3]
    submissions = json.loads(sys.argv[4])  # {student: "source" or "release"}
    c = Config()
    exec((root / "nbgrader_config.py").read_text(), {"get_config": lambda: c})
    c.CourseDirectory.root = str(root)
    c.Exchange.root = str(root / "exchange")
    api = NbGraderAPI(config=c)
    steps = [("generate_assignment", lambda: api.generate_assignment(assignment, force=True, create=True))]
    for student, folder in submissions.items():
        def submit(student=student, folder=folder):
            target = root / "submitted" / student / assignment
            target.mkdir(parents=True, exist_ok=True)
            shutil.copy(root / folder / assignment / notebook, target / notebook)
            return api.autograde(assignment, student, force=True, create=True)
        steps.append((f"autograde {student}", submit))
    for step, run in steps:
        result = run()
        if not result["success"]:
            print(json.dumps({"failed": step, "error": result.get("error"), "log": result.get("log")}))
            sys.exit(1)
    grades = {}
    with Gradebook(api.coursedir.db_url) as gb:
        for student in submissions:
            submission = gb.find_submission(assignment, student)
            cells = {g.name: [g.score, g.max_score] for nb in submission.notebooks for g in nb.grades}
            grades[student] = {"score": submission.score, "max_score": submission.max_score, "cells": cells}
    print(json.dumps({"grades": grades}))
''')


def _children_cpu() -> float:
    """CPU seconds used by finished child processes (and theirs): a load-independent measure."""
    try:
        import resource  # not on Windows
    except ImportError:
        return 0.0
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _nbgrader_round_trip(tmp_path: Path, lab_notebook: Path) -> dict:
    pytest.importorskip("nbgrader", reason="nbgrader is not installed (pip install nbgrader==0.9.6)")
    root = tmp_path / "course"
    assignment = "lab" + lab_notebook.name[:2]
    (root / "source" / assignment).mkdir(parents=True)
    (root / "nbgrader_config.py").write_text(NBGRADER_CONFIG)
    # As the README tells instructors: python -m qlearn.grading.nbgrader --out source/labNN NOTEBOOK
    assert nbgrader_main(["--out", str(root / "source" / assignment), str(lab_notebook)]) == 0
    (tmp_path / "driver.py").write_text(DRIVER)
    env = {key: value for key, value in os.environ.items() if not key.startswith("NBGRADER")}
    # nbgrader runs `alembic` (installed beside it) to create its database; the kernel it starts
    # is the `python3` kernel, which jupyter_client runs with this same interpreter.
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.setdefault("MPLBACKEND", "Agg")
    started, cpu = time.monotonic(), _children_cpu()
    run = subprocess.run(
        [sys.executable, str(tmp_path / "driver.py"), str(root), assignment, lab_notebook.name,
         json.dumps({"solution": "source", "untouched": "release"})],
        cwd=root, env=env, capture_output=True, text=True, timeout=1200,
    )
    lines = run.stdout.strip().splitlines()
    assert run.returncode == 0 and lines, (
        f"nbgrader failed (exit {run.returncode}):\n{run.stdout[-4000:]}\n{run.stderr[-4000:]}")
    report = json.loads(lines[-1])
    report["seconds"], report["cpu_seconds"] = time.monotonic() - started, _children_cpu() - cpu
    report["release"] = read_notebook(root / "release" / assignment / lab_notebook.name)
    return report


# Lab 00 is fast (tens of seconds, most of it nbgrader starting kernels); set QLEARN_NBGRADER_LABS=all
# (or a comma-separated list of notebook stems) to take every lab through nbgrader.
_LABS = os.environ.get("QLEARN_NBGRADER_LABS", "00_welcome")
LABS = [p.stem for p in NOTEBOOKS] if _LABS == "all" else [name.strip() for name in _LABS.split(",")]


@pytest.mark.parametrize("lab", LABS)
def test_nbgrader_gives_the_solution_full_marks_and_the_untouched_release_zero(tmp_path, lab):
    path = ROOT / "notebooks" / f"{lab}.ipynb"
    report = _nbgrader_round_trip(tmp_path, path)
    exercises = [*exercises_for_lab(lab[:2]), *questions_for_lab(lab[:2])]
    total = sum(ex.points for ex in exercises)
    expected_cells = {f"check{ex.id.replace('.', '_')}": ex.points for ex in exercises}
    # prose answers graded by hand: nbgrader counts their points in the maximum, and leaves their
    # score to a person (None), or gives 0 to an answer cell left as released ("no response")
    manual = {meta["grade_id"]: meta["points"] for meta in nbgrader_cells(read_notebook(path), path.name).values()
              if meta["grade_id"].startswith("manual")}
    solution, untouched = report["grades"]["solution"], report["grades"]["untouched"]
    assert solution["max_score"] == untouched["max_score"] == total + sum(manual.values())
    assert {name: max_score for name, (_, max_score) in solution["cells"].items()} == expected_cells | manual
    auto = {name: score for name, (score, _) in solution["cells"].items() if name not in manual}
    assert auto == expected_cells, solution
    assert solution["score"] == total
    assert {name: score for name, (score, _) in untouched["cells"].items()} == dict.fromkeys(
        [*expected_cells, *manual], 0)
    assert untouched["score"] == 0
    # nbgrader's release: each solution cell has lost its solution (nbgrader's stub instead), and no
    # prose for solution readers only is left. (A solution line repeated in another cell is
    # tests/test_student_versions.py's business: the student versions share those cells.)
    nb = read_notebook(path)
    released = {cell.metadata["nbgrader"]["grade_id"]: cell.source for cell in report["release"].cells
                if cell.metadata.get("nbgrader", {}).get("solution")}
    assert set(released) == {f"ex{ex.id.replace('.', '_')}" for ex in exercises} | set(manual)
    for region in solution_regions(nb, path.name):
        cell = released[f"ex{region.exercise_id.replace('.', '_')}"]
        assert "raise NotImplementedError()" in cell and "### BEGIN SOLUTION" not in cell
        assert [line for line in region.lines if line.strip() and line in cell.split("\n")] == []
    for gid in manual:  # nbgrader's own words for an answer cell of prose, as in the student versions
        assert released[gid].strip() == "YOUR ANSWER HERE"
    release = "\n".join(cell.source for cell in report["release"].cells)
    prose = [line.strip() for item in solution_only_prose(nb, path.name) for line in item.lines]
    assert [line for line in prose if line and line in release] == []
    print(f"nbgrader round trip of {lab}: {report['seconds']:.1f} s, {report['cpu_seconds']:.1f} s of CPU")


def test_the_parametrizations_are_not_empty():
    # An empty notebooks folder or catalogue would make the tests above pass without testing anything.
    assert NOTEBOOKS and len(EXERCISES) >= len(NOTEBOOKS)
