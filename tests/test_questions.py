"""Graded questions and tiered hints: the Question record, check() on answers and hint tiers, the
grader reading the answer literal (and agreeing with check), student versions and nbgrader metadata.
"""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
from nbformat.v4 import new_code_cell, new_markdown_cell, new_notebook

from qlearn.grading import EXERCISES, QUESTIONS, Case, Exercise, Question, check, get_question, register
from qlearn.grading import registry
from qlearn.grading.checker import evaluate_question
from qlearn.grading.exercise import id_sort_key, is_question_id, normalize_id
from qlearn.grading.grade import GradeOptions, _score_question, grade_notebook
from qlearn.grading.nbgrader import NbgraderMetadataError, add_nbgrader_metadata, nbgrader_cells
from qlearn.grading.question import grade_answer, read_answer
from qlearn.grading.student import (
    MANUAL_ANSWER,
    StudentVersionError,
    build_student_notebook,
    manual_answer_cells,
    solution_regions,
)


def _choice(**overrides) -> Question:
    fields = dict(id="99.Q1", title="Which?", points=2, notebook="99_test", variable="q1_answer",
                  choices={"a": "one", "b": "two", "c": "three"}, answer="b",
                  explanation="Two is the answer because of the pair.",
                  hint=("Think of a pair.", "Count its members."))
    fields.update(overrides)
    return Question(**fields)


def _numeric(**overrides) -> Question:
    fields = dict(id="99.Q2", title="How many?", points=1, notebook="99_test", variable="q2_answer",
                  answer=0.25, rtol=0.01, explanation="A quarter of the codes.", hint="One in four.")
    fields.update(overrides)
    return Question(**fields)


def _double_cases(rng):
    return [Case("one", (1,)), Case("two", (2,)), Case("three", (3,)), Case("random", (int(rng.integers(9)),))]


@pytest.fixture
def private(monkeypatch):
    """A private copy of the catalogue with question 99.Q1 (choices), 99.Q2 (numeric) and
    exercise 99.1 (three hint tiers) registered."""
    assert len(EXERCISES) > 0
    monkeypatch.setattr(registry, "_REGISTRY", dict(registry._REGISTRY))
    monkeypatch.setattr(registry, "_QUESTIONS", dict(registry._QUESTIONS))
    register(_choice())
    register(_numeric())
    register(Exercise(id="99.1", title="Double", points=2, reference=lambda x: 2 * x, cases=_double_cases,
                      function="double", notebook="99_test",
                      hint=("Twice the input.", "Add the input to itself.", "Or multiply by two.")))
    return registry


# --- ids ----------------------------------------------------------------------------------------

def test_question_ids_normalize_and_sort_after_the_exercises():
    assert normalize_id("6.q1") == "06.Q1" and normalize_id("06.Q12") == "06.Q12"
    assert is_question_id("06.Q1") and not is_question_id("06.1")
    ids = ["06.Q2", "06.10", "06.Q1", "06.2", "05.Q1"]
    assert sorted(ids, key=id_sort_key) == ["05.Q1", "06.2", "06.10", "06.Q1", "06.Q2"]
    with pytest.raises(ValueError, match="looks like"):
        normalize_id("06.QQ1")


def test_an_exercise_cannot_take_a_question_id():
    with pytest.raises(ValueError, match="graded question"):
        Exercise(id="99.Q1", title="t", points=1, reference=abs, cases=_double_cases, function="f",
                 hint="h", notebook="99_test")


# --- the Question record ------------------------------------------------------------------------

@pytest.mark.parametrize(("overrides", "message"), [
    ({"id": "99.1"}, "NN.QK"),
    ({"points": 0}, "points"),
    ({"answer": "d"}, "one of the choice keys"),
    ({"choices": {"a": "only one"}, "answer": "a"}, "at least two"),
    ({"choices": {"a": "x", "A": "y"}, "answer": "a"}, "more than case"),
    ({"choices": {"a ": "x", "b": "y"}, "answer": "b"}, "without surrounding blanks"),
    ({"rtol": 0.1}, "numeric answers"),
    ({"variable": "class"}, "Python name"),
    ({"notebook": "98_other"}, "lab number"),
    ({"explanation": " "}, "explanation"),
    ({"hint": ()}, "hint"),
    ({"hint": ("ok", "")}, "hint"),
])
def test_a_bad_choice_question_is_refused(overrides, message):
    with pytest.raises((ValueError, TypeError), match=message):
        _choice(**overrides)


@pytest.mark.parametrize(("overrides", "message"), [
    ({"answer": "0.25"}, "finite int or float"),
    ({"answer": math.inf}, "finite"),
    ({"answer": True}, "finite int or float"),
    ({"rtol": -1}, "rtol"),
])
def test_a_bad_numeric_question_is_refused(overrides, message):
    with pytest.raises(ValueError, match=message):
        _numeric(**overrides)


def test_a_question_is_registered_once_and_its_variable_is_its_own(private):
    assert QUESTIONS["99.Q1"].choices["b"] == "two" and get_question("99.q2").numeric
    with pytest.raises(ValueError, match="already registered"):
        register(_choice())
    with pytest.raises(ValueError, match="already the answer of question 99.Q1"):
        register(_choice(id="99.Q3"))
    assert "99.Q1" not in EXERCISES and [q.id for q in registry.questions_for_lab(99)] == ["99.Q1", "99.Q2"]
    assert [i.id for i in registry.items_for_lab("99")] == ["99.1", "99.Q1", "99.Q2"]
    with pytest.raises(ValueError, match="unknown question id"):
        get_question("99.Q7")


def test_choices_cannot_be_changed_after_registration():
    with pytest.raises(TypeError):
        _choice().choices["d"] = "four"


# --- grading an answer ---------------------------------------------------------------------------

@pytest.mark.parametrize(("value", "status"), [
    ("b", "passed"), (" B ", "passed"), ("a", "failed"), ("z", "failed"), (2, "failed"), (None, "not done"),
    (["b"], "failed"), ("", "failed"),
])
def test_a_choice_answer(value, status):
    assert grade_answer(_choice(), value)[0] == status


@pytest.mark.parametrize(("value", "status"), [
    (0.25, "passed"), (0.2524, "passed"), (np.float32(0.25), "passed"), (0.26, "failed"), (0.2476, "passed"),
    (0.247, "failed"), ("0.25", "failed"), (True, "failed"), (math.nan, "failed"), (math.inf, "failed"),
    (10**400, "failed"), (None, "not done"), (1 + 0j, "failed"),
])
def test_a_numeric_answer(value, status):
    assert grade_answer(_numeric(), value)[0] == status


def test_an_exact_numeric_answer_takes_ints_and_floats():
    q = _numeric(answer=248, rtol=0.0)
    assert grade_answer(q, 248)[0] == grade_answer(q, 248.0)[0] == grade_answer(q, np.int64(248))[0] == "passed"
    assert grade_answer(q, 247)[0] == "failed" and "exact" in grade_answer(q, 247)[1]
    q = _numeric(answer=0.0, rtol=0.0, atol=0.5)
    assert grade_answer(q, -0.5)[0] == "passed" and grade_answer(q, 0.51)[0] == "failed"


def test_check_on_a_question_explains_only_once_right(private, capsys):
    result = check("99.Q1", "a")
    out = capsys.readouterr().out
    assert (result.passed, result.points, result.max_points, result.status) == (False, 0, 2, "failed")
    assert out.splitlines() == [
        "Question 99.Q1 failed: 0/2 points",
        "  problem:  'a' is not the right choice",
        "  hint 1/2: Think of a pair.",
        '  more:     check("99.Q1", q1_answer, hint=2) shows hint 2 of 2',
    ]
    assert "pair." in out and "because of the pair" not in out  # the explanation waits for the right answer
    result = check("99.Q1", "b")
    out = capsys.readouterr().out
    assert (result.passed, result.points, result.status) == (True, 2, "passed")
    assert out.splitlines() == ["Question 99.Q1 passed: 2/2 points",
                                "  why:      Two is the answer because of the pair."]


def test_check_on_an_unanswered_question_says_so(private):
    result = check("99.Q2", None, verbose=False)
    assert (result.status, result.points) == ("not done", 0)
    assert result.message.splitlines()[:2] == [
        "Question 99.Q2 is not answered yet: 0/1 points",
        "  Replace None in `q2_answer = None` with your answer (a number),"]
    assert "hint" not in result.message
    assert "hint:     One in four." in check("99.Q2", None, hint=1, verbose=False).message


def test_a_question_hint_tier_on_request_and_out_of_range(private):
    message = check("99.Q1", "c", hint=2, verbose=False).message
    assert "  hint 2/2: Count its members." in message and "more:" not in message
    with pytest.raises(ValueError, match=r"question 99.Q1 has 2 hints: ask for hint=1 or hint=2 \(got hint=3\)"):
        check("99.Q1", "c", hint=3)
    with pytest.raises(ValueError, match="only one hint"):
        check("99.Q2", 0.3, hint=2)


# --- tiered hints on exercises ------------------------------------------------------------------

def test_an_exercise_failure_shows_tier_one_and_how_to_ask_for_more(private):
    message = check("99.1", lambda x: x + 1, verbose=False).message
    lines = message.splitlines()
    assert lines[1] == "  case 2 of 4: two"  # the failing case is named (x + 1 is right on x = 1)
    assert lines[-2:] == ["  hint 1/3: Twice the input.",
                          '  more:     check("99.1", double, hint=2) shows hint 2 of 3']


@pytest.mark.parametrize(("tier", "text", "more"), [
    (1, "Twice the input.", True), (2, "Add the input to itself.", True), (3, "Or multiply by two.", False)])
def test_hint_k_shows_tier_k(private, tier, text, more):
    lines = check("99.1", lambda x: x + 1, hint=tier, verbose=False).message.splitlines()
    assert f"  hint {tier}/3: {text}" in lines
    assert [line.startswith("  more:") for line in lines].count(True) == int(more)
    assert all("Twice the input." not in line for line in lines) or tier == 1


def test_a_hint_can_be_asked_before_starting_and_errors_show_it_too(private):
    def stub(x):
        raise NotImplementedError("Exercise 99.1")

    assert "hint" not in check("99.1", stub, verbose=False).message
    assert "  hint 2/3: Add the input to itself." in check("99.1", stub, hint=2, verbose=False).message

    def crash(x):
        raise KeyError(x)

    assert "  hint 3/3: Or multiply by two." in check("99.1", crash, hint=3, verbose=False).message


@pytest.mark.parametrize(("hint", "error", "message"), [
    (0, ValueError, r"exercise 99.1 has 3 hints: ask for hint=1, hint=2 or hint=3 \(got hint=0\)"),
    (4, ValueError, r"got hint=4"),
    (True, TypeError, r"tier number"),
    ("2", TypeError, r"tier number"),
])
def test_a_hint_tier_that_does_not_exist_is_a_clear_error(private, hint, error, message):
    with pytest.raises(error, match=message):
        check("99.1", lambda x: 2 * x, hint=hint, verbose=False)


def test_a_one_tier_hint_reads_as_before():
    ex = Exercise(id="99.2", title="t", points=1, reference=lambda x: 2 * x, cases=_double_cases,
                  function="double", hint="Multiply by two.", notebook="99_test")
    assert ex.hint == ex.hints == ("Multiply by two.",)
    from qlearn.grading.checker import evaluate

    message = evaluate(ex, lambda x: x, watch=False)[1]
    assert message.splitlines()[-1] == "  hint:     Multiply by two." and "more:" not in message


# --- the grader reads the literal and agrees with check -----------------------------------------

def test_read_answer_takes_the_last_top_level_literal():
    cells = ['q1_answer = None  # your answer', '%time x = 1\nq1_answer = "a"', "def f():\n    q1_answer = 'c'",
             "for i in range(2):\n    q1_answer = 'c'", "q1_answer: str = 'b'", "this is ( not python"]
    assert read_answer(cells, "q1_answer") == ("found", "b")
    assert read_answer(cells[:1], "q1_answer") == ("found", None)
    assert read_answer(cells[2:4], "q1_answer") == ("missing", None)
    assert read_answer(["a = q1_answer = -2.5"], "q1_answer") == ("found", -2.5)
    assert read_answer(["q1_answer = 'b'", "q1_answer = answer()"], "q1_answer") == ("not literal", "answer()")
    assert read_answer(["q1_answer = __import__('os').system('true')"], "q1_answer")[0] == "not literal"


ANSWERS = ["'b'", "' B '", "'a'", "'z'", "2", "None", "['b']"]


@pytest.mark.parametrize("literal", ANSWERS)
def test_the_grader_and_check_agree_on_a_choice(private, literal):
    row = _score_question(QUESTIONS["99.Q1"], [f"q1_answer = {literal}"])
    result = check("99.Q1", eval(literal), verbose=False)
    assert (row["status"], row["points"], row["message"]) == (result.status, result.points, result.message)


@pytest.mark.parametrize("literal", ["0.25", "0.2524", "0.26", "-0.25", "'0.25'", "True", "None", "1e400"])
def test_the_grader_and_check_agree_on_a_number(private, literal):
    row = _score_question(QUESTIONS["99.Q2"], [f"q2_answer = {literal}"])
    result = check("99.Q2", eval(literal), verbose=False)
    assert (row["status"], row["points"], row["message"]) == (result.status, result.points, result.message)


def test_the_grader_runs_no_code_for_a_question(private, tmp_path):
    marker = tmp_path / "ran"
    row = _score_question(QUESTIONS["99.Q1"], [f"q1_answer = open({str(marker)!r}, 'w').write('b') and 'b'"])
    assert row["status"] == "error" and row["points"] == 0 and "literal" in row["message"]
    assert not marker.exists()
    row = _score_question(QUESTIONS["99.Q1"], ["answer = 'b'"])
    assert row["status"] == "not found" and "q1_answer = <your answer>" in row["message"]


# --- notebooks: a question in lab 00 ------------------------------------------------------------

@pytest.fixture
def lab00_question(monkeypatch):
    assert len(EXERCISES) > 0
    monkeypatch.setattr(registry, "_QUESTIONS", dict(registry._QUESTIONS))
    return register(Question(id="00.Q9", title="Codes of int4", points=2, notebook="00_welcome",
                             variable="q9_answer", answer=16, explanation="Four bits: 2**4 patterns.",
                             hint=("Count the bit patterns.", "Each bit doubles the count.")))


def _question_cells(answer="16", check_cell=True, tag=True, heading="**Question 0.8 (3 pts, graded by hand)** Why?"):
    cells = [new_markdown_cell("### Question 0.Q9 (2 pts): predict, then run\nHow many codes has int4?"),
             new_code_cell(f"### BEGIN SOLUTION\nq9_answer = {answer}\n### END SOLUTION")]
    if check_cell:
        cells.append(new_code_cell('check("00.Q9", q9_answer)'))
    answer_cell = new_markdown_cell("Because the model answer says so.")
    if tag:
        answer_cell.metadata["tags"] = ["manual-grade"]
    return cells + [new_markdown_cell(heading), answer_cell]


def _lab00(**kwargs):
    from qlearn.grading.clean import read_notebook
    from qlearn.grading.registry import _load_labs  # noqa: F401 (the catalogue is loaded already)
    from pathlib import Path

    nb = read_notebook(Path(__file__).resolve().parents[1] / "notebooks" / "00_welcome.ipynb")
    nb.cells += _question_cells(**kwargs)
    return nb


def test_the_student_version_of_a_question_is_unanswered(lab00_question):
    nb = _lab00()
    regions = [r for r in solution_regions(nb, "00_welcome.ipynb") if r.exercise_id == "00.Q9"]
    assert [(r.exercise_id, r.function, r.lines) for r in regions] == [("00.Q9", "q9_answer", ("q9_answer = 16",))]
    student = build_student_notebook(nb, "00_welcome.ipynb")
    sources = [c.source for c in student.cells]
    assert "q9_answer = None  # your answer" in sources and "q9_answer = 16" not in "\n".join(sources)
    assert sources[-1] == MANUAL_ANSWER and "model answer" not in "\n".join(sources)
    namespace = {"check": check}
    exec(sources[sources.index("q9_answer = None  # your answer")], namespace)
    assert check("00.Q9", namespace["q9_answer"], verbose=False).status == "not done"


@pytest.mark.parametrize("answer", ["answer()", "16\nq9_answer = 15", "16\nx = 1"])
def test_a_question_region_must_hold_one_literal(lab00_question, answer):
    with pytest.raises(StudentVersionError, match="exactly one assignment of a literal"):
        solution_regions(_lab00(answer=answer), "00_welcome.ipynb")


def test_nbgrader_metadata_of_questions(lab00_question):
    nb = _lab00()
    n = len(nb.cells)
    cells = nbgrader_cells(nb, "00_welcome.ipynb")
    meta = {i - n: (m["grade_id"], m["solution"], m["grade"], m["locked"], m.get("points"))
            for i, m in cells.items() if i >= n - 5}
    assert meta == {-5: ("question00_Q9", False, False, True, None),
                    -4: ("ex00_Q9", True, False, False, None),
                    -3: ("check00_Q9", False, True, True, 2),
                    -2: ("question00_8", False, False, True, None),
                    -1: ("manual00_8", True, True, False, 3)}
    again = add_nbgrader_metadata(add_nbgrader_metadata(nb, "00_welcome.ipynb"), "00_welcome.ipynb")
    assert json.dumps([c.metadata for c in again.cells], sort_keys=True) == json.dumps(
        [c.metadata for c in add_nbgrader_metadata(nb, "00_welcome.ipynb").cells], sort_keys=True)
    assert manual_answer_cells(nb, "00_welcome.ipynb") == [(n - 1, "00.8", 3)]


def test_nbgrader_refuses_a_question_checked_in_its_answer_cell_or_not_at_all(lab00_question):
    nb = _lab00(check_cell=False)
    with pytest.raises(NbgraderMetadataError, match="question 00.Q9 of lab 00 has no check cell"):
        nbgrader_cells(nb, "00_welcome.ipynb")
    nb.cells[-3].source += '\ncheck("00.Q9", q9_answer)'
    with pytest.raises(NbgraderMetadataError, match="cell of its own"):
        nbgrader_cells(nb, "00_welcome.ipynb")


@pytest.mark.parametrize(("heading", "message"), [
    ("**Question 0.8** Why?", "must give its points"),
    ("**Question 0.8 (3 pts)** Why?", "graded by hand"),
    ("Why? (no heading at all)", None),
])
def test_a_manual_answer_needs_a_heading_with_points_graded_by_hand(lab00_question, heading, message):
    nb = _lab00(heading=heading)
    if message is None:  # the nearest question heading above is 00.Q9's, which is not graded by hand
        message = "graded by hand"
    with pytest.raises(NbgraderMetadataError, match=message):
        nbgrader_cells(nb, "00_welcome.ipynb")


def test_the_grader_scores_a_question_from_the_notebook(lab00_question, tmp_path):
    for answer, points in (("16", 2), ("15", 0)):
        path = tmp_path / answer / "00_welcome.ipynb"
        path.parent.mkdir()
        nb = _lab00(answer=answer)
        path.write_text(json.dumps(nb), encoding="utf-8")
        grade = grade_notebook(path, GradeOptions(execute=False, hidden_seeds=(1,)))
        assert grade.error is None, grade.error
        rows = {row["id"]: row for row in grade.exercises}
        assert list(rows)[-1] == "00.Q9" and rows["00.Q9"]["points"] == points
        assert grade.max_score == sum(item.points for item in registry.items_for_lab("00"))  # 00.Q9 included
        assert rows["00.Q9"]["message"] == check("00.Q9", int(answer), verbose=False).message
