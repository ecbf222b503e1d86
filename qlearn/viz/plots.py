"""Static matplotlib pictures for the labs. Each function returns the ``Figure`` it drew on.

Pass ``ax=`` (or ``axes=`` for the figures with several panels) to draw into your own figure;
otherwise a new one is made with ``plt.subplots``. Nothing here calls ``plt.show()``, sets
``rcParams`` or draws at random: the same call always gives the same picture. In a notebook a new
figure is shown at the end of the cell; end the cell with ``plt.show()`` so that it is not shown twice
(a trailing ``;`` is not reliable under nbval).

===========================  =========================================================================
``plot_quantization``        histogram of x, the quantization grid, clipping, error; SQNR in the title
``plot_int_grid``            the real values of the integer codes ``(q - zero_point) * scale``
``plot_number_line``         the values of a small float format: spacing grows with magnitude
``plot_range_vs_precision``  dynamic range vs relative precision (eps) of float and int formats
``plot_sqnr_vs_bits``        SQNR against bit width, one line per scheme (about +6.02 dB per bit)
``plot_error_vs_clip``       the U-shaped error against the clipping threshold, minimum marked
``plot_sparsity_masks``      pruning masks side by side (dark = kept), with their sparsity
===========================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import matplotlib.pyplot as plt
import numpy as np
from matplotlib.colors import ListedColormap
from matplotlib.figure import Figure

from qlearn._validate import as_float32, check_bits, check_int
from qlearn.formats import FORMATS, FloatFormat, representable_values
from qlearn.metrics import sparsity
from qlearn.qparams import qrange
from qlearn.viz._quantization_plot import QuantizationPlot
from qlearn.viz._quantize import quantize_tensor

__all__ = [
    "plot_error_vs_clip",
    "plot_int_grid",
    "plot_number_line",
    "plot_quantization",
    "plot_range_vs_precision",
    "plot_sparsity_masks",
    "plot_sqnr_vs_bits",
]

MASK_CMAP = ListedColormap(["#eeeeee", "#1f4e79"])  # pruned (False) light, kept (True) dark


def _new_axes(ax, count: int, *, nrows: int = 1, ncols: int = 1, **kw):
    """The caller's axes (``count`` of them) or a new ``nrows x ncols`` grid from ``plt.subplots``."""
    if ax is None:
        fig, made = plt.subplots(nrows, ncols, squeeze=False, **kw)
        return fig, list(made.ravel())
    axes = [ax] if count == 1 and not isinstance(ax, (list, tuple, np.ndarray)) else list(np.ravel(ax))
    if len(axes) != count:
        raise ValueError(f"expected {count} matplotlib Axes for this plot, got {len(axes)}")
    return axes[0].figure, axes


def _ticks(ax, xs, y0: float, y1: float, *, transform=None, **line_kw):
    """Vertical segments from ``y0`` to ``y1`` at each of ``xs``, as one Line2D (NaN between them).

    One path draws far faster than ``ax.vlines`` when there are thousands of values (fp16 has 31744).
    """
    xs = np.asarray(xs, dtype=np.float64)
    x = np.repeat(xs, 3)
    y = np.tile([y0, y1, np.nan], xs.size)
    (line,) = ax.plot(x, y, transform=ax.transData if transform is None else transform, **line_kw)
    return line


def plot_quantization(x, bits: int = 8, symmetric: bool = False, clip=None, rounding: str = "half_even", *,
                      rng: np.random.Generator | None = None, bins: int = 120, log: bool = False,
                      axes=None) -> Figure:
    """Show what per-tensor quantization does to ``x``: the grid over its histogram, and the error.

    ``x_hat = fake_quantize(x)`` with ``(scale, zero_point) = calc_qparams(lo, hi, qmin, qmax)``,
    where ``(lo, hi) = clip`` or the min-max of ``x``; symmetric uses signed codes, asymmetric
    unsigned ones (torch's qint8 / quint8). Top: histogram of ``x`` (``log=True`` for a log count
    axis, to see the tails), each level as a line (at most 64 levels; beyond that the grid's range
    is shaded), the clipped region in red. Bottom: the error ``(x - x_hat) / scale`` in steps.
    The title's first line ends with ``SQNR = 10 log10(sum x^2 / sum (x - x_hat)^2)`` in dB
    (2 decimals); its second line gives the levels, scale, zero_point, grid and clipped fraction.
    ``axes``: two Axes (top, bottom) to draw into. ``rounding="stochastic"`` needs ``rng``.

    >>> fig = plot_quantization([-1.0, 0.0, 0.5, 2.0], bits=2)   # x_hat = [-1, 0, 0, 2]: 10 log10(5.25 / 0.25)
    >>> print(fig.axes[0].get_title())
    2-bit asymmetric, half_even: SQNR = 13.22 dB
    4 levels, scale 1, zero_point 1, grid [-1, 2], 0.00 % clipped
    >>> plt.close(fig)
    """
    result = quantize_tensor(x, bits, symmetric, clip, rounding, rng)
    if check_int(bins, "bins") < 1:  # checked before a figure is made
        raise ValueError(f"bins must be a positive number of histogram bins, got {bins}")
    if axes is None:
        fig, axes = plt.subplots(2, 1, figsize=(8, 5.5), height_ratios=(3, 2), layout="constrained")
    else:
        fig, axes = _new_axes(axes, 2)
    QuantizationPlot(axes, x, bins=bins, log=bool(log)).show(result)
    return fig


def plot_int_grid(bits: int, scale: float, zero_point: int, *, signed: bool = True, narrow: bool = False,
                  ax=None) -> Figure:
    """Draw the real value ``(q - zero_point) * scale`` of every code ``q`` in ``qrange(bits, signed, narrow)``.

    The grid is uniform: every step is ``scale``, and code ``zero_point`` sits exactly on 0 (red).
    The top axis reads the codes, the bottom axis the real values.

    >>> fig = plot_int_grid(3, 0.5, 0)
    >>> fig.axes[0].get_title()
    '3-bit signed codes [-4, 3], scale = 0.5, zero_point = 0: values [-2, 1.5]'
    >>> plt.close(fig)
    """
    qmin, qmax = qrange(bits, signed=signed, narrow=narrow)
    scale_f = float(as_float32(scale, "scale"))
    if not scale_f > 0:
        raise ValueError(f"scale must be a positive number, got {scale!r}")
    zero_point = check_int(zero_point, "zero_point")
    if not qmin <= zero_point <= qmax:
        raise ValueError(f"zero_point must lie in [qmin, qmax] = [{qmin}, {qmax}], got {zero_point}")
    s = np.float32(scale_f)
    values = (np.arange(qmin, qmax + 1) - zero_point) * s
    fig, (ax,) = _new_axes(ax, 1, figsize=(8, 2.2), layout="constrained")
    _ticks(ax, values, 0.0, 1.0, color="C0", lw=1.2 if values.size <= 64 else 0.4)
    _ticks(ax, [0.0], -0.15, 1.15, color="C3", lw=2.0)
    ax.annotate(f"0.0 = code {zero_point}", (0.0, -0.15), xytext=(0, -2), textcoords="offset points",
                ha="center", va="top", fontsize=8, color="C3")
    lo, hi = float(values[0]), float(values[-1])
    ax.annotate(f"qmin = {qmin}", (lo, 1.0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
    ax.annotate(f"qmax = {qmax}", (hi, 1.0), xytext=(0, 4), textcoords="offset points", ha="center", fontsize=8)
    pad = max(float(s), 0.04 * (hi - lo))
    ax.set_xlim(lo - pad, hi + pad)
    ax.set_ylim(-0.6, 1.5)
    ax.set_yticks([])
    ax.set_xlabel("real value (q − zero_point) · scale")
    top = ax.secondary_xaxis("top", functions=(lambda v: v / scale_f + zero_point,
                                              lambda q: (q - zero_point) * scale_f))
    top.set_xlabel("code q")
    kind = "signed" if signed else "unsigned"
    ax.set_title(f"{bits}-bit {kind} codes [{qmin}, {qmax}], scale = {scale_f:.4g}, "
                 f"zero_point = {zero_point}: values [{lo:.4g}, {hi:.4g}]", fontsize=10)
    return fig


def _float_format(fmt: object, name: str = "fmt") -> FloatFormat:
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, str) and fmt in FORMATS:
        return FORMATS[fmt]
    raise ValueError(f"{name} must be a FloatFormat or one of {', '.join(map(repr, FORMATS))}; got {fmt!r}")


def plot_number_line(fmt, *, xmax: float | None = None, axes=None) -> Figure:
    """Show every non-negative value of a float format of at most 16 bits (``representable_values``).

    Top: the values on a linear number line up to ``xmax`` (default ``fmt.max``): dense near 0,
    sparse far out (values closer than ``xmax / 4000``, which would share a pixel, are drawn once). Bottom (log-log): the gap from each value to the next. Subnormals (orange)
    are evenly spaced by ``smallest_subnormal``; each normal binade ``[2^e, 2^(e+1))`` has ``2^M``
    values spaced ``2^e * eps``, so the gap doubles with every binade while ``gap / x`` stays
    between ``eps / 2`` and ``eps`` (dashed: ``gap = eps * x``).

    >>> fig = plot_number_line("fp8_e4m3")
    >>> fig.axes[0].get_title()
    'fp8_e4m3 (E4M3)\\nmax = 448, eps = 0.125, smallest normal = 0.01562, smallest subnormal = 0.001953'
    >>> plt.close(fig)
    """
    fmt = _float_format(fmt)
    values = np.asarray(representable_values(fmt), dtype=np.float64)
    top = fmt.max if xmax is None else float(xmax)
    if not top > 0:
        raise ValueError(f"xmax must be a positive number, got {xmax!r}")
    fig, (ax_lin, ax_gap) = _new_axes(axes, 2, nrows=2, figsize=(8, 5), layout="constrained")
    sub = values < fmt.smallest_normal
    shown = values <= top
    xaxis = ax_lin.get_xaxis_transform()
    for part, color, label in ((shown & ~sub, "C0", "normal"), (shown & sub, "C1", "subnormal (and 0)")):
        xs = values[part]
        cell = np.floor(xs / (top / 4000))  # values that would share a pixel are drawn once (fp16: 3024
        xs = xs[np.r_[True, cell[1:] != cell[:-1]]] if xs.size else xs  # lines, not 31744: 10x faster)
        _ticks(ax_lin, xs, 0.05, 0.7, transform=xaxis, color=color, lw=0.7, label=label)
    ax_lin.set_xlim(-0.02 * top, 1.02 * top)
    ax_lin.set_yticks([])
    ax_lin.set_xlabel(f"value (linear scale; the negative values mirror these){'' if xmax is None else ', zoomed'}")
    ax_lin.legend(loc="upper right", fontsize=8, ncols=2)
    ax_lin.set_title(f"{fmt.name} (E{fmt.exp_bits}M{fmt.man_bits})\nmax = {fmt.max:.4g}, eps = {fmt.eps:.4g}, "
                     f"smallest normal = {fmt.smallest_normal:.4g}, "
                     f"smallest subnormal = {fmt.smallest_subnormal:.4g}", fontsize=10)

    pos, gaps = values[1:-1], np.diff(values)[1:]  # each positive value but the largest, and its gap
    ax_gap.step(pos, gaps, where="post", color="C0", lw=1.2, label="gap to the next value")
    ax_gap.plot(pos, fmt.eps * pos, color="0.4", ls="--", lw=0.8, label="eps · x (relative precision)")
    ax_gap.axvline(fmt.smallest_normal, color="C1", ls=":", lw=1.0, label="smallest normal")
    ax_gap.set_xscale("log", base=2)
    ax_gap.set_yscale("log", base=2)
    ax_gap.set_xlabel("value x (log scale)")
    ax_gap.set_ylabel("gap to the next value")
    ax_gap.legend(loc="upper left", fontsize=8)
    return fig


def plot_range_vs_precision(formats=None, *, int_bits: Iterable[int] = (8, 4), ax=None) -> Figure:
    """Place each format by its relative precision (x) and its dynamic range (y), both log scale.

    Float formats: precision ``eps = 2^-M``, range ``max / smallest_subnormal``: exponent bits buy
    range, mantissa bits buy precision. Integer codes (``int_bits``, symmetric ``[-qmax, qmax]``):
    the step relative to the largest value is ``1 / qmax`` and the range ``qmax / 1``.
    ``formats``: names of ``qlearn.formats.FORMATS`` or ``FloatFormat`` objects (default: all).

    >>> fig = plot_range_vs_precision(["fp16", "bf16"], int_bits=[8])
    >>> [t.get_text() for t in fig.axes[0].texts]
    ['fp16', 'bf16', 'int8']
    >>> plt.close(fig)
    """
    fmts = list(FORMATS.values()) if formats is None else [_float_format(f, "formats") for f in formats]
    ints = [check_bits(b) for b in int_bits]
    fig, (ax,) = _new_axes(ax, 1, figsize=(7, 4.5), layout="constrained")
    for f in fmts:
        eps, rng_ = f.eps, f.max / f.smallest_subnormal
        ax.scatter([eps], [rng_], color="C0", zorder=3)
        ax.annotate(f.name, (eps, rng_), xytext=(5, 4), textcoords="offset points", fontsize=9)
    for b in ints:
        qmax = 2 ** (b - 1) - 1
        ax.scatter([1 / qmax], [qmax], color="C3", marker="s", zorder=3)
        ax.annotate(f"int{b}", (1 / qmax, qmax), xytext=(5, 4), textcoords="offset points", fontsize=9, color="C3")
    ax.set_xscale("log", base=2)
    ax.set_yscale("log")
    ax.set_xlabel("relative precision: eps = gap after 1.0 (int: step / max)   finer →")
    ax.set_ylabel("dynamic range: max / smallest positive")
    ax.set_title("Exponent bits buy range, mantissa bits buy precision", fontsize=10)
    ax.scatter([], [], color="C0", label="float formats")
    if ints:
        ax.scatter([], [], color="C3", marker="s", label="integer codes")
    ax.legend(loc="lower right", fontsize=8)
    ax.margins(0.12)
    ax.invert_xaxis()
    return fig


_NAMED_SCHEMES = {"asymmetric": {"symmetric": False}, "symmetric": {"symmetric": True}}


def _schemes(schemes) -> dict[str, dict]:
    if isinstance(schemes, str):
        schemes = [schemes]
    if isinstance(schemes, Mapping):
        items = list(schemes.items())
    else:
        items = []
        for s in schemes:
            if s not in _NAMED_SCHEMES:
                raise ValueError(f"schemes must name {' or '.join(map(repr, _NAMED_SCHEMES))} (or be a mapping "
                                 f"label -> dict(symmetric=..., clip=..., rounding=...)); got {s!r}")
            items.append((s, _NAMED_SCHEMES[s]))
    allowed = {"symmetric", "clip", "rounding"}
    for label, kw in items:
        if not isinstance(kw, Mapping) or not set(kw) <= allowed:
            raise ValueError(f"scheme {label!r} must be a mapping with keys among {sorted(allowed)}, got {kw!r}")
    if not items:
        raise ValueError("schemes is empty: give at least one scheme to plot")
    return {str(label): dict(kw) for label, kw in items}


def plot_sqnr_vs_bits(x, bits_list: Iterable[int] = range(2, 9), schemes=("asymmetric", "symmetric"), *,
                      rng: np.random.Generator | None = None, ax=None) -> Figure:
    """SQNR (dB) of per-tensor fake quantization of ``x`` against the bit width, one line per scheme.

    ``schemes``: names (``"asymmetric"``, ``"symmetric"``) or a mapping ``label -> dict(symmetric=,
    clip=, rounding=)``. The dashed line climbs 6.02 dB per bit (``20 log10 2``: each bit halves
    the step and so the error), starting from the first scheme's first point.

    >>> fig = plot_sqnr_vs_bits(np.linspace(-1, 1, 1001), [2, 4], {"minmax": {}})
    >>> [round(float(v), 2) for v in fig.axes[0].lines[0].get_ydata()]
    [9.54, 23.52]
    >>> plt.close(fig)
    """
    bits = [check_bits(b) for b in bits_list]
    if not bits:
        raise ValueError("bits_list is empty: give at least one bit width")
    specs = _schemes(schemes)
    x = as_float32(x, "x")
    fig, (ax,) = _new_axes(ax, 1, figsize=(6.5, 4), layout="constrained")
    first = None
    for label, kw in specs.items():
        sqnr = [quantize_tensor(x, b, rng=rng, **kw).sqnr_db for b in bits]
        ax.plot(bits, sqnr, marker="o", label=label)
        if first is None:
            first = next(((b, s) for b, s in zip(bits, sqnr) if np.isfinite(s)), None)
    if first is not None and len(bits) > 1:
        b0, s0 = first
        ref = [s0 + 20 * np.log10(2) * (b - b0) for b in bits]
        ax.plot(bits, ref, color="0.5", ls="--", lw=0.9, label="+6.02 dB per bit")
    ax.set_xticks(bits)
    ax.set_xlabel("bits")
    ax.set_ylabel("SQNR (dB)")
    ax.set_title("SQNR against bit width", fontsize=10)
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def plot_error_vs_clip(thresholds, errors, *, xlabel: str = "clipping threshold", ylabel: str = "MSE",
                       logy: bool = False, ax=None) -> Figure:
    """Plot error against clipping threshold (the caller computes both) and mark each minimum.

    Clipping tighter than the data cuts the outliers (clipping error grows) but refines the grid
    for everything else (rounding error shrinks): the sum is a U with the best threshold at its
    bottom. ``errors``: one sequence (same length as ``thresholds``) or a mapping label -> sequence.

    >>> fig = plot_error_vs_clip([1, 2, 3, 4], [5.0, 2.0, 3.0, 4.0])
    >>> fig.axes[0].texts[0].get_text()
    'min 2 at 2'
    >>> plt.close(fig)
    """
    t = as_float32(thresholds, "thresholds").astype(np.float64)
    if t.ndim != 1 or t.size == 0:
        raise ValueError(f"thresholds must be a non-empty 1-D sequence, got shape {t.shape}")
    curves = dict(errors) if isinstance(errors, Mapping) else {None: errors}
    fig, (ax,) = _new_axes(ax, 1, figsize=(6.5, 4), layout="constrained")
    for i, (label, err) in enumerate(curves.items()):
        name = "errors" if label is None else f"errors[{label!r}]"
        e = as_float32(err, name).astype(np.float64)
        if e.shape != t.shape:
            raise ValueError(f"{name} must have one value per threshold, shape {t.shape}; got {e.shape}")
        color = f"C{i}"
        ax.plot(t, e, marker=".", color=color, label=label)
        best = int(np.argmin(e))
        ax.plot([t[best]], [e[best]], marker="*", ms=14, color=color, mec="k", zorder=3)
        ax.annotate(f"min {e[best]:.4g} at {t[best]:.4g}", (t[best], e[best]), xytext=(0, 10),
                    textcoords="offset points", ha="center", fontsize=8, color=color)
    if logy:
        ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_title("Error against clipping threshold (★ = best)", fontsize=10)
    if any(label is not None for label in curves):
        ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    return fig


def _as_2d_mask(mask: object, name: str) -> np.ndarray:
    m = np.asarray(mask)
    if not (m.dtype == bool or np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
        raise TypeError(f"{name} must be a boolean mask (True = keep) or 0/1 numbers, got dtype {m.dtype}")
    if m.ndim == 0 or m.size == 0:
        raise ValueError(f"{name} must be a non-empty array, got shape {m.shape}")
    keep = m != 0
    return keep.reshape(1, -1) if keep.ndim == 1 else keep.reshape(keep.shape[0], -1)


def plot_sparsity_masks(masks, titles=None, *, axes=None) -> Figure:
    """Show pruning masks side by side: dark = kept (True / non-zero), light = pruned.

    A 1-D mask is drawn as one row; a mask with more than 2 dimensions as ``(shape[0], -1)`` (one
    row per output channel). Each title gives the sparsity, the fraction pruned.

    >>> fig = plot_sparsity_masks([np.array([[True, False], [True, True]])], ["magnitude"])
    >>> fig.axes[0].get_title()
    'magnitude\\nsparsity 25.0 %'
    >>> plt.close(fig)
    """
    if isinstance(masks, np.ndarray) or not isinstance(masks, Iterable):
        masks = [masks]
    keeps = [_as_2d_mask(m, f"masks[{i}]") for i, m in enumerate(masks)]
    if not keeps:
        raise ValueError("masks is empty: give at least one mask")
    if titles is None:
        titles = [f"mask {i}" for i in range(len(keeps))]
    titles = [str(t) for t in titles]
    if len(titles) != len(keeps):
        raise ValueError(f"titles must give one title per mask ({len(keeps)}), got {len(titles)}")
    n = len(keeps)
    fig, axs = _new_axes(axes, n, ncols=n, figsize=(3.2 * n, 3.4), layout="constrained")
    for ax, keep, title in zip(axs, keeps, titles):
        ax.imshow(keep, cmap=MASK_CMAP, vmin=0, vmax=1, interpolation="nearest", aspect="auto")
        ax.set_title(f"{title}\nsparsity {100 * sparsity(keep.astype(np.float32)):.1f} %", fontsize=10)
        ax.set_xlabel("input index")
        ax.set_ylabel("output channel")
    return fig
