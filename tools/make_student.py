"""Regenerate notebooks/student/ from the solution notebooks in notebooks/.

The same as ``python -m qlearn.grading.student`` (pass ``--check`` to only verify that the committed
student versions are up to date); kept here so that it is easy to find.
"""

import sys

from qlearn.grading.student import main

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
