"""Counting multiply-accumulates (MACs), parameters and bytes of a torch model.

One output element of a convolution costs ``(C_in / groups) * K_h * K_w`` MACs, so a layer costs

    MACs(conv)   = N * C_out * H_out * W_out * (C_in / groups) * K_h * K_w
    MACs(linear) = N * out_features * in_features

(biases, BN, ReLU, pooling and additions are not counted; they are a few percent here). One MAC is
two FLOPs, which is what ``torch.utils.flop_counter.FlopCounterMode`` reports. Counting uses forward
hooks during one forward pass on a zero input, so shapes come from the real network.
Unstructured zeros do not reduce these counts: a dense kernel multiplies by zero all the same.
Used in lab 07, section 5.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Mapping, Sequence

import torch
from torch import nn

__all__ = ["count_macs", "count_nonzero_params", "count_params", "float_size_bytes", "interleaved_latency"]


@torch.no_grad()
def count_macs(model: nn.Module, input_shape: Sequence[int] = (1, 1, 28, 28)) -> dict[str, int]:
    """MACs of every ``Conv2d`` and ``Linear`` for one forward pass on ``input_shape``, plus ``"total"``.

    >>> count_macs(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(4 * 26 * 26, 10)), (1, 1, 28, 28))
    {'0': 24336, '2': 27040, 'total': 51376}
    """
    macs: dict[str, int] = {}
    handles = []

    def hook(name):
        def record(module, inputs, output):
            if isinstance(module, nn.Conv2d):
                kh, kw = module.kernel_size
                per_output = (module.in_channels // module.groups) * kh * kw
            else:
                per_output = module.in_features
            macs[name] = macs.get(name, 0) + output.numel() * per_output
        return record

    for name, module in model.named_modules():
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            handles.append(module.register_forward_hook(hook(name)))
    was_training = model.training
    model.eval()
    try:
        model(torch.zeros(tuple(input_shape)))
    finally:
        model.train(was_training)
        for h in handles:
            h.remove()
    macs["total"] = sum(macs.values())
    return macs


def count_params(model: nn.Module) -> int:
    """Number of parameters (BN running statistics are buffers, not counted).

    >>> count_params(nn.Linear(3, 2))
    8
    """
    return sum(p.numel() for p in model.parameters())


def count_nonzero_params(model: nn.Module) -> int:
    """Parameters that are not zero (effective weights: ``weight_orig * weight_mask`` when pruned).

    >>> net = nn.Linear(2, 1, bias=False)
    >>> with torch.no_grad(): _ = net.weight.copy_(torch.tensor([[0.0, 3.0]]))
    >>> count_nonzero_params(net)
    1
    """
    total = 0
    for module in model.modules():
        for name, p in module.named_parameters(recurse=False):
            if name.endswith("_orig"):
                p = getattr(module, name[: -len("_orig")])
            total += int((p != 0).sum())
    return total


def float_size_bytes(model: nn.Module) -> int:
    """Bytes of the float32 parameters and buffers (4 bytes each), without file overhead.

    >>> float_size_bytes(nn.Linear(3, 2))
    32
    """
    count = sum(p.numel() for p in model.parameters())
    count += sum(b.numel() for name, b in model.named_buffers() if not name.endswith(("num_batches_tracked", "_mask")))
    return 4 * count


@torch.inference_mode()
def interleaved_latency(candidates: Mapping[str, tuple], repeats: int = 10, warmup: int = 2) -> dict[str, float]:
    """Median seconds of each candidate ``name -> (model, x)`` or ``(model, x, engine)``, timed round-robin.

    Every round runs each candidate once, so a burst of load from other processes slows them all
    alike. ``engine`` (a quantized engine name, or None) is set before each call. Uses the current
    ``torch.get_num_threads()``. Timings depend on the machine: print them, never compare exactly.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    times: dict[str, list[float]] = {name: [] for name in candidates}
    for r in range(warmup + repeats):
        for name, spec in candidates.items():
            model, x = spec[0], spec[1]
            engine = spec[2] if len(spec) > 2 else None
            if engine is not None:
                torch.backends.quantized.engine = engine
            start = time.perf_counter()
            model(x)
            if r >= warmup:
                times[name].append(time.perf_counter() - start)
    return {name: statistics.median(t) for name, t in times.items()}
