"""qlearn.comm_cost: the bytes of a gradient and the ring all-reduce model, on values computed by hand."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from qlearn.comm_cost import allgather_bytes_sent, gradient_bytes, ring_allreduce_bytes_sent, ring_allreduce_time


def test_gradient_bytes_rounds_partial_bytes_up():
    assert gradient_bytes(11_689_512, 32) == 46_758_048
    assert gradient_bytes(1001, 1) == 126
    assert gradient_bytes(0, 32) == 0
    with pytest.raises(ValueError, match="bits"):
        gradient_bytes(10, 0)


def test_ring_allreduce_by_hand():
    # 8 workers, 46,758,048 bytes, 10 Gbit/s, 5 us per round:
    # 14 rounds * 5 us = 70 us; 1.75 * 46,758,048 * 8 / 1e10 = 0.065461267 s
    assert ring_allreduce_time(46_758_048, 8, 10.0, 5e-6) == pytest.approx(70e-6 + 0.0654612672, rel=1e-12)
    assert ring_allreduce_time(1000, 1, 10.0, 1.0) == 0.0  # one worker sends nothing
    assert ring_allreduce_bytes_sent(1000, 2) == 1000.0
    assert allgather_bytes_sent(1000, 64) == 63_000.0


@given(st.integers(1, 10**9), st.integers(2, 4096))
def test_a_ring_sends_less_than_two_gradients_per_worker(nbytes, workers):
    sent = ring_allreduce_bytes_sent(nbytes, workers)
    assert nbytes <= sent < 2 * nbytes


@pytest.mark.parametrize("kwargs, match", [
    ({"workers": 0}, "workers"), ({"bandwidth_gbit": 0.0}, "bandwidth_gbit"), ({"latency": -1.0}, "latency")])
def test_errors_name_the_argument(kwargs, match):
    args = {"nbytes": 10, "workers": 2, "bandwidth_gbit": 1.0, "latency": 0.0, **kwargs}
    with pytest.raises(ValueError, match=match):
        ring_allreduce_time(**args)
