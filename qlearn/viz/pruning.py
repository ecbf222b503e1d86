"""Pictures and the explorer of lab 06 (``06_pruning_fundamentals``): pruning a trained network's layers.

===============================  ======================================================================
``GRANULARITIES``                ``"fine-grained"``, ``"kernel"``, ``"channel"``, ``"2:4"``
``granularity_mask``             the keep-mask of one granularity at a given amount (qlearn.pruning)
``output_sqnr``                  SQNR of a layer's output, dense against pruned, on recorded inputs
``plot_weight_histograms``       |w| of several layers on one log axis (section 1)
``plot_sqnr_vs_sparsity``        weight or output SQNR against sparsity, one line per method
``plot_layer_sparsity``          per-layer sparsity of local against global pruning (section 5)
``plot_storage``                 bytes of dense, bitmap, CSR and 2:4 against sparsity, break-evens marked
``PruningExplorer``              the widget: sparsity slider, granularity per layer; mask, histogram,
                                 output error (section 6). It leaves its picture behind as a PNG.
===============================  ======================================================================

A layer's weight is seen as a matrix ``(out, in * kh * kw)``, as the convolution's matrix product
uses it (``qlearn.intops.im2col``): rows are output channels, the 2:4 groups run along a row.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from qlearn._validate import as_float32
from qlearn.metrics import sqnr_db
from qlearn.pruning import ln_structured_mask, magnitude_mask, nm_mask
from qlearn.sparse_storage import FORMATS, break_even_sparsity, nm_bytes, storage_bytes
from qlearn.viz.plots import MASK_CMAP, _new_axes
from qlearn.viz.widgets import FigureExplorer

__all__ = [
    "GRANULARITIES",
    "PruningExplorer",
    "granularity_mask",
    "output_sqnr",
    "plot_layer_sparsity",
    "plot_sqnr_vs_sparsity",
    "plot_storage",
    "plot_weight_histograms",
    "pruning_explorer",
]

#: The granularities of section 3, from the finest to the coarsest (2:4 has a fixed 50 % sparsity).
GRANULARITIES = ("fine-grained", "kernel", "channel", "2:4")
_COLORS = {"fine-grained": "C0", "kernel": "C1", "channel": "C3", "2:4": "C2", "random": "0.5"}


def granularity_mask(w, amount: float, granularity: str) -> np.ndarray:
    """Keep-mask of ``w`` at ``amount`` for one of :data:`GRANULARITIES` (magnitude criterion).

    ``fine-grained``: single weights (``magnitude_mask``); ``kernel``: whole ``kh x kw`` kernels of a
    4-D conv weight by L2 norm (single weights for 2-D); ``channel``: whole output channels by L2
    norm (``ln_structured_mask(dim=0)``); ``2:4``: two of every four along a row of the
    ``(out, -1)`` matrix (``nm_mask``; ``amount`` is ignored, the sparsity is 50 %).

    >>> w = np.arange(1.0, 17.0).reshape(2, 2, 2, 2)
    >>> granularity_mask(w, 0.5, "kernel").reshape(4, 4)[:, 0].tolist()
    [False, False, True, True]
    """
    w = np.asarray(w)
    if granularity == "fine-grained" or (granularity == "kernel" and w.ndim < 4):
        return magnitude_mask(w, amount)
    if granularity == "kernel":
        kernels = w.reshape(w.shape[0] * w.shape[1], -1)
        return ln_structured_mask(kernels, amount, n=2, dim=0).reshape(w.shape)
    if granularity == "channel":
        return ln_structured_mask(w, amount, n=2, dim=0)
    if granularity == "2:4":
        rows = w.reshape(w.shape[0], -1)
        if rows.shape[1] % 4:
            raise ValueError(f"2:4 needs a multiple of 4 weights per output channel; this layer has {rows.shape[1]}")
        return nm_mask(rows, 2, 4, axis=-1).reshape(w.shape)
    raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")


def output_sqnr(patches, w, mask) -> float:
    """SQNR (dB) of the layer output ``patches @ W.T`` against ``patches @ (W * mask).T``.

    ``patches`` is ``(P, in * kh * kw)``: ``P`` recorded input windows of the layer (rows of
    ``im2col``); ``W`` is ``w.reshape(out, -1)``. Computed in float64.

    >>> x = np.array([[1.0, 0.0], [0.0, 1.0]]); w = np.array([[3.0, 1.0]])
    >>> round(output_sqnr(x, w, np.array([[True, False]])), 2)   # 10 log10(10 / 1)
    10.0
    """
    x = np.asarray(patches, np.float64)
    rows = np.asarray(w, np.float64).reshape(np.shape(w)[0], -1)
    keep = np.asarray(mask, bool).reshape(rows.shape)
    return sqnr_db(x @ rows.T, x @ (rows * keep).T)


def plot_weight_histograms(weights: Mapping[str, np.ndarray], *, bins: int = 80, ax=None) -> Figure:
    """Histograms of ``|w|`` of several layers on a log-spaced axis, each normalized to its count."""
    fig, (ax,) = _new_axes(ax, 1, figsize=(8, 3.4), layout="constrained")
    mags = {name: np.abs(as_float32(w, name)).reshape(-1) for name, w in weights.items()}
    lo = min(float(m[m > 0].min()) for m in mags.values())
    hi = max(float(m.max()) for m in mags.values())
    edges = np.geomspace(lo, hi, bins + 1)
    for name, m in mags.items():
        ax.hist(m[m > 0], bins=edges, histtype="step", lw=1.5, label=f"{name} (median {np.median(m):.3f})",
                weights=np.full(int((m > 0).sum()), 1.0 / m.size))
    ax.set_xscale("log")
    ax.set_xlabel("|w|")
    ax.set_ylabel("fraction of the layer's weights")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_sqnr_vs_sparsity(sparsities: Sequence[float], curves: Mapping[str, Sequence[float]], *,
                          title: str = "", ylabel: str = "SQNR (dB)", ax=None) -> Figure:
    """One line per method (``curves[name][i]`` at ``sparsities[i]``); 2:4 may be a single point."""
    fig, (ax,) = _new_axes(ax, 1, figsize=(6.5, 3.6), layout="constrained")
    for name, values in curves.items():
        values = np.asarray(values, float)
        xs = np.asarray(sparsities, float)[: values.size] if values.size > 1 else [0.5]
        ax.plot(xs, values, "o-" if values.size > 1 else "D", color=_COLORS.get(name), label=name, ms=4)
    ax.set_xlabel("sparsity (fraction pruned)")
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_layer_sparsity(names: Sequence[str], local: Sequence[float], global_: Sequence[float], *,
                        ax=None) -> Figure:
    """Bars: each layer's sparsity when pruned locally (the same amount) and globally (one ranking)."""
    fig, (ax,) = _new_axes(ax, 1, figsize=(9, 3.6), layout="constrained")
    x = np.arange(len(names))
    ax.bar(x - 0.2, local, 0.4, label="local (per layer)", color="0.6")
    ax.bar(x + 0.2, global_, 0.4, label="global (one threshold)", color="C0")
    ax.set_xticks(x, names, rotation=60, ha="right", fontsize=8)
    ax.set_ylabel("sparsity")
    ax.set_ylim(0, 1)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3, axis="y")
    return fig


def plot_storage(shape: tuple[int, ...], bits: Sequence[int] = (32, 8), *, axes=None) -> Figure:
    """Bytes against sparsity for dense, bitmap and CSR (one panel per value width), 2:4 as a point,
    each break-even sparsity marked with a dotted line."""
    bits = list(bits)
    fig, axs = _new_axes(axes, len(bits), ncols=len(bits), figsize=(4.6 * len(bits), 3.6), layout="constrained",
                         sharey=False)
    size = int(np.prod(shape))
    sparsities = np.linspace(0.0, 1.0, 201)
    for ax, b in zip(axs, bits):
        nnz = np.round((1.0 - sparsities) * size).astype(int)
        for fmt, color in zip(FORMATS, ("0.3", "C1", "C0")):
            ax.plot(sparsities, [storage_bytes(shape, int(n), b, fmt) / 1024 for n in nnz], color=color, label=fmt)
            if fmt != "dense":
                s = break_even_sparsity(shape, b, fmt)
                if s is not None:
                    ax.axvline(s, color=color, ls=":", lw=1)
        if shape[-1] % 4 == 0 or int(np.prod(shape[1:])) % 4 == 0:
            ax.plot([0.5], [nm_bytes((shape[0], size // shape[0]), 2, 4, b) / 1024], "D", color="C2", label="2:4")
        ax.set_title(f"{shape[0]} x {size // shape[0]} weights, {b}-bit values", fontsize=10)
        ax.set_xlabel("sparsity")
        ax.set_ylabel("KiB")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    return fig


class PruningExplorer(FigureExplorer):
    """Prune one layer at a time: a sparsity slider and a granularity for each layer.

    ``weights``: name -> weight array; ``patches``: name -> ``(P, in * kh * kw)`` recorded input
    windows of that layer (for the output error). The picture shows the keep-mask of the layer as
    an ``(out, in * kh * kw)`` image, the histogram of its weights (kept and pruned), and its output
    SQNR against sparsity for every granularity, with the current setting marked. Each layer keeps
    its own granularity: switch layers and back, and the choice is still there (``choices``).
    Drive it with ``.update(layer="fc", sparsity=0.7, granularity="channel")``.
    """

    SPARSITIES = (0.1, 0.3, 0.5, 0.7, 0.9)

    def __init__(self, weights: Mapping[str, np.ndarray], patches: Mapping[str, np.ndarray], *,
                 layer: str | None = None, sparsity: float = 0.5, granularity: str = "fine-grained") -> None:
        missing = sorted(set(weights) - set(patches))
        if missing:
            raise ValueError(f"patches has no recorded inputs for the layers {missing}")
        self.weights = {name: as_float32(w, name) for name, w in weights.items()}
        self.patches = {name: np.asarray(patches[name], np.float64) for name in weights}
        layer = next(iter(self.weights)) if layer is None else layer
        self.choices = {name: "fine-grained" for name in self.weights}
        self.choices[layer] = granularity
        self._curves: dict[tuple[str, str], list[float]] = {}
        controls = {
            "layer": widgets.Dropdown(options=list(self.weights), value=layer, description="layer"),
            "sparsity": widgets.FloatSlider(value=sparsity, min=0.0, max=0.95, step=0.05, description="sparsity",
                                            continuous_update=False),
            "granularity": widgets.ToggleButtons(options=list(GRANULARITIES), value=granularity),
        }
        figure = Figure(figsize=(11, 3.6), dpi=90, layout="constrained")
        self.ax_mask, self.ax_hist, self.ax_err = figure.subplots(1, 3, width_ratios=(1.3, 1, 1))
        super().__init__(controls, figure)
        self._layer = layer
        self.refresh()
        self.figure.set_layout_engine("none")  # the layout is found once; redraws keep it (3x faster)

    def _on_change(self, change) -> None:
        if change["owner"] is self.controls["layer"]:
            self._layer = change["new"]
            self._syncing, was = True, self._syncing
            self.controls["granularity"].value = self.choices[self._layer]  # this layer's own choice
            self._syncing = was
        elif change["owner"] is self.controls["granularity"]:
            self.choices[self._layer] = change["new"]
        super()._on_change(change)

    def _set_control(self, name: str, value: object) -> None:
        super()._set_control(name, value)
        if name == "layer":
            self._layer = value
            self.controls["granularity"].value = self.choices[value]
        elif name == "granularity":
            self.choices[self._layer] = value

    def _curve(self, layer: str, granularity: str) -> list[float]:
        key = (layer, granularity)
        if key not in self._curves:
            w, x = self.weights[layer], self.patches[layer]
            amounts = [0.5] if granularity == "2:4" else self.SPARSITIES
            try:
                self._curves[key] = [output_sqnr(x, w, granularity_mask(w, a, granularity)) for a in amounts]
            except ValueError:
                self._curves[key] = []
        return self._curves[key]

    def _refresh(self) -> None:
        layer, amount, granularity = (self.controls[k].value for k in ("layer", "sparsity", "granularity"))
        w = self.weights[layer]
        self.controls["sparsity"].disabled = granularity == "2:4"
        mask = granularity_mask(w, amount, granularity)
        self.mask = mask
        pruned = 1.0 - float(mask.mean())
        error = output_sqnr(self.patches[layer], w, mask)
        rows = mask.reshape(w.shape[0], -1)
        for ax in (self.ax_mask, self.ax_hist, self.ax_err):
            ax.clear()
        self.ax_mask.imshow(rows, cmap=MASK_CMAP, vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        self.ax_mask.set_title(f"{layer} keep-mask ({granularity})\nsparsity {100 * pruned:.1f} % (dark = kept)",
                               fontsize=9)
        self.ax_mask.set_xlabel("input index (in x kh x kw)")
        self.ax_mask.set_ylabel("output channel")
        edges = np.linspace(float(w.min()), float(w.max()), 61)
        self.ax_hist.hist([w[mask], w[~mask]], bins=edges, stacked=True, color=["#1f4e79", "#e8a33d"],
                          label=["kept", "pruned"])
        self.ax_hist.set_yscale("log")
        self.ax_hist.set_xlabel("w")
        self.ax_hist.set_title("weights: kept and pruned", fontsize=9)
        self.ax_hist.legend(fontsize=8)
        for name in GRANULARITIES:
            values = self._curve(layer, name)
            if not values:
                continue
            xs = [0.5] if name == "2:4" else self.SPARSITIES
            self.ax_err.plot(xs, values, "D" if name == "2:4" else "o-", ms=4, color=_COLORS[name], label=name)
        self.ax_err.plot([pruned], [error], "*", ms=14, color="k", label="current")
        self.ax_err.set_xlabel("sparsity")
        self.ax_err.set_ylabel("output SQNR (dB)")
        self.ax_err.set_title("the layer's output error", fontsize=9)
        self.ax_err.grid(alpha=0.3)
        self.ax_err.legend(fontsize=7)
        chosen = ", ".join(f"{k}: {v}" for k, v in self.choices.items() if v != "fine-grained") or "all fine-grained"
        self.readout.value = (f"<b>{layer}</b>: sparsity {100 * pruned:.1f} %, output SQNR <b>{error:.1f} dB</b>"
                              f" &nbsp; granularity per layer: {chosen}")


def pruning_explorer(weights, patches, **kwargs) -> PruningExplorer:
    """Shortcut for :class:`PruningExplorer` (``layer``, ``sparsity``, ``granularity`` as keywords)."""
    return PruningExplorer(weights, patches, **kwargs)

