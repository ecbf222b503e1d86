"""Shared pytest set-up: a derandomized Hypothesis profile, a seeded numpy generator, and torch's
quantized engine restored after every test."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, settings

# Hypothesis is derandomized: a failure found once is found again on every machine.
settings.register_profile(
    "qlearn",
    derandomize=True,
    deadline=None,
    max_examples=150,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("qlearn")

@pytest.fixture
def rng() -> np.random.Generator:
    """A fresh generator with a fixed seed for each test."""
    return np.random.default_rng(20261122)


@pytest.fixture(autouse=True)
def _restore_the_quantized_engine():
    """Put torch's quantized engine back after each test that changed it.

    Under pytest-xdist one worker runs many test modules in one process, so a test that selects
    ``qnnpack`` would otherwise decide the engine of every later test on that worker.
    """
    import sys

    torch = sys.modules.get("torch")
    before = torch.backends.quantized.engine if torch is not None else None
    yield
    torch = sys.modules.get("torch")
    if torch is None:
        return
    if before is None:  # torch was first imported by this test: its default is the best engine
        from qlearn.bridge.ptq import best_engine

        before = best_engine()
    if torch.backends.quantized.engine != before:
        torch.backends.quantized.engine = before
