"""The shipped labs meet the lab standard's size targets (issue 13), measured by tools/exercise_sizes.py:
a median of at least 6 lines of the learner's own code per exercise, no one-liner outside lab 00, and
an exercise of 10 lines or more in every lab."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_every_lab_meets_the_exercise_size_targets(capsys):
    spec = importlib.util.spec_from_file_location("exercise_sizes", ROOT / "tools" / "exercise_sizes.py")
    tool = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(tool)
    notebooks = sorted((ROOT / "notebooks").glob("[0-9][0-9]_*.ipynb"))
    assert len(notebooks) >= 13
    status = tool.main([str(p) for p in notebooks])
    out = capsys.readouterr().out
    assert status == 0, out
    assert out.count("PASS") == 3 and "MISS" not in out, out
