"""Make this process look like a machine whose torch has only some quantized engines.

A torch wheel for Apple silicon (and ARM Linux) has only ``qnnpack``:
``torch.backends.quantized.supported_engines == ['qnnpack', 'none']``, the engine starts as
``'none'``, and ``torch.backends.quantized.engine = 'x86'`` raises
``RuntimeError: quantized engine X86 is not supported``. A Windows wheel has no ``qnnpack``.
``activate(["qnnpack"])`` makes an x86 build behave the same way, as far as Python can see:

- ``torch.backends.quantized.supported_engines`` lists only the simulated engines (and ``'none'``);
- setting ``torch.backends.quantized.engine`` to any other engine raises the ``RuntimeError`` the
  real machine raises (same message);
- ``torch.backends.quantized.engine`` starts as the engine torch would pick on that machine
  (``x86``, else ``onednn``, else ``'none'``, as on a Mac), and the int8 kernels really run on
  the engine that is set (it is set for real underneath).

What it cannot simulate: while the simulated engine is ``'none'``, quantized kernels still run on
the real engine underneath instead of failing with ``NoQEngine``; and the kernels of a missing
engine can still be reached through ``torch.ops`` directly. qlearn sets the engine before it
converts or runs anything, so neither matters for it.

Use ``simulate_engines(...)`` (a context manager) in tests, ``activate_from_env()`` at start-up
(the pytest plugin and the IPython startup file do that when ``QLEARN_SIMULATE_ENGINES`` is set).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterable, Iterator

ENV_VAR = "QLEARN_SIMULATE_ENGINES"

#: How torch's C++ side spells each engine in its error messages (c10/core/QEngine.h).
_CPP_NAME = {"none": "NoQEngine", "fbgemm": "FBGEMM", "qnnpack": "QNNPACK", "onednn": "ONEDNN", "x86": "X86"}

#: Machines worth simulating, by name, for ``QLEARN_SIMULATE_ENGINES``.
PRESETS = {
    "apple": ("qnnpack",),  # macOS on Apple silicon, ARM Linux
    "windows": ("onednn", "x86", "fbgemm"),  # x86 without qnnpack
}

_state: dict = {}


def parse(spec: str | Iterable[str]) -> tuple[str, ...]:
    """``"qnnpack"``, ``"x86,fbgemm"``, a preset name (``"apple"``, ``"windows"``) or a list ->
    a tuple of engine names, checked against the engines the real torch has."""
    if isinstance(spec, str):
        spec = PRESETS.get(spec.strip(), [s.strip() for s in spec.split(",") if s.strip()])
    engines = tuple(e for e in spec if e != "none")
    real = set(_real_supported())
    unknown = [e for e in engines if e not in real]
    if not engines or unknown:
        raise ValueError(
            f"{ENV_VAR} must name engines this torch really has ({sorted(real - {'none'})}), "
            f"comma-separated, or a preset {sorted(PRESETS)}; got {spec!r}"
        )
    return engines


def _real_supported() -> list[str]:
    """The engines of the real build, bypassing the simulation (``torch._C`` is not patched)."""
    import torch

    return [torch.backends.quantized._get_qengine_str(e) for e in torch._C._supported_qengines()]


def _default_engine(engines: tuple[str, ...]) -> str:
    # torch's own choice at start-up (aten/src/ATen/Context.cpp, Context::qEngine): x86 where
    # fbgemm is built, else onednn, else none (qnnpack is the default only on mobile builds).
    for name in ("x86", "onednn"):
        if name in engines:
            return name
    return "none"


def is_active() -> bool:
    return bool(_state)


def simulated() -> tuple[str, ...] | None:
    """The simulated engines, or None when no simulation is active."""
    return _state.get("engines")


def activate(spec: str | Iterable[str]) -> tuple[str, ...]:
    """Simulate a machine whose torch has only the engines in ``spec``; returns them."""
    import torch

    if _state:
        deactivate()
    engines = parse(spec)
    cls = type(torch.backends.quantized)  # torch.backends.quantized is a module subclass
    _state.update(engines=engines, cls=cls, saved={k: cls.__dict__[k] for k in ("engine", "supported_engines")},
                  real_engine=torch.backends.quantized.engine)

    class SupportedEngines:
        def __get__(self, obj, objtype=None) -> list[str]:
            return [e for e in _real_supported() if e in engines] + ["none"]

        def __set__(self, obj, value) -> None:
            raise RuntimeError("Assignment not supported")

    class Engine:
        def __get__(self, obj, objtype=None) -> str:
            return _state["current"]

        def __set__(self, obj, value: str) -> None:
            if value not in engines and value not in ("none", "", None):
                torch.backends.quantized._get_qengine_id(value)  # an unknown name: torch's own error
                raise RuntimeError(f"quantized engine {_CPP_NAME[value]} is not supported")
            if value in engines:
                torch._C._set_qengine(torch.backends.quantized._get_qengine_id(value))
            _state["current"] = value if value in engines else "none"

    cls.supported_engines = SupportedEngines()
    cls.engine = Engine()
    current = _default_engine(engines)
    _state["current"] = current
    if current != "none":
        torch._C._set_qengine(torch.backends.quantized._get_qengine_id(current))
    else:  # run on a simulated engine underneath, not on one the machine would not have
        torch._C._set_qengine(torch.backends.quantized._get_qengine_id(engines[0]))
    return engines


def deactivate() -> None:
    """Give torch back its real engines, and the engine that was set before ``activate``."""
    import torch

    if not _state:
        return
    cls = _state["cls"]
    for name, descriptor in _state["saved"].items():
        setattr(cls, name, descriptor)
    torch.backends.quantized.engine = _state["real_engine"]
    _state.clear()


@contextlib.contextmanager
def simulate_engines(spec: str | Iterable[str]) -> Iterator[tuple[str, ...]]:
    """``with simulate_engines("qnnpack"):`` the code inside sees a qnnpack-only torch."""
    engines = activate(spec)
    try:
        yield engines
    finally:
        deactivate()


def activate_from_env() -> tuple[str, ...] | None:
    """Activate the simulation named by ``$QLEARN_SIMULATE_ENGINES``, if it is set and not empty."""
    spec = os.environ.get(ENV_VAR, "").strip()
    return activate(spec) if spec else None
