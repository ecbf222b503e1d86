"""Shared pytest set-up: a derandomized Hypothesis profile and a seeded numpy generator."""

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
