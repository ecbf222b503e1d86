"""qlearn.bridge: the same ideas with PyTorch, on a real network (torch and torchvision needed).

The numpy core (``qlearn``) never imports this package. Here live:

- ``resnet``: ``resnet_fmnist(depth)``, a quantizable CIFAR-style ResNet for Fashion-MNIST;
- ``data``: Fashion-MNIST as a torch ``Dataset``/``DataLoader`` (``make_loader``);
- ``pretrained``: ``load_pretrained()``, the trained checkpoint shipped in ``data/checkpoints/``;
- ``ptq``: post-training quantization with ``torch.ao.quantization`` (eager mode) and the
  measurements around it (accuracy, size on disk, latency);
- ``train``: the script that trained the checkpoint (``python -m qlearn.bridge.train --help``), and
  ``finetune``, the short fine-tuning with a progress bar that labs 07 and 08 use;
- ``layer_error``: per-layer weight and output error of a quantized model (lab 10, section 12);
- ``reference_layers``: torch's quantized Linear and Conv2d as integer codes (lab 05, sections 7-9).

One module per later lab, imported by its full path (they pull in more of torch, or other
packages, so ``import qlearn.bridge`` stays light):

- ``pruning``, ``surgery``, ``macs``: masks through ``torch.nn.utils.prune``, channel surgery, MACs
  and latency (lab 07);
- ``qat``: straight-through and LSQ fake quantization, QAT training (lab 08);
- ``ddp_hooks``, ``ddp_worker``: DDP communication hooks and the gloo workers (lab 09);
- ``transformer``: all-MiniLM-L6-v2 offline, W8A16/W4A16 layers, dynamic int8, pruning (lab 11);
- ``onnx_runtime``, ``torchao_flow``: ONNX export and ONNX Runtime's QDQ quantization; torchao (lab 12).
"""

from qlearn.bridge.data import MEAN, STD, FashionMNIST, RandomCropFlip, make_loader
from qlearn.bridge.layer_error import fused_float_weight, layer_outputs, quantized_layers, weight_error
from qlearn.bridge.pretrained import checkpoint_path, load_pretrained, pretrained_info
from qlearn.bridge.ptq import (
    ENGINE_PREFERENCE,
    OBSERVERS,
    QUANTIZATION_WARNING_MESSAGES,
    best_engine,
    best_float_baseline,
    calibrate,
    evaluate,
    make_qconfig,
    measure_latency,
    model_size_bytes_on_disk,
    prepare_ptq,
    quantize_ptq,
    quiet_quantization_warnings,
    select_engine,
    set_engine,
    supported_engines,
)
from qlearn.bridge.reference_layers import torch_conv2d_codes, torch_linear_codes
from qlearn.bridge.resnet import FashionResNet, resnet_fmnist

__all__ = [
    "ENGINE_PREFERENCE",
    "MEAN",
    "OBSERVERS",
    "QUANTIZATION_WARNING_MESSAGES",
    "STD",
    "FashionMNIST",
    "FashionResNet",
    "RandomCropFlip",
    "best_engine",
    "best_float_baseline",
    "calibrate",
    "checkpoint_path",
    "evaluate",
    "fused_float_weight",
    "layer_outputs",
    "load_pretrained",
    "make_loader",
    "make_qconfig",
    "measure_latency",
    "model_size_bytes_on_disk",
    "prepare_ptq",
    "pretrained_info",
    "quantize_ptq",
    "quantized_layers",
    "quiet_quantization_warnings",
    "resnet_fmnist",
    "select_engine",
    "set_engine",
    "supported_engines",
    "torch_conv2d_codes",
    "torch_linear_codes",
    "weight_error",
]
