"""Student versions and clean notebooks.

First the builder and the cleaner on small notebooks made here, then the repository itself. The
committed student versions must be up to date, must not leak a line of a solution, and must have
a stub for every exercise. The solution notebooks must agree with the exercise catalogue.
"""

from __future__ import annotations

import ast
import difflib
import json
import re
from pathlib import Path

import nbformat
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook, new_output

from qlearn.grading import EXERCISES, QUESTIONS
from qlearn.grading.clean import clean_notebook, dumps_notebook, notebook_lab, read_notebook
from qlearn.grading.clean import main as clean_main
from qlearn.grading.student import (
    SOLUTION_ONLY_TAG,
    StudentVersionError,
    build_student_notebook,
    exercise_headings,
    solution_only_prose,
    solution_regions,
)
from qlearn.grading.student import _python_source
from qlearn.grading.student import main as student_main

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
FIX = "python -m qlearn.grading.student"


def _notebook(*cells, lab="00"):
    nb = new_notebook()
    if lab is not None:
        nb.metadata["qlearn"] = {"lab": lab}
    nb.cells = [new_markdown_cell(c[3:]) if c.startswith("md:") else new_code_cell(c) for c in cells]
    for i, cell in enumerate(nb.cells):
        cell.id = f"c{i}"
    return nb


CLAMP = '''def clamp(x, lo, hi):
    """Clamp."""
    ### BEGIN SOLUTION
    y = np.maximum(x, lo)
    return np.minimum(y, hi)
    ### END SOLUTION'''


# --- the builder ----------------------------------------------------------------------------------

def test_a_region_becomes_a_stub_at_the_markers_indentation():
    student = build_student_notebook(_notebook("import numpy as np", CLAMP))
    assert student.cells[1].source == (
        'def clamp(x, lo, hi):\n    """Clamp."""\n    raise NotImplementedError("Exercise 00.1")'
    )
    assert student.cells[0].source == "import numpy as np"


def test_the_id_comes_from_the_function_and_agrees_with_the_heading():
    nb = _notebook("md:### Exercise 00.1 (1 pt): Clamp values into [lo, hi]", CLAMP)
    assert [(r.exercise_id, r.function) for r in solution_regions(nb)] == [("00.1", "clamp")]
    wrong = _notebook("md:### Exercise 00.2 (1 pt): Count", CLAMP)
    with pytest.raises(StudentVersionError, match=r"clamp\(\), the function of exercise 00.1, but the nearest "
                                                  r"heading above it is 'Exercise 00.2'"):
        build_student_notebook(wrong)


def test_a_helper_function_takes_the_id_of_the_heading_above():
    helper = "def helper(v):\n    ### BEGIN SOLUTION\n    return v\n    ### END SOLUTION"
    student = build_student_notebook(_notebook("md:## Exercise 2.3 (2 pts): Something", helper))
    assert student.cells[1].source == 'def helper(v):\n    raise NotImplementedError("Exercise 02.3")'
    with pytest.raises(StudentVersionError, match="cannot tell which exercise"):
        build_student_notebook(_notebook(helper))


def test_several_regions_nested_functions_and_methods():
    source = '''class Box:
    def clamp(self, x, lo, hi):
        ### BEGIN SOLUTION
        return x
        ### END SOLUTION


def num_codes(qmin, qmax):
    def inner():
        ### BEGIN SOLUTION
        return qmax - qmin + 1
        ### END SOLUTION
    return inner()'''
    regions = solution_regions(_notebook(source))
    assert [(r.exercise_id, r.function) for r in regions] == [("00.1", "clamp"), ("00.2", "inner")]
    student = build_student_notebook(_notebook(source))
    assert student.cells[0].source.splitlines()[2] == '        raise NotImplementedError("Exercise 00.1")'
    assert student.cells[0].source.splitlines()[7] == '        raise NotImplementedError("Exercise 00.2")'
    assert "qmax - qmin + 1" not in student.cells[0].source


def test_a_region_at_top_level_is_refused():
    top = "### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"
    with pytest.raises(StudentVersionError, match="not inside a function body"):
        build_student_notebook(_notebook("md:### Exercise 00.1 (1 pt): x", top))
    in_if = "if True:\n    ### BEGIN SOLUTION\n    answer = 42\n    ### END SOLUTION"
    with pytest.raises(StudentVersionError, match="not inside a function body"):
        build_student_notebook(_notebook("md:### Exercise 00.1 (1 pt): x", in_if))
    after_def = "def f():\n    pass\n### BEGIN SOLUTION\nanswer = 42\n### END SOLUTION"
    with pytest.raises(StudentVersionError, match="not inside a function body"):
        build_student_notebook(_notebook("md:### Exercise 00.1 (1 pt): x", after_def))


@pytest.mark.parametrize("source, message", [
    ("def clamp(x, lo, hi):\n    ### BEGIN SOLUTION\n    return x", "BEGIN SOLUTION has no END SOLUTION"),
    ("def clamp(x, lo, hi):\n    return x\n    ### END SOLUTION", "END SOLUTION without BEGIN SOLUTION"),
    ("def clamp(x, lo, hi):\n    ### BEGIN SOLUTION\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION",
     "a second BEGIN SOLUTION"),
    ("def clamp(x, lo, hi):\n    return x  ### BEGIN SOLUTION", "must be a line of its own"),
    ("%%time\ndef clamp(x, lo, hi):\n    ### BEGIN SOLUTION\n    return x\n    ### END SOLUTION", "cell magic"),
    ("def clamp(x, lo, hi):\n### BEGIN SOLUTION\n    return x\n### END SOLUTION", "not valid Python once"),
])
def test_malformed_regions_are_refused_with_a_clear_message(source, message):
    with pytest.raises(StudentVersionError, match=message):
        build_student_notebook(_notebook(source), "00_demo.ipynb")


def test_errors_name_the_notebook_cell_and_line():
    with pytest.raises(StudentVersionError, match=r"^00_demo.ipynb, cell 2, line 2: BEGIN SOLUTION has no END"):
        build_student_notebook(_notebook("x = 1", "def f():\n    ### BEGIN SOLUTION\n    return 1"), "00_demo.ipynb")


def test_line_magics_do_not_confuse_the_builder():
    source = "%matplotlib inline\n" + CLAMP
    student = build_student_notebook(_notebook(source))
    assert student.cells[0].source.startswith("%matplotlib inline\ndef clamp")
    assert 'raise NotImplementedError("Exercise 00.1")' in student.cells[0].source


def test_hidden_tests_are_removed():
    source = "assert clamp(1, 0, 2) == 1\n### BEGIN HIDDEN TESTS\nassert clamp(5, 0, 2) == 2\n### END HIDDEN TESTS"
    student = build_student_notebook(_notebook(CLAMP, source))
    assert student.cells[1].source == "assert clamp(1, 0, 2) == 1"


def test_outputs_counts_and_metadata_noise_are_cleared_and_the_input_is_untouched():
    nb = _notebook(CLAMP, "check('00.1', clamp)")
    nb.cells[1].outputs = [new_output("stream", name="stdout", text="Exercise 00.1 passed\n")]
    nb.cells[1].execution_count = 7
    nb.cells[1].metadata["execution"] = {"iopub.status.busy": "2026-01-01T00:00:00Z"}
    nb.cells[1].metadata["tags"] = ["keep-me"]
    nb.metadata["widgets"] = {"state": {}}
    nb.metadata["language_info"] = {"name": "python", "version": "3.11.7"}
    before = json.dumps(nb, sort_keys=True)
    student = build_student_notebook(nb)
    assert json.dumps(nb, sort_keys=True) == before
    assert student.cells[1].outputs == [] and student.cells[1].execution_count is None
    assert dict(student.cells[1].metadata) == {"tags": ["keep-me"]}
    assert dict(student.metadata) == {"kernelspec": {"display_name": "Python 3 (ipykernel)", "language": "python",
                                                     "name": "python3"},
                                      "language_info": {"name": "python"}, "qlearn": {"lab": "00"}}


def test_building_twice_gives_the_same_bytes():
    nb = _notebook("md:# Lab 00", CLAMP, "check('00.1', clamp)")
    first = dumps_notebook(build_student_notebook(nb))
    assert first == dumps_notebook(build_student_notebook(nb))
    assert first == dumps_notebook(build_student_notebook(json.loads(first)))  # a student version is a fixpoint
    assert first.endswith("}\n")


def test_the_lab_comes_from_metadata_or_the_file_name():
    assert notebook_lab(_notebook(lab="3")) == "03"
    assert notebook_lab(_notebook(lab=None), "notebooks/02_affine.ipynb") == "02"
    assert notebook_lab(_notebook(lab=None), "homework.ipynb") is None


def test_exercise_headings():
    nb = _notebook("md:# Title\n### Exercise 2.3 (2 pts): Quantize a tensor\ntext", "md:## Exercise 02.4 (1 pt): Scale")
    assert exercise_headings(nb) == [(0, "02.3", 2, "Quantize a tensor"), (1, "02.4", 1, "Scale")]


# --- the cleaner ----------------------------------------------------------------------------------

def test_clean_keeps_outputs_renumbers_counts_and_merges_streams():
    nb = _notebook("print('a')", "x = 1", "1 + 1")
    nb.cells[0].outputs = [new_output("stream", name="stdout", text="pass"),
                           new_output("stream", name="stdout", text="ed\n")]
    nb.cells[0].execution_count = 12
    nb.cells[2].outputs = [new_output("execute_result", data={"text/plain": "2"}, execution_count=14)]
    nb.cells[2].execution_count = 14
    nb.cells[2].outputs.append(new_output("display_data", data={
        "application/vnd.jupyter.widget-view+json": {"model_id": "abc123", "version_major": 2, "version_minor": 0},
        "text/plain": "IntSlider(value=3)"}))
    nb.cells[1].metadata["collapsed"] = True
    clean = clean_notebook(nb)
    assert [c.execution_count for c in clean.cells] == [1, None, 3]
    assert [o.text for o in clean.cells[0].outputs] == ["passed\n"]
    assert clean.cells[2].outputs[0].execution_count == 3
    assert dict(clean.cells[2].outputs[1].data) == {"text/plain": "IntSlider(value=3)"}
    assert dict(clean.cells[1].metadata) == {}
    assert dumps_notebook(clean_notebook(clean)) == dumps_notebook(clean)


def test_clean_gives_cells_without_an_id_a_deterministic_one(tmp_path):
    nb = json.loads(nbformat.writes(_notebook("x = 1", "y = 2")))
    nb["nbformat_minor"] = 4
    for cell in nb["cells"]:
        del cell["id"]
    path = tmp_path / "old.ipynb"
    path.write_text(json.dumps(nb))
    clean = clean_notebook(read_notebook(path))
    assert [c.id for c in clean.cells] == ["cell-0", "cell-1"] and clean.nbformat_minor == 5


def test_clean_cli_cleans_in_place_and_checks(tmp_path, capsys):
    path = tmp_path / "00_x.ipynb"
    nb = _notebook("x = 1")
    nb.cells[0].metadata["execution"] = {"shell.execute_reply": "2026-01-01T00:00:00Z"}
    nbformat.write(nb, path)
    assert clean_main(["--check", str(path)]) == 1
    assert "fix with: python -m qlearn.grading.clean" in capsys.readouterr().err
    assert clean_main([str(path)]) == 0
    assert clean_main(["--check", str(path)]) == 0
    assert "shell.execute_reply" not in path.read_text()


def test_student_cli_builds_checks_and_reports_orphans(tmp_path, capsys):
    nbformat.write(_notebook(CLAMP), tmp_path / "00_demo.ipynb")
    assert student_main(["--check", "--notebooks", str(tmp_path)]) == 1
    assert "00_demo.ipynb is missing" in capsys.readouterr().err
    assert student_main(["--notebooks", str(tmp_path)]) == 0
    assert student_main(["--check", "--notebooks", str(tmp_path)]) == 0
    target = tmp_path / "student" / "00_demo.ipynb"
    target.write_text(target.read_text().replace("Exercise 00.1", "Exercise 00.9"))
    assert student_main(["--check", "--notebooks", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert "00_demo.ipynb is out of date" in err and FIX in err
    (tmp_path / "student" / "99_gone.ipynb").write_text("{}")
    assert student_main(["--notebooks", str(tmp_path)]) == 1
    assert "99_gone.ipynb has no solution notebook" in capsys.readouterr().err


# --- the leak detector ----------------------------------------------------------------------------

# Lines too generic to give anything away, so they may appear in a student version:
TRIVIAL = re.compile(r"""^(?:
    [^\w]*                                        # blank, or lone punctuation: ), ], }, ...
  | (?:return|yield)(?:\ [A-Za-z_]\w*(?:,\ [A-Za-z_]\w*)*)?  # return x, return lo, hi: names only
  | pass | break | continue | else: | try: | finally:
  | with\ torch\.no_grad\(\):                  # the opening of every torch inference block
)$""", re.VERBOSE)
FUZZY_MIN_CHARS, FUZZY_RATIO = 20, 0.9  # long enough to say something; a typo or a renamed name apart
# A function's header is its public contract: the student version must show it, and a solution line
# that calls the function with its parameters' names is always near it. Headers are still searched
# for a secret line as a whole or inside them, only not for near copies.
HEADER = re.compile(r"^(?:async\s+)?def\s+\w+\s*\(|^class\s+\w+\s*[(:]")
SHORT = 10  # a shorter expression (``a@b``) leaks only as a whole line: inside a line it says nothing


def _code_part(line: str) -> str:
    """The line without a trailing ``# comment`` (a ``#`` inside a string stays) and surrounding space."""
    text = line.strip()
    for i, char in enumerate(text):
        if char == "#" and text[:i].count('"') % 2 == 0 and text[:i].count("'") % 2 == 0:
            return text[:i].rstrip()
    return text


def _squeeze(text: str) -> str:
    """No whitespace at all: ``2 ** (b - 1)`` and ``2**(b-1)`` are the same line."""
    return "".join(text.split())


def _key(code: str) -> str:
    """What a line gives away: its text without whitespace, and without a leading ``return``."""
    return _squeeze(re.sub(r"^(?:return|yield)\s+", "", code))


def _near(a: str, b: str) -> bool:
    """``a`` and ``b`` are long and at least ``FUZZY_RATIO`` alike (difflib's ratio, 2 * matches / total)."""
    if min(len(a), len(b)) < FUZZY_MIN_CHARS or 2 * min(len(a), len(b)) < FUZZY_RATIO * (len(a) + len(b)):
        return False  # the length bound of the ratio already falls short: skip the costly part
    matcher = difflib.SequenceMatcher(None, a, b)
    return matcher.quick_ratio() >= FUZZY_RATIO and matcher.ratio() >= FUZZY_RATIO


def find_leaks(secret_lines, nb, fuzzy: bool = True) -> list[str]:
    """Where a non-trivial secret line shows up in ``nb``: as a line, inside a line (a hint in
    markdown, a docstring, ``y = <the returned expression>``), or, with ``fuzzy``, as a near copy
    (a typo, a renamed variable)."""
    secrets = {}
    for line in secret_lines:
        code = " ".join(_code_part(line).split())
        if code and not TRIVIAL.match(code):
            secrets[_key(code)] = code
    leaks = []
    for index, cell in enumerate(nb.cells):
        for line in cell.source.split("\n"):
            plain = _key(_code_part(line) if cell.cell_type == "code" else line.strip())
            if not plain:
                continue
            near = fuzzy and not (cell.cell_type == "code" and HEADER.match(line.strip()))
            for key, code in secrets.items():
                inside = key == plain if len(key) < SHORT else key in plain
                if inside or (near and _near(key, plain)):
                    leaks.append(f"  cell {index + 1}: {line.strip()!r}  <- {code!r}")
    return leaks


def test_a_function_header_is_not_a_near_copy_of_a_call_but_still_hides_no_secret():
    call = "    w, b = fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps)"
    header = "def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):"
    assert find_leaks([call], _notebook(header)) == []
    assert find_leaks([call], _notebook("md:" + header)) != []  # prose is not a header: near copies count
    assert find_leaks(["    x = np.clip(np.rint(v), lo, hi)"],
                      _notebook("def f(v, lo, hi, x=np.clip(np.rint(v), lo, hi)):")) != []  # inside a header
    assert find_leaks([call.replace("eps)", "eps=eps)")], _notebook(call.strip())) != []  # near copy, not a header


@pytest.mark.parametrize("line", [
    "    return x", "return lo, hi", "    )", "    ]", "", "   ", "    break", "    else:",
    "    with torch.no_grad():", "    return model  # ready",
])
def test_trivial_lines_are_not_secrets(line):
    nb = _notebook(line.strip() or "x = 1", "md:" + line)
    assert find_leaks([line], nb) == []


@pytest.mark.parametrize("student_line", [
    "    return np.minimum(np.maximum(x, lo), hi)",              # the line itself
    "y = np.minimum(np.maximum(x,lo),hi)",                       # inside a line, spaced otherwise
    "return np.minimum(np.maximum(x, lo), hi)  # see how easy",  # with a comment
    "md:Hint: `return np.minimum(np.maximum(x, lo), hi)` does it.",  # a hint in markdown
    "return np.minimum(np.maximum(x, lo), hgh)  # a typo",       # a near copy
    '    """Do it like this: return np.minimum(np.maximum(x, lo), hi)"""',  # a docstring
])
def test_the_leak_detector_finds_a_solution_line_wherever_it_is(student_line):
    nb = _notebook("import numpy as np", student_line)
    assert find_leaks(["    return np.minimum(np.maximum(x, lo), hi)  # clamp"], nb) != []


def test_the_leak_detector_lets_other_code_through():
    nb = _notebook("def clamp(x, lo, hi):\n    raise NotImplementedError(\"Exercise 00.1\")",
                   "x = np.minimum(x, hi)  # a different line", "md:Clamp $x$ into $[lo, hi]$.")
    assert find_leaks(["    return np.minimum(np.maximum(x, lo), hi)"], nb) == []
    assert find_leaks(["    return np.minimum(np.maximum(x, lo), hgh)"], nb, fuzzy=False) == []


# --- prose for solution readers only ---------------------------------------------------------------

PROSE = ("md:Shared text.\n\n<!-- BEGIN SOLUTION ONLY -->\nYou are reading the solution notebook.\n"
         "<!-- END SOLUTION ONLY -->\n\nMore shared text.")


def test_marked_markdown_spans_are_removed_markers_included():
    student = build_student_notebook(_notebook(PROSE, "x = 1"))
    assert student.cells[0].source == "Shared text.\n\nMore shared text."
    assert student.cells[1].source == "x = 1"


def test_solution_only_cells_are_left_out_and_so_is_an_emptied_cell():
    only = _notebook("md:# Title", "md:About the solutions.", "print('solution readers')", "md:Shared.",
                     "md:<!-- BEGIN SOLUTION ONLY -->\nAll of it.\n<!-- END SOLUTION ONLY -->\n")
    only.cells[1].metadata["tags"] = [SOLUTION_ONLY_TAG]
    only.cells[2].metadata["tags"] = ["nbval-ignore-output", SOLUTION_ONLY_TAG]
    student = build_student_notebook(only)
    assert [c.source for c in student.cells] == ["# Title", "Shared."]
    assert [(p.cell, p.tagged, p.lines) for p in solution_only_prose(only)] == [
        (1, True, ("About the solutions.",)), (2, True, ("print('solution readers')",)),
        (4, False, ("All of it.",))]


def test_a_span_at_the_end_of_a_cell_leaves_no_trailing_blank_line():
    nb = _notebook("md:Shared.\n\n<!-- BEGIN SOLUTION ONLY -->\nsecret\n<!-- END SOLUTION ONLY -->")
    assert build_student_notebook(nb).cells[0].source == "Shared."


@pytest.mark.parametrize("source, message", [
    ("md:<!-- BEGIN SOLUTION ONLY -->\ntext", "BEGIN SOLUTION ONLY has no END SOLUTION ONLY"),
    ("md:text\n<!-- END SOLUTION ONLY -->", "END SOLUTION ONLY without BEGIN SOLUTION ONLY"),
    ("md:Text <!-- BEGIN SOLUTION ONLY -->\nx\n<!-- END SOLUTION ONLY -->", "must be a line of its own"),
])
def test_malformed_prose_markers_are_refused(source, message):
    with pytest.raises(StudentVersionError, match=message):
        build_student_notebook(_notebook(source), "00_demo.ipynb")


def test_student_cli_writes_to_another_folder(tmp_path):
    nbformat.write(_notebook(CLAMP, PROSE), tmp_path / "00_demo.ipynb")
    out = tmp_path / "scratch"
    assert student_main(["--notebooks", str(tmp_path), "--out", str(out)]) == 0
    assert not (tmp_path / "student").exists()
    text = (out / "00_demo.ipynb").read_text()
    assert 'raise NotImplementedError(\\"Exercise 00.1\\")' in text and "solution notebook" not in text


# --- the repository's notebooks -------------------------------------------------------------------

def _student_path(path: Path) -> Path:
    return path.parent / "student" / path.name


def _names(nb) -> set[str]:
    return {node.name for cell in nb.cells if cell.cell_type == "code"
            for node in ast.walk(_parse(cell.source)) if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef))}


def _parse(source: str) -> ast.AST:
    try:
        return ast.parse(_python_source(source.split("\n")))
    except SyntaxError:  # a cell that is not Python defines nothing
        return ast.parse("")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_committed_student_version_is_up_to_date(path):
    target = _student_path(path)
    assert target.exists(), f"{target.relative_to(ROOT)} is missing; generate it with: {FIX}"
    expected = dumps_notebook(build_student_notebook(read_notebook(path), path.name))
    assert target.read_text(encoding="utf-8") == expected, (
        f"{target.relative_to(ROOT)} is out of date; regenerate it with: {FIX}"
    )


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_solution_line_leaks_into_the_student_version(path):
    """No line of a solution region may appear anywhere in the student version: not in a demo, not in
    a hint, not in a docstring, not with a typo. Lines that also appear elsewhere in the solution
    notebook count too: a demo before the exercise that carries it out hands out the answer."""
    solution = read_notebook(path)
    student = build_student_notebook(solution, path.name)
    secret = [line for r in solution_regions(solution, path.name) for line in r.lines]
    leaks = find_leaks(secret, student)
    assert not leaks, f"solution lines appear in the student version of {path.name}:\n" + "\n".join(leaks)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_no_solution_only_prose_reaches_the_student_version(path):
    solution = read_notebook(path)
    student = build_student_notebook(solution, path.name)
    prose = [line for item in solution_only_prose(solution, path.name) for line in item.lines]
    leaks = find_leaks(prose, student, fuzzy=False)
    assert not leaks, f"solution-only prose appears in the student version of {path.name}:\n" + "\n".join(leaks)
    text = "\n".join(cell.source for cell in student.cells)
    assert "SOLUTION ONLY" not in text and not any(SOLUTION_ONLY_TAG in c.metadata.get("tags", [])
                                                   for c in student.cells)


def test_lab00_student_version_speaks_to_the_learner_and_hands_out_no_clamp():
    path = ROOT / "notebooks" / "00_welcome.ipynb"
    student = build_student_notebook(read_notebook(path), path.name)
    text = "\n".join(cell.source for cell in student.cells)
    assert not re.search(r"you are reading the \W*solution notebook", text, re.IGNORECASE)
    assert "This is one." not in text
    code = "\n".join(cell.source for cell in student.cells if cell.cell_type == "code")
    assert "np.maximum" not in code and "np.clip" not in code  # no demo clamps from below: that is 00.1


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_every_defined_exercise_function_has_a_stub(path):
    target = _student_path(path)
    if not target.exists():
        pytest.fail(f"{target.relative_to(ROOT)} is missing; generate it with: {FIX}")
    solution, student = read_notebook(path), read_notebook(target)
    lab = notebook_lab(solution, path.name)
    defined = _names(solution)
    stubs = {}
    for cell in student.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(_parse(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for inner in ast.walk(node):
                    if (isinstance(inner, ast.Raise) and isinstance(inner.exc, ast.Call)
                            and getattr(inner.exc.func, "id", None) == "NotImplementedError"):
                        stubs.setdefault(node.name, set()).add(ast.literal_eval(inner.exc.args[0]))
    raised = set().union(*stubs.values()) if stubs else set()
    for ex in EXERCISES.values():
        if ex.lab == lab and ex.function in defined:
            message = f"Exercise {ex.id}"
            if message in stubs.get(ex.function, set()):
                continue
            # a scaffold function with no solution region of its own (08.1 wraps the learner's
            # autograd Function) is fine when the stubs it calls raise this exercise's message
            assert message in raised and not _has_solution_region(solution, ex.function), (
                f"{target.name}: {ex.function}() has no stub raising NotImplementedError(\"{message}\")"
            )


def _has_solution_region(nb, function: str) -> bool:
    """Whether the solution notebook's definition of ``function`` holds a solution region."""
    for cell in nb.cells:
        if cell.cell_type != "code":
            continue
        for node in ast.walk(_parse(cell.source)):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) and node.name == function:
                if "BEGIN SOLUTION" in (ast.get_source_segment(cell.source, node) or ""):
                    return True
    return False


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_solution_notebooks_are_clean(path):
    text = path.read_text(encoding="utf-8")
    assert dumps_notebook(clean_notebook(read_notebook(path))) == text, (
        f"{path.name} has execution metadata noise; clean it with: python -m qlearn.grading.clean {path.relative_to(ROOT)}"
    )


@pytest.mark.parametrize("ex_id", list(EXERCISES))
def test_each_exercise_has_its_heading_function_and_check_in_its_notebook(ex_id):
    ex = EXERCISES[ex_id]
    path = ROOT / "notebooks" / f"{ex.notebook}.ipynb"
    assert path.exists(), f"exercise {ex_id} names the notebook {ex.notebook!r}, but {path.name} does not exist"
    nb = read_notebook(path)
    assert notebook_lab(nb, path.name) == ex.lab
    headings = {hid: points for _, hid, points, _ in exercise_headings(nb)}
    assert ex_id in headings, f"{path.name} has no heading '### Exercise {ex_id} ({ex.points} pts): {ex.title}'"
    assert headings[ex_id] == ex.points, f"{path.name}: the heading of {ex_id} says {headings[ex_id]} pts, " \
                                         f"the exercise is worth {ex.points}"
    assert ex.function in _names(nb), f"{path.name} defines no function {ex.function}()"
    calls = re.compile(rf"""check\(\s*["']{re.escape(ex_id)}["']\s*,\s*{re.escape(ex.function)}\s*[,)]""")
    assert any(calls.search(c.source) for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} never calls check({ex_id!r}, {ex.function})"
    )


@pytest.mark.parametrize("question_id", list(QUESTIONS))
def test_each_question_has_its_heading_answer_and_check_in_its_notebook(question_id):
    from qlearn.grading.student import question_headings

    q = QUESTIONS[question_id]
    path = ROOT / "notebooks" / f"{q.notebook}.ipynb"
    assert path.exists(), f"question {question_id} names the notebook {q.notebook!r}, but {path.name} does not exist"
    nb = read_notebook(path)
    headings = {hid: points for _, hid, points, _ in question_headings(nb)}
    assert question_id in headings, f"{path.name} has no heading 'Question {question_id} ({q.points} pt): ...'"
    assert headings[question_id] == q.points, (f"{path.name}: the heading of {question_id} says "
                                               f"{headings[question_id]} pts, the question is worth {q.points}")
    regions = [r for r in solution_regions(nb, path.name) if r.exercise_id == question_id]
    assert len(regions) == 1, f"{path.name}: question {question_id} needs one answer region, found {len(regions)}"
    calls = re.compile(rf"""check\(\s*["']{re.escape(question_id)}["']\s*,\s*{re.escape(q.variable)}\s*[,)]""")
    assert any(calls.search(c.source) for c in nb.cells if c.cell_type == "code"), (
        f"{path.name} never calls check({question_id!r}, {q.variable})")
    student = build_student_notebook(nb, path.name)
    assert any(c.source.split("\n")[regions[0].start] == f"{q.variable} = None  # your answer"
               for c in student.cells if c.cell_type == "code"), f"{path.name}: no stub for {question_id}"
