"""How long does one update of ``quantization_explorer`` take? Target: 150 ms (median).

The explorer is built on 1,000,000 float32 values (Laplace, seeded), then driven through 20
updates that cycle through bit width, symmetric/asymmetric, clipping range and rounding mode.
One update is everything between a control moving and the new picture being ready to send to
the browser: fake-quantize, SQNR, error histogram, redraw, PNG encoding. Rendering uses Agg.

Printed: the wall-clock median and p90 (what a learner waits), the CPU time of this process (a
steadier number when other jobs share the machine; see the load average), and, for comparison, the
same updates done the common way (an ``Output`` widget re-displaying a figure with the inline
backend: a full redraw, then ``print_figure(fig, "png", bbox_inches="tight")``, which is what
``display(fig)`` costs). No asserts: timing depends on the machine.

Run:  python bench/bench_widgets.py
"""

from __future__ import annotations

import os
import time

import matplotlib

matplotlib.use("Agg")

import numpy as np  # noqa: E402
from IPython.core.pylabtools import print_figure  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from qlearn.metrics import sqnr_db  # noqa: E402
from qlearn.viz._quantization_plot import QuantizationPlot  # noqa: E402
from qlearn.viz._quantize import quantize_tensor  # noqa: E402
from qlearn.viz.widgets import quantization_explorer  # noqa: E402

TARGET_MS = 150.0
N_VALUES = 1_000_000


def steps(lo: float, hi: float) -> list[dict]:
    """20 updates, one or two controls at a time, cycling through every kind of change."""
    return [
        {"bits": 4}, {"bits": 3}, {"symmetric": True}, {"clip": (-4.0, 4.0)}, {"rounding": "floor"},
        {"bits": 6}, {"rounding": "stochastic"}, {"symmetric": False}, {"clip": (-8.0, 6.0)}, {"bits": 2},
        {"rounding": "half_away"}, {"bits": 8}, {"clip": (-2.0, 2.0)}, {"symmetric": True},
        {"rounding": "ceil"}, {"bits": 5}, {"rounding": "half_even"}, {"clip": (lo, hi)}, {"bits": 7},
        {"symmetric": False, "bits": 8},
    ]


def summary(label: str, wall: list[float], cpu: list[float]) -> str:
    w, c = np.array(wall) * 1e3, np.array(cpu) * 1e3
    return (f"  {label:<44} median {np.median(w):7.1f} ms   p90 {np.percentile(w, 90):7.1f} ms   "
            f"(CPU: median {np.median(c):6.1f} ms, p90 {np.percentile(c, 90):6.1f} ms)")


def time_explorer(x: np.ndarray, plan: list[dict]) -> tuple[list[float], list[float], int]:
    explorer = quantization_explorer(x)
    explorer.update(bits=7)  # warm-up: first use of fonts and caches
    explorer.update(bits=8)
    wall, cpu, full_redraws = [], [], 0
    for params in plan:
        t0, c0 = time.perf_counter(), time.process_time()
        explorer.update(**params)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
        full_redraws += explorer.plot.layout_changed
        assert len(explorer.image.value) > 1000  # a picture was made (not a timing assert)
    return wall, cpu, full_redraws


def time_output_widget_pattern(x: np.ndarray, plan: list[dict]) -> tuple[list[float], list[float]]:
    """The same updates, redrawn in full and encoded as the inline backend's display(fig) does."""
    fig = Figure(figsize=(8, 5.5), dpi=100, layout="constrained")
    plot = QuantizationPlot(fig.subplots(2, 1, height_ratios=(3, 2)), x)
    params = {"bits": 8, "symmetric": False, "clip": (float(x.min()), float(x.max())), "rounding": "half_even"}
    print_figure(fig, "png", bbox_inches="tight")  # warm-up
    wall, cpu = [], []
    for change in plan:
        params.update(change)
        t0, c0 = time.perf_counter(), time.process_time()
        rng = np.random.default_rng(0)
        plot.show(quantize_tensor(x, params["bits"], params["symmetric"], params["clip"], params["rounding"], rng))
        png = print_figure(fig, "png", bbox_inches="tight")
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - t0)
        assert len(png) > 1000
    return wall, cpu


def cpu_ms(fn, repeat: int = 5) -> float:
    times = []
    for _ in range(repeat):
        c0 = time.process_time()
        fn()
        times.append(time.process_time() - c0)
    return float(np.median(times)) * 1e3


def breakdown(x: np.ndarray) -> str:
    """CPU time of each step of one blitted update (4-bit, half_even)."""
    explorer = quantization_explorer(x, bits=4)
    result = explorer.result
    parts = {
        "fake_quantize + SQNR": cpu_ms(lambda: quantize_tensor(x, 4, False, explorer.controls["clip"].value)),
        "of which sqnr_db": cpu_ms(lambda: sqnr_db(x, result.x_hat)),
        "error histogram + artists": cpu_ms(lambda: explorer.plot.show(result)),
        "blit + PNG": cpu_ms(explorer._render),
        "of which PNG encoding": cpu_ms(explorer._encode),
    }
    return "  where the CPU time goes: " + ", ".join(f"{k} {v:.1f} ms" for k, v in parts.items())


def main() -> None:
    rng = np.random.default_rng(20261122)
    x = rng.laplace(0.0, 1.0, size=N_VALUES).astype(np.float32)
    plan = steps(float(x.min()), float(x.max()))
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"quantization_explorer: {N_VALUES:,} float32 values, {len(plan)} updates, Agg, "
          f"load average {load:.1f} on {os.cpu_count()} CPUs")
    wall, cpu, full_redraws = time_explorer(x, plan)
    print(summary("explorer (Image widget, blitting)", wall, cpu))
    print(f"  {full_redraws} of {len(plan)} updates moved the x-limits and redrew the whole figure; "
          "the others redrew only what changed")
    print(breakdown(x))
    wall_o, cpu_o = time_output_widget_pattern(x, plan)
    print(summary("Output widget + display(fig) (comparison)", wall_o, cpu_o))
    median = float(np.median(wall)) * 1e3
    verdict = "PASS" if median <= TARGET_MS else "MISS"
    print(f"{verdict}: median update {median:.1f} ms against the {TARGET_MS:.0f} ms target"
          + ("" if verdict == "PASS" or load < (os.cpu_count() or 1) else
             f" (the machine is busy: load {load:.1f}; the CPU median is {np.median(cpu) * 1e3:.1f} ms)"))


if __name__ == "__main__":
    main()
