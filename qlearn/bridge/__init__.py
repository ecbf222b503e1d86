"""qlearn.bridge: the same ideas with PyTorch, on a real network (torch and torchvision needed).

The numpy core (``qlearn``) never imports this package. Here live:

- ``resnet``: ``resnet_fmnist(depth)``, a quantizable CIFAR-style ResNet for Fashion-MNIST;
- ``data``: Fashion-MNIST as a torch ``Dataset``/``DataLoader`` (``make_loader``);
- ``pretrained``: ``load_pretrained()``, the trained checkpoint shipped in ``data/checkpoints/``;
- ``ptq``: post-training quantization with ``torch.ao.quantization`` (eager mode) and the
  measurements around it (accuracy, size on disk, latency);
- ``train``: the script that trained the checkpoint (``python -m qlearn.bridge.train --help``).
"""

from qlearn.bridge.data import MEAN, STD, FashionMNIST, RandomCropFlip, make_loader
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
    "load_pretrained",
    "make_loader",
    "make_qconfig",
    "measure_latency",
    "model_size_bytes_on_disk",
    "prepare_ptq",
    "pretrained_info",
    "quantize_ptq",
    "quiet_quantization_warnings",
    "resnet_fmnist",
    "select_engine",
    "set_engine",
    "supported_engines",
]
