"""pytest plugin: run a whole pytest session on a simulated machine.

    PYTHONPATH=tests QLEARN_SIMULATE_ENGINES=qnnpack .venv/bin/python -m pytest -p engine_sim.plugin tests/test_bridge_ptq.py

The simulation starts before any test module is collected, and the session header says which
engines are simulated. Without ``QLEARN_SIMULATE_ENGINES`` the plugin does nothing.
"""

from __future__ import annotations

from .simulate import ENV_VAR, activate_from_env, deactivate, simulated


def pytest_configure(config) -> None:
    activate_from_env()


def pytest_report_header(config) -> str:
    engines = simulated()
    return f"{ENV_VAR}: simulating a torch with only {list(engines)}" if engines else ""


def pytest_unconfigure(config) -> None:
    deactivate()
