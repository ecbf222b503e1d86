"""How much code each exercise asks for: the lines of every solution region, per lab, with the targets.

    .venv/bin/python tools/exercise_sizes.py                  # every notebooks/NN_*.ipynb
    .venv/bin/python tools/exercise_sizes.py notebooks/06_pruning_fundamentals.ipynb

A line counts when it is code: not blank and not a comment (``# ...``). The regions are the ones the
student version replaces (``### BEGIN SOLUTION`` ... ``### END SOLUTION``, found by
:func:`qlearn.grading.student.solution_regions`); an exercise with several regions (a helper and its
main function) counts them together. Graded questions (``NN.QK``) are not exercises and are left out.

The targets (issue 13, item 5), one ``PASS``/``MISS`` line each; the exit status is 1 if one is missed
(or a notebook's solution regions cannot be read: an ``ERROR`` line names it):

- the median exercise, over all labs, has at least 6 lines;
- outside lab 00, no exercise is a one-liner;
- every lab has at least one exercise of 10 lines or more.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

from qlearn.grading.clean import read_notebook
from qlearn.grading.exercise import id_sort_key
from qlearn.grading.student import solution_regions

__all__ = ["MEDIAN_TARGET", "SUBSTANTIVE", "code_lines", "exercise_sizes", "main", "targets"]

MEDIAN_TARGET = 6  # lines: the median exercise over all labs
SUBSTANTIVE = 10  # lines: every lab has at least one exercise this long
ONE_LINER_EXEMPT = {"00"}  # lab 00 is the warm-up


def code_lines(lines: list[str] | tuple[str, ...]) -> int:
    """The number of code lines: neither blank nor a comment.

    >>> code_lines(["    # the range", "", "    lo = min(x, 0)", "    return lo  # done"])
    2
    """
    return sum(1 for line in lines if line.strip() and not line.strip().startswith("#"))


def _is_question(exercise_id: str) -> bool:
    return "Q" in exercise_id.split(".", 1)[1].upper()


def exercise_sizes(path: Path) -> dict[str, int]:
    """``{exercise_id: code lines}`` for one solution notebook, in id order; questions left out."""
    sizes: dict[str, int] = {}
    for region in solution_regions(read_notebook(path), path.name):
        if _is_question(region.exercise_id):
            continue
        sizes[region.exercise_id] = sizes.get(region.exercise_id, 0) + code_lines(region.lines)
    return dict(sorted(sizes.items(), key=lambda item: id_sort_key(item[0])))


def targets(per_lab: dict[str, dict[str, int]]) -> list[tuple[bool, str]]:
    """``[(met, line), ...]``: the three targets of issue 13, measured on ``{lab: {id: lines}}``."""
    every = [n for sizes in per_lab.values() for n in sizes.values()]
    median = statistics.median(every) if every else 0
    one_liners = [i for lab, sizes in per_lab.items() if lab not in ONE_LINER_EXEMPT
                  for i, n in sizes.items() if n <= 1]
    thin = [lab for lab, sizes in per_lab.items() if not any(n >= SUBSTANTIVE for n in sizes.values())]
    return [
        (median >= MEDIAN_TARGET,
         f"median over all labs: {median:g} lines (target >= {MEDIAN_TARGET}, {len(every)} exercises)"),
        (not one_liners,
         f"one-liners outside lab 00: {len(one_liners)} (target 0)"
         + (f": {', '.join(one_liners)}" if one_liners else "")),
        (not thin,
         f"labs without an exercise of {SUBSTANTIVE}+ lines: {len(thin)} (target 0)"
         + (f": {', '.join(thin)}" if thin else "")),
    ]


def _default_notebooks() -> list[Path]:
    folder = Path(__file__).resolve().parents[1] / "notebooks"
    return sorted(p for p in folder.glob("[0-9][0-9]_*.ipynb"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tools/exercise_sizes.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("notebooks", nargs="*", type=Path,
                        help="solution notebooks (default: every notebooks/NN_*.ipynb)")
    args = parser.parse_args(argv)
    paths = args.notebooks or _default_notebooks()
    per_lab: dict[str, dict[str, int]] = {}
    names: dict[str, str] = {}
    errors = []
    for path in paths:
        try:
            sizes = exercise_sizes(path)
        except (ValueError, OSError) as exc:  # a notebook whose regions cannot be read: say so, go on
            errors.append(f"ERROR {path.name}: {exc}")
            continue
        lab = path.name[:2]
        per_lab.setdefault(lab, {}).update(sizes)
        names[lab] = path.stem
    width = max((len(i) for sizes in per_lab.values() for i in sizes), default=4)
    print(f"{'lab':<4} {'exercise':<{max(width, 8)}} {'lines':>5}")
    for lab, sizes in sorted(per_lab.items()):
        for exercise_id, n in sizes.items():
            print(f"{lab:<4} {exercise_id:<{max(width, 8)}} {n:>5}")
    print()
    print(f"{'lab':<4} {'notebook':<34} {'exercises':>9} {'median':>6} {'min':>4} {'max':>4}  sizes")
    for lab, sizes in sorted(per_lab.items()):
        values = list(sizes.values())
        if values:
            print(f"{lab:<4} {names[lab]:<34} {len(values):>9} {statistics.median(values):>6g} "
                  f"{min(values):>4} {max(values):>4}  {' '.join(str(v) for v in values)}")
        else:
            print(f"{lab:<4} {names[lab]:<34} {0:>9} {'-':>6} {'-':>4} {'-':>4}")
    print()
    results = targets(per_lab)
    for met, line in results:
        print(("PASS " if met else "MISS ") + line)
    for line in errors:
        print(line)
    return 0 if all(met for met, _ in results) and not errors else 1


if __name__ == "__main__":
    sys.exit(main())
