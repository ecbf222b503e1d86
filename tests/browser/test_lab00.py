"""Lab 00 in a real browser: JupyterLab in headless Chromium, driven by Playwright.

What a learner does, checked end to end on the *student* version (notebooks/student/00_welcome.ipynb):

1. open the lab, *Run > Run All Cells*: every cell runs and none raises, although no exercise is done;
   then move the widget's slider, and the picture it draws changes;
2. type a wrong ``clamp`` into exercise 00.1's cell, run it and its check: the feedback says
   "failed", names the first failing case; type a right one: the feedback says "passed".

The fixtures (tests/browser/conftest.py) start JupyterLab on a temporary copy of the notebooks and
skip the stage, with the reason, where no Chromium/Chrome or no Playwright is installed. The two tests
share one page and kernel; each opens the notebook itself, so either also runs alone.
"""

from __future__ import annotations

import base64
import re

import numpy as np

from qlearn.grading import check, get_exercise

NOTEBOOK = "00_welcome.ipynb"

# Exercise 00.1 as a learner might type it. The text goes in as one input, like a paste, so the
# editor's auto-indent cannot change it (Lab.replace_source checks what the cell then holds).
WRONG_CLAMP = """def clamp(x, lo, hi):
    return np.minimum(x, hi)  # forgets the lower end
"""
RIGHT_CLAMP = """def clamp(x, lo, hi):
    \"\"\"Clamp every value of the array x into [lo, hi]; the result keeps x's dtype.\"\"\"
    return np.minimum(np.maximum(x, lo), hi)
"""


def _is_exercise_cell(kind: str, source: str) -> bool:
    return kind == "code" and source.lstrip().startswith("def clamp(")


def _is_check_cell(kind: str, source: str) -> bool:
    return kind == "code" and re.search(r"""check\(\s*["']00\.1["']\s*,\s*clamp\s*\)""", source) is not None


def _failing_case_name(source: str) -> str:
    """The name of the case that the check reports for the function in ``source``.

    Computed here, outside the browser, with the same ``check`` the notebook calls: the browser must
    show the same case.
    """
    namespace = {"np": np}
    exec(source, namespace)  # our own constant above
    result = check("00.1", namespace["clamp"], verbose=False)
    assert result.status == "failed", f"check itself does not reject {source!r}: {result!r}"
    named = [case.name for case in get_exercise("00.1").make_cases() if case.name in result.message]
    assert named, f"the check's message names none of exercise 00.1's cases:\n{result.message}"
    return max(named, key=len)  # the longest, should one name contain another


def test_run_all_then_move_the_slider(lab):
    lab.open(NOTEBOOK)
    seconds = lab.run_all_from_menu()
    errors = lab.errors()
    assert not errors, "cells of the student notebook raised errors under Run All:\n" + "\n".join(
        f"  cell {index} ({first_line!r}): {error}\n{traceback}" for index, first_line, error, traceback in errors)
    assert not lab.not_run(), f"cells that Run All never ran: {lab.not_run()}"
    print(f"Run All took {seconds:.1f} s")

    # The explorer: an ipywidgets slider whose callback redraws a matplotlib figure (a PNG <img>).
    slider = lab.page.locator(".jp-OutputArea-output .widget-slider").first
    slider.scroll_into_view_if_needed()
    widget = slider.locator("xpath=ancestor::div[contains(@class, 'jp-OutputArea-output')][1]")
    widget.locator("img").first.wait_for(state="attached")
    before = widget.locator("img").first.get_attribute("src") or ""
    assert before.startswith("data:image/png;base64,"), f"the widget shows no PNG picture: {before[:80]!r}"
    readout = slider.locator(".widget-readout").first
    value_before = int(readout.text_content().strip())

    # Move the slider with the keyboard, as a learner can: click its handle, press the right arrow.
    handle = slider.locator(".noUi-handle").first
    handle.click()
    handle.press("ArrowRight")
    lab.wait_until("([node, old]) => node.textContent.trim() !== old",
                   f"the slider's readout stayed at {value_before} after ArrowRight on its handle",
                   arg=[readout.element_handle(), str(value_before)])
    value_after = int(readout.text_content().strip())
    assert value_after == value_before + 1, f"the slider moved from {value_before} to {value_after}, not one step"

    # The kernel redraws the figure for the new value: the <img> gets a different PNG.
    lab.wait_until("""([widget, old]) => { const img = widget.querySelector('img');
                                            return !!img && !!img.src && img.src !== old; }""",
                   f"the widget's picture did not change when the slider moved from {value_before} to "
                   f"{value_after}", arg=[widget.element_handle(), before])
    after = widget.locator("img").first.get_attribute("src") or ""
    assert after.startswith("data:image/png;base64,"), f"the new picture is not a PNG: {after[:80]!r}"
    old_png = base64.b64decode(before.split(",", 1)[1])
    new_png = base64.b64decode(after.split(",", 1)[1])
    assert old_png[:8] == new_png[:8] == b"\x89PNG\r\n\x1a\n" and old_png != new_png
    assert not lab.errors(), f"moving the slider raised: {lab.errors()}"
    lab.assert_offline()


def test_wrong_then_right_solution_feedback(lab):
    lab.open(NOTEBOOK)
    exercise = lab.cell_index(_is_exercise_cell, "exercise 00.1's function (def clamp(...))")
    check_cell = lab.cell_index(_is_check_cell, "exercise 00.1's check cell")
    assert check_cell > exercise, f"the check cell ({check_cell}) comes before the exercise ({exercise})"
    lab.run_cell(lab.cell_index(lambda k, s: k == "code", "a code cell"))  # the imports

    # A wrong answer: the check says "failed", with no points, and names the case that fails first.
    lab.replace_source(exercise, WRONG_CLAMP)
    lab.run_cell(exercise)
    feedback = lab.run_cell(check_cell)
    assert "Exercise 00.1 failed: 0/1 points" in feedback, f"feedback after a wrong clamp:\n{feedback}"
    assert "Exercise 00.1 passed" not in feedback, f"feedback after a wrong clamp:\n{feedback}"
    case = _failing_case_name(WRONG_CLAMP)
    assert case in feedback, f"the feedback does not name the failing case {case!r}:\n{feedback}"

    # A right answer: the same check cell now says "passed", with the point.
    lab.replace_source(exercise, RIGHT_CLAMP)
    lab.run_cell(exercise)
    feedback = lab.run_cell(check_cell)
    assert "Exercise 00.1 passed: 1/1 points" in feedback, f"feedback after a right clamp:\n{feedback}"
    assert "Exercise 00.1 failed" not in feedback, f"feedback after a right clamp:\n{feedback}"
    assert not lab.errors(), f"cells raised errors: {lab.errors()}"
    lab.assert_offline()
