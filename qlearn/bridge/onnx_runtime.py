"""Ship the ResNet to ONNX Runtime: export to ONNX, quantize statically in the QDQ format, evaluate.

Used in lab 12 (``12_deployment_runtimes``), section 2. The flow mirrors torch's eager PTQ
(``qlearn.bridge.ptq``), but every step writes a file that a runtime other than PyTorch can load:

1. **export** (``export_onnx``): ``torch.onnx.export`` writes the float32 graph (BatchNorm folded
   into the convolutions by constant folding in eval mode);
2. **calibrate** (``ImageCalibrationReader``): ``onnxruntime.quantization`` pulls input feeds,
   ``{input_name: float32 array}``, from a ``CalibrationDataReader`` until ``get_next()`` returns
   ``None``, runs the float model and records each activation's min and max;
3. **quantize** (``quantize_qdq``): ``quantize_static(..., quant_format=QuantFormat.QDQ)`` writes
   a graph in which every quantized tensor passes through a QuantizeLinear/DequantizeLinear pair:

       QuantizeLinear:    q = saturate(round_half_even(x / scale) + zero_point)
       DequantizeLinear:  x' = (q - zero_point) * scale

   Weights are stored as int8 initializers followed by a DequantizeLinear only (one scale per
   output channel with ``per_channel=True``); ONNX Runtime fuses DQ -> Conv -> Q into an integer
   convolution when it loads the model.

The legacy TorchScript exporter (``dynamo=False``) is the default here: on this 2-core machine
the torch.export-based exporter (``dynamo=True``, needs ``onnxscript``) took about 15 s of CPU
for this ResNet against 2 s, and it writes the weights to a separate ``.data`` file. Both give
the same graph (15 Conv, 13 Relu, 6 Add, 1 Gemm); pass ``dynamo=True`` to use the new one.
"""

from __future__ import annotations

import collections
import os
import statistics
import time
import warnings
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import torch
from torch import nn

try:  # optional dependency: lab 12 only
    from onnxruntime.quantization import CalibrationDataReader as _ReaderBase
except ImportError:  # pragma: no cover - exercised only without onnxruntime
    _ReaderBase = object

__all__ = [
    "INPUT_NAME",
    "OUTPUT_NAME",
    "ImageCalibrationReader",
    "count_ops",
    "evaluate_onnx",
    "export_onnx",
    "file_size",
    "measure_onnx_latency",
    "ort_session",
    "qdq_initializer_dtypes",
    "quantize_qdq",
]

#: Names of the graph's input and output in the files ``export_onnx`` writes.
INPUT_NAME = "images"
OUTPUT_NAME = "logits"

#: Messages of the deprecation notices of the legacy exporter (hidden by message, nothing else).
_EXPORT_WARNINGS = (r"You are using the legacy TorchScript-based ONNX export",
                    r"The feature will be removed")


def export_onnx(model: nn.Module, path: str | os.PathLike, *, dynamo: bool = False,
                opset: int = 17) -> Path:
    """Export ``model`` (float32, put in eval mode) to ONNX at ``path``, batch size dynamic.

    The graph's input is ``INPUT_NAME`` (``N x 1 x 28 x 28`` float32) and its output
    ``OUTPUT_NAME`` (``N x 10``). ``model`` is not modified. Returns the path.

    >>> import tempfile
    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> p = export_onnx(resnet_fmnist(8), Path(tempfile.mkdtemp()) / "m.onnx")
    >>> count_ops(p)["Conv"]
    9
    """
    if not isinstance(dynamo, bool):
        raise TypeError(f"dynamo must be a bool, got {dynamo!r}")
    path = Path(path)
    was_training = model.training
    model.eval()
    example = (torch.zeros(1, 1, 28, 28),)
    kwargs = dict(input_names=[INPUT_NAME], output_names=[OUTPUT_NAME], dynamo=dynamo)
    if dynamo:
        kwargs["dynamic_shapes"] = ({0: torch.export.Dim("batch")},)
    else:
        kwargs.update(opset_version=opset, dynamic_axes={INPUT_NAME: {0: "batch"}, OUTPUT_NAME: {0: "batch"}})
    try:
        with warnings.catch_warnings():
            for message in _EXPORT_WARNINGS:
                warnings.filterwarnings("ignore", message=message)
            torch.onnx.export(model, example, str(path), **kwargs)
    finally:
        model.train(was_training)
    return path


class ImageCalibrationReader(_ReaderBase):
    """A ``CalibrationDataReader`` that feeds the images of the first ``num_batches`` batches of
    ``loader`` (``(x, y)`` or ``x`` batches) to ``input_name``, then ``None``.

    ``get_next()`` returns ``{input_name: float32 array}`` per batch; ``rewind()`` starts over
    (``quantize_static`` reads it once; a second pass needs a rewind).

    >>> import torch
    >>> reader = ImageCalibrationReader([(torch.zeros(2, 1, 28, 28), None)] * 3, num_batches=2)
    >>> [sorted(f) for f in iter(reader.get_next, None)]
    [['images'], ['images']]
    """

    def __init__(self, loader: Iterable, num_batches: int = 8, input_name: str = INPUT_NAME) -> None:
        if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
            raise ValueError(f"num_batches must be a positive int, got {num_batches!r}")
        self.feeds: list[dict[str, np.ndarray]] = []
        for batch in loader:
            if len(self.feeds) == num_batches:
                break
            x = batch[0] if isinstance(batch, (tuple, list)) else batch
            self.feeds.append({input_name: np.ascontiguousarray(np.asarray(x, dtype=np.float32))})
        if not self.feeds:
            raise ValueError("loader yielded no batches: nothing to calibrate on")
        self._position = 0

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self._position >= len(self.feeds):
            return None
        self._position += 1
        return self.feeds[self._position - 1]

    def rewind(self) -> None:
        self._position = 0


def quantize_qdq(float_path: str | os.PathLike, out_path: str | os.PathLike, reader,
                 *, per_channel: bool = True, reduce_range: bool = True) -> Path:
    """Static int8 quantization of the ONNX model at ``float_path`` into ``out_path`` (QDQ format).

    Activations ``QUInt8`` (affine, min/max calibrated on ``reader``), weights ``QInt8``
    (symmetric, one scale per output channel with ``per_channel``). ``reduce_range`` keeps the
    weights to 7 bits, ONNX Runtime's advice for x86 CPUs without VNNI (their 16-bit
    accumulation can saturate, the reason torch's x86 engine uses 7-bit activations). The float
    graph is pre-processed first (shape inference, graph optimization), into ``out_path``'s folder.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    out_path = Path(out_path)
    prepped = out_path.with_name(out_path.stem + "_prep.onnx")
    quant_pre_process(str(float_path), str(prepped), skip_symbolic_shape=True)
    quantize_static(
        str(prepped), str(out_path), reader,
        quant_format=QuantFormat.QDQ, per_channel=per_channel, reduce_range=reduce_range,
        activation_type=QuantType.QUInt8, weight_type=QuantType.QInt8,
        calibrate_method=CalibrationMethod.MinMax,
    )
    return out_path


def ort_session(path: str | os.PathLike | bytes, threads: int = 1):
    """An ``onnxruntime.InferenceSession`` on the CPU with ``threads`` intra-op threads (one
    inter-op thread), all graph optimizations on (which fuse each QDQ pattern into an integer op).
    ``path`` is a file or a serialized model (``model.SerializeToString()``).
    """
    import onnxruntime as ort

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads must be a positive int, got {threads!r}")
    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    options.inter_op_num_threads = 1
    options.log_severity_level = 3
    model = path if isinstance(path, bytes) else str(path)
    return ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])


def evaluate_onnx(session, loader: Iterable) -> float:
    """Top-1 accuracy, a fraction in [0, 1], of an ONNX Runtime ``session`` over ``loader``'s
    ``(x, y)`` batches (the same formula as ``qlearn.bridge.ptq.evaluate``)."""
    name = session.get_inputs()[0].name
    correct = total = 0
    for xb, yb in loader:
        logits = session.run(None, {name: np.asarray(xb, dtype=np.float32)})[0]
        correct += int((logits.argmax(1) == np.asarray(yb)).sum())
        total += len(yb)
    if total == 0:
        raise ValueError("loader yielded no samples")
    return correct / total


def measure_onnx_latency(session, x, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall-clock seconds of ``session.run`` on ``x`` over ``repeats`` runs, after ``warmup``
    runs (``time.perf_counter``); the twin of ``qlearn.bridge.ptq.measure_latency``."""
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
    feed = {session.get_inputs()[0].name: np.asarray(x, dtype=np.float32)}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def count_ops(path_or_model) -> collections.Counter:
    """How many nodes of each ``op_type`` the ONNX graph at ``path_or_model`` (a path or a
    ``ModelProto``) has: exact, the same on every machine for a given exporter and quantizer."""
    import onnx

    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    return collections.Counter(node.op_type for node in model.graph.node)


def qdq_initializer_dtypes(path_or_model) -> collections.Counter:
    """How many initializers (stored tensors) of each numpy dtype the graph holds: in a QDQ model
    the weights are ``int8``, the activation zero-points ``uint8``, biases ``int32``, scales ``float32``."""
    import onnx
    from onnx import numpy_helper

    model = path_or_model if isinstance(path_or_model, onnx.ModelProto) else onnx.load(str(path_or_model))
    return collections.Counter(str(numpy_helper.to_array(t).dtype) for t in model.graph.initializer)


def file_size(path: str | os.PathLike) -> int:
    """Bytes of the file at ``path`` plus those of its external-data files in the same folder
    (the ``.data`` file the ``dynamo=True`` exporter writes next to the ``.onnx``)."""
    path = Path(path)
    total = path.stat().st_size
    extra = path.with_name(path.name + ".data")
    return total + (extra.stat().st_size if extra.is_file() else 0)
