"""Isolation for the grader: throwaway folders, a clean environment, limits, bubblewrap, killing.

Every process that runs learner code (the notebook's kernel, the scoring child) is started

- in a throwaway copy of the submission's folder (the notebook and its sibling files, never the
  other notebooks of the batch), with a clean environment (``PATH``, ``HOME`` in the throwaway
  folder, a locale, fixed thread counts, ``PYTHONHASHSEED=0``): none of the grader's variables;
- with resource limits set before anything else runs: address space (``--memory``), CPU time,
  processes, no core files;
- inside ``bwrap`` (Debian's ``bubblewrap``) when ``/usr/bin/bwrap`` works: a read-only view of the
  whole system, a private ``/tmp``, no network, its own PID namespace (so every process it starts,
  daemons too, dies with it), only its throwaway folder writable, and the batch's submission
  folders hidden. Without bwrap, the grader says so once on stderr and kills the process group,
  plus every process that still carries the run's secret token in its environment.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import subprocess
import sys
from pathlib import Path

__all__ = ["BWRAP", "bwrap_available", "clean_env", "copy_submission", "kill_token", "limit_prefix",
           "wrap"]

BWRAP = "/usr/bin/bwrap"
_STATE: dict[str, object] = {}
_MAX_SIBLING_BYTES = 50 * 2**20

# Sets the limits, then becomes the real command: python -I -c _LAUNCH MEMORY NPROC CPU -- argv...
_LAUNCH = """\
import os, resource, sys
memory, nproc, cpu = (int(v) for v in sys.argv[1:4])
if memory > 0:
    resource.setrlimit(resource.RLIMIT_AS, (memory, memory))
if nproc > 0:
    resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
if cpu > 0:
    resource.setrlimit(resource.RLIMIT_CPU, (cpu, cpu + 1))
resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
null = os.open(os.devnull, os.O_RDWR)
for fd in (0, 1, 2):  # the command's own output never reaches the grader's terminal or pipes
    os.dup2(null, fd)
os.execv(sys.argv[5], sys.argv[5:])
"""


def bwrap_available() -> bool:
    """Whether ``bwrap`` exists here and can make a sandbox (checked once per process)."""
    if "bwrap" not in _STATE:
        ok = False
        if os.path.exists(BWRAP) and os.environ.get("QLEARN_GRADE_NO_BWRAP") != "1":
            try:
                ok = subprocess.run([BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc",
                                     "--unshare-all", "--die-with-parent", "true"],
                                    capture_output=True, timeout=30).returncode == 0
            except (OSError, subprocess.TimeoutExpired):
                ok = False
        _STATE["bwrap"] = ok
    return bool(_STATE["bwrap"])


def clean_env(home: Path, token: str) -> dict[str, str]:
    """The whole environment of a sandboxed process: nothing inherited from the grader."""
    return {
        "PATH": os.pathsep.join([os.path.dirname(sys.executable), "/usr/local/bin", "/usr/bin", "/bin"]),
        "HOME": str(home), "TMPDIR": "/tmp" if bwrap_available() else str(home),
        "LANG": "C.UTF-8", "LC_ALL": "C.UTF-8", "PYTHONHASHSEED": "0", "MPLBACKEND": "Agg",
        "MPLCONFIGDIR": str(home / ".matplotlib"), "OMP_NUM_THREADS": "1", "MKL_NUM_THREADS": "1",
        "OPENBLAS_NUM_THREADS": "1", "PYDEVD_DISABLE_FILE_VALIDATION": "1", "JUPYTER_PLATFORM_DIRS": "1",
        "QLEARN_SANDBOX": token,
    }


def limit_prefix(memory: int, nproc: int, cpu: int) -> list[str]:
    """A command prefix that sets the limits, then ``exec``s the command that follows it."""
    return [sys.executable, "-I", "-c", _LAUNCH, str(int(memory)), str(int(nproc)), str(int(cpu)), "--"]


_TMP = Path("/tmp").resolve()


def _under(path: Path, folder: Path) -> bool:
    return path == folder or folder in path.parents


def _needed_under_tmp() -> list[Path]:
    """What the sandboxed Python needs that lies under /tmp (a venv or a clone there): the
    interpreter's prefixes, the entries of ``sys.path`` and the folder that holds the qlearn
    package, outermost first and without nesting."""
    package = Path(__file__).resolve().parent.parent
    candidates = {Path(sys.prefix), Path(sys.base_prefix), package.parent}
    candidates |= {Path(p) for p in sys.path if p}
    found = sorted({c.resolve() for c in candidates if c.exists() and _under(c.resolve(), _TMP)
                    and c.resolve() != _TMP}, key=lambda p: len(p.parts))
    kept: list[Path] = []
    for path in found:
        if not any(_under(path, k) for k in kept):
            kept.append(path)
    return kept


def wrap(argv: list[str], *, root: Path, workdir: Path, env: dict[str, str],
         hide: list[Path] = ()) -> list[str]:
    """``argv`` inside bwrap (see the module doc) if available, else unchanged."""
    if not bwrap_available():
        return list(argv)
    command = [BWRAP, "--ro-bind", "/", "/", "--dev", "/dev", "--proc", "/proc", "--tmpfs", "/tmp",
               "--unshare-all", "--die-with-parent", "--new-session"]
    shown = _needed_under_tmp()
    for path in shown:  # the private /tmp would hide a Python or a checkout that lives there
        command += ["--ro-bind", str(path), str(path)]
    for path in hide:
        path = Path(path).resolve()
        if _under(path, _TMP) and not any(_under(path, s) for s in shown):
            continue  # already hidden by the private /tmp
        command += ["--tmpfs", str(path)]
    command += ["--bind", str(root), str(root), "--chdir", str(workdir), "--clearenv"]
    for key, value in env.items():
        command += ["--setenv", key, value]
    return command + ["--", *argv]


def copy_submission(notebook: Path, text: bytes, dest: Path) -> Path:
    """A throwaway copy of the notebook's folder in ``dest``: the notebook (from ``text``, read
    before any submission ran) and its sibling files and folders, except other notebooks, up to
    50 MB. Returns the copied notebook's path."""
    dest.mkdir(parents=True, exist_ok=True)
    budget = _MAX_SIBLING_BYTES
    source = notebook.parent
    try:
        entries = sorted(source.iterdir())
    except OSError:
        entries = []
    for entry in entries:
        if entry.name.startswith(".") or entry.suffix == ".ipynb" or entry.is_symlink():
            continue
        try:
            if entry.is_file():
                size = entry.stat().st_size
                if size <= budget:
                    shutil.copyfile(entry, dest / entry.name)
                    budget -= size
            elif entry.is_dir() and not any(entry.rglob("*.ipynb")):
                size = sum(p.stat().st_size for p in entry.rglob("*") if p.is_file())
                if size <= budget:
                    shutil.copytree(entry, dest / entry.name, symlinks=False)
                    budget -= size
        except OSError:
            continue
    target = dest / notebook.name
    target.write_bytes(text)
    return target


def kill_token(token: str) -> int:
    """SIGKILL every process whose environment carries ``QLEARN_SANDBOX=token``; the count killed."""
    needle = f"QLEARN_SANDBOX={token}".encode()
    killed = 0
    for entry in Path("/proc").iterdir() if Path("/proc").is_dir() else []:
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if needle in (entry / "environ").read_bytes().split(b"\0"):
                os.kill(int(entry.name), signal.SIGKILL)
                killed += 1
        except OSError:
            continue
    return killed


def kill_group(pid: int) -> None:
    """SIGKILL the process group led by ``pid`` (started with ``start_new_session``)."""
    try:
        os.killpg(pid, signal.SIGKILL)
    except OSError:
        pass


def new_token() -> str:
    """A secret that marks every process of one submission's run."""
    return secrets.token_hex(12)
