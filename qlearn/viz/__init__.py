"""Pictures and interactive explorers for the labs (matplotlib; ipywidgets only when used).

Static figures (``qlearn.viz.plots``, imported here): ``plot_quantization``, ``plot_int_grid``,
``plot_number_line``, ``plot_range_vs_precision``, ``plot_sqnr_vs_bits``, ``plot_error_vs_clip``,
``plot_sparsity_masks``. Each returns a matplotlib ``Figure``.

Explorers (``qlearn.viz.widgets``): ``quantization_explorer``, ``format_explorer`` and
``sparsity_explorer``; and one module per lab that needs more (``granularity`` for lab 03,
``pruning`` for lab 06, ...). They are imported on first use, so ``import qlearn.viz`` does not load
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

#: Names from the lab modules of ``qlearn.viz`` (they import ipywidgets), loaded on first use.
_LAZY: dict[str, tuple[str, ...]] = {
    "granularity": ("GranularityExplorer", "draw_channels"),
    "layer_error": ("LayerErrorExplorer",),
    "pruning": ("GRANULARITIES", "PruningExplorer", "granularity_mask", "output_sqnr", "plot_layer_sparsity",
                "plot_sqnr_vs_sparsity", "plot_storage", "plot_weight_histograms", "pruning_explorer"),
}

__all__ += sorted(name for names in _LAZY.values() for name in names)


def __getattr__(name: str):
    """Import ``qlearn.viz.widgets`` (and ipywidgets) only when an explorer is asked for."""
    if name in _EXPLORERS:
        from qlearn.viz import widgets

        return getattr(widgets, name)
    for module, names in _LAZY.items():
        if name in names:
            import importlib

            return getattr(importlib.import_module(f"qlearn.viz.{module}"), name)
    raise AttributeError(f"module 'qlearn.viz' has no attribute {name!r}")
