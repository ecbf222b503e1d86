"""The two panels of ``plot_quantization``, drawn once and then updated in place.

Top panel: a histogram of ``x`` (computed once), the quantization grid on top of it (one thin line
per level when there are at most ``MAX_LINES`` levels, otherwise the grid's range shaded), the
grid's two ends as red dashed lines and the clipped region (beyond them) shaded red.

Bottom panel: the histogram of the error ``(x - x_hat) / scale``, in steps of the grid. Inside
the grid, round-to-nearest keeps it within +-1/2 step (dotted lines); floor and ceil shift it by
half a step (a bias); clipped values fall far outside, into the red overflow bars at both ends.
Measuring the error in steps keeps this panel's axes fixed whatever the bit width, so a widget can
redraw only the artists that changed (``dynamic_artists``) over a saved background.
"""

from __future__ import annotations

import numpy as np
from matplotlib.collections import LineCollection
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Rectangle

from qlearn._validate import as_float32, check_int
from qlearn.viz._quantize import QuantizationResult

__all__ = ["ERROR_BINS", "ERROR_RANGE", "MAX_LINES", "QuantizationPlot"]

MAX_LINES = 64  # draw each level as a line up to this many levels; shade the grid's range beyond
ERROR_RANGE = 1.5  # the error panel spans (x - x_hat) / scale in [-1.5, 1.5] ...
ERROR_BINS = 120  # ... in this many bins, plus one overflow bar at each end
_OVERFLOW_WIDTH = 0.12  # width of an overflow bar, in steps
_CLIP = "C3"  # colour of everything that marks clipping


class QuantizationPlot:
    """Draws the quantization picture on ``axes = (ax_x, ax_err)``; ``show(result)`` updates it.

    ``animated=True`` marks the artists that change from one ``show`` to the next as animated,
    so that ``canvas.draw()`` paints only the static background (for blitting, see the widgets).
    """

    def __init__(self, axes, x, *, bins: int = 120, log: bool = False, animated: bool = False) -> None:
        self.ax_x, self.ax_err = axes
        bins = check_int(bins, "bins")
        if bins < 1:
            raise ValueError(f"bins must be a positive number of histogram bins, got {bins}")
        x = as_float32(x, "x").reshape(-1)
        if x.size == 0:
            raise ValueError("x is empty: there is nothing to plot")
        self.x = x
        self.view: tuple[float, float] | None = None
        self.layout_changed = True  # True after a show() that moved the top panel's x-limits
        self._draw_data_histogram(bins, log)
        self._draw_error_panel()
        self.dynamic_artists = [  # redrawn in this order over the static background
            self.span, self.levels, self.clip_left, self.clip_right, self.ends, self.ax_x.title,
            self.err_steps, self.over_left, self.over_right,
        ]
        for artist in self.dynamic_artists:
            artist.set_animated(animated)

    def _draw_data_histogram(self, bins: int, log: bool) -> None:
        ax = self.ax_x
        counts, edges = np.histogram(self.x, bins=bins)
        self.data_range = (float(edges[0]), float(edges[-1]))
        floor = 0.5 if log else 0.0  # a log axis cannot reach 0: empty bins sit on 0.5
        ax.stairs(np.maximum(counts, floor), edges, baseline=floor, fill=True, color="C0", alpha=0.6)
        if log:
            ax.set_yscale("log")
        ax.set_ylim(floor, counts.max() * (3.0 if log else 1.08))
        ax.set_ylabel("count" + (" (log scale)" if log else ""))
        ax.set_xlabel("x")
        xaxis = ax.get_xaxis_transform()  # x in data units, y in axes units (0 = bottom, 1 = top)
        self.span = Rectangle((0, 0), 0, 1, transform=xaxis, color="C2", alpha=0.15, lw=0)
        self.clip_left = Rectangle((0, 0), 0, 1, transform=xaxis, color=_CLIP, alpha=0.15, lw=0)
        self.clip_right = Rectangle((0, 0), 0, 1, transform=xaxis, color=_CLIP, alpha=0.15, lw=0)
        for patch in (self.span, self.clip_left, self.clip_right):
            ax.add_patch(patch)
        self.levels = LineCollection([], transform=xaxis, colors="0.15", linewidths=0.6, alpha=0.7)
        self.ends = LineCollection([], transform=xaxis, colors=_CLIP, linewidths=1.2, linestyles="--")
        ax.add_collection(self.levels)
        ax.add_collection(self.ends)
        # The legend sits just above the panel and the two-line title above it, so that nothing
        # that changes is drawn over the legend (text is the slowest thing matplotlib draws).
        ax.legend(handles=[
            Patch(color="C0", alpha=0.6, label="x"),
            Line2D([], [], color="0.15", lw=0.6, label="levels"),
            Patch(color="C2", alpha=0.15, label=f"grid (> {MAX_LINES} levels)"),
            Line2D([], [], color=_CLIP, lw=1.2, ls="--", label="grid ends"),
            Patch(color=_CLIP, alpha=0.15, label="clipped"),
        ], loc="lower left", bbox_to_anchor=(0.0, 1.0), ncols=5, fontsize=7.5, frameon=False,
            borderaxespad=0.2, columnspacing=1.2, handlelength=1.5)
        ax.set_title(" \n ", fontsize=10, pad=20)

    def _draw_error_panel(self) -> None:
        ax = self.ax_err
        self._floor = 0.5 / self.x.size  # below one value per bin: empty bins sit here on the log axis
        self.err_edges = np.linspace(-ERROR_RANGE, ERROR_RANGE, ERROR_BINS + 1)
        self.err_steps = ax.stairs(np.full(ERROR_BINS, self._floor), self.err_edges, baseline=self._floor,
                                   fill=True, color="C1", alpha=0.8)
        w = _OVERFLOW_WIDTH
        self.over_left = Rectangle((-ERROR_RANGE - w, self._floor), w, 0, color=_CLIP)
        self.over_right = Rectangle((ERROR_RANGE, self._floor), w, 0, color=_CLIP)
        ax.add_patch(self.over_left)
        ax.add_patch(self.over_right)
        for v in (-0.5, 0.5):
            ax.axvline(v, color="0.3", lw=0.8, ls=":")
        ax.set_yscale("log")
        ax.set_xlim(-ERROR_RANGE - w, ERROR_RANGE + w)
        ax.set_ylim(self._floor, 1.5)
        ax.set_xlabel("error (x − x̂) / scale, in steps (dotted: ±½ step)")
        ax.set_ylabel("fraction of values")
        ax.text(0.99, 0.94, f"red: error beyond ±{ERROR_RANGE:g} steps (clipped values)", transform=ax.transAxes,
                ha="right", va="top", fontsize=8, color=_CLIP,
                bbox={"facecolor": "white", "edgecolor": "none", "alpha": 0.85, "pad": 1.5})

    def error_histogram(self, result: QuantizationResult) -> tuple[np.ndarray, float, float]:
        """Fractions of ``(x - x_hat) / scale`` per bin, and the fractions below and above the range.

        Bin ``i`` of ``ERROR_BINS`` covers ``[-R + i*w, -R + (i+1)*w)`` with ``R = ERROR_RANGE``.
        One pass of float32 arithmetic and a ``bincount`` (``np.histogram`` takes ~4x longer).
        """
        k = np.float32(ERROR_BINS / (2 * ERROR_RANGE))
        t = self.x - result.x_hat.reshape(-1)
        t *= np.float32(k / result.scale)  # the bin coordinate, shifted by 1 so underflow is bin 0
        t += np.float32(ERROR_RANGE * k + 1)
        np.clip(t, 0, ERROR_BINS + 1, out=t)
        counts = np.bincount(t.astype(np.intp), minlength=ERROR_BINS + 2) / self.x.size
        return counts[1:-1], float(counts[0]), float(counts[-1])

    def _view(self, lo: float, hi: float) -> tuple[float, float]:
        """x-limits of the top panel: the data (and 0) with an 8 % margin, widened if the grid sticks out.

        Kept the same whenever the grid fits, so that a widget need not redraw the axes.
        """
        a, b = min(self.data_range[0], 0.0), max(self.data_range[1], 0.0)
        pad = 0.08 * (b - a) or 1.0
        a, b = a - pad, b + pad
        if a <= lo and hi <= b:
            return a, b
        a, b = min(a, lo), max(b, hi)
        pad = 0.03 * (b - a)
        return a - pad, b + pad

    def show(self, result: QuantizationResult) -> None:
        """Move every dynamic artist to show ``result`` (a ``quantize_tensor`` of this ``x``)."""
        lo, hi = result.grid_min, result.grid_max
        view = self._view(lo, hi)
        self.layout_changed = view != self.view
        if self.layout_changed:
            self.ax_x.set_xlim(view)
            self.view = view

        many = result.levels > MAX_LINES
        self.span.set_visible(many)
        self.levels.set_visible(not many)
        if many:
            self.span.set_x(lo)
            self.span.set_width(hi - lo)
            self.levels.set_segments([])
        else:
            grid = (np.arange(result.qmin, result.qmax + 1) - result.zero_point) * np.float32(result.scale)
            self.levels.set_segments([((g, 0.0), (g, 1.0)) for g in grid.tolist()])
        self.ends.set_segments([((lo, 0.0), (lo, 1.0)), ((hi, 0.0), (hi, 1.0))])
        self.clip_left.set_x(view[0])
        self.clip_left.set_width(max(lo - view[0], 0.0))
        self.clip_right.set_x(hi)
        self.clip_right.set_width(max(view[1] - hi, 0.0))

        kind = "symmetric" if result.symmetric else "asymmetric"
        self.ax_x.title.set_text(
            f"{result.bits}-bit {kind}, {result.rounding}: SQNR = {result.sqnr_db:.2f} dB\n"
            f"{result.levels} levels, scale {result.scale:.4g}, zero_point {result.zero_point}, "
            f"grid [{lo:.4g}, {hi:.4g}], {100 * result.clipped:.2f} % clipped"
        )

        inside, below, above = self.error_histogram(result)
        self.err_steps.set_data(np.maximum(inside, self._floor))
        self.over_left.set_height(max(below - self._floor, 0.0))
        self.over_right.set_height(max(above - self._floor, 0.0))
