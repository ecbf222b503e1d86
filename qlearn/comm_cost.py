"""What one data-parallel step sends, and how long a ring all-reduce takes (lab 09, section 1).

In data-parallel training every worker computes the gradient of its own mini-batch, and all of
them must end the step with the average. A **ring all-reduce** does it in ``2 (p - 1)`` rounds:
``p - 1`` rounds of reduce-scatter, then ``p - 1`` of all-gather, each sending one ``1/p`` chunk
to the next worker. So each worker sends ``2 (p - 1) / p`` times the gradient's size, whatever
``p`` is, and the time per step is (the alpha-beta model)::

    t = 2 (p - 1) * latency  +  2 (p - 1) / p * bytes * 8 / bandwidth          (bandwidth in bit/s)

An **all-gather** (every worker receives every other worker's compressed gradient, as our int8
hook does, since int8 codes cannot be summed without overflow) sends ``(p - 1)`` times the payload.
"""

from __future__ import annotations

import math

__all__ = [
    "allgather_bytes_sent",
    "gradient_bytes",
    "ring_allreduce_bytes_sent",
    "ring_allreduce_time",
]


def _positive_int(value: object, name: str, minimum: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return value


def gradient_bytes(num_params: int, bits: float = 32) -> int:
    """Bytes of one gradient of ``num_params`` values at ``bits`` per value: ``ceil(num_params * bits / 8)``.

    >>> gradient_bytes(11_689_512), gradient_bytes(1000, 1), gradient_bytes(3, 4)
    (46758048, 125, 2)
    """
    _positive_int(num_params, "num_params", 0)
    if not bits > 0:
        raise ValueError(f"bits must be > 0, got {bits!r}")
    return math.ceil(num_params * bits / 8)


def ring_allreduce_bytes_sent(nbytes: int, workers: int) -> float:
    """Bytes each worker sends in a ring all-reduce of ``nbytes``: ``2 (p - 1) / p * nbytes``.

    >>> ring_allreduce_bytes_sent(1000, 2), ring_allreduce_bytes_sent(1000, 8)
    (1000.0, 1750.0)
    """
    p = _positive_int(workers, "workers")
    return 2 * (p - 1) / p * nbytes


def allgather_bytes_sent(nbytes: int, workers: int) -> float:
    """Bytes each worker sends in a ring all-gather of its ``nbytes`` payload: ``(p - 1) * nbytes``.

    >>> allgather_bytes_sent(1000, 2), allgather_bytes_sent(1000, 8)
    (1000.0, 7000.0)
    """
    p = _positive_int(workers, "workers")
    return float((p - 1) * nbytes)


def ring_allreduce_time(nbytes: int, workers: int, bandwidth_gbit: float, latency: float = 5e-6) -> float:
    """Seconds for a ring all-reduce of ``nbytes`` among ``workers`` on links of ``bandwidth_gbit`` Gbit/s.

    ``t = 2 (p - 1) * latency + 2 (p - 1) / p * nbytes * 8 / (bandwidth_gbit * 1e9)``; ``latency``
    is the time of one hop (seconds). One worker sends nothing: ``t = 0``.

    >>> round(ring_allreduce_time(46_758_048, 8, 10.0), 4)
    0.0655
    """
    p = _positive_int(workers, "workers")
    if not bandwidth_gbit > 0:
        raise ValueError(f"bandwidth_gbit must be > 0 (Gbit/s), got {bandwidth_gbit!r}")
    if latency < 0:
        raise ValueError(f"latency must be >= 0 seconds, got {latency!r}")
    return 2 * (p - 1) * latency + ring_allreduce_bytes_sent(nbytes, p) * 8 / (bandwidth_gbit * 1e9)
