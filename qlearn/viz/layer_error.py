"""``LayerErrorExplorer``: pick a layer of an int8 model, see its weight and output errors.

Used in lab 10, section 12 ("Per-layer error: which layers suffer most?"). The measurements come
from :mod:`qlearn.bridge.layer_error`; this module only draws them. It imports torch (through the
bridge) and ipywidgets, so it is imported by its full path: ``from qlearn.viz.layer_error import
LayerErrorExplorer``.
"""

from __future__ import annotations

from collections.abc import Mapping

import ipywidgets as widgets
import numpy as np
from matplotlib.figure import Figure

from qlearn.bridge.layer_error import fused_float_weight, quantized_layers, weight_error
from qlearn.viz.widgets import FigureExplorer

__all__ = ["LayerErrorExplorer"]


class LayerErrorExplorer(FigureExplorer):
    """A dropdown to pick a quantized layer; two histograms of its errors, in steps.

    - left: the weight error of the int8 weights against the fused float ones, in steps of each
      channel's scale (within half a step, with a spike at -1/2 from the clamped largest weights);
    - right: the layer's output in the int8 model against the float model, in steps of the layer's
      output scale (wider: it carries the errors of every layer before it).

    ``quantized`` is the converted model, ``prepared`` the fused float model it came from;
    ``float_acts`` and ``int8_acts`` map each layer name to its outputs
    (:func:`qlearn.bridge.layer_error.layer_outputs`); ``report`` (optional) maps each name to a
    dict of SQNRs in dB, shown in the readout.
    """

    def __init__(self, quantized, prepared, float_acts: Mapping[str, np.ndarray],
                 int8_acts: Mapping[str, np.ndarray], report: Mapping[str, Mapping[str, float]] | None = None,
                 layer: str | None = None) -> None:
        self.quantized, self.prepared = quantized, prepared
        self.float_acts, self.int8_acts, self.report = float_acts, int8_acts, report or {}
        names = list(quantized_layers(quantized))
        if not names:
            raise ValueError("quantized has no quantized conv or linear layer: pass the converted model")
        if layer is not None and layer not in names:
            raise ValueError(f"layer must be one of the quantized layers {names}, got {layer!r}")
        choose = widgets.Dropdown(options=names, value=layer or names[0], description="layer")
        super().__init__({"layer": choose}, Figure(figsize=(12, 3.6), layout="constrained"))
        self.refresh()

    def _refresh(self) -> None:
        name = self.controls["layer"].value
        qmodule = self.quantized.get_submodule(name)
        _, steps = weight_error(qmodule, fused_float_weight(self.prepared, name))
        act_steps = (self.int8_acts[name] - self.float_acts[name]) / qmodule.scale
        self.figure.clear()
        left, right = self.figure.subplots(1, 2)
        left.hist(steps.ravel(), bins=60, color="tab:blue")
        left.set(xlabel="weight error (steps of its channel's scale)", ylabel="count", title=f"{name}: weights")
        right.hist(act_steps.ravel(), bins=120, color="tab:orange", log=True)
        right.set(xlabel="output error (steps of the output scale)", ylabel="count (log scale)",
                  title=f"{name}: output, end to end")
        row = self.report.get(name, {})
        self.readout.value = f"<b>{name}</b>: " + ", ".join(f"{key} {value:.1f} dB" for key, value in row.items())

    def __repr__(self) -> str:
        return f"LayerErrorExplorer(layer={self.controls['layer'].value!r})"
