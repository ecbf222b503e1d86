"""Interactive explorers for the labs (ipywidgets + matplotlib's Agg renderer).

``quantization_explorer(x)``, ``format_explorer()`` and ``sparsity_explorer(w)`` each return a
widget (an ``ipywidgets.VBox``): controls, a one-line readout and the picture. Put the call last in
a cell (or pass the result to ``display``). Every explorer has

- ``update(**params)``: set controls by name and redraw once, e.g. ``ex.update(bits=4)``; this is
  what moving a control does, so tests and benchmarks can drive an explorer without a browser;
- ``controls`` (a dict of the control widgets), ``readout`` (an ``HTML`` widget), ``figure``.

How the picture is shown. The figure is a plain ``matplotlib.figure.Figure`` drawn by Agg, not a
pyplot figure: the inline backend would show a pyplot figure a second time at the end of the cell.
Each update renders it to PNG bytes and puts them in an ``ipywidgets.Image``: one message to the
browser, no flicker, and it needs no ipympl and no particular backend. (The common alternative,
an ``Output`` widget cleared and given ``display(fig)`` again, costs a constrained-layout redraw
plus the inline backend's ``bbox_inches="tight"`` pass on every update: about 7 times the CPU time,
see ``bench/bench_widgets.py``.) The quantization explorer redraws only what changed ("blitting"): the
histogram of ``x`` is computed once and its axes are drawn once into a saved background.

Labels are never cut off. ipywidgets gives a description an 80 px column and a toggle button a
fixed width, and cuts a longer text to "asymme…". Every control here is made by ``_fit``: its
description column fits its text (``description_width="initial"``), each toggle button is as wide
as its label (``button_width="auto"``), and a checkbox's description is not indented.

A notebook saved with its outputs keeps a static picture: the widget's display data carries the
current figure as ``image/png`` next to the live widget. GitHub, nbviewer and nbconvert (which
cannot run widgets) show the picture, and so does JupyterLab for a notebook it does not trust yet
(one just downloaded); after the cell runs, JupyterLab shows the live widget instead.
"""

from __future__ import annotations

import base64
import html
import io

import ipywidgets as widgets
import numpy as np
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from PIL import Image
from traitlets import TraitError

from qlearn._validate import as_float32, check_int
from qlearn.formats import FORMATS, FloatFormat, representable_values
from qlearn.metrics import sparsity
from qlearn.pruning import ln_structured_mask, magnitude_mask, nm_mask
from qlearn.rounding import ROUNDING_MODES
from qlearn.viz._quantization_plot import QuantizationPlot
from qlearn.viz._quantize import check_clip, quantize_tensor
from qlearn.viz.plots import MASK_CMAP, _as_2d_mask, plot_number_line

__all__ = [
    "FigureExplorer",
    "FormatExplorer",
    "QuantizationExplorer",
    "SparsityExplorer",
    "format_explorer",
    "quantization_explorer",
    "sparsity_explorer",
]

PNG_COMPRESS_LEVEL = 1  # zlib level of the picture: 1.5x faster to encode than 6, for 8 % larger files


class FigureExplorer(widgets.VBox):
    """Controls + readout + a matplotlib figure shown as a PNG. Subclasses implement ``_refresh``.

    ``_refresh`` recomputes, moves the figure's artists and sets the readout; ``_render`` returns
    the PNG bytes of the figure (by default: a full ``canvas.draw()`` then the PNG encoding).
    """

    def __init__(self, controls: dict[str, widgets.Widget], figure: Figure) -> None:
        self.controls = {name: _fit(control) for name, control in controls.items()}
        self.figure = figure
        self.canvas = FigureCanvasAgg(figure)
        self.readout = widgets.HTML()
        self.image = widgets.Image(format="png")
        self._syncing = False
        row = widgets.HBox(list(self.controls.values()), layout=widgets.Layout(flex_flow="row wrap"))
        super().__init__([row, self.readout, self.image])
        for control in self.controls.values():
            control.observe(self._on_change, names="value")

    def update(self, **params) -> FigureExplorer:
        """Set the named controls (e.g. ``bits=4``), then recompute and redraw once. Returns ``self``."""
        unknown = sorted(set(params) - set(self.controls))
        if unknown:
            raise TypeError(f"unknown parameter(s) {unknown}; this explorer has {sorted(self.controls)}")
        before = {name: self.controls[name].value for name in params}
        self._syncing = True
        try:
            for name, value in params.items():
                self._set_control(name, value)
            self.refresh()
        except (TypeError, ValueError):
            for name, value in before.items():  # all or nothing: the controls keep matching the picture
                self.controls[name].value = value
            self.refresh()
            raise
        finally:
            self._syncing = False
        return self

    def _set_control(self, name: str, value: object) -> None:
        """Set one control, refusing values the control would silently clamp or cannot hold."""
        control = self.controls[name]
        lo, hi = getattr(control, "min", None), getattr(control, "max", None)
        if lo is not None:
            items = value if isinstance(control, widgets.FloatRangeSlider) else (value,)
            try:
                outside = any(not lo <= v <= hi for v in items)
            except TypeError:
                raise TypeError(f"{name} must be a number (or a pair for a range), got {value!r}") from None
            if outside:
                raise ValueError(f"{name}={value!r} is outside this control's range [{lo:g}, {hi:g}]")
        try:
            control.value = value
        except TraitError as exc:
            raise ValueError(f"{name}={value!r} is not accepted: {exc}") from None

    def _on_change(self, change) -> None:
        if self._syncing:
            return
        try:
            self.refresh()
        except (TypeError, ValueError) as exc:  # shown to the learner instead of lost in a log
            self.readout.value = f'<span style="color:#b00020">{html.escape(str(exc))}</span>'

    def refresh(self) -> None:
        """Recompute from the controls' current values and show the new picture."""
        self._refresh()
        self.image.value = self._render()

    def _refresh(self) -> None:
        raise NotImplementedError

    def _render(self) -> bytes:
        self.canvas.draw()
        return self._encode()

    def _encode(self) -> bytes:
        rgba = np.asarray(self.canvas.buffer_rgba())
        buf = io.BytesIO()
        Image.fromarray(rgba).save(buf, format="png", compress_level=PNG_COMPRESS_LEVEL)
        return buf.getvalue()

    def _summary(self) -> str:
        values = ", ".join(f"{k}={_short(c.value)}" for k, c in self.controls.items())
        return f"{type(self).__name__}({values})"

    def _repr_mimebundle_(self, **kwargs):
        """The live widget, plus the current picture as ``image/png`` for viewers without a kernel."""
        data = super()._repr_mimebundle_(**kwargs) or {}
        data["text/plain"] = self._summary()
        data["image/png"] = base64.b64encode(self.image.value).decode("ascii")
        return data


def _fit(control: widgets.Widget) -> widgets.Widget:
    """``control`` with its labels as wide as their text, so that no browser cuts them to "asymme…".

    >>> _fit(widgets.ToggleButtons(options=["asymmetric", "symmetric"])).style.button_width
    'auto'
    >>> _fit(widgets.Checkbox(description="top exponent = inf/NaN (IEEE)")).indent
    False
    """
    style = getattr(control, "style", None)  # a widget without a description has no style to fit
    if style is not None and "description_width" in style.keys:
        style.description_width = "initial"
    if isinstance(control, widgets.ToggleButtons):
        control.style.button_width = "auto"
    if isinstance(control, widgets.Checkbox):
        control.indent = False
        control.layout.width = "auto"
    return control


def _short(value: object) -> str:
    """``repr`` with floats to 4 significant digits: a short, stable text for the notebook."""
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, tuple):
        return "(" + ", ".join(_short(v) for v in value) + ")"
    return repr(value)


class QuantizationExplorer(FigureExplorer):
    """The ``plot_quantization`` picture with controls for bits, symmetry, clipping range and rounding.

    ``result`` is the last ``quantize_tensor`` result (``result.sqnr_db``, ``result.scale``, ...).
    """

    def __init__(self, x, *, bits: int = 8, symmetric: bool = False, clip=None, rounding: str = "half_even",
                 seed: int = 0, bins: int = 120, log: bool = False) -> None:
        self.x = as_float32(x, "x").reshape(-1)
        if self.x.size == 0:
            raise ValueError("x is empty: there is nothing to quantize")
        self.seed = check_int(seed, "seed")
        clip = check_clip(clip) or (float(self.x.min()), float(self.x.max()))
        lo, hi = min(float(self.x.min()), clip[0]), max(float(self.x.max()), clip[1])  # the slider's span
        if lo == hi:  # constant x: give the slider some room
            lo, hi = lo - 1.0, hi + 1.0
        controls = {
            "bits": widgets.IntSlider(value=8, min=1, max=8, description="bits", continuous_update=False),
            "symmetric": widgets.ToggleButtons(options=[("asymmetric", False), ("symmetric", True)], value=False),
            "clip": widgets.FloatRangeSlider(value=(lo, hi), min=lo, max=hi, step=(hi - lo) / 1000,
                                             description="clip", readout_format=".3g",
                                             continuous_update=False, layout=widgets.Layout(width="420px")),
            "rounding": widgets.Dropdown(options=list(ROUNDING_MODES), value="half_even", description="rounding"),
        }
        figure = Figure(figsize=(8, 5.5), dpi=100, layout="constrained")
        axes = figure.subplots(2, 1, height_ratios=(3, 2))
        self.plot = QuantizationPlot(axes, self.x, bins=bins, log=log, animated=True)
        self._background = None
        super().__init__(controls, figure)
        self._syncing = True
        try:
            for name, value in (("bits", bits), ("symmetric", symmetric), ("clip", clip), ("rounding", rounding)):
                self._set_control(name, value)
        finally:
            self._syncing = False
        self._refresh()
        self.canvas.draw()  # lay the figure out once, with a real title, then freeze the layout:
        figure.set_layout_engine("none")  # constrained layout on every draw would cost more than the rest
        self.image.value = self._render()

    def _refresh(self) -> None:
        c = self.controls
        rng = np.random.default_rng(self.seed)  # fresh each time: the same settings give the same picture
        self.result = quantize_tensor(self.x, c["bits"].value, c["symmetric"].value, c["clip"].value,
                                      c["rounding"].value, rng)
        self.plot.show(self.result)
        r = self.result
        self.readout.value = (
            f"<b>SQNR = {r.sqnr_db:.2f} dB</b> &nbsp; scale = {r.scale:.4g}, zero_point = {r.zero_point}, "
            f"clipped: {100 * r.clipped:.2f} % of values"
        )

    def _render(self) -> bytes:
        """Blit: redraw the static background only when the x-limits moved, then the changed artists."""
        if self._background is None or self.plot.layout_changed:
            self.canvas.draw()  # draws everything but the animated (dynamic) artists
            self._background = self.canvas.copy_from_bbox(self.figure.bbox)
        else:
            self.canvas.restore_region(self._background)
        for artist in self.plot.dynamic_artists:
            self.figure.draw_artist(artist)
        return self._encode()

    def _summary(self) -> str:
        return f"{super()._summary()}: SQNR = {self.result.sqnr_db:.2f} dB"


def quantization_explorer(x, *, bits: int = 8, symmetric: bool = False, clip=None, rounding: str = "half_even",
                          seed: int = 0, bins: int = 120, log: bool = False) -> QuantizationExplorer:
    """Explore per-tensor quantization of ``x``: bit width 1..8, (a)symmetric, clipping range, rounding.

    Shows ``plot_quantization(x, bits, symmetric, clip, rounding)`` and the SQNR. ``clip=None``
    starts at the min-max range of ``x``; the clip slider spans ``[x.min(), x.max()]``.
    Stochastic rounding draws from ``np.random.default_rng(seed)``, fresh at every update, so the
    same settings always give the same picture. The histogram of ``x`` is computed once over all
    of ``x`` (no downsampling: it is the per-update error histogram and SQNR that cost, ~1 pass
    each). Drive it from code with ``.update(bits=4, symmetric=True, clip=(-3, 3), rounding="floor")``.

    >>> ex = quantization_explorer(np.linspace(-1, 1, 1001), bits=4)
    >>> ex.update(bits=2, symmetric=True).result.levels, ex.readout.value
    (4, '<b>SQNR = 9.54 dB</b> &nbsp; scale = 0.6667, zero_point = 0, clipped: 16.68 % of values')
    """
    return QuantizationExplorer(x, bits=bits, symmetric=symmetric, clip=clip, rounding=rounding,
                                seed=seed, bins=bins, log=log)


CUSTOM = "custom"


class FormatExplorer(FigureExplorer):
    """``plot_number_line`` of a named float format, or of a custom ``FloatFormat(E, M, ieee=...)``."""

    def __init__(self, fmt: str = "fp8_e4m3") -> None:
        names = [name for name, f in FORMATS.items() if f.bits <= 16]
        if fmt not in names and fmt != CUSTOM:
            raise ValueError(f"fmt must be one of {', '.join(map(repr, [*names, CUSTOM]))}; got {fmt!r}")
        controls = {
            "format": widgets.Dropdown(options=[*names, CUSTOM], value=fmt, description="format"),
            "exp_bits": widgets.IntSlider(value=4, min=1, max=8, description="E bits"),
            "man_bits": widgets.IntSlider(value=3, min=1, max=10, description="M bits"),
            "ieee": widgets.Checkbox(value=False, description="top exponent = inf/NaN (IEEE)"),
        }
        figure = Figure(figsize=(8, 5), dpi=100, layout="constrained")
        self.axes = figure.subplots(2, 1)
        super().__init__(controls, figure)
        self.refresh()

    def update(self, **params) -> FormatExplorer:
        """As ``FigureExplorer.update``; setting ``exp_bits``, ``man_bits`` or ``ieee`` selects "custom"."""
        if "format" not in params and {"exp_bits", "man_bits", "ieee"} & set(params):
            params = {"format": CUSTOM, **params}
        return super().update(**params)

    def _refresh(self) -> None:
        c = self.controls
        custom = c["format"].value == CUSTOM
        if custom:
            fmt = FloatFormat(c["exp_bits"].value, c["man_bits"].value, ieee=c["ieee"].value)
        else:
            fmt = FORMATS[c["format"].value]
            syncing, self._syncing = self._syncing, True  # show the named format's fields on the sliders
            try:
                c["exp_bits"].value, c["man_bits"].value, c["ieee"].value = fmt.exp_bits, fmt.man_bits, fmt.ieee
            finally:
                self._syncing = syncing
        for name in ("exp_bits", "man_bits", "ieee"):
            c[name].disabled = not custom
        if fmt.bits > 16:
            raise ValueError(f"{fmt.name} has {fmt.bits} bits; the number line lists formats of at most 16 bits")
        self.format = fmt
        values = representable_values(fmt)
        for ax in self.axes:
            ax.clear()
        plot_number_line(fmt, axes=self.axes)
        self.readout.value = (
            f"<b>{fmt.name}</b>: {fmt.bits} bits (1 sign, {fmt.exp_bits} exponent, {fmt.man_bits} mantissa), "
            f"bias {fmt.bias} &nbsp; max = {fmt.max:.6g}, eps = {fmt.eps:.6g}, "
            f"smallest normal = {fmt.smallest_normal:.6g}, smallest subnormal = {fmt.smallest_subnormal:.6g}, "
            f"{values.size} values ≥ 0"
        )


def format_explorer(fmt: str = "fp8_e4m3") -> FormatExplorer:
    """Explore small float formats: pick fp16, bf16, fp8_e4m3, fp8_e5m2, or "custom" E/M bits.

    Shows ``plot_number_line`` (values on a linear line, gap vs magnitude) and max, eps, smallest
    normal and subnormal. Custom formats need ``1 + E + M <= 16`` bits (every value is listed).
    Drive it with ``.update(format="custom", exp_bits=3, man_bits=2, ieee=False)``.

    >>> ex = format_explorer("fp8_e5m2")
    >>> ex.update(exp_bits=2, man_bits=1).format.max    # E2M1 with inf/NaN: the top binade is gone
    3.0
    """
    return FormatExplorer(fmt)


METHODS = ("unstructured", "structured", "N:M")


class SparsityExplorer(FigureExplorer):
    """|w| next to the keep-mask of ``magnitude_mask``, ``ln_structured_mask`` (rows) or ``nm_mask``."""

    def __init__(self, w, *, amount: float = 0.5, method: str = "unstructured", nm=(2, 4)) -> None:
        self.w = as_float32(w, "w")
        if self.w.ndim == 0 or self.w.size == 0:
            raise ValueError(f"w must be a non-empty array with at least one dimension, got shape {self.w.shape}")
        controls = {
            "amount": widgets.FloatSlider(value=0.5, min=0.0, max=1.0, step=0.05, description="amount",
                                          continuous_update=False),
            "method": widgets.ToggleButtons(options=list(METHODS), value="unstructured"),
            "nm": widgets.Dropdown(options=[("2:4", (2, 4)), ("1:4", (1, 4)), ("4:8", (4, 8)), ("1:2", (1, 2))],
                                   value=(2, 4), description="N:M"),
        }
        figure = Figure(figsize=(8, 3.6), dpi=100, layout="constrained")
        self.ax_w, self.ax_mask = figure.subplots(1, 2)
        magnitude = np.abs(_as_2d_weights(self.w))
        self.ax_w.imshow(magnitude, cmap="Blues", interpolation="nearest", aspect="auto")
        self.ax_w.set_title("|w| (darker = larger)", fontsize=10)
        self.mask_image = self.ax_mask.imshow(np.ones_like(magnitude, dtype=bool), cmap=MASK_CMAP, vmin=0, vmax=1,
                                              interpolation="nearest", aspect="auto")
        for ax in (self.ax_w, self.ax_mask):
            ax.set_xlabel("input index")
            ax.set_ylabel("output channel")
        super().__init__(controls, figure)
        self.update(amount=amount, method=method, nm=tuple(nm))

    def _refresh(self) -> None:
        c = self.controls
        method, amount, (n, m) = c["method"].value, c["amount"].value, c["nm"].value
        c["amount"].disabled = method == "N:M"
        c["nm"].disabled = method != "N:M"
        if method == "unstructured":
            mask, label = magnitude_mask(self.w, amount), f"magnitude, amount {amount:.2f}"
        elif method == "structured":
            mask, label = ln_structured_mask(self.w, amount, n=2, dim=0), f"L2 rows, amount {amount:.2f}"
        else:
            mask, label = nm_mask(self.w, n=n, m=m, axis=-1), f"{n}:{m} (keep {n} of every {m})"
        self.mask = mask
        w64 = self.w.astype(np.float64)
        total = float(np.sum(w64**2))
        kept_energy = float(np.sum(w64[mask] ** 2)) / total if total else 1.0
        pruned = sparsity(mask.astype(np.float32))
        self.mask_image.set_data(_as_2d_mask(mask, "mask"))
        self.ax_mask.set_title(f"keep-mask: {label}\nsparsity {100 * pruned:.1f} % (dark = kept)", fontsize=10)
        self.readout.value = (
            f"<b>sparsity {100 * pruned:.2f} %</b> &nbsp; the kept weights hold "
            f"{100 * kept_energy:.2f} % of the energy sum(w²)"
        )


def _as_2d_weights(w: np.ndarray) -> np.ndarray:
    return w.reshape(1, -1) if w.ndim == 1 else w.reshape(w.shape[0], -1)


def sparsity_explorer(w, *, amount: float = 0.5, method: str = "unstructured", nm=(2, 4)) -> SparsityExplorer:
    """Explore pruning masks of ``w``: unstructured magnitude, structured (L2 rows) or N:M.

    ``amount`` (0..1) is the fraction pruned (``magnitude_mask`` prunes that fraction of entries,
    ``ln_structured_mask(w, amount, n=2, dim=0)`` that fraction of rows); N:M keeps the ``n`` largest
    of every ``m`` neighbours along the last axis (``nm_mask``), so its sparsity is ``1 - n/m``.
    Drive it with ``.update(amount=0.75, method="structured")`` or ``.update(method="N:M", nm=(1, 4))``.

    >>> ex = sparsity_explorer(np.arange(16.0).reshape(4, 4), amount=0.25, method="structured")
    >>> ex.mask[:, 0].tolist()                         # the row of smallest L2 norm is pruned
    [False, True, True, True]
    """
    return SparsityExplorer(w, amount=amount, method=method, nm=nm)
