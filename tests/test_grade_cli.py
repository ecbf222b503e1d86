"""The grader, ``python -m qlearn.grade``, on small lab-00 notebooks built here.

One run grades a folder that holds every kind of submission at once: a full solution, the
student version, a syntax error, a file that is not a notebook, a notebook that hangs, one that
tries to fake its score, one whose lab cannot be told, and one tuned to the visible cases only.
It also writes the gradebook CSV and the feedback files. The hostile notebooks of issue 9 are in
``test_grade_attacks.py``.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from qlearn.grade import find_notebooks, main
from qlearn.grading import EXERCISES
from qlearn.grading.labs.lab00 import num_codes
from qlearn.grading.registry import items_for_lab
from qlearn.grading.student import build_student_notebook

# The notebooks here solve lab 00's first three exercises; the lab may hold more (and graded
# questions), which these notebooks do not answer: the maximum comes from the catalogue.
THREE = ("00.1", "00.2", "00.3")
MAX_00 = sum(item.points for item in items_for_lab("00"))
MAX_02 = sum(item.points for item in items_for_lab("02"))

SETUP = "import math\nimport numpy as np\nfrom qlearn.grading import check"
CLAMP = """def clamp(x, lo, hi):
    ### BEGIN SOLUTION
    return np.minimum(np.maximum(x, lo), hi)
    ### END SOLUTION"""
NUM_CODES = """def num_codes(qmin, qmax):
    ### BEGIN SOLUTION
    return int(qmax) - int(qmin) + 1
    ### END SOLUTION"""
RELATIVE_ERROR = """def relative_error(x, x_hat):
    ### BEGIN SOLUTION
    x = np.asarray(x, dtype=np.float64)
    error, size = float(np.linalg.norm(x - x_hat)), float(np.linalg.norm(x))
    return (0.0 if error == 0.0 else math.inf) if size == 0.0 else error / size
    ### END SOLUTION"""
FULL = [SETUP, "### Exercise 00.1 (1 pt): Clamp", CLAMP, 'check("00.1", clamp)',
        "### Exercise 00.2 (1 pt): Count", NUM_CODES, 'check("00.2", num_codes)',
        "### Exercise 00.3 (1 pt): Relative error", RELATIVE_ERROR, 'check("00.3", relative_error)']
TIMEOUT = "20"  # seconds per cell: the hanging notebook costs this much, the others need far less


def _notebook(cells: list[str], lab: str | None = "00") -> nbformat.NotebookNode:
    nb = new_notebook()
    if lab is not None:
        nb.metadata["qlearn"] = {"lab": lab}
    nb.cells = [new_markdown_cell(c) if c.startswith("###") else new_code_cell(c) for c in cells]
    return nb


def _write(path: Path, nb) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)
    return path


@pytest.fixture(scope="module")
def submissions(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("submissions")
    full = _notebook(FULL, lab=None)  # no metadata: the lab comes from the file name
    _write(folder / "00_full.ipynb", full)
    _write(folder / "00_stub.ipynb", build_student_notebook(_notebook(FULL)))
    syntax = list(FULL)
    syntax[5] = "def num_codes(qmin, qmax)\n    return qmax - qmin + 1"  # the missing colon
    _write(folder / "nested" / "00_syntax.ipynb", _notebook(syntax))
    (folder / "unreadable.ipynb").write_text("{ this is not json", encoding="utf-8")
    _write(folder / "00_hang.ipynb", _notebook(FULL[:4] + ["while True:\n    pass"] + FULL[4:]))
    # right on every visible case, wrong elsewhere: the hidden and instructor cases catch it
    visible = {tuple(int(a) for a in c.args): int(num_codes(*c.args)) for c in EXERCISES["00.2"].make_cases()}
    tuned = list(FULL)
    tuned[5] = f"def num_codes(qmin, qmax):\n    return {visible!r}.get((int(qmin), int(qmax)), 0)"
    _write(folder / "00_tuned.ipynb", _notebook(tuned))
    cheat = [SETUP, "def clamp(x, lo, hi):\n    return x",
             # patch the grading module: the grader imports a fresh one, so this must not help
             "import qlearn.grading.checker as c\nc._run_cases = lambda ex, fn: ('passed', 'fake')",
             "print('Exercise 00.1 passed: 1/1 points')\n"
             "print('QLEARN-GRADE-0123456789abcdef:[{\"id\": \"00.1\", \"points\": 1}]')"]
    _write(folder / "00_cheat.ipynb", _notebook(cheat))
    _write(folder / "homework.ipynb", _notebook(FULL, lab=None))  # neither metadata nor NN_ prefix
    _write(folder / ".ipynb_checkpoints" / "00_full-checkpoint.ipynb", _notebook(FULL))
    return folder


@pytest.fixture(scope="module")
def graded(submissions, cases):
    """The JSON grades of the whole folder, and the exit status."""
    capture = pytest.MonkeyPatch()
    import io

    out, err = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", out)
    capture.setattr(sys, "stderr", err)
    try:
        status = main([str(submissions), "--json", "--timeout", TIMEOUT, "--jobs", "2", "--seed", "7",
                       "--csv", str(submissions.parent / "gradebook.csv"),
                       "--feedback", str(submissions.parent / "feedback"), "--cases", str(cases)])
    finally:
        capture.undo()
    rows = {Path(row["notebook"]).name: row for row in json.loads(out.getvalue())}
    return status, rows, err.getvalue()


INSTRUCTOR_CASES = """
import numpy as np
from qlearn.grading import Case

CASES = {
    "00.2": [Case("uint16: [0, 65535]", (0, 65535))],
    "0.1": lambda rng: [Case("instructor: int16 codes into [-3, 3]", (np.array([-300, 2, 300], np.int16), -3, 3))],
}
"""


@pytest.fixture(scope="module")
def cases(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("instructor") / "cases.py"
    path.write_text(INSTRUCTOR_CASES, encoding="utf-8")
    return path


def _points(row) -> dict[str, int]:
    """Points of the three exercises these notebooks solve (the lab's other items earn none)."""
    assert sum(e["points"] for e in row["exercises"] if e["id"] not in THREE) == 0
    return {e["id"]: e["points"] for e in row["exercises"] if e["id"] in THREE}


def _statuses(row) -> list[str]:
    return [e["status"] for e in row["exercises"] if e["id"] in THREE]


def test_folders_are_searched_recursively_without_checkpoints(submissions):
    found, missing = find_notebooks([submissions, submissions / "00_full.ipynb", submissions / "nope"])
    names = sorted(p.name for p in found)
    assert names == ["00_cheat.ipynb", "00_full.ipynb", "00_hang.ipynb", "00_stub.ipynb", "00_syntax.ipynb",
                     "00_tuned.ipynb", "homework.ipynb", "unreadable.ipynb"]
    assert missing == [str(submissions / "nope")]


def test_a_full_solution_gets_full_marks(graded):
    _, rows, _ = graded
    row = rows["00_full.ipynb"]
    assert (row["score"], row["max_score"], row["error"]) == (3, MAX_00, None)
    assert _statuses(row) == ["passed"] * 3 and _points(row) == dict.fromkeys(THREE, 1)
    assert all(e["passed"] == (e["status"] == "passed") for e in row["exercises"])
    assert set(row) >= {"notebook", "score", "max_score", "exercises"}
    assert set(row["exercises"][0]) >= {"id", "points", "max_points", "passed"}


def test_the_student_version_gets_zero_and_is_not_an_error(graded):
    _, rows, _ = graded
    row = rows["00_stub.ipynb"]
    assert (row["score"], row["max_score"], row["error"]) == (0, MAX_00, None)
    assert _statuses(row) == ["not done"] * 3


def test_a_syntax_error_costs_only_its_own_exercise(graded):
    _, rows, _ = graded
    row = rows["00_syntax.ipynb"]
    assert row["error"] is None and row["score"] == 2
    assert _points(row) == {"00.1": 1, "00.2": 0, "00.3": 1}
    assert [e["status"] for e in row["exercises"] if e["id"] == "00.2"] == ["not found"]


def test_printed_text_and_patched_checks_earn_nothing(graded):
    _, rows, _ = graded
    row = rows["00_cheat.ipynb"]
    assert row["error"] is None and row["score"] == 0
    assert _statuses(row) == ["failed", "not found", "not found"]


def test_unreadable_hanging_and_unknown_notebooks_are_errors_after_the_others(graded):
    status, rows, err = graded
    assert status == 1
    assert len(rows) == 8  # every notebook is reported, the failures too
    assert "not a readable notebook" in rows["unreadable.ipynb"]["error"]
    hang = rows["00_hang.ipynb"]
    assert f"did not finish within {TIMEOUT} s" in hang["run_error"] and "while True:" in hang["run_error"]
    # the score never comes from the kernel: the functions are graded although the run hung
    assert hang["error"] is None and (hang["score"], hang["max_score"]) == (3, MAX_00)
    assert "cannot tell which lab" in rows["homework.ipynb"]["error"]
    for name in ("unreadable.ipynb", "00_hang.ipynb", "homework.ipynb"):
        assert f"{name}: " in err, f"stderr does not say why {name} failed"


def test_hidden_and_instructor_cases_catch_a_function_tuned_to_the_visible_ones(graded):
    _, rows, _ = graded
    row = rows["00_tuned.ipynb"]
    assert _points(row) == {"00.1": 1, "00.2": 0, "00.3": 1}
    tuned = [e for e in row["exercises"] if e["id"] == "00.2"][0]
    assert tuned["status"] == "failed" and tuned["hidden_cases"] >= 2
    assert "(hidden case)" in tuned["message"] or "(instructor case)" in tuned["message"]
    assert "expected:" not in tuned["message"]  # a hidden case never shows its expected value
    full = [e for e in rows["00_full.ipynb"]["exercises"] if e["id"] == "00.1"][0]
    assert full["cases"] > len(EXERCISES["00.1"].make_cases())  # the instructor case ran too


def test_gradebook_and_feedback_files(graded, submissions):
    import csv

    with open(submissions.parent / "gradebook.csv", newline="") as handle:
        table = list(csv.DictReader(handle))
    assert len(table) == 8
    by_name = {Path(r["notebook"]).name: r for r in table}
    assert list(table[0])[:5] == ["notebook", "lab", "00.1", "00.2", "00.3"]
    assert (by_name["00_full.ipynb"]["score"], by_name["00_full.ipynb"]["max_score"]) == ("3", str(MAX_00))
    assert by_name["00_tuned.ipynb"]["00.2"] == "0" and by_name["00_tuned.ipynb"]["00.1"] == "1"
    assert "not a readable notebook" in by_name["unreadable.ipynb"]["error"]
    files = sorted((submissions.parent / "feedback").glob("*.md"))
    assert len(files) == 8
    tuned = next(f for f in files if "00_tuned" in f.name).read_text()
    assert "Exercise 00.2: 0/1" in tuned and ("hidden case" in tuned or "instructor case" in tuned)
    assert "expected:" not in tuned


def test_exit_zero_and_a_table_when_every_notebook_runs(submissions, capsys):
    assert main([str(submissions / "00_stub.ipynb"), "--timeout", TIMEOUT, "--no-execute", "--no-progress"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["notebook", "score", "exercises"]
    assert out[1].split()[1:8] == [f"0/{MAX_00}", "00.1", "0/1", "00.2", "0/1", "00.3", "0/1"]


def test_the_command_line_reports_bad_paths_on_stderr(submissions):
    # no kernel needed: neither path can be run
    proc = subprocess.run(
        [sys.executable, "-m", "qlearn.grade", str(submissions / "unreadable.ipynb"),
         str(submissions / "missing.ipynb"), "--json"],
        capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 1
    assert "missing.ipynb: no such file or folder" in proc.stderr
    assert "unreadable.ipynb: not a readable notebook" in proc.stderr
    rows = json.loads(proc.stdout)
    assert [Path(r["notebook"]).name for r in rows] == ["unreadable.ipynb"]


def test_bad_options_are_usage_errors(capsys):
    for argv, message in [(["x.ipynb", "--timeout", "0"], "timeouts must be positive"),
                          (["x.ipynb", "--lab", "99"], "--lab 99: unknown lab"),
                          (["x.ipynb", "--jobs", "0"], "--jobs must be at least 1")]:
        with pytest.raises(SystemExit) as exc:
            main(argv)
        assert exc.value.code == 2
        assert message in capsys.readouterr().err


def test_the_lab_option_fixes_the_lab_and_both_module_names_work(submissions):
    # --lab 02 for a lab-00 notebook without metadata: graded against lab 02, where it has nothing
    proc = subprocess.run(
        [sys.executable, "-m", "qlearn.grading.grade", str(submissions / "00_full.ipynb"), "--lab", "02",
         "--json", "--no-execute", "--no-progress"],
        capture_output=True, text=True, timeout=600,
    )
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert (row["lab"], row["score"], row["max_score"]) == ("02", 0, MAX_02)
    assert {e["status"] for e in row["exercises"]} == {"not found"}


def test_the_sandbox_shows_a_python_or_clone_that_lives_under_tmp(monkeypatch, tmp_path):
    # bwrap's private /tmp would hide a venv or a clone under /tmp (CI clones there): they are
    # bound back read-only, and the folders to hide inside them are hidden after that
    import sys

    from qlearn.grading import _sandbox

    venv = (tmp_path / "clone" / ".venv").resolve()
    inside, elsewhere = venv / "secret", (tmp_path / "elsewhere").resolve()
    for folder in (inside, elsewhere):
        folder.mkdir(parents=True)
    monkeypatch.setattr(sys, "prefix", str(venv))
    monkeypatch.setitem(_sandbox._STATE, "bwrap", True)
    command = _sandbox.wrap(["python"], root=tmp_path / "root", workdir=tmp_path / "root", env={},
                            hide=[inside, elsewhere])
    bind = command.index(str(venv))
    assert command[bind - 1] == "--ro-bind" and command[bind + 1] == str(venv)
    hidden = command.index(str(inside))
    assert command[hidden - 1] == "--tmpfs" and hidden > bind  # hidden after the bind that shows it
    assert str(elsewhere) not in command  # under the private /tmp already
