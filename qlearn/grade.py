"""Grade lab notebooks: run each one headlessly, then let its own kernel check the learner's functions.

    python -m qlearn.grade PATH... [--json] [--timeout SECONDS] [--notebook-timeout SECONDS] [--jobs N]

PATH is a notebook or a folder (searched recursively for ``*.ipynb``, skipping
``.ipynb_checkpoints``). Each notebook runs in its own folder with a fresh kernel of this Python
(``sys.executable``: the grader and the notebook see the same installed packages). A cell that
raises does not stop the run (a broken cell costs only the exercises it breaks). After the last
cell the grader runs one more cell of its own. It re-imports ``qlearn`` from scratch (so nothing
the notebook changed in it counts), looks up each exercise's function by name among the
notebook's variables and runs ``check(..., verbose=False)`` on it. Then it prints one line of JSON
that starts with a secret marker. Only that line is read, so printing "3/3 points" earns nothing.

The lab comes from the notebook metadata ``{"qlearn": {"lab": "02"}}``, or else from the file
name (``02_...``). Exit status: 0 when every notebook was graded, whatever the scores; 1 when a
notebook could not be read or run (bad JSON, a dead kernel, a timeout). That happens only after
all the other notebooks are graded, and stderr says why.
"""

from __future__ import annotations

import argparse
import asyncio
import atexit
import json
import secrets
import sys
import threading
import warnings
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

__all__ = ["NotebookGrade", "find_notebooks", "grade_notebook", "grade_notebooks", "main"]

DEFAULT_TIMEOUT = 120  # seconds per cell
DEFAULT_NOTEBOOK_TIMEOUT = 900  # seconds for a whole notebook

_GRADING_CELL = '''\
def _qlearn_grade_(lab, marker):
    import builtins, importlib, json, sys
    user = builtins.globals()
    for name in [m for m in sys.modules if m == "qlearn" or m.startswith("qlearn.")]:
        del sys.modules[name]  # a fresh qlearn: whatever the notebook patched does not count
    grading = importlib.import_module("qlearn.grading")
    rows = []
    for ex in grading.exercises_for_lab(lab):
        row = {"id": ex.id, "points": 0, "max_points": ex.points, "passed": False}
        fn = user.get(ex.function)
        if not builtins.callable(fn):
            row["status"] = "not found"
        else:
            try:
                result = grading.check(ex.id, fn, verbose=False)
                row.update(points=result.points, passed=result.passed, status=result.status)
            except builtins.Exception as exc:
                row["status"] = "error: " + builtins.type(exc).__name__
        rows.append(row)
    sys.stdout.write(marker + json.dumps(rows) + "\\n")
    sys.stdout.flush()
_qlearn_grade_(__LAB__, __MARKER__)
'''


@dataclass
class NotebookGrade:
    """The grade of one notebook. ``error`` says why it could not be graded (``None`` if it was)."""

    notebook: str
    score: int = 0
    max_score: int = 0
    exercises: list[dict[str, Any]] = field(default_factory=list)
    error: str | None = None


def find_notebooks(paths: list[Path]) -> tuple[list[Path], list[str]]:
    """The notebooks named by ``paths`` (folders searched recursively), and the paths that do not exist."""
    found, missing = [], []
    for path in paths:
        if path.is_dir():
            found.extend(p for p in sorted(path.rglob("*.ipynb"))
                         if ".ipynb_checkpoints" not in p.relative_to(path).parts and p.is_file())
        elif path.is_file():
            found.append(path)
        else:
            missing.append(str(path))
    return list(dict.fromkeys(found)), missing


def _kernel_manager_class():
    """A kernel manager that always starts ipykernel on this interpreter (no user kernelspec lookup)."""
    from ipykernel.kernelspec import RESOURCES, get_kernel_dict
    from jupyter_client.kernelspec import KernelSpec, KernelSpecManager
    from jupyter_client.manager import AsyncKernelManager
    from traitlets import default

    class ThisPythonSpecs(KernelSpecManager):
        def get_kernel_spec(self, kernel_name: str) -> KernelSpec:
            # log level ERROR: no start-up notices (such as "running over TCP") among the grades
            spec = get_kernel_dict(extra_arguments=["--IPKernelApp.log_level=ERROR"])
            return KernelSpec(argv=spec["argv"], display_name=spec["display_name"], language="python",
                              resource_dir=RESOURCES)

    class ThisPythonKernelManager(AsyncKernelManager):
        @default("kernel_spec_manager")
        def _default_specs(self) -> KernelSpecManager:
            return ThisPythonSpecs(data_dir=self.data_dir)

    return ThisPythonKernelManager


def _read(path: Path) -> dict:
    """The notebook as a dict, or ``ValueError`` saying why it cannot be read (json only: fast)."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError) as exc:
        raise ValueError(f"cannot read the file ({exc})") from None
    except json.JSONDecodeError as exc:
        raise ValueError(f"not a readable notebook (invalid JSON: {exc})") from None
    if not isinstance(data, dict) or not isinstance(data.get("cells"), list):
        raise ValueError("not a readable notebook (no list of cells)")
    if data.get("nbformat") != 4:
        raise ValueError(f"not a readable notebook (nbformat {data.get('nbformat')!r}; only 4 is supported)")
    return data


def _describe_cell(cell: Any, index: int) -> str:
    first = next((line.strip() for line in cell.source.splitlines() if line.strip()), "")
    first = first if len(first) <= 40 else first[:37] + "..."
    return f"cell {index + 1} ({first!r})"


async def _stop_kernel(client) -> None:
    """Make sure the kernel is gone, also when it failed to start or the run was cancelled."""
    atexit.unregister(client._cleanup_kernel)
    if getattr(client, "km", None) is not None:
        try:
            await client._async_cleanup_kernel()
        except Exception:  # already dead or never started: nothing left to stop
            pass


def _grading_rows(outputs: list[dict], marker: str) -> list[dict] | None:
    for output in outputs:
        if output.get("output_type") == "stream" and output.get("name") == "stdout":
            for line in output.get("text", "").splitlines():
                if line.startswith(marker):
                    return json.loads(line[len(marker):])
    return None


def grade_notebook(path: str | Path, *, timeout: float = DEFAULT_TIMEOUT,
                   notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT) -> NotebookGrade:
    """Run the notebook at ``path`` in a fresh kernel and grade its exercises (see the module doc)."""
    return asyncio.run(_grade(Path(path), timeout, notebook_timeout))


def grade_notebooks(paths: list[Path], *, timeout: float = DEFAULT_TIMEOUT,
                    notebook_timeout: float = DEFAULT_NOTEBOOK_TIMEOUT, jobs: int = 1) -> list[NotebookGrade]:
    """Grade several notebooks, ``jobs`` at a time (each in its own kernel), in the order given."""

    async def run_all() -> list[NotebookGrade]:
        slots = asyncio.Semaphore(jobs)

        async def one(number: int, path: Path) -> NotebookGrade:
            async with slots:
                print(f"[{number}/{len(paths)}] grading {path}", file=sys.stderr, flush=True)
                grade = await _grade(path, timeout, notebook_timeout)
                if grade.error:
                    print(f"error: {path}: {grade.error}", file=sys.stderr, flush=True)
                return grade

        return list(await asyncio.gather(*(one(i, p) for i, p in enumerate(paths, start=1))))

    return asyncio.run(run_all())


async def _grade(path: Path, timeout: float, notebook_timeout: float) -> NotebookGrade:
    from qlearn.grading import exercises_for_lab
    from qlearn.grading.registry import notebook_lab

    grade = NotebookGrade(notebook=str(path))
    try:
        data = _read(path)
        lab = notebook_lab(data, path)
    except ValueError as exc:
        grade.error = str(exc)
        return grade
    if lab is None:
        grade.error = ('cannot tell which lab this is: no {"qlearn": {"lab": "NN"}} in the notebook '
                       "metadata and the file name does not start with NN_")
        return grade
    exercises = exercises_for_lab(lab)
    grade.max_score = sum(ex.points for ex in exercises)
    grade.exercises = [{"id": ex.id, "points": 0, "max_points": ex.points, "passed": False,
                        "status": "not graded"} for ex in exercises]
    if not exercises:
        return grade

    import nbformat  # imported only now: it takes a few seconds
    from nbclient import NotebookClient
    from nbclient.exceptions import CellTimeoutError, DeadKernelError

    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # cells without an id, and the like
            nb = nbformat.reads(json.dumps(data), as_version=4)
    except Exception as exc:  # noqa: BLE001 - whatever nbformat finds wrong
        grade.error = f"not a readable notebook ({type(exc).__name__}: {str(exc)[:200]})"
        return grade
    marker = f"QLEARN-GRADE-{secrets.token_hex(8)}:"
    nb.cells.append(nbformat.v4.new_code_cell(
        _GRADING_CELL.replace("__LAB__", repr(lab)).replace("__MARKER__", repr(marker))
    ))
    running = {"cell": None}
    client = NotebookClient(
        nb, timeout=timeout, allow_errors=True, kernel_name="python3", shell_timeout_interval=1,
        kernel_manager_class=_kernel_manager_class(), shutdown_kernel="immediate",
        resources={"metadata": {"path": str(path.resolve().parent)}},
        on_cell_start=lambda cell, cell_index: running.update(cell=_describe_cell(cell, cell_index)),
    )
    out_of_time = threading.Event()

    def stop_kernel() -> None:  # the whole-notebook limit: kill the kernel, and the run ends with it
        out_of_time.set()
        process = getattr(getattr(getattr(client, "km", None), "provisioner", None), "process", None)
        if process is not None:
            process.kill()

    guard = threading.Timer(notebook_timeout, stop_kernel)
    guard.daemon = True
    guard.start()
    try:
        await client.async_execute()
    except Exception as exc:  # noqa: BLE001 - every failure to run is reported, then the next notebook
        where = running["cell"]
        if out_of_time.is_set():
            grade.error = f"the notebook did not finish within {notebook_timeout:g} s (it was at {where})"
        elif isinstance(exc, CellTimeoutError):
            grade.error = (f"{where} did not finish within {timeout:g} s "
                           "(an endless loop? a long computation?)")
        elif isinstance(exc, DeadKernelError):
            grade.error = f"the kernel died while running {where}"
        else:  # a kernel that cannot start, a broken message, ...
            grade.error = f"the notebook could not be run ({type(exc).__name__}: {str(exc)[:300]})"
        return grade
    finally:
        guard.cancel()
        await _stop_kernel(client)

    last = nb.cells[-1]
    rows = _grading_rows(last.get("outputs", []), marker)
    if rows is None:
        errors = [f"{o.get('ename')}: {o.get('evalue')}" for o in last.get("outputs", [])
                  if o.get("output_type") == "error"]
        grade.error = "the grading cell failed" + (f" ({errors[0]})" if errors else "")
        return grade
    grade.exercises = rows
    grade.score = sum(row["points"] for row in rows)
    return grade


def _table(grades: list[NotebookGrade]) -> str:
    width = max([len("notebook")] + [len(g.notebook) for g in grades])
    lines = [f"{'notebook':<{width}}  {'score':>7}  exercises"]
    for g in grades:
        if g.error:
            lines.append(f"{g.notebook:<{width}}  {'ERROR':>7}  {g.error}")
            continue
        per = "  ".join(f"{row['id']} {row['points']}/{row['max_points']}" for row in g.exercises)
        lines.append(f"{g.notebook:<{width}}  {f'{g.score}/{g.max_score}':>7}  {per or '(no exercises)'}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m qlearn.grade",
        description="Run lab notebooks headlessly and grade their exercises.",
    )
    parser.add_argument("paths", nargs="+", type=Path, metavar="PATH", help="notebooks and/or folders")
    parser.add_argument("--json", action="store_true", help="print a JSON list instead of a table")
    parser.add_argument("--timeout", type=float, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help=f"time limit per cell (default {DEFAULT_TIMEOUT})")
    parser.add_argument("--notebook-timeout", type=float, default=DEFAULT_NOTEBOOK_TIMEOUT, metavar="SECONDS",
                        help=f"time limit per notebook (default {DEFAULT_NOTEBOOK_TIMEOUT})")
    parser.add_argument("--jobs", type=int, default=1, metavar="N",
                        help="grade N notebooks at a time, each in its own kernel (default 1)")
    args = parser.parse_args(argv)
    if args.timeout <= 0 or args.notebook_timeout <= 0:
        parser.error("timeouts must be positive")
    if args.jobs < 1:
        parser.error("--jobs must be at least 1")

    notebooks, missing = find_notebooks(args.paths)
    for path in missing:
        print(f"error: {path}: no such file or folder", file=sys.stderr)
    if not notebooks:
        print("error: no notebooks to grade", file=sys.stderr)
        return 1
    grades = grade_notebooks(notebooks, timeout=args.timeout, notebook_timeout=args.notebook_timeout,
                             jobs=args.jobs)
    if args.json:
        print(json.dumps([asdict(g) for g in grades], indent=1))
    else:
        print(_table(grades))
    return 1 if missing or any(g.error for g in grades) else 0


if __name__ == "__main__":
    sys.exit(main())
