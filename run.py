#!/usr/bin/env python3
"""Set up qlearn's environment and open the labs or run the tests.

    python3 run.py lab           set up .venv (first time only), then open JupyterLab on notebooks/
    python3 run.py test          set up .venv (first time only), then run the whole test suite
    python3 run.py portability   the solution notebooks again, outputs compared, with the float
                                 kernels forced onto other instruction sets and one thread
    python3 run.py engines       every lab, outputs compared, on simulated machines with only some
                                 quantized engines (qnnpack only; x86 and fbgemm only)
    python3 run.py ci            test + portability + engines (what .ci/run runs)

Arguments after the command go to pytest (``python3 run.py test -x``).

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


def run(cmd: list[str], *, filter_noise: bool = False, env: dict[str, str] | None = None) -> int:
    print("+", " ".join(str(c) for c in cmd), flush=True)
    if not filter_noise:
        return subprocess.call(cmd, cwd=ROOT, env=env)
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


def venv_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """This process's environment with the venv's scripts first on PATH (nbgrader runs ``alembic``
    from PATH), plus ``extra``."""
    scripts = venv_python(venv_dir()).parent
    return {**os.environ, "PATH": os.pathsep.join([str(scripts), os.environ.get("PATH", "")]), **(extra or {})}


def lab(python: Path, extra: list[str]) -> int:
    return run([str(python), "-m", "jupyter", "lab", "--notebook-dir", str(ROOT / "notebooks"), *extra],
               env=venv_env())


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


def _notebooks(folder: Path) -> list[str]:
    return sorted(str(p.relative_to(ROOT)) for p in folder.glob("*.ipynb"))


SANITIZE = ["--nbval-sanitize-with", "tests/nbval_sanitize.cfg"]

#: Float-kernel settings for the portability stage. Stored outputs were recorded with the machine's
#: own best kernels on 2 threads; learners run AVX-512, AVX2, SSE, NEON and 1..N threads. Each
#: setting forces ATen's vectorized kernels (ATEN_CPU_CAPABILITY) and oneDNN (ONEDNN_MAX_CPU_ISA)
#: onto another instruction set, on one thread, and the compared outputs must not change.
PORTABILITY_SETTINGS: dict[str, dict[str, str]] = {
    "no-simd, 1 thread": {"ATEN_CPU_CAPABILITY": "default", "ONEDNN_MAX_CPU_ISA": "SSE41",
                          "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
    "avx2, 1 thread": {"ATEN_CPU_CAPABILITY": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2",
                       "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1"},
}

#: Simulated machines for the engine stage (tests/engine_sim/README.md): a Mac or ARM Linux has
#: only qnnpack; a Windows PC has no qnnpack.
ENGINE_SIMULATIONS: dict[str, str] = {
    "qnnpack only (Apple silicon, ARM Linux)": "qnnpack",
    "x86 and fbgemm only": "x86,fbgemm",
}


def workers() -> list[str]:
    """pytest-xdist options: one worker per CPU core, at most 2 (``QLEARN_TEST_WORKERS=1`` turns it off).

    ``--dist loadscope`` keeps every notebook (and every test module) on one worker, so a notebook's
    cells still run in order in one kernel; different notebooks run side by side.
    """
    wanted = os.environ.get("QLEARN_TEST_WORKERS", "").strip()
    if wanted and not wanted.isdigit():
        raise SystemExit(f"QLEARN_TEST_WORKERS must be a whole number such as 1 or 2, got {wanted!r}")
    n = int(wanted) if wanted else min(2, os.cpu_count() or 1)
    return ["-n", str(n), "--dist", "loadscope"] if n > 1 else []


def test_stages() -> list[tuple[str, list[str] | None, dict[str, str]]]:
    """The README's test command: (title, pytest arguments or None to skip, extra environment)."""
    solutions, students = _notebooks(ROOT / "notebooks"), _notebooks(ROOT / "notebooks" / "student")
    par = workers()
    return [
        ("unit, property, oracle and doctests",
         [*par, "tests", "qlearn", "--doctest-modules", "--ignore=tests/browser"], {}),
        ("solution notebooks, outputs compared (nbval)",
         [*par, "--nbval", *SANITIZE, *solutions] if solutions else None, {}),
        ("student notebooks, run top to bottom (nbval-lax)",
         [*par, "--nbval-lax", *students] if students else None, {}),
        ("JupyterLab in a headless browser (tests/browser)", ["tests/browser", "-rs"], {}),
    ]


def portability_stages() -> list[tuple[str, list[str] | None, dict[str, str]]]:
    """The solution notebooks again, outputs compared, on other float-kernel paths (one thread each,
    so two notebooks run side by side on a 2-core machine)."""
    solutions = _notebooks(ROOT / "notebooks")
    return [(f"solution notebooks, outputs compared, kernels: {name}",
             [*workers(), "--nbval", *SANITIZE, *solutions], env)
            for name, env in PORTABILITY_SETTINGS.items()]


def engine_stages() -> list[tuple[str, list[str] | None, dict[str, str]]]:
    """Every solution notebook, outputs compared, on simulated machines that lack some quantized
    engines (``tests/engine_sim/``: a startup file in a temporary IPYTHONDIR patches torch in
    every kernel). Machine-dependent cells are tagged, so the compared outputs must not change."""
    solutions = _notebooks(ROOT / "notebooks")
    return [(f"solution notebooks, outputs compared, on a simulated machine: {name}",
             ["-p", "engine_sim.plugin", *workers(), "--nbval", *SANITIZE, *solutions],
             {"QLEARN_SIMULATE_ENGINES": engines})
            for name, engines in ENGINE_SIMULATIONS.items()]


COMMANDS_STAGES = {
    "test": test_stages,
    "portability": portability_stages,
    "engines": engine_stages,
    "ci": lambda: test_stages() + portability_stages() + engine_stages(),
}


def run_stages(python: Path, stages: list, extra: list[str]) -> int:
    """Run pytest once per stage and print one combined summary line."""
    reports = venv_dir() / "test-reports"
    reports.mkdir(exist_ok=True)
    base_env = {"MPLBACKEND": "Agg", "PYTHONHASHSEED": "0"}
    totals = [0, 0, 0]
    failed_stages = []
    started = time.perf_counter()
    for i, (title, args, env) in enumerate(stages, 1):
        if args is None:
            print(f"\n== stage {i}: {title}: no notebooks yet, skipped", flush=True)
            continue
        shown = " ".join(f"{k}={v}" for k, v in env.items())
        print(f"\n== stage {i}: {title}" + (f"  [{shown}]" if shown else ""), flush=True)
        report = reports / f"stage{i}.xml"
        report.unlink(missing_ok=True)
        stage_started = time.perf_counter()
        command = [str(python), "-m", "pytest", "-q", f"--junitxml={report}", *args, *extra]
        if "QLEARN_SIMULATE_ENGINES" in env:  # tests/engine_sim/run.py sets up the simulated machine
            command = [str(python), "tests/engine_sim/run.py", env["QLEARN_SIMULATE_ENGINES"], "--", *command]
        code = run(command, env=venv_env({**base_env, **env}))
        counts = _count(report)
        for k, n in enumerate(counts):
            totals[k] += n
        print(f"== stage {i} took {time.perf_counter() - stage_started:.0f} s", flush=True)
        if code == 5 and counts == (0, 0, 0):
            code = 0 if extra else 5  # "no tests ran" is an error unless the caller selected tests (-k ...)
        if code != 0:
            failed_stages.append(f"stage {i} ({title}) exited with {code}")
    minutes = (time.perf_counter() - started) / 60
    print(f"\nqlearn test suite finished in {minutes:.1f} min")
    for line in failed_stages:
        print("FAILED:", line)
    print(f"total: {totals[0]} passed, {totals[1]} failed, {totals[2]} skipped", flush=True)
    return 1 if failed_stages or totals[1] else 0


def main(argv: list[str]) -> int:
    if not argv or argv[0] not in ("lab", "setup", *COMMANDS_STAGES):
        print(__doc__.strip())
        return 2
    python = setup()
    if argv[0] == "lab":
        return lab(python, argv[1:])
    if argv[0] == "setup":
        return 0
    return run_stages(python, COMMANDS_STAGES[argv[0]](), argv[1:])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
