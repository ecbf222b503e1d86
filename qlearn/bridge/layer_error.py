"""Per-layer error of an int8 model: its quantized layers, their weights and their outputs.

Used in lab 10, section 12 ("Per-layer error: which layers suffer most?") and by its widget
(:class:`qlearn.viz.layer_error.LayerErrorExplorer`):

- :func:`quantized_layers`: the quantized conv and linear modules of a converted model, by name;
- :func:`fused_float_weight`: the fused float weight of one layer of a prepared (or fused) model;
- :func:`weight_error`: the dequantized int8 weight and its error in steps of its scale;
- :func:`layer_outputs`: the outputs of named layers (dequantized if int8) and the logits, via hooks.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import torch
from torch import nn

from qlearn.affine import dequantize

__all__ = ["fused_float_weight", "layer_outputs", "quantized_layers", "weight_error"]


def quantized_layers(net: nn.Module) -> dict[str, nn.Module]:
    """The quantized conv and linear modules of ``net``, by name: those that store int8 weights.

    A converted module's ``weight`` is a method (``module.weight()`` returns the quantized tensor);
    a float module's is a parameter. So a float model has none:

    >>> quantized_layers(nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU()))
    {}
    """
    return {name: m for name, m in net.named_modules() if hasattr(m, "weight") and callable(m.weight)}


def fused_float_weight(prepared: nn.Module, name: str) -> np.ndarray:
    """The float32 weight of the layer ``name`` of a fused (or prepared) model, as a numpy array.

    A fused ``ConvReLU2d`` is a ``Sequential`` of the convolution and its ReLU: the weight is its
    first module's. These are the weights ``convert`` quantizes (BatchNorm already folded in).

    >>> fused_float_weight(nn.Sequential(nn.Sequential(nn.Linear(3, 2), nn.ReLU())), "0").shape
    (2, 3)
    """
    module = prepared.get_submodule(name)
    module = module[0] if isinstance(module, nn.Sequential) else module
    return module.weight.detach().numpy()


def weight_error(qmodule: nn.Module, w: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``(w_hat, steps)``: the dequantized int8 weight of ``qmodule`` and its error ``(w_hat - w) / s``.

    ``w`` is the float weight it was quantized from (:func:`fused_float_weight`). Per-channel weights
    (``torch.per_channel_affine``) use each output channel's scale, per-tensor ones the single scale;
    rounding keeps every error within half a step, except where the value was clamped.

    >>> import torch.ao.nn.quantized as nnq
    >>> w = np.array([[0.5, -0.25], [0.1, 0.2]], np.float32)
    >>> layer = nnq.Linear(2, 2)
    >>> layer.set_weight_bias(torch.quantize_per_tensor(torch.from_numpy(w), 0.01, 0, torch.qint8), None)
    >>> w_hat, steps = weight_error(layer, w)
    >>> bool(np.abs(steps).max() <= 0.5)
    True
    """
    stored = qmodule.weight()
    if stored.qscheme() in (torch.per_channel_affine, torch.per_channel_symmetric):
        scale = stored.q_per_channel_scales().numpy().astype(np.float32)
        w_hat = dequantize(stored.int_repr().numpy(), scale, np.zeros(len(scale), np.int64), axis=0)
        scale = scale.reshape((-1,) + (1,) * (w.ndim - 1))
    else:
        scale = np.float32(stored.q_scale())
        w_hat = dequantize(stored.int_repr().numpy(), scale, 0)
    return w_hat, (w_hat - w) / scale


def layer_outputs(net: nn.Module, names: Iterable[str], x: torch.Tensor) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """``(outputs, logits)``: what each layer in ``names`` outputs on ``x``, and the network's output.

    A forward hook on each named module keeps its output (dequantized when it is quantized) as a
    float32 numpy array; the hooks are removed afterwards, and no gradients are recorded. An int8
    model runs on the quantized engine currently set (``qlearn.bridge.set_engine``).

    >>> net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    >>> outputs, logits = layer_outputs(net, ["1"], torch.ones(5, 3))
    >>> outputs["1"].shape, logits.shape, bool((outputs["1"] >= 0).all())
    ((5, 4), (5, 2), True)
    """
    outputs, hooks = {}, []
    for name in names:
        def keep(module, inputs, out, name=name):
            outputs[name] = (out.dequantize() if out.is_quantized else out).numpy()
        hooks.append(net.get_submodule(name).register_forward_hook(keep))
    try:
        with torch.no_grad():
            logits = net(x).numpy()
    finally:
        for hook in hooks:
            hook.remove()
    return outputs, logits
