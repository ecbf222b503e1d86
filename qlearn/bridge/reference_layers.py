"""PyTorch's quantized ``Linear`` and ``Conv2d`` as oracles: the int8 output codes of one layer.

Used in lab 05 (sections 7 to 9: "A whole linear layer, integer only", "Every difference,
explained", "A convolution is a matrix product") to compare the learner's integer layers with the
kernels of every quantized engine the machine has, and by ``tests/test_lab05.py``. Each function
builds the ``torch.ao.nn.quantized`` module with the given quantized weight (per-tensor or
per-channel), float bias and output ``(scale, zero_point)``, runs it on the quantized input on
``engine``, and returns the output codes as int64 (``int_repr``). The engine stays set afterwards.
"""

from __future__ import annotations

import numpy as np
import torch
import torch.ao.nn.quantized as nnq

from qlearn.bridge.ptq import quiet_quantization_warnings, set_engine

__all__ = ["torch_conv2d_codes", "torch_linear_codes"]


def _bias(bias) -> torch.Tensor | None:
    return None if bias is None else torch.as_tensor(np.asarray(bias, np.float32))


def torch_linear_codes(engine: str, x_t: torch.Tensor, w_t: torch.Tensor, bias, out_scale: float,
                       out_zero_point: int) -> np.ndarray:
    """Output codes of ``torch.ao.nn.quantized.Linear`` on ``engine``: ``x_t`` quint8 ``(N, K)``,
    ``w_t`` qint8 ``(M, K)``, ``bias`` float32 ``(M,)`` or ``None``.

    >>> from qlearn.bridge.ptq import best_engine
    >>> x_t = torch.quantize_per_tensor(torch.tensor([[0.2, -0.2]]), 0.1, 128, torch.quint8)
    >>> w_t = torch.quantize_per_tensor(torch.tensor([[0.5, 0.5], [0.5, -0.5]]), 0.01, 0, torch.qint8)
    >>> torch_linear_codes(best_engine(), x_t, w_t, np.array([0.0, 0.1], np.float32), 0.05, 128)
    array([[128, 134]])
    """
    set_engine(engine)
    with quiet_quantization_warnings():
        layer = nnq.Linear(w_t.shape[1], w_t.shape[0])
        layer.set_weight_bias(w_t, _bias(bias))
        layer.scale, layer.zero_point = float(out_scale), int(out_zero_point)
        return layer(x_t).int_repr().numpy().astype(np.int64)


def torch_conv2d_codes(engine: str, x_t: torch.Tensor, w_t: torch.Tensor, bias, out_scale: float,
                       out_zero_point: int, stride: int = 1, padding: int = 0) -> np.ndarray:
    """Output codes of ``torch.ao.nn.quantized.Conv2d`` on ``engine`` (NCHW): ``x_t`` quint8
    ``(N, C, H, W)``, ``w_t`` qint8 ``(C_out, C, kh, kw)``, ``bias`` float32 ``(C_out,)`` or ``None``.

    >>> from qlearn.bridge.ptq import best_engine
    >>> x_t = torch.quantize_per_tensor(torch.full((1, 1, 2, 2), 0.2), 0.1, 128, torch.quint8)
    >>> w_t = torch.quantize_per_tensor(torch.full((1, 1, 2, 2), 0.25), 0.01, 0, torch.qint8)
    >>> torch_conv2d_codes(best_engine(), x_t, w_t, None, 0.05, 128, padding=1)[0, 0]
    array([[129, 130, 129],
           [130, 132, 130],
           [129, 130, 129]])
    """
    set_engine(engine)
    c_out, c_in, kh, kw = w_t.shape
    with quiet_quantization_warnings():
        layer = nnq.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding)
        layer.set_weight_bias(w_t, _bias(bias))
        layer.scale, layer.zero_point = float(out_scale), int(out_zero_point)
        return layer(x_t).int_repr().numpy().astype(np.int64)
