"""``python -m qlearn.grade``: the short name of the grader, :mod:`qlearn.grading.grade`.

Everything lives in ``qlearn/grading/grade.py``; this module only re-exports it, so that
``python -m qlearn.grade PATH...`` and ``python -m qlearn.grading.grade PATH...`` are the same
command.
"""

from qlearn.grading.grade import (
    GradeOptions,
    NotebookGrade,
    find_notebooks,
    grade_notebook,
    grade_notebooks,
    load_instructor_cases,
    main,
)

__all__ = ["GradeOptions", "NotebookGrade", "find_notebooks", "grade_notebook", "grade_notebooks",
           "load_instructor_cases", "main"]

if __name__ == "__main__":
    import sys

    sys.exit(main())
