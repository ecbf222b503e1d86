"""Run a command on a simulated machine: pytest sessions and notebook kernels alike.

    .venv/bin/python tests/engine_sim/run.py ENGINES -- COMMAND [ARGS ...]

ENGINES is ``qnnpack`` (Apple silicon, ARM Linux), ``x86,fbgemm`` (an x86 torch without
qnnpack, as on Windows), any comma-separated list, or a preset (``apple``, ``windows``). The
command runs with:

- ``QLEARN_SIMULATE_ENGINES=ENGINES``;
- ``IPYTHONDIR`` set to a fresh temporary directory whose ``profile_default/startup/`` holds a
  file that activates the simulation in every IPython kernel started from it (nbval, nbclient);
- ``PYTHONPATH`` extended with ``tests/``, so that ``-p engine_sim.plugin`` simulates the machine
  in the pytest process too.

The temporary directory is removed afterwards; the exit code is the command's.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def make_ipythondir(path: Path) -> Path:
    """Write an IPython directory whose startup file activates the simulation; return ``path``."""
    startup = path / "profile_default" / "startup"
    startup.mkdir(parents=True, exist_ok=True)
    text = (HERE / "ipython_startup.py").read_text().replace("@SIMULATE_PY@", str(HERE / "simulate.py"))
    (startup / "00-qlearn-simulate-engines.py").write_text(text)
    return path


def main(argv: list[str]) -> int:
    if len(argv) < 3 or argv[1] != "--":
        print(__doc__.strip(), file=sys.stderr)
        return 2
    spec, command = argv[0], argv[2:]
    sys.path.insert(0, str(HERE.parent))
    from engine_sim.simulate import parse

    engines = parse(spec)  # fails early, with the list of real engines, on a bad name
    with tempfile.TemporaryDirectory(prefix="qlearn-ipython-") as tmp:
        env = dict(os.environ)
        env["QLEARN_SIMULATE_ENGINES"] = ",".join(engines)
        env["IPYTHONDIR"] = str(make_ipythondir(Path(tmp)))
        env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parent), env.get("PYTHONPATH")) if p)
        print(f"simulating a torch with only {list(engines)} (QLEARN_SIMULATE_ENGINES, IPYTHONDIR={tmp})",
              flush=True)
        return subprocess.call(command, env=env)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
