#!/usr/bin/env python3
"""Set up qlearn's environment and open the labs or run the tests.

    python3 run.py lab     set up .venv (first time only), then open JupyterLab on notebooks/
    python3 run.py test    set up .venv (first time only), then run the whole test suite

Set-up creates a virtual environment in ``.venv`` (or in $QLEARN_VENV), installs the pinned
``requirements.txt`` and qlearn itself (``pip install -e .``), and writes a stamp. A rerun skips the
install in well under a second unless requirements.txt, pyproject.toml or the Python version changed.
Only the standard library is used here, so this runs on any Python 3.11+.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

ROOT = Path(__file__).resolve().parent
MIN_PYTHON = (3, 11)
PIP_NOISE = ("is ignored: it is neither a file nor a directory",)  # harmless warnings of some pip configs


def venv_dir() -> Path:
    return Path(os.environ.get("QLEARN_VENV", ROOT / ".venv")).resolve()


def venv_python(venv: Path) -> Path:
    return venv / ("Scripts/python.exe" if os.name == "nt" else "bin/python")


def stamp_text() -> str:
    digest = hashlib.sha256()
    for name in ("requirements.txt", "pyproject.toml"):
        digest.update((ROOT / name).read_bytes())
    digest.update(sys.version.encode())
    return digest.hexdigest()


def run(cmd: list[str], *, filter_noise: bool = False) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    if not filter_noise:
        return subprocess.call(cmd, cwd=ROOT)
    proc = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    assert proc.stdout is not None
    for line in proc.stdout:
        if not any(noise in line for noise in PIP_NOISE):
            print(line, end="", flush=True)
    return proc.wait()


def setup() -> Path:
    """Create or refresh the virtual environment; return its python."""
    if sys.version_info < MIN_PYTHON:
        sys.exit(
            f"qlearn needs Python {MIN_PYTHON[0]}.{MIN_PYTHON[1]} or newer, but this is "
            f"{sys.version.split()[0]}. Run this script with a newer interpreter, e.g. "
            f"`python3.11 run.py ...` (Windows: `py -3.11 run.py ...`)."
        )
    venv = venv_dir()
    python = venv_python(venv)
    stamp = venv / "qlearn-setup.stamp"
    if python.exists() and stamp.exists() and stamp.read_text() == stamp_text():
        return python
    started = time.perf_counter()
    if not python.exists():
        print(f"Creating a virtual environment in {venv} ...", flush=True)
        if run([sys.executable, "-m", "venv", str(venv)]) != 0:
            sys.exit("Could not create the virtual environment (on Debian/Ubuntu: apt install python3-venv).")
    print("Installing the pinned requirements (the first time takes a few minutes: torch is large) ...")
    pip = [str(python), "-m", "pip", "install", "--disable-pip-version-check", "-q"]
    if run(pip + ["-r", "requirements.txt"], filter_noise=True) != 0:
        sys.exit("pip could not install requirements.txt; see the messages above.")
    if run(pip + ["--no-deps", "-e", "."], filter_noise=True) != 0:
        sys.exit("pip could not install qlearn itself (pip install -e .); see the messages above.")
    stamp.write_text(stamp_text())
    print(f"Set-up finished in {time.perf_counter() - started:.0f} s.", flush=True)
    return python


def lab(python: Path, extra: list[str]) -> int:
    return run([str(python), "-m", "jupyter", "lab", "--notebook-dir", str(ROOT / "notebooks"), *extra])


def _count(report: Path) -> tuple[int, int, int]:
    """(passed, failed, skipped) from a pytest JUnit XML report."""
    if not report.exists():
        return 0, 0, 0
    tests = failed = skipped = 0
    for suite in ET.parse(report).getroot().iter("testsuite"):
        tests += int(suite.get("tests", 0))
        failed += int(suite.get("failures", 0)) + int(suite.get("errors", 0))
        skipped += int(suite.get("skipped", 0))
    return tests - failed - skipped, failed, skipped


def test(python: Path, extra: list[str]) -> int:
    """Run the test suite in three stages and print one combined summary line."""
    reports = venv_dir() / "test-reports"
    reports.mkdir(exist_ok=True)
    solutions = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks").glob("*.ipynb"))
    students = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "notebooks" / "student").glob("*.ipynb"))
    sanitize = ["--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]
    stages = [
        ("unit, property, oracle and doctests", ["tests", "qlearn", "--doctest-modules"]),
        ("solution notebooks, outputs compared (nbval)", ["--nbval", *sanitize, *solutions] if solutions else None),
        ("student notebooks, run top to bottom (nbval-lax)", ["--nbval-lax", *students] if students else None),
    ]
    env_note = {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    os.environ.update(env_note)
    totals = [0, 0, 0]
    failed_stages = []
    started = time.perf_counter()
    for i, (title, args) in enumerate(stages, 1):
        if args is None:
            print(f"\n== stage {i}: {title}: no notebooks yet, skipped", flush=True)
            continue
        print(f"\n== stage {i}: {title}", flush=True)
        report = reports / f"stage{i}.xml"
        report.unlink(missing_ok=True)
        code = run([str(python), "-m", "pytest", "-q", f"--junitxml={report}", *args, *extra])
        for k, n in enumerate(_count(report)):
            totals[k] += n
        if code != 0:
            failed_stages.append(f"stage {i} ({title}) exited with {code}")
    minutes = (time.perf_counter() - started) / 60
    print(f"\nqlearn test suite finished in {minutes:.1f} min")
    for line in failed_stages:
        print("FAILED:", line)
    print(f"total: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped", flush=True)
    return 1 if failed_stages or totals[1] else 0


def main(argv: list[str]) -> int:
    commands = {"lab": lab, "test": test, "setup": None}
    if not argv or argv[0] not in commands:
        print(__doc__.strip())
        return 2
    python = setup()
    action = commands[argv[0]]
    return 0 if action is None else action(python, argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
