"""Post-training quantization (PTQ) with PyTorch's eager mode ``torch.ao.quantization``.

The recipe has four steps; ``quantize_ptq`` runs them all on a copy of the model:

1. **fuse**: fold each BatchNorm (and ReLU) into its convolution (``model.fuse_model()``);
2. **prepare**: attach observers as ``model.qconfig`` says (``torch.ao.quantization.prepare``);
3. **calibrate**: run a few batches of real data so the activation observers see their ranges;
4. **convert**: swap every module for its int8 version (``torch.ao.quantization.convert``).
   Weights are quantized here, by the weight observer, channel by channel or per tensor:

       q = clamp(round(w / scale) + zero_point, -128, 127)    (symmetric: zero_point = 0)

Activations are unsigned 8-bit (``quint8``, affine). On the ``x86`` and ``fbgemm`` engines they
use only 7 bits (``quant_max = 127``): those kernels multiply uint8 by int8 in 16-bit saturating
registers (AVX2 ``vpmaddubsw``), and 7-bit activations keep the sums from overflowing. This is
torch's own default (``get_default_qconfig``), spelt with explicit ``quant_min``/``quant_max``.

The int8 model runs on the engine chosen with ``set_engine`` (global to the process, like
``torch.backends.quantized.engine``): use the same engine to convert and to run a model. Which
engines exist depends on the machine: x86 builds of torch have ``x86``, ``fbgemm``, ``onednn`` and
``qnnpack``; Apple silicon and ARM Linux builds have only ``qnnpack``. ``select_engine()`` picks
the best one this machine has (``best_engine()``), sets it, and says which; every function here
that takes ``engine=None`` uses the engine that is currently set.

Eager-mode quantization is deprecated in recent torch releases in favour of ``torchao``; it
still works and is the clearest way to see each step. ``quiet_quantization_warnings()``
hides those deprecation notices (by message, nothing else).
"""

from __future__ import annotations

import contextlib
import copy
import io
import statistics
import time
import warnings
from collections.abc import Iterable, Iterator

import torch
from torch import nn
from torch.ao import quantization as tq

__all__ = [
    "ENGINE_PREFERENCE",
    "OBSERVERS",
    "QUANTIZATION_WARNING_MESSAGES",
    "best_engine",
    "best_float_baseline",
    "calibrate",
    "evaluate",
    "make_qconfig",
    "measure_latency",
    "model_size_bytes_on_disk",
    "prepare_ptq",
    "quantize_ptq",
    "quiet_quantization_warnings",
    "select_engine",
    "set_engine",
    "supported_engines",
]

#: Activation observers ``quantize_ptq`` knows: running min/max, or a histogram whose range is
#: chosen to minimise the quantization error (the L2 norm between the histogram and its
#: quantized version).
OBSERVERS: dict[str, type] = {"minmax": tq.MinMaxObserver, "histogram": tq.HistogramObserver}

#: Messages (regular expressions) of the deprecation notices that eager-mode quantization prints
#: in torch 2.x, for ``warnings.filterwarnings("ignore", message=...)``.
QUANTIZATION_WARNING_MESSAGES: tuple[str, ...] = (
    r"torch\.ao\.quantization is deprecated",
    r"torch\.quantize_per_tensor, torch\.quantize_per_channel and other quantized tensor creation",
    r"Please use quant_min and quant_max to specify the range for observers",
)


@contextlib.contextmanager
def quiet_quantization_warnings() -> Iterator[None]:
    """Inside this block, hide torch.ao.quantization's deprecation notices (matched by message).

    Other warnings still show. For a whole notebook, call ``warnings.filterwarnings("ignore",
    message=m)`` once for each ``m`` in ``QUANTIZATION_WARNING_MESSAGES`` instead.

    >>> with quiet_quantization_warnings():
    ...     warnings.warn("torch.ao.quantization is deprecated and will be removed", DeprecationWarning)
    """
    with warnings.catch_warnings():
        for message in QUANTIZATION_WARNING_MESSAGES:
            warnings.filterwarnings("ignore", message=message)
        yield


#: Engines in the order ``best_engine`` prefers them: ``x86`` (fbgemm and oneDNN kernels, chosen
#: per call) on x86 CPUs, then ``fbgemm``, then ``qnnpack`` (the only engine on Apple silicon and
#: ARM Linux), then ``onednn``.
ENGINE_PREFERENCE: tuple[str, ...] = ("x86", "fbgemm", "qnnpack", "onednn")


def supported_engines() -> list[str]:
    """The quantized engines this build of torch has (``torch.backends.quantized.supported_engines``
    without ``"none"``), in ``ENGINE_PREFERENCE`` order.

    >>> set(supported_engines()) <= set(ENGINE_PREFERENCE)
    True
    """
    have = set(torch.backends.quantized.supported_engines)
    return [e for e in ENGINE_PREFERENCE if e in have]


def best_engine() -> str:
    """The first engine of ``ENGINE_PREFERENCE`` that this machine has: ``"x86"`` on an x86 build
    of torch, ``"qnnpack"`` on Apple silicon and ARM Linux.

    >>> best_engine() == supported_engines()[0]
    True
    """
    engines = supported_engines()
    if not engines:
        raise RuntimeError(
            "this build of torch has no quantized engine (torch.backends.quantized.supported_engines "
            f"is {list(torch.backends.quantized.supported_engines)}); install a standard torch wheel"
        )
    return engines[0]


#: Where each engine exists, for the error raised when this machine lacks one.
_WHERE = {
    "x86": "only in torch builds for x86 CPUs",
    "fbgemm": "only in torch builds for x86 CPUs",
    "onednn": "mainly in torch builds for x86 CPUs",
    "qnnpack": "in every torch build except Windows ones",
}


def _check_engine(name: object, *, installed: bool = True) -> str:
    """``name`` if it is a quantized engine torch knows (``ENGINE_PREFERENCE``) and, with
    ``installed=True``, one this build of torch has; else a ``ValueError`` that says what there is.

    ``installed=False`` is for a qconfig, which is only numbers: it may be made for an engine this
    machine lacks (to prepare a model for another machine).
    """
    if not installed:
        if not isinstance(name, str) or name not in ENGINE_PREFERENCE:
            raise ValueError(f"engine must be one of {list(ENGINE_PREFERENCE)}, got {name!r}")
        return name
    supported = supported_engines()
    if isinstance(name, str) and name in supported:
        return name
    why = f": it exists {_WHERE[name]}" if isinstance(name, str) and name in _WHERE else ""
    fix = f"best_engine() (here {supported[0]!r}) names the best one" if supported else "install a standard torch wheel"
    raise ValueError(
        f"engine must be one of {supported} (the engines this build of torch has), got {name!r}{why}; {fix}"
    )


def _engine_or_current(engine: str | None) -> str:
    """``engine`` checked, or the engine currently set when ``engine`` is None."""
    if engine is None:
        current = torch.backends.quantized.engine
        return current if current in supported_engines() else best_engine()
    return _check_engine(engine)


def set_engine(name: str) -> str:
    """Select the quantized kernel library (``"x86"``, ``"fbgemm"``, ``"qnnpack"``, ``"onednn"``).

    Raises ``ValueError`` naming the engines this build of torch supports. Returns ``name``.

    >>> set_engine(best_engine()) == best_engine()
    True
    """
    torch.backends.quantized.engine = _check_engine(name)
    return name


def select_engine(verbose: bool = True) -> str:
    """Set the best engine this machine has (``best_engine()``), print which one, and return it.

    The printed line differs between machines (``x86`` on a PC, ``qnnpack`` on a Mac), so a
    notebook cell that calls this is kept out of nbval's output comparison.

    >>> select_engine(verbose=False) == best_engine()
    True
    """
    engine = set_engine(best_engine())
    if verbose:
        print(f"Quantized engine: {engine} (this machine has: {', '.join(supported_engines())})")
    return engine


def make_qconfig(engine: str | None = None, per_channel: bool = True, observer: str = "minmax") -> tq.QConfig:
    """The ``QConfig`` for ``engine`` (``None``: the engine currently set): how activations and
    weights get their scale and zero-point. A qconfig is only numbers, so ``engine`` may be any
    engine of ``ENGINE_PREFERENCE``, even one this machine lacks (to prepare a model for another
    machine); converting and running need the engine itself (``set_engine``).

    - activations: ``quint8``, per-tensor affine, observed by ``OBSERVERS[observer]``; range
      ``[0, 127]`` on x86/fbgemm (see the module docstring), ``[0, 255]`` elsewhere;
    - weights: ``qint8``, symmetric, min/max, one scale per output channel (``per_channel``) or
      one for the whole tensor.

    >>> make_qconfig("qnnpack", per_channel=False).weight.p.keywords["qscheme"]
    torch.per_tensor_symmetric
    """
    if observer not in OBSERVERS:
        raise ValueError(f"observer must be one of {sorted(OBSERVERS)}, got {observer!r}")
    if not isinstance(per_channel, bool):
        raise TypeError(f"per_channel must be a bool, got {per_channel!r}")
    engine = _engine_or_current(engine) if engine is None else _check_engine(engine, installed=False)
    quant_max = 127 if engine in ("x86", "fbgemm") else 255
    activation = OBSERVERS[observer].with_args(
        dtype=torch.quint8, qscheme=torch.per_tensor_affine, quant_min=0, quant_max=quant_max
    )
    if per_channel:
        weight = tq.PerChannelMinMaxObserver.with_args(
            dtype=torch.qint8, qscheme=torch.per_channel_symmetric, ch_axis=0
        )
    else:
        weight = tq.MinMaxObserver.with_args(dtype=torch.qint8, qscheme=torch.per_tensor_symmetric)
    return tq.QConfig(activation=activation, weight=weight)


def _inputs(batch):
    """The input tensor of a batch that is either ``x`` or ``(x, y, ...)``."""
    return batch[0] if isinstance(batch, (tuple, list)) else batch


def _check_num_batches(num_batches: object) -> None:
    if num_batches is None:
        return
    if isinstance(num_batches, bool) or not isinstance(num_batches, int) or num_batches < 1:
        raise ValueError(f"num_batches must be a positive int or None, got {num_batches!r}")


@torch.no_grad()
def _run_batches(model: nn.Module, batches: Iterable, num_batches: int | None, *, restore_mode: bool,
                 nothing: str) -> int:
    """Run the inputs of the first ``num_batches`` batches (all if ``None``) through ``model`` in eval
    mode, without gradients; return how many ran. The one loop behind ``calibrate`` and the hooks of
    ``qlearn.bridge.export``. ``restore_mode`` puts the model back in its train/eval mode afterwards;
    ``nothing`` is the message of the ``ValueError`` raised when ``batches`` yields no batch.
    """
    _check_num_batches(num_batches)
    was_training = model.training
    model.eval()
    seen = 0
    try:
        for batch in batches:
            if num_batches is not None and seen >= num_batches:
                break
            model(_inputs(batch))
            seen += 1
    finally:
        if restore_mode:
            model.train(was_training)
    if seen == 0:
        raise ValueError(nothing)
    return seen


def _fused_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with its BatchNorms folded (its ``fuse_model()``); ``model``
    is unchanged. A model without ``fuse_model()`` is a ``TypeError``."""
    if not hasattr(model, "fuse_model"):
        raise TypeError(f"model must have a fuse_model() method (a quantizable model), got {type(model).__name__}")
    fused = copy.deepcopy(model).eval()
    with quiet_quantization_warnings():
        fused.fuse_model()
    return fused


@torch.no_grad()
def evaluate(model: nn.Module, loader: Iterable) -> float:
    """Top-1 accuracy, a fraction in [0, 1], of ``model`` (put in eval mode) over all of ``loader``.

    ``accuracy = #{i : argmax_k model(x_i)_k = y_i} / N``. The model's train/eval mode is
    restored afterwards.

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2))
    >>> evaluate(model, [(torch.zeros(3, 4), torch.tensor([0, 0, 0]))]) in (0.0, 1.0)
    True
    """
    was_training = model.training
    model.eval()
    correct = total = 0
    for xb, yb in loader:
        correct += int((model(xb).argmax(1) == yb).sum())
        total += len(yb)
    model.train(was_training)
    if total == 0:
        raise ValueError("loader yielded no samples")
    return correct / total


def calibrate(model: nn.Module, loader: Iterable, num_batches: int | None = None) -> nn.Module:
    """Run the first ``num_batches`` batches of ``loader`` (all if ``None``) through ``model``.

    The point is the side effect: the observers inserted by ``prepare_ptq`` record the ranges
    they see. Batches may be ``x`` or ``(x, y)``; no gradients are recorded. Returns ``model``
    (in eval mode).

    >>> model = nn.Sequential(nn.Flatten(), nn.Linear(4, 2)).train()
    >>> calibrate(model, [torch.zeros(3, 4)] * 5, 2).training
    False
    """
    _run_batches(model, loader, num_batches, restore_mode=False,
                 nothing="loader yielded no batches: nothing was calibrated")
    return model


def prepare_ptq(model: nn.Module, qconfig: tq.QConfig | None = None) -> nn.Module:
    """A fused copy of ``model``, in eval mode, with observers attached (steps 1 and 2).

    ``model`` needs a ``fuse_model()`` method (``resnet_fmnist`` and torchvision's quantizable
    models have one) and ``QuantStub``/``DeQuantStub`` at its borders. It is left unchanged.
    """
    prepared = _fused_copy(model)
    prepared.qconfig = qconfig if qconfig is not None else make_qconfig()
    with quiet_quantization_warnings():
        tq.prepare(prepared, inplace=True)
    return prepared


def quantize_ptq(
    model: nn.Module,
    calib_loader: Iterable | None = None,
    *,
    engine: str | None = None,
    per_channel: bool = True,
    observer: str = "minmax",
    calib_batches: int = 8,
) -> nn.Module:
    """Int8 copy of ``model`` by post-training quantization: fuse, prepare, calibrate, convert.

    ``calib_loader`` yields ``x`` or ``(x, y)`` batches; by default it is 128-image batches of
    the Fashion-MNIST *training* set (no augmentation, shuffled with seed 0): never calibrate on
    the test set. ``calib_batches`` batches are used. ``set_engine(engine)`` is called first, so
    the returned model runs on that engine; ``engine=None`` keeps the engine currently set (the
    best one this machine has, unless ``set_engine`` chose another). The caller's ``model`` is not
    modified.
    """
    engine = set_engine(_engine_or_current(engine))
    qconfig = make_qconfig(engine, per_channel, observer)
    if calib_loader is None:
        from qlearn.bridge.data import make_loader

        calib_loader = make_loader("train", 128, augment=False, shuffle=True, seed=0)
    prepared = prepare_ptq(model, qconfig)
    calibrate(prepared, calib_loader, calib_batches)
    with quiet_quantization_warnings():
        return tq.convert(prepared, inplace=True)


def model_size_bytes_on_disk(model: nn.Module) -> int:
    """Bytes that ``torch.save(model.state_dict())`` writes (measured in memory with ``BytesIO``).

    >>> model_size_bytes_on_disk(nn.Linear(1000, 1000)) > 4_000_000   # 1M float32 weights
    True
    """
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    return buffer.getbuffer().nbytes


@torch.inference_mode()
def measure_latency(model: nn.Module, x: torch.Tensor, repeats: int = 20, warmup: int = 3) -> float:
    """Median wall-clock seconds of ``model(x)`` over ``repeats`` runs, after ``warmup`` runs.

    Uses ``time.perf_counter``. For benchmarks and notebooks only: timings depend on the machine
    and its load, so no test asserts on them. Uses the current ``torch.get_num_threads()``.
    """
    if not isinstance(repeats, int) or repeats < 1:
        raise ValueError(f"repeats must be a positive int, got {repeats!r}")
    if not isinstance(warmup, int) or warmup < 0:
        raise ValueError(f"warmup must be a non-negative int, got {warmup!r}")
    model.eval()
    for _ in range(warmup):
        model(x)
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        model(x)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def best_float_baseline(
    model: nn.Module, x: torch.Tensor | None = None, repeats: int = 10
) -> tuple[nn.Module, str]:
    """The fastest float32 version of ``model`` for inference: a fair baseline for int8.

    Returns ``(fast_model, memory_format)``: a copy in eval mode with BatchNorm folded into the
    convolutions (by the model's ``fuse_model()``; a model without one is copied unfused), in
    the memory format that ran ``x`` faster: ``"channels_last"`` (NHWC) or ``"contiguous"``
    (NCHW), measured with ``measure_latency`` (without ``x``, channels_last is not tried).
    ``model`` is left unchanged. Feed inputs in any layout: convolutions follow the weights'.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> x = torch.zeros(4, 1, 28, 28)
    >>> fast, memory_format = best_float_baseline(resnet_fmnist(8), x, repeats=2)
    >>> memory_format in ("channels_last", "contiguous")
    True
    >>> any(isinstance(m, nn.BatchNorm2d) for m in fast.modules())   # folded into the convolutions
    False
    """
    fast = _fused_copy(model) if hasattr(model, "fuse_model") else copy.deepcopy(model).eval()
    if x is None:
        return fast, "contiguous"
    t_contiguous = measure_latency(fast, x, repeats)
    channels_last = copy.deepcopy(fast).to(memory_format=torch.channels_last)
    t_channels_last = measure_latency(channels_last, x.contiguous(memory_format=torch.channels_last), repeats)
    if t_channels_last < t_contiguous:
        return channels_last, "channels_last"
    return fast, "contiguous"
