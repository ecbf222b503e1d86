"""Pictures and interactive explorers for the labs (matplotlib; ipywidgets only when used).

Static figures (``qlearn.viz.plots``, imported here): ``plot_quantization``, ``plot_int_grid``,
``plot_number_line``, ``plot_range_vs_precision``, ``plot_sqnr_vs_bits``, ``plot_error_vs_clip``,
``plot_sparsity_masks``. Each returns a matplotlib ``Figure``.

Explorers (``qlearn.viz.widgets``): ``quantization_explorer``, ``format_explorer`` and
``sparsity_explorer``. They are imported on first use, so ``import qlearn.viz`` does not load
ipywidgets. The numpy core (``import qlearn``) loads neither matplotlib nor ipywidgets.
"""

from __future__ import annotations

from qlearn.viz.plots import (
    plot_error_vs_clip,
    plot_int_grid,
    plot_number_line,
    plot_quantization,
    plot_range_vs_precision,
    plot_sparsity_masks,
    plot_sqnr_vs_bits,
)

__all__ = [
    "format_explorer",
    "plot_error_vs_clip",
    "plot_int_grid",
    "plot_number_line",
    "plot_quantization",
    "plot_range_vs_precision",
    "plot_sparsity_masks",
    "plot_sqnr_vs_bits",
    "quantization_explorer",
    "sparsity_explorer",
]

_EXPLORERS = ("format_explorer", "quantization_explorer", "sparsity_explorer")


def __getattr__(name: str):
    """Import ``qlearn.viz.widgets`` (and ipywidgets) only when an explorer is asked for."""
    if name in _EXPLORERS:
        from qlearn.viz import widgets

        return getattr(widgets, name)
    raise AttributeError(f"module 'qlearn.viz' has no attribute {name!r}")
