"""Size against accuracy for mixed-precision allocations, as a static plot and as an explorer.

``plot_size_accuracy(points)`` draws every allocation as a point (uniform ones as squares, mixed
ones as dots), links the Pareto front, and marks the budget of uniform 4-bit. ``MixedPrecisionExplorer``
adds a budget slider: it allocates bits per layer with the knapsack of ``qlearn.mixed_precision``,
measures the accuracy with the function it was given (cached), and shows the new point on the plot
and the bits of each layer as bars. Used in lab 08, section 6.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from qlearn.mixed_precision import allocate_dp, pareto_front, total_bits
from qlearn.viz.widgets import FigureExplorer

__all__ = ["MixedPrecisionExplorer", "plot_size_accuracy"]


def _draw_points(ax, points: Sequence[Mapping], total: int) -> None:
    sizes = np.array([p["size_bits"] for p in points], dtype=np.float64) / total
    acc = np.array([100 * p["accuracy"] for p in points])
    uniform = np.array([p["kind"].startswith("uniform") for p in points])
    ax.scatter(sizes[uniform], acc[uniform], marker="s", s=40, color="C0", label="uniform", zorder=3)
    ax.scatter(sizes[~uniform], acc[~uniform], marker="o", s=30, color="C1", label="mixed", zorder=3)
    for s, a, p in zip(sizes, acc, points):
        if p["kind"].startswith("uniform"):
            ax.annotate(p["kind"].split()[1], (s, a), textcoords="offset points", xytext=(4, -10), fontsize=8)
    front = pareto_front(sizes, acc)
    ax.plot(sizes[front], acc[front], "--", color="0.4", lw=1, label="Pareto front", zorder=2)
    ax.axvline(4.0, color="C2", lw=0.8, ls=":", label="size of uniform 4-bit")
    ax.set_xlabel("weight storage (average bits per weight)")
    ax.set_ylabel("accuracy (%)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")


def plot_size_accuracy(points: Sequence[Mapping], total_weights: int, *, ax=None) -> Figure:
    """Accuracy against size for ``points`` (dicts with ``kind``, ``size_bits``, ``accuracy``).

    ``total_weights`` turns sizes into average bits per weight.
    """
    if ax is None:
        fig = Figure(figsize=(6, 3.8), dpi=90, layout="constrained")
        ax = fig.subplots()
    else:
        fig = ax.figure
    _draw_points(ax, points, total_weights)
    ax.set_title("size against accuracy: uniform and mixed precision", fontsize=10)
    return fig


class MixedPrecisionExplorer(FigureExplorer):
    """Move the budget; see the allocation (bits per layer) and where it lands on the size/accuracy plot.

    ``sizes``, ``sensitivity`` (``[layers, choices]``), ``choices``: as in ``allocate_dp``;
    ``accuracy_fn(bits) -> float`` in [0, 1] measures an allocation (cached by the explorer);
    ``points``: the background (dicts with ``kind``, ``size_bits``, ``accuracy``). Drive it with
    ``.update(budget=3.5)`` (average bits per weight).
    """

    def __init__(self, layers: Sequence[str], sizes, sensitivity, choices, accuracy_fn: Callable[[tuple], float],
                 points: Sequence[Mapping], *, budget: float = 4.0) -> None:
        self.layers, self.sizes = list(layers), np.asarray(sizes, dtype=np.int64)
        self.sensitivity, self.choices = np.asarray(sensitivity, dtype=np.float64), tuple(int(c) for c in choices)
        self.accuracy_fn, self.points = accuracy_fn, list(points)
        self._cache: dict[tuple, float] = {}
        lo = float(self.choices[0])
        controls = {"budget": widgets.FloatSlider(value=budget, min=lo, max=float(self.choices[-1]), step=0.25,
                                                  description="budget (bits per weight)", continuous_update=False)}
        figure = Figure(figsize=(11, 3.8), dpi=90, layout="constrained")
        self.ax_plot, self.ax_bits = figure.subplots(1, 2, width_ratios=(1, 1.2))
        super().__init__(controls, figure)
        self.refresh()

    def allocation(self, budget: float) -> tuple[int, ...]:
        """The knapsack allocation for ``budget`` average bits per weight."""
        return tuple(int(b) for b in allocate_dp(self.sizes, self.sensitivity, self.choices,
                                                 int(budget * int(self.sizes.sum()))))

    def accuracy(self, bits: tuple[int, ...]) -> float:
        if bits not in self._cache:
            self._cache[bits] = float(self.accuracy_fn(bits))
        return self._cache[bits]

    def _refresh(self) -> None:
        budget = self.controls["budget"].value
        bits = self.allocation(budget)
        acc = self.accuracy(bits)
        total = int(self.sizes.sum())
        size = total_bits(self.sizes, bits)
        self.ax_plot.clear()
        self.ax_bits.clear()
        _draw_points(self.ax_plot, self.points, total)
        self.ax_plot.plot([size / total], [100 * acc], "*", ms=14, color="k", label="this budget", zorder=4)
        self.ax_plot.set_title("size against accuracy", fontsize=10)
        x = np.arange(len(self.layers))
        self.ax_bits.bar(x, bits, color="C1")
        self.ax_bits.set_xticks(x, [n.replace("layer", "L").replace(".downsample.0", ".ds") for n in self.layers],
                                rotation=70, fontsize=7)
        self.ax_bits.set_ylabel("weight bits")
        self.ax_bits.set_yticks(self.choices)
        twin = self.ax_bits.twinx()
        twin.plot(x, self.sizes, "k.", ms=6)
        twin.set_yscale("log")
        twin.set_ylabel("weights in the layer (dots)", fontsize=8)
        self.ax_bits.set_title(f"allocation for {budget:.2f} bits per weight", fontsize=10)
        self.readout.value = (f"budget {budget:.2f} bits/weight: the allocation uses {size / total:.2f}, "
                              f"accuracy <b>{100 * acc:.1f} %</b>")
