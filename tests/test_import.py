"""The numpy core must import without torch, matplotlib or ipywidgets installed."""

from __future__ import annotations

import subprocess
import sys
import textwrap

BLOCKED = ("torch", "torchvision", "matplotlib", "ipywidgets", "IPython")

SCRIPT = textwrap.dedent(
    f"""
    import importlib.abc, pkgutil, sys

    BLOCKED = {BLOCKED!r}

    class Block(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name.split(".")[0] in BLOCKED:
                raise ModuleNotFoundError(f"No module named {{name!r}} (blocked by the test)")
            return None

    sys.meta_path.insert(0, Block())
    import qlearn
    core = [m.name for m in pkgutil.iter_modules(qlearn.__path__, "qlearn.") if not m.ispkg]
    core = [m for m in core if m not in ("qlearn.grade",)]
    for name in core:
        importlib.import_module(name)
    for name in qlearn.__all__:
        getattr(qlearn, name)
    loaded = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
    assert not loaded, loaded
    print("ok", len(core), "core modules")
    """
)


def test_core_imports_without_torch_matplotlib_or_widgets():
    result = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok")


def test_blocker_really_blocks():
    """The check above can fail: importing a blocked package under the blocker raises."""
    bad = SCRIPT.replace("import qlearn\n", "import qlearn\nimport matplotlib\n", 1)
    result = subprocess.run([sys.executable, "-c", bad], capture_output=True, text=True)
    assert result.returncode != 0 and "blocked by the test" in result.stderr
