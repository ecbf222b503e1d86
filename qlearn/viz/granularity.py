"""One layer's weights, channel by channel: what per-tensor, per-channel and per-group scales do.

Used in lab 03 (``notebooks/03_granularity.ipynb``), section 2 "The picture first", and again when
the lab compares the three granularities. The explorer draws every weight of one layer as a dot in
the column of its output channel, the values each channel was quantized to as short red lines, and
below them the SQNR of every channel.

The quantizer is passed in: ``quantize(rows, bits, granularity) -> rows_hat`` with ``rows`` the
layer's weights as a 2-D array (one row per output channel) and ``granularity`` one of
:data:`GRANULARITIES`. The lab passes its own ``quantize_weights``, built from the learner's
per-channel and per-group functions, so the picture shows the learner's quantization.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

import ipywidgets as widgets
import numpy as np
from matplotlib.axes import Axes
from matplotlib.figure import Figure

from qlearn._validate import check_int
from qlearn.metrics import sqnr_db
from qlearn.viz.widgets import FigureExplorer

__all__ = ["GRANULARITIES", "GranularityExplorer", "draw_channels"]

#: The granularities the explorer offers, coarsest first.
GRANULARITIES = ("per-tensor", "per-channel", "per-group")


def _rows(name: str, value: object) -> np.ndarray:
    rows = np.asarray(value)
    if rows.ndim != 2 or rows.size == 0 or rows.dtype.kind != "f":
        raise ValueError(f"{name} must be a non-empty 2-D float array (one row per output channel), got "
                         f"an array of shape {rows.shape} and dtype {rows.dtype}")
    return rows


def draw_channels(axes: tuple[Axes, Axes], rows, rows_hat, *, seed: int = 0) -> None:
    """Draw a layer channel by channel on two axes: ``top`` the weights, ``bottom`` each channel's SQNR.

    Top: every weight of row (output channel) ``c`` as a dot at ``x = c`` (spread sideways by a seeded
    jitter of +-0.3), and the distinct values of ``rows_hat[c]``, the levels the channel uses, as short
    red lines. Bottom: ``sqnr_db(rows[c], rows_hat[c])`` as one bar per channel. Both axes are cleared
    first, so an explorer can redraw on them. Used in lab 03, sections 2 and 3.

    >>> from matplotlib.figure import Figure
    >>> fig = Figure()
    >>> top, bottom = fig.subplots(2, 1)
    >>> rows = np.array([[0.1, -0.2, 0.3], [1.0, -2.0, 3.0]], np.float32)
    >>> draw_channels((top, bottom), rows, np.round(rows))
    >>> len(bottom.patches), bottom.get_ylabel()
    (2, 'SQNR (dB)')
    """
    rows, rows_hat = _rows("rows", rows), _rows("rows_hat", rows_hat)
    if rows.shape != rows_hat.shape:
        raise ValueError(f"rows and rows_hat must have the same shape, got {rows.shape} and {rows_hat.shape}")
    seed = check_int(seed, "seed")
    top, bottom = axes
    top.clear()
    bottom.clear()
    channel = np.repeat(np.arange(len(rows)), rows.shape[1])
    jitter = np.random.default_rng(seed).uniform(-0.3, 0.3, rows.size)
    top.scatter(channel + jitter, rows.reshape(-1), s=1, alpha=0.3, rasterized=True)
    levels = [np.unique(r) for r in rows_hat]
    ys = np.concatenate(levels)
    xs = np.concatenate([np.full(len(v), c) for c, v in enumerate(levels)])
    top.hlines(ys, xs - 0.4, xs + 0.4, color="C3", lw=1)
    top.set_ylabel("weight")
    sqnr = [sqnr_db(r, r_hat) for r, r_hat in zip(rows, rows_hat)]
    bottom.bar(np.arange(len(rows)), sqnr, color="C2")
    bottom.set_ylabel("SQNR (dB)")
    bottom.set_xlabel("output channel")
    bottom.grid(alpha=0.3)


class GranularityExplorer(FigureExplorer):
    """One layer's weights, channel by channel, quantized with the chosen bits and granularity.

    ``weights`` maps layer names to weight arrays (output channel on axis 0; each is viewed as one row
    per output channel); ``quantize(rows, bits, granularity)`` returns the fake-quantized rows. The
    controls pick the layer, the bits (2 to 8) and the granularity; the title and the readout give the
    SQNR of the whole layer. Used in lab 03, section 2 "The picture first".
    """

    def __init__(self, weights: Mapping[str, np.ndarray], layer: str,
                 quantize: Callable[[np.ndarray, int, str], np.ndarray], *, bits: int = 4,
                 granularity: str = "per-tensor", seed: int = 0) -> None:
        if not weights:
            raise ValueError("weights is empty: give a dict {layer name: weight array}")
        if layer not in weights:
            raise ValueError(f"layer {layer!r} is not in weights; the layers are {list(weights)}")
        if granularity not in GRANULARITIES:
            raise ValueError(f"granularity must be one of {GRANULARITIES}, got {granularity!r}")
        if not callable(quantize):
            raise TypeError(f"quantize must be a function (rows, bits, granularity) -> rows_hat, got {quantize!r}")
        self.weights = dict(weights)
        self.quantize = quantize
        self.seed = check_int(seed, "seed")
        controls = {
            "layer": widgets.Dropdown(options=list(self.weights), value=layer, description="layer"),
            "bits": widgets.IntSlider(value=check_int(bits, "bits"), min=2, max=8, description="bits"),
            "granularity": widgets.ToggleButtons(options=GRANULARITIES, value=granularity),
        }
        figure = Figure(figsize=(10, 5.5), layout="constrained")
        self.axes = figure.subplots(2, 1, sharex=True, height_ratios=(3, 2))
        super().__init__(controls, figure)
        self.refresh()

    def _refresh(self) -> None:
        layer, bits, granularity = (c.value for c in self.controls.values())
        w = self.weights[layer]
        rows = w.reshape(len(w), -1)
        rows_hat = np.asarray(self.quantize(rows, bits, granularity)).reshape(rows.shape)
        draw_channels(self.axes, rows, rows_hat, seed=self.seed)
        sqnr = sqnr_db(rows, rows_hat)
        self.axes[0].set_title(f"{layer}, {bits} bits, {granularity}: SQNR {sqnr:.2f} dB")
        self.readout.value = f"SQNR of the layer: <b>{sqnr:.2f} dB</b>"
