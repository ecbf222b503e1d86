"""Execute solution notebooks in place and store their outputs, cleaned (what nbval then compares).

    .venv/bin/python tools/run_notebook.py notebooks/03_granularity.ipynb [more.ipynb ...]

Each notebook runs top to bottom in a fresh ``python3`` kernel with its folder as the working
directory, ``MPLBACKEND=Agg`` and ``PYTHONHASHSEED=0`` (as ``run.py test`` runs them). A cell that
raises stops the run and the file is left unchanged. Then ``qlearn.grading.clean`` renumbers the
execution counts and strips metadata noise, so the diff shows only what changed.

Set ``ATEN_CPU_CAPABILITY``, ``ONEDNN_MAX_CPU_ISA`` or ``OMP_NUM_THREADS`` in the environment to
record on another kernel path; stored outputs must not depend on them (``run.py portability``).
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import nbformat
from nbclient import NotebookClient

from qlearn.grading.clean import clean_notebook, read_notebook, write_notebook


def run_notebook(path: Path, timeout: int = 600) -> float:
    """Execute ``path`` in place; return the seconds it took."""
    nb = read_notebook(path)
    os.environ.setdefault("MPLBACKEND", "Agg")
    os.environ.setdefault("PYTHONHASHSEED", "0")
    started = time.perf_counter()
    client = NotebookClient(nb, timeout=timeout, kernel_name="python3",
                            resources={"metadata": {"path": str(path.resolve().parent)}})
    client.execute()
    seconds = time.perf_counter() - started
    write_notebook(clean_notebook(nbformat.from_dict(nb)), path)
    return seconds


def main(argv: list[str]) -> int:
    if not argv:
        print(__doc__.strip())
        return 2
    for name in argv:
        path = Path(name)
        if not path.is_file():
            print(f"no such notebook: {path}", file=sys.stderr)
            return 2
        print(f"{path}: ran in {run_notebook(path):.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
