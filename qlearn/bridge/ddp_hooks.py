"""DDP communication hooks that count the bytes they send, and our int8 hook (lab 09, section 7).

``DistributedDataParallel`` hands each gradient **bucket** (a flat float32 tensor holding the
gradients of several parameters) to a communication hook, which must return a future of the
averaged bucket. Four schemes, each counting the bytes one worker sends per step:

==================  ==============================================================================
``allreduce``       plain all-reduce of float32 values (what DDP does without a hook)
``fp16``            torch's ``fp16_compress_hook``: cast to float16, all-reduce, cast back
``powersgd``        torch's PowerSGD hook (Vogels et al., 2019): rank-``r`` factors ``P``, ``Q``
``int8``            ours: int8 codes by stochastic rounding, one float32 scale per bucket, error
                    feedback; the codes are **all-gathered** (a sum of int8 codes would overflow)
                    and every worker averages the dequantized gradients itself
==================  ==============================================================================

Bytes are counted from the tensors handed to the collective (``payload``) and the algorithm a
ring uses: an all-reduce sends ``2 (p - 1) / p * payload`` per worker, an all-gather
``(p - 1) * payload`` (:mod:`qlearn.comm_cost`). With 2 workers both equal the payload.

The core of the int8 hook, :func:`compress_int8` and :func:`decompress_int8`, is exercise 09.4.
Its stochastic rounding draws ``u`` from a ``torch.Generator`` seeded with ``seed``, so the codes
are reproducible and checkable; the hook derives a new seed for every worker, step and bucket.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
import torch.distributed as dist
from torch.distributed.algorithms.ddp_comm_hooks import default_hooks
from torch.distributed.algorithms.ddp_comm_hooks import powerSGD_hook as powersgd

from qlearn.comm_cost import allgather_bytes_sent, ring_allreduce_bytes_sent

__all__ = [
    "EPS",
    "SCHEMES",
    "CountingState",
    "Int8State",
    "PowerSGDCountingState",
    "compress_int8",
    "decompress_int8",
    "int8_seed",
    "register_scheme",
]

#: The floor of the int8 scale (float32 machine epsilon): an all-zero bucket gets this scale, codes 0.
EPS = float(torch.finfo(torch.float32).eps)
SCHEMES = ("allreduce", "fp16", "powersgd", "int8")


def compress_int8(grad: torch.Tensor, residual: torch.Tensor, seed: int):
    """Int8 codes of ``grad + residual`` by stochastic rounding: returns ``(codes, scale, new_residual)``.

    With ``g = grad + residual`` (float32): ``scale = max(max|g| / 127, EPS)`` (a 0-dim float32
    tensor), ``u = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed))`` drawn once,
    ``codes = clamp(floor(g / scale + u), -127, 127)`` as ``torch.int8``, and the error that was not
    sent, ``new_residual = g - codes * scale`` (float32, the shape of ``grad``).

    >>> codes, scale, res = compress_int8(torch.tensor([1.27, -0.5, 0.0]), torch.zeros(3), seed=0)
    >>> codes, float(scale), res.abs().max() < scale
    (tensor([127, -50,   0], dtype=torch.int8), 0.009999999776482582, tensor(True))
    """
    g = grad + residual
    scale = torch.clamp(g.abs().max() / 127, min=EPS)
    generator = torch.Generator().manual_seed(seed)
    u = torch.rand(g.shape, generator=generator, dtype=torch.float32)
    codes = torch.clamp(torch.floor(g / scale + u), -127, 127).to(torch.int8)
    return codes, scale, g - codes.to(torch.float32) * scale


def decompress_int8(codes: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    """The float32 values of int8 codes: ``codes * scale``.

    >>> decompress_int8(torch.tensor([127, -50, 0], dtype=torch.int8), torch.tensor(0.01))
    tensor([ 1.2700, -0.5000,  0.0000])
    """
    return codes.to(torch.float32) * scale


def int8_seed(base: int, rank: int, step: int, bucket: int) -> int:
    """A distinct, reproducible seed for each worker, step and bucket.

    >>> int8_seed(0, 0, 0, 0), int8_seed(0, 1, 0, 0) != int8_seed(0, 0, 1, 0)
    (0, True)
    """
    return (((base * 1_000_003 + rank) * 1_000_003 + step) * 1024 + bucket) % (2**62)


@dataclass
class CountingState:
    """The state every hook here carries: its process group and the bytes sent so far by this worker."""

    process_group: dist.ProcessGroup | None = None
    bytes_sent: float = 0.0
    payload_bytes: int = 0

    @property
    def world_size(self) -> int:
        return dist.get_world_size(self.process_group)

    def count_allreduce(self, nbytes: int) -> None:
        self.payload_bytes += nbytes
        self.bytes_sent += ring_allreduce_bytes_sent(nbytes, self.world_size)

    def count_allgather(self, nbytes: int) -> None:
        self.payload_bytes += nbytes
        self.bytes_sent += allgather_bytes_sent(nbytes, self.world_size)


@dataclass
class Int8State(CountingState):
    """State of the int8 hook: error-feedback residuals per bucket, the step, the seed, the compressor."""

    seed: int = 0
    step: int = 0
    residuals: dict[int, torch.Tensor] = field(default_factory=dict)
    compress: object = None  # defaults to compress_int8
    decompress: object = None  # defaults to decompress_int8


def _allreduce_hook(state: CountingState, bucket):
    buffer = bucket.buffer()
    state.count_allreduce(buffer.numel() * buffer.element_size())
    return default_hooks.allreduce_hook(state.process_group, bucket)


def _fp16_hook(state: CountingState, bucket):
    state.count_allreduce(bucket.buffer().numel() * 2)
    return default_hooks.fp16_compress_hook(state.process_group, bucket)


def _int8_hook(state: Int8State, bucket):
    """All-gather each worker's int8 codes and scale (one int8 message), average the dequantized values."""
    compress = state.compress or compress_int8
    decompress = state.decompress or decompress_int8
    buffer = bucket.buffer()
    index = bucket.index()
    residual = state.residuals.get(index)
    if residual is None:
        residual = torch.zeros_like(buffer)
    rank = dist.get_rank(state.process_group)
    codes, scale, state.residuals[index] = compress(buffer, residual, int8_seed(state.seed, rank, state.step, index))
    message = torch.cat([codes.reshape(-1), scale.reshape(1).to(torch.float32).view(torch.int8)])
    world = state.world_size
    gathered = [torch.empty_like(message) for _ in range(world)]
    state.count_allgather(message.numel())
    dist.all_gather(gathered, message, group=state.process_group)
    total = torch.zeros_like(buffer)
    for part in gathered:
        total += decompress(part[:-4], part[-4:].clone().view(torch.float32)[0]).reshape(buffer.shape)
    buffer.copy_(total / world)
    if bucket.is_last():
        state.step += 1
    fut: torch.futures.Future = torch.futures.Future()
    fut.set_result(buffer)
    return fut


class PowerSGDCountingState(powersgd.PowerSGDState):
    """torch's ``PowerSGDState`` that also counts bytes: full float32 buckets during the vanilla
    all-reduce steps before ``start_powerSGD_iter``, then the factors and the uncompressed tensors
    (torch's own ``total_numel_after_compression``)."""

    __slots__ = ("bytes_sent", "payload_bytes")

    def __init__(self, process_group, **kwargs) -> None:
        super().__init__(process_group, **kwargs)
        self.bytes_sent = 0.0
        self.payload_bytes = 0


def _powersgd_hook(state: PowerSGDCountingState, bucket):
    world = dist.get_world_size(state.process_group)
    if state.iter < state.start_powerSGD_iter:
        nbytes = bucket.buffer().numel() * 4
    else:
        before = state.total_numel_after_compression
        fut = powersgd.powerSGD_hook(state, bucket)
        nbytes = (state.total_numel_after_compression - before) * 4
        state.payload_bytes += nbytes
        state.bytes_sent += ring_allreduce_bytes_sent(nbytes, world)
        return fut
    state.payload_bytes += nbytes
    state.bytes_sent += ring_allreduce_bytes_sent(nbytes, world)
    return powersgd.powerSGD_hook(state, bucket)


def register_scheme(model: torch.nn.parallel.DistributedDataParallel, scheme: str, *, seed: int = 0,
                    rank: int = 2, start_iter: int = 2, compress=None, decompress=None):
    """Register the hook of ``scheme`` (one of :data:`SCHEMES`) on a DDP model; returns its state.

    ``state.bytes_sent`` then counts the bytes this worker sends. ``rank`` and ``start_iter`` are
    PowerSGD's ``matrix_approximation_rank`` and ``start_powerSGD_iter`` (vanilla all-reduce before it).
    """
    if scheme == "allreduce":
        state = CountingState()
        model.register_comm_hook(state, _allreduce_hook)
    elif scheme == "fp16":
        state = CountingState()
        model.register_comm_hook(state, _fp16_hook)
    elif scheme == "powersgd":
        state = PowerSGDCountingState(None, matrix_approximation_rank=rank, start_powerSGD_iter=start_iter,
                                      min_compression_rate=2, use_error_feedback=True, warm_start=True,
                                      random_seed=seed)
        model.register_comm_hook(state, _powersgd_hook)
    elif scheme == "int8":
        state = Int8State(seed=seed, compress=compress, decompress=decompress)
        model.register_comm_hook(state, _int8_hook)
    else:
        raise ValueError(f"scheme must be one of {SCHEMES}, got {scheme!r}")
    return state
