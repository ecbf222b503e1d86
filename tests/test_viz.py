"""Tests of qlearn.viz: every plot returns a Figure with the right panels and the right numbers;
the explorers build, update and report the SQNR that qlearn.metrics computes; the numpy core
stays free of matplotlib and ipywidgets."""

from __future__ import annotations

import base64
import io
import re
import subprocess
import sys

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from qlearn.affine import fake_quantize  # noqa: E402
from qlearn.formats import FORMATS, representable_values  # noqa: E402
from qlearn.metrics import sparsity, sqnr_db  # noqa: E402
from qlearn.pruning import magnitude_mask, nm_mask  # noqa: E402
from qlearn.qparams import calc_qparams, qrange  # noqa: E402
from qlearn.viz import (  # noqa: E402
    plot_error_vs_clip,
    plot_int_grid,
    plot_number_line,
    plot_quantization,
    plot_range_vs_precision,
    plot_sparsity_masks,
    plot_sqnr_vs_bits,
)
from qlearn.viz._quantization_plot import ERROR_BINS, ERROR_RANGE, QuantizationPlot  # noqa: E402
from qlearn.viz._quantize import quantize_tensor  # noqa: E402
from qlearn.viz.widgets import format_explorer, quantization_explorer, sparsity_explorer  # noqa: E402


@pytest.fixture(autouse=True)
def _close_figures():
    yield
    plt.close("all")


def reference_sqnr(x, bits, symmetric=False, clip=None, rounding="half_even", rng=None) -> float:
    """The SQNR computed from the core API directly, independently of qlearn.viz."""
    x = np.asarray(x, dtype=np.float32)
    lo, hi = (x.min(), x.max()) if clip is None else clip
    qmin, qmax = qrange(bits, signed=symmetric)
    scale, zp = calc_qparams(lo, hi, qmin, qmax, symmetric=symmetric)
    return sqnr_db(x, fake_quantize(x, scale, zp, qmin, qmax, rounding=rounding, rng=rng))


def title_sqnr(title: str) -> str:
    match = re.search(r"SQNR = (\S+) dB", title)
    assert match, title
    return match.group(1)


@pytest.fixture
def laplace(rng) -> np.ndarray:
    return rng.laplace(size=20_000).astype(np.float32)


# ---- plot_quantization ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    "bits, symmetric, clip, rounding",
    [(b, s, c, "half_even") for b in (1, 2, 4, 8, 12) for s in (False, True) for c in (None, (-1.5, 2.0))]
    + [(4, s, (-1.5, 2.0), r) for s in (False, True) for r in ("half_away", "floor", "ceil")],
)
def test_plot_quantization_title_is_the_metrics_sqnr(laplace, bits, symmetric, clip, rounding):
    fig = plot_quantization(laplace, bits, symmetric, clip, rounding)
    assert isinstance(fig, Figure)
    assert len(fig.axes) == 2
    expected = reference_sqnr(laplace, bits, symmetric, clip, rounding)
    assert title_sqnr(fig.axes[0].get_title()) == f"{expected:.2f}"


def test_plot_quantization_stochastic_is_seeded(laplace):
    a = plot_quantization(laplace, 3, rounding="stochastic", rng=np.random.default_rng(7))
    expected = reference_sqnr(laplace, 3, rounding="stochastic", rng=np.random.default_rng(7))
    assert title_sqnr(a.axes[0].get_title()) == f"{expected:.2f}"
    with pytest.raises(TypeError, match="rng"):
        plot_quantization(laplace, 3, rounding="stochastic")


def test_plot_quantization_exact_grid_gives_infinite_sqnr():
    fig = plot_quantization([0.0, 1.0, 2.0, 3.0], bits=2)  # scale 1: every value is a level
    assert title_sqnr(fig.axes[0].get_title()) == "inf"


def test_plot_quantization_levels_as_lines_or_shaded(laplace):
    fig, axes = plt.subplots(2, 1)
    plot = QuantizationPlot(axes, laplace)
    for bits in (1, 3, 6):  # 2, 8, 64 levels: one line per level
        r = quantize_tensor(laplace, bits)
        plot.show(r)
        assert plot.levels.get_visible() and not plot.span.get_visible()
        xs = sorted(seg[0][0] for seg in plot.levels.get_segments())
        expected = (np.arange(r.qmin, r.qmax + 1) - r.zero_point) * np.float32(r.scale)
        np.testing.assert_allclose(xs, expected, rtol=1e-6)
    plot.show(quantize_tensor(laplace, 7))  # 128 levels: the grid's range is shaded instead
    assert plot.span.get_visible() and not plot.levels.get_visible()


def test_plot_quantization_marks_the_clipped_fraction(laplace):
    r = quantize_tensor(laplace, 4, clip=(-1.0, 1.0))
    outside = np.mean((laplace < r.grid_min) | (laplace > r.grid_max))
    assert r.clipped == pytest.approx(outside)
    assert r.clipped > 0.3  # Laplace(1): P(|x| > 1) = exp(-1) = 0.37
    fig = plot_quantization(laplace, 4, clip=(-1.0, 1.0))
    assert f"{100 * outside:.2f} % clipped" in fig.axes[0].get_title()


def test_error_histogram_counts_every_value(laplace):
    fig, axes = plt.subplots(2, 1)
    plot = QuantizationPlot(axes, laplace)
    r = quantize_tensor(laplace, 4)  # min-max range: nothing is clipped
    inside, below, above = plot.error_histogram(r)
    assert inside.shape == (ERROR_BINS,)
    assert inside.sum() + below + above == pytest.approx(1.0)
    assert below == above == 0.0
    centers = np.linspace(-ERROR_RANGE, ERROR_RANGE, ERROR_BINS + 1)[:-1] + ERROR_RANGE / ERROR_BINS
    assert inside[np.abs(centers) > 0.55].sum() == 0  # round to nearest: |error| <= scale / 2

    r = quantize_tensor(laplace, 8, clip=(-0.5, 0.5))  # tight clip: the tails land in the overflow bars
    _, below, above = plot.error_histogram(r)
    u = (laplace - r.x_hat) / np.float32(r.scale)
    assert below == pytest.approx(np.mean(u < -ERROR_RANGE), abs=2e-4)
    assert above == pytest.approx(np.mean(u > ERROR_RANGE), abs=2e-4)
    assert below > 0.1 and above > 0.1


def test_plot_quantization_into_given_axes(laplace):
    fig, (a, b) = plt.subplots(1, 2)
    assert plot_quantization(laplace, 4, axes=(a, b)) is fig
    with pytest.raises(ValueError, match="2 matplotlib Axes"):
        plot_quantization(laplace, 4, axes=[a])


def test_plot_quantization_is_deterministic(laplace):
    pictures = []
    for _ in range(2):
        fig = plot_quantization(laplace, 3, clip=(-2.0, 2.0))
        fig.canvas.draw()
        pictures.append(np.asarray(fig.canvas.buffer_rgba()).copy())
    np.testing.assert_array_equal(*pictures)


@pytest.mark.parametrize(
    "kwargs, error, words",
    [
        ({"clip": (2.0, 1.0)}, ValueError, "clip"),
        ({"clip": (0.0, np.inf)}, ValueError, "clip"),
        ({"clip": 3.0}, TypeError, "clip"),
        ({"bits": 0}, ValueError, "bits"),
        ({"rounding": "nearest"}, ValueError, "rounding"),
        ({"bins": 0}, ValueError, "bins"),
    ],
)
def test_plot_quantization_rejects_bad_input(laplace, kwargs, error, words):
    with pytest.raises(error, match=words):
        plot_quantization(laplace, **{"bits": 4, **kwargs})


def test_plot_quantization_rejects_nan_and_empty():
    with pytest.raises(ValueError, match="non-finite"):
        plot_quantization([0.0, np.nan, 1.0])
    with pytest.raises(ValueError, match="empty"):
        plot_quantization([])


# ---- the other plots -----------------------------------------------------------------------------


def tick_positions(line) -> np.ndarray:
    """The x of each vertical tick of a plots._ticks line (segments separated by NaN)."""
    x, y = np.asarray(line.get_xdata()), np.asarray(line.get_ydata())
    return x[::3][~np.isnan(y[::3])]


def test_plot_int_grid_draws_each_code():
    fig = plot_int_grid(4, 0.25, 3, signed=False)
    assert len(fig.axes) == 1  # the code axis on top is a secondary axis of the same Axes
    np.testing.assert_allclose(tick_positions(fig.axes[0].lines[0]), (np.arange(0, 16) - 3) * 0.25)
    np.testing.assert_array_equal(tick_positions(fig.axes[0].lines[1]), [0.0])
    assert "scale = 0.25, zero_point = 3" in fig.axes[0].get_title()
    with pytest.raises(ValueError, match="zero_point"):
        plot_int_grid(4, 0.25, 16, signed=False)
    with pytest.raises(ValueError, match="scale"):
        plot_int_grid(4, -1.0, 0)


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2", "bf16", "fp16"])
def test_plot_number_line_shows_every_value(name):
    fig = plot_number_line(name)
    assert len(fig.axes) == 2
    shown = np.sort(np.concatenate([tick_positions(line) for line in fig.axes[0].lines]))
    values = representable_values(name)
    # values closer than max / 4000 would share a pixel and are drawn once; the sparse end is exact
    assert np.isin(shown, values).all() and shown[0] == 0 and shown[-1] == values[-1]
    assert len(shown) <= 4001
    top = 2.0 ** FORMATS[name].emax  # the largest binade: its gaps are wider than a pixel
    np.testing.assert_array_equal(shown[shown >= top], values[values >= top])
    fmt = FORMATS[name]
    assert f"max = {fmt.max:.4g}" in fig.axes[0].get_title()
    gap = fig.axes[1].lines[0]  # gap to the next value: eps * 2^e in binade e, never below it / 2
    x, g = gap.get_xdata(), gap.get_ydata()
    normal = x >= fmt.smallest_normal
    assert np.all(g[normal] / x[normal] <= fmt.eps) and np.all(g[normal] / x[normal] > fmt.eps / 2)


def test_plot_number_line_zoomed_shows_every_value():
    fig = plot_number_line("fp8_e4m3", xmax=1.0)  # 1 / 4000 is finer than the smallest gap 2^-9
    shown = np.sort(np.concatenate([tick_positions(line) for line in fig.axes[0].lines]))
    values = representable_values("fp8_e4m3")
    np.testing.assert_array_equal(shown, values[values <= 1.0])


def test_plot_number_line_rejects_wide_and_unknown_formats():
    with pytest.raises(ValueError, match="16 bits"):
        plot_number_line("fp32")
    with pytest.raises(ValueError, match="fp9"):
        plot_number_line("fp9")


def test_plot_range_vs_precision_places_each_format():
    fig = plot_range_vs_precision(int_bits=(8,))
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert [t.get_text() for t in ax.texts] == [*FORMATS, "int8"]
    points = {t.get_text(): t.xy for t in ax.texts}
    fp16 = FORMATS["fp16"]
    assert points["fp16"] == pytest.approx((2.0**-10, fp16.max / fp16.smallest_subnormal))
    assert points["int8"] == pytest.approx((1 / 127, 127))


def test_plot_sqnr_vs_bits_one_line_per_scheme(laplace):
    schemes = {"asym": {}, "sym": {"symmetric": True}, "clipped": {"symmetric": True, "clip": (-3.0, 3.0)}}
    bits = [2, 4, 6, 8]
    fig = plot_sqnr_vs_bits(laplace, bits, schemes)
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    assert [line.get_label() for line in ax.lines] == ["asym", "sym", "clipped", "+6.02 dB per bit"]
    for line, kw in zip(ax.lines, schemes.values()):
        expected = [reference_sqnr(laplace, b, kw.get("symmetric", False), kw.get("clip")) for b in bits]
        np.testing.assert_allclose(line.get_ydata(), expected)
    ref = ax.lines[-1].get_ydata()
    np.testing.assert_allclose(np.diff(ref), 2 * 20 * np.log10(2))  # 2 bits apart


def test_plot_sqnr_vs_bits_rejects_unknown_scheme(laplace):
    with pytest.raises(ValueError, match="schemes"):
        plot_sqnr_vs_bits(laplace, [4], ["affine"])
    with pytest.raises(ValueError, match="scheme 'x'"):
        plot_sqnr_vs_bits(laplace, [4], {"x": {"bits": 3}})


def test_plot_error_vs_clip_marks_the_minimum():
    t = np.linspace(0.5, 5.0, 10)
    errors = {"a": (t - 2.0) ** 2 + 1.0, "b": (t - 3.5) ** 2 + 0.5}
    fig = plot_error_vs_clip(t, errors)
    ax = fig.axes[0]
    assert len(fig.axes) == 1
    stars = [line for line in ax.lines if line.get_marker() == "*"]
    assert [(float(s.get_xdata()[0]), float(s.get_ydata()[0])) for s in stars] == [
        (float(t[np.argmin(e)]), float(np.min(e))) for e in errors.values()
    ]
    assert ax.get_legend() is not None
    with pytest.raises(ValueError, match="one value per threshold"):
        plot_error_vs_clip(t, t[:-1])


def test_plot_sparsity_masks_one_panel_per_mask(rng):
    w = rng.normal(size=(8, 16))
    masks = [magnitude_mask(w, 0.25), nm_mask(w, 1, 4), magnitude_mask(w.reshape(2, 4, 16), 0.5)]
    fig = plot_sparsity_masks(masks, ["a", "b", "c"])
    assert len(fig.axes) == 3
    for ax, mask in zip(fig.axes, masks):
        shown = ax.images[0].get_array()
        np.testing.assert_array_equal(shown, mask.reshape(mask.shape[0], -1))
        assert f"sparsity {100 * sparsity(mask.astype(float)):.1f} %" in ax.get_title()
    assert len(plot_sparsity_masks(np.ones(5, dtype=bool)).axes) == 1  # a single 1-D mask is one row
    with pytest.raises(ValueError, match="titles"):
        plot_sparsity_masks(masks, ["only one"])
    with pytest.raises(TypeError, match="masks\\[0\\]"):
        plot_sparsity_masks([np.array(["keep"])])


# ---- explorers -----------------------------------------------------------------------------------


def png_pixels(data) -> np.ndarray:
    data = bytes(data)  # ipywidgets keeps Image.value as a memoryview
    assert data.startswith(b"\x89PNG")
    return np.asarray(Image.open(io.BytesIO(data)))


def readout_sqnr(explorer) -> str:
    match = re.search(r"SQNR = (\S+) dB", explorer.readout.value)
    assert match, explorer.readout.value
    return match.group(1)


def test_quantization_explorer_updates_the_readout(laplace):
    ex = quantization_explorer(laplace, bits=8)
    assert readout_sqnr(ex) == f"{reference_sqnr(laplace, 8):.2f}"
    before = ex.readout.value
    ex.update(bits=4)
    assert ex.readout.value != before
    assert readout_sqnr(ex) == f"{reference_sqnr(laplace, 4):.2f}"
    ex.update(symmetric=True, clip=(-2.0, 2.0), rounding="floor")
    expected = reference_sqnr(laplace, 4, True, (-2.0, 2.0), "floor")
    assert readout_sqnr(ex) == title_sqnr(ex.plot.ax_x.get_title()) == f"{expected:.2f}"
    assert ex.result.sqnr_db == sqnr_db(laplace, ex.result.x_hat)


def test_quantization_explorer_stochastic_is_reproducible(laplace):
    ex = quantization_explorer(laplace, bits=3, seed=5)
    ex.update(rounding="stochastic")
    first = ex.readout.value
    ex.update(bits=4)
    ex.update(bits=3)
    assert ex.readout.value == first
    expected = reference_sqnr(laplace, 3, rounding="stochastic", rng=np.random.default_rng(5))
    assert readout_sqnr(ex) == f"{expected:.2f}"


def test_quantization_explorer_blitting_matches_a_fresh_drawing(laplace):
    """The picture after several in-place updates equals one drawn from scratch with the same settings."""
    ex = quantization_explorer(laplace, bits=8)
    full_range = (float(laplace.min()), float(laplace.max()))
    redrawn = []  # did the update move the x-limits (full redraw) or only the dynamic artists (blit)?
    for params in ({"bits": 3}, {"clip": (-2.0, 3.0)}, {"symmetric": True}, {"rounding": "ceil"}, {"bits": 5},
                   {"symmetric": False, "clip": full_range, "bits": 1}):
        ex.update(**params)
        redrawn.append(ex.plot.layout_changed)
    assert redrawn[-1] and not any(redrawn[:-1])  # 1 bit: the grid [0, 2 * range] reaches past the data
    fresh = quantization_explorer(laplace, bits=1, rounding="ceil")
    assert fresh.readout.value == ex.readout.value
    np.testing.assert_array_equal(png_pixels(ex.image.value), png_pixels(fresh.image.value))


def test_quantization_explorer_is_driven_by_its_controls(laplace):
    ex = quantization_explorer(laplace, bits=8)
    ex.controls["bits"].value = 2  # what the slider does in the browser
    assert readout_sqnr(ex) == f"{reference_sqnr(laplace, 2):.2f}"
    assert ex.result.levels == 4


def test_quantization_explorer_rejects_bad_updates(laplace):
    ex = quantization_explorer(laplace)
    with pytest.raises(TypeError, match="unknown parameter"):
        ex.update(bit=4)
    with pytest.raises(ValueError, match="bits=9"):
        ex.update(symmetric=True, bits=9)
    assert ex.controls["symmetric"].value is False  # all or nothing
    with pytest.raises(ValueError, match="rounding"):
        ex.update(rounding="nearest")
    with pytest.raises(ValueError, match="bits=0"):
        quantization_explorer(laplace, bits=0)


def test_explorer_leaves_a_static_picture(laplace):
    ex = quantization_explorer(laplace, bits=3)
    bundle = ex._repr_mimebundle_()
    assert "application/vnd.jupyter.widget-view+json" in bundle
    assert base64.b64decode(bundle["image/png"]) == ex.image.value
    assert bundle["text/plain"].endswith(f"SQNR = {ex.result.sqnr_db:.2f} dB")
    assert "0x" not in bundle["text/plain"]  # no memory addresses: stable across runs
    assert png_pixels(ex.image.value).shape[:2] == (550, 800)


def test_format_explorer_shows_named_and_custom_formats():
    ex = format_explorer()
    assert "fp8_e4m3" in ex.readout.value and "max = 448" in ex.readout.value
    ex.update(format="fp16")
    assert "max = 65504" in ex.readout.value
    assert ex.controls["exp_bits"].value == 5 and ex.controls["exp_bits"].disabled
    ex.update(exp_bits=3, man_bits=2, ieee=False)  # setting fields selects "custom"
    assert ex.controls["format"].value == "custom"
    assert ex.format.max == 24.0 and "max = 24," in ex.readout.value  # 2^(7 - 3) * 1.5: E3M2 "fn"
    with pytest.raises(ValueError, match="16 bits"):
        ex.update(exp_bits=8, man_bits=10)
    with pytest.raises(ValueError, match="fmt"):
        format_explorer("fp32")


def test_sparsity_explorer_masks_and_readout(rng):
    w = rng.normal(size=(8, 16)).astype(np.float32)
    ex = sparsity_explorer(w, amount=0.5)
    assert "sparsity 50.00 %" in ex.readout.value
    ex.update(amount=0.75)
    assert "sparsity 75.00 %" in ex.readout.value
    np.testing.assert_array_equal(ex.mask, magnitude_mask(w, 0.75))
    ex.update(method="structured", amount=0.25)
    rows = ex.mask.all(axis=1) | ~ex.mask.any(axis=1)
    assert rows.all() and (~ex.mask.any(axis=1)).sum() == 2
    ex.update(method="N:M", nm=(1, 4))
    assert "sparsity 75.00 %" in ex.readout.value
    np.testing.assert_array_equal(ex.mask_image.get_array(), nm_mask(w, 1, 4))


def test_sparsity_explorer_shows_errors_in_the_readout(rng):
    ex = sparsity_explorer(rng.normal(size=(4, 6)))  # 6 is not a multiple of m = 4
    with pytest.raises(ValueError, match="multiple of m=4"):
        ex.update(method="N:M")
    assert ex.controls["method"].value == "unstructured"  # a failed update changes nothing
    ex.controls["method"].value = "unstructured"
    ex.controls["method"].value = "N:M"  # as from the browser: the message goes to the readout
    assert "multiple of m=4" in ex.readout.value


# ---- dependency direction ------------------------------------------------------------------------


def test_explorer_labels_are_never_cut_off(laplace, rng):
    """ipywidgets gives a description an 80 px column and a toggle button a fixed width, and cuts a
    longer text with an ellipsis: a button 90 px wide showed "asymme…" (in Chromium, "asymmetric"
    needs 97 px). Every label of every explorer must take the width of its text instead."""
    import ipywidgets as widgets

    from qlearn.viz.widgets import FigureExplorer

    class Custom(FigureExplorer):  # an explorer made in a notebook (labs 03 and 10) gets the same
        def _refresh(self):
            self.readout.value = "ok"

    custom = Custom({"granularity": widgets.ToggleButtons(options=["per-tensor", "per-channel"],
                                                          style={"button_width": "60px"}),
                     "layer": widgets.Dropdown(options=["layer3.1.downsample.0"], description="layer"),
                     "ieee": widgets.Checkbox(description="a long description of a checkbox")},
                    Figure())
    explorers = [quantization_explorer(laplace), format_explorer(), sparsity_explorer(rng.normal(size=(8, 8))),
                 custom]
    toggles = 0
    for explorer in explorers:
        for name, control in explorer.controls.items():
            where = f"{type(explorer).__name__}.controls[{name!r}]"
            if control.description and not isinstance(control, widgets.Checkbox):
                assert control.style.description_width == "initial", where
            if isinstance(control, widgets.ToggleButtons):
                toggles += 1
                assert control.style.button_width == "auto", where
            if isinstance(control, widgets.Checkbox):
                assert control.indent is False and control.layout.width == "auto", where
    assert toggles == 3  # asymmetric/symmetric, the pruning methods, and the custom one


def test_numpy_core_imports_no_plotting_or_widgets():
    code = (
        "import sys, qlearn\n"
        "bad = [m for m in ('matplotlib', 'ipywidgets') if m in sys.modules]\n"
        "assert not bad, bad\n"
        "import qlearn.viz\n"
        "assert 'matplotlib' in sys.modules and 'ipywidgets' not in sys.modules\n"
        "qlearn.viz.quantization_explorer\n"
        "assert 'ipywidgets' in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_plots_leave_global_matplotlib_state_alone(laplace):
    before = dict(matplotlib.rcParams)
    plot_quantization(laplace, 4, log=True)
    plot_number_line("fp8_e5m2")
    plot_sqnr_vs_bits(laplace, [2, 3])
    quantization_explorer(laplace, bits=3).update(bits=2)
    assert dict(matplotlib.rcParams) == before
    assert len(plt.get_fignums()) == 3  # the explorer's figure is not a pyplot figure
