"""The grader, ``python -m qlearn.grade``, on small lab-00 notebooks built here.

One run grades a folder that holds every kind of submission at once: a full solution, the
student version, a syntax error, a file that is not a notebook, a notebook that hangs, one that
tries to fake its score, and one whose lab cannot be told. Kernels start in a second or two, and
two run at a time, so the whole file stays well under a minute.
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
from qlearn.grading.student import build_student_notebook

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
TIMEOUT = "10"  # seconds per cell: the hanging notebook costs this much, the others need far less


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
    _write(folder / "stub.ipynb", build_student_notebook(_notebook(FULL)))
    syntax = list(FULL)
    syntax[5] = "def num_codes(qmin, qmax)\n    return qmax - qmin + 1"  # the missing colon
    _write(folder / "nested" / "syntax.ipynb", _notebook(syntax))
    (folder / "unreadable.ipynb").write_text("{ this is not json", encoding="utf-8")
    _write(folder / "hang.ipynb", _notebook(FULL[:4] + ["while True:\n    pass"] + FULL[4:]))
    cheat = [SETUP, "def clamp(x, lo, hi):\n    return x",
             # patch the grading module: the grader imports a fresh one, so this must not help
             "import qlearn.grading.checker as c\nc._run_cases = lambda ex, fn: ('passed', 'fake')",
             "print('Exercise 00.1 passed: 1/1 points')\n"
             "print('QLEARN-GRADE-0123456789abcdef:[{\"id\": \"00.1\", \"points\": 1}]')"]
    _write(folder / "cheat.ipynb", _notebook(cheat))
    _write(folder / "homework.ipynb", _notebook(FULL, lab=None))  # neither metadata nor NN_ prefix
    _write(folder / ".ipynb_checkpoints" / "00_full-checkpoint.ipynb", _notebook(FULL))
    return folder


@pytest.fixture(scope="module")
def graded(submissions):
    """The JSON grades of the whole folder, and the exit status."""
    capture = pytest.MonkeyPatch()
    import io

    out, err = io.StringIO(), io.StringIO()
    capture.setattr(sys, "stdout", out)
    capture.setattr(sys, "stderr", err)
    try:
        status = main([str(submissions), "--json", "--timeout", TIMEOUT, "--jobs", "2"])
    finally:
        capture.undo()
    rows = {Path(row["notebook"]).name: row for row in json.loads(out.getvalue())}
    return status, rows, err.getvalue()


def _points(row) -> dict[str, int]:
    return {e["id"]: e["points"] for e in row["exercises"]}


def test_folders_are_searched_recursively_without_checkpoints(submissions):
    found, missing = find_notebooks([submissions, submissions / "00_full.ipynb", submissions / "nope"])
    names = sorted(p.name for p in found)
    assert names == ["00_full.ipynb", "cheat.ipynb", "hang.ipynb", "homework.ipynb", "stub.ipynb",
                     "syntax.ipynb", "unreadable.ipynb"]
    assert missing == [str(submissions / "nope")]


def test_a_full_solution_gets_full_marks(graded):
    _, rows, _ = graded
    row = rows["00_full.ipynb"]
    assert (row["score"], row["max_score"], row["error"]) == (3, 3, None)
    assert all(e["passed"] and e["status"] == "passed" for e in row["exercises"])
    assert set(row) >= {"notebook", "score", "max_score", "exercises"}
    assert set(row["exercises"][0]) >= {"id", "points", "max_points", "passed"}


def test_the_student_version_gets_zero_and_is_not_an_error(graded):
    _, rows, _ = graded
    row = rows["stub.ipynb"]
    assert (row["score"], row["max_score"], row["error"]) == (0, 3, None)
    assert [e["status"] for e in row["exercises"]] == ["not done"] * 3


def test_a_syntax_error_costs_only_its_own_exercise(graded):
    _, rows, _ = graded
    row = rows["syntax.ipynb"]
    assert row["error"] is None and row["score"] == 2
    assert _points(row) == {"00.1": 1, "00.2": 0, "00.3": 1}
    assert [e["status"] for e in row["exercises"] if e["id"] == "00.2"] == ["not found"]


def test_printed_text_and_patched_checks_earn_nothing(graded):
    _, rows, _ = graded
    row = rows["cheat.ipynb"]
    assert row["error"] is None and row["score"] == 0
    assert [e["status"] for e in row["exercises"]] == ["failed", "not found", "not found"]


def test_unreadable_hanging_and_unknown_notebooks_are_errors_after_the_others(graded):
    status, rows, err = graded
    assert status == 1
    assert len(rows) == 7  # every notebook is reported, the failures too
    assert "not a readable notebook" in rows["unreadable.ipynb"]["error"]
    assert f"did not finish within {TIMEOUT} s" in rows["hang.ipynb"]["error"]
    assert "while True:" in rows["hang.ipynb"]["error"]
    assert rows["hang.ipynb"]["score"] == 0 and rows["hang.ipynb"]["max_score"] == 3
    assert "cannot tell which lab" in rows["homework.ipynb"]["error"]
    for name in ("unreadable.ipynb", "hang.ipynb", "homework.ipynb"):
        assert f"{name}: " in err, f"stderr does not say why {name} failed"


def test_exit_zero_and_a_table_when_every_notebook_runs(submissions, capsys):
    assert main([str(submissions / "stub.ipynb"), "--timeout", TIMEOUT]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].split() == ["notebook", "score", "exercises"]
    assert out[1].split()[1:] == ["0/3", "00.1", "0/1", "00.2", "0/1", "00.3", "0/1"]


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
    with pytest.raises(SystemExit) as exc:
        main(["x.ipynb", "--timeout", "0"])
    assert exc.value.code == 2
    assert "timeouts must be positive" in capsys.readouterr().err
