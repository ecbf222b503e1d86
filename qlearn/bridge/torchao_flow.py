"""torch's successor quantization flows, from ``torchao``: PT2E for the ResNet, ``quantize_`` for Linear layers.

Used in lab 12 (``12_deployment_runtimes``), section "torchao" and ``bench/bench_deploy.py``.
The eager recipe of ``qlearn.bridge.ptq`` maps step by step onto PT2E (PyTorch 2 Export):

=====================================  ==================================================================
``torch.ao.quantization`` (eager)      ``torchao`` PT2E
=====================================  ==================================================================
``QuantStub``/``DeQuantStub`` in the   nothing: ``torch.export.export(model, example).module()`` captures
model, ``model.fuse_model()``          the whole graph of aten ops (BatchNorm is folded at convert)
``model.qconfig = make_qconfig()``     ``quantizer = X86InductorQuantizer(); quantizer.set_global(
                                       get_default_x86_inductor_quantization_config())``: a *backend's*
                                       quantizer annotates the patterns it can run in int8
``tq.prepare(model)``                  ``prepare_pt2e(exported, quantizer)``: observers inserted in the graph
calibrate (same loop)                  calibrate (same loop; ``move_exported_model_to_eval`` instead of ``.eval()``)
``tq.convert(model)``                  ``convert_pt2e(prepared)``: quantize/dequantize ops in the graph
                                       (a reference model); ``torch.compile`` lowers them to int8 kernels
=====================================  ==================================================================

For Linear layers alone (a transformer), torchao's ``quantize_(model, config)`` swaps the weights in
place for quantized tensor subclasses: ``Int8WeightOnlyConfig()`` (W8A16, the successor of lab 11's
weight-only layers) or ``Int8DynamicActivationInt8WeightConfig()`` (the successor of
``torch.ao.quantization.quantize_dynamic``).

torchao imports ``torch._dynamo``, which takes several seconds: this module imports torchao only
inside its functions.
"""

from __future__ import annotations

import copy
import platform
from collections import Counter
from collections.abc import Iterable

import torch
from torch import nn

__all__ = ["QUANTIZE_CONFIGS", "pt2e_op_counts", "pt2e_supported", "quantize_linears", "quantize_pt2e_x86"]

#: ``quantize_`` configs by short name (the class names of ``torchao.quantization``).
QUANTIZE_CONFIGS: tuple[str, ...] = ("Int8WeightOnlyConfig", "Int8DynamicActivationInt8WeightConfig")


def pt2e_supported() -> tuple[bool, str]:
    """``(True, "")`` if this machine can run the X86 PT2E flow (an x86-64 CPU and torchao
    installed), else ``(False, reason)``: the lab and the bench skip the section with the reason.
    """
    machine = platform.machine().lower()
    if machine not in ("x86_64", "amd64", "x86", "i686"):
        return False, f"X86InductorQuantizer targets x86 CPUs; this machine is {machine} (use the qnnpack-style XNNPACK quantizer of ExecuTorch there)"
    try:
        import torchao  # noqa: F401
    except ImportError:
        return False, "torchao is not installed (pip install torchao, see requirements.txt)"
    return True, ""


def quantize_pt2e_x86(model: nn.Module, calib_batches: Iterable) -> torch.fx.GraphModule:
    """PT2E static int8 quantization of ``model`` (float32) with the X86 Inductor quantizer.

    ``torch.export`` (batch dimension dynamic), ``prepare_pt2e``, calibration on the inputs of
    ``calib_batches`` (``x`` or ``(x, y)``), ``convert_pt2e``. Returns the converted reference model
    (quantize/dequantize ops around float ops; ``torch.compile`` would lower it to int8 kernels).
    ``model`` is not modified.
    """
    from torchao.quantization.pt2e import move_exported_model_to_eval
    from torchao.quantization.pt2e.quantize_pt2e import convert_pt2e, prepare_pt2e
    from torchao.quantization.pt2e.quantizer import x86_inductor_quantizer as xiq

    model = copy.deepcopy(model).eval()
    example = (torch.zeros(2, 1, 28, 28),)
    exported = torch.export.export(model, example, dynamic_shapes=({0: torch.export.Dim("batch")},)).module()
    quantizer = xiq.X86InductorQuantizer()
    quantizer.set_global(xiq.get_default_x86_inductor_quantization_config())
    prepared = prepare_pt2e(exported, quantizer)
    move_exported_model_to_eval(prepared)
    seen = 0
    with torch.no_grad():
        for batch in calib_batches:
            prepared(batch[0] if isinstance(batch, (tuple, list)) else batch)
            seen += 1
    if seen == 0:
        raise ValueError("calib_batches yielded no batch: nothing was calibrated")
    converted = convert_pt2e(prepared)
    move_exported_model_to_eval(converted)
    return converted


def pt2e_op_counts(graph_module: torch.fx.GraphModule) -> Counter:
    """How many ``call_function`` nodes of each op the graph has, by the op's short name
    (``quantize_per_tensor``, ``dequantize_per_channel``, ``conv2d``, ...)."""
    return Counter(str(node.target).split(".")[-2] for node in graph_module.graph.nodes
                   if node.op == "call_function" and "." in str(node.target))


def quantize_linears(model: nn.Module, config: str = "Int8WeightOnlyConfig") -> nn.Module:
    """A copy of ``model`` whose ``nn.Linear`` layers are quantized by ``torchao.quantization.quantize_``
    with the config named ``config`` (one of ``QUANTIZE_CONFIGS``). ``model`` is not modified."""
    if config not in QUANTIZE_CONFIGS:
        raise ValueError(f"config must be one of {list(QUANTIZE_CONFIGS)}, got {config!r}")
    import torchao.quantization as ao

    quantized = copy.deepcopy(model).eval()
    ao.quantize_(quantized, getattr(ao, config)())
    return quantized
