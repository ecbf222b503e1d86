"""From torch to numpy and back: a trained model's weights and activations, for the qlearn core.

The labs study quantization with the numpy library ``qlearn`` on a real, trained network. This
module moves the data across:

- ``fused_copy(model)``: a copy with every BatchNorm folded into its convolution
  (``fuse_model()``), the float twin of the int8 model.
- ``export_weights(model, fuse=True)``: every conv and linear weight as a float32 numpy array.
  With ``fuse=True`` each BatchNorm is first folded into the convolution before it, which is what
  an int8 model stores:  ``W' = W * gamma / sqrt(running_var + eps)``  (one factor per output
  channel, so folding changes the per-channel ranges).
- ``load_weights(model, weights)``: the way back, e.g. to measure the accuracy of a model whose
  weights were fake-quantized in numpy.
- ``activation_sites(model)``: the tensors that eager-mode int8 quantization quantizes in a fused
  model, the same places where ``torch.ao.quantization.prepare`` attaches activation observers:
  the ``QuantStub`` (the input), each fused conv(+ReLU), each conv and linear layer, and the
  output of each ``FloatFunctional`` (the skip connections' ``add_relu``).
- ``record_activations(model, batches)``: run batches and keep what every site outputs (forward
  hooks), as numpy arrays.
- ``observe_activations(model, batches, make_observer)``: feed each site's output, batch after
  batch, to its own qlearn observer (``qlearn.observers``), without keeping the values.
- ``fake_quantize_activations(model, qparams, qmin, qmax)``: a context manager under which every
  site's output is replaced by ``qlearn.fake_quantize`` of it,

      x_hat = (clamp(round(x * (1 / scale)) + zero_point, qmin, qmax) - zero_point) * scale

  with one ``(scale, zero_point)`` per site (static quantization: ranges calibrated beforehand),
  or, with ``qparams=None``, with the min-max range of each batch (dynamic quantization). The
  float model then behaves like a model with integer activations, and ``ptq.evaluate`` measures
  the accuracy that each observer's ranges give.

Hooks are always removed when a function returns (or the ``with`` block ends), even on error.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable, Iterator, Mapping

import numpy as np
import torch
from torch import nn
from torch.ao.nn.intrinsic import _FusedModule
from torch.ao.nn.quantized import FloatFunctional
from torch.ao.quantization import QuantStub

from qlearn.affine import fake_quantize
from qlearn.bridge.ptq import _fused_copy, _run_batches
from qlearn.qparams import calc_qparams

_NOTHING = "batches yielded no batch: nothing was recorded"

__all__ = [
    "activation_sites",
    "export_weights",
    "fake_quantize_activations",
    "fused_copy",
    "load_weights",
    "observe_activations",
    "record_activations",
]


def fused_copy(model: nn.Module) -> nn.Module:
    """A copy of ``model`` in eval mode with every BatchNorm folded into its conv (``fuse_model()``).

    In eval mode the copy computes the same function (up to float rounding); its conv weights are
    the ones an int8 model stores. ``model`` is left unchanged.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> fused = fused_copy(resnet_fmnist(8))
    >>> type(fused.conv1).__name__, type(fused.bn1).__name__
    ('ConvReLU2d', 'Identity')
    """
    return _fused_copy(model)


def export_weights(model: nn.Module, *, fuse: bool = False) -> dict[str, np.ndarray]:
    """Every ``Conv2d`` and ``Linear`` weight of ``model`` as a float32 numpy array (a copy), by name.

    The names are the modules' names (``"conv1"``, ``"layer2.0.downsample.0"``, ``"fc"``), in the
    order of ``model.named_modules()``; shapes are torch's: ``(out, in, kh, kw)`` and ``(out, in)``,
    so axis 0 is the output channel. With ``fuse=True`` the weights come from ``fused_copy(model)``:
    BatchNorm folded in, ``W' = W * gamma / sqrt(running_var + eps)`` per output channel.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> w = export_weights(resnet_fmnist(8), fuse=True)
    >>> list(w)[:3], w["fc"].shape, w["fc"].dtype
    (['conv1', 'layer1.0.conv1', 'layer1.0.conv2'], (10, 64), dtype('float32'))
    """
    if not isinstance(fuse, bool):
        raise TypeError(f"fuse must be True or False, got {fuse!r}")
    source = fused_copy(model) if fuse else model
    weights = {}
    for name, module in source.named_modules():
        if isinstance(module, _FusedModule):
            module = module[0]  # the conv (or linear) inside a fused conv+relu
        elif name.rpartition(".")[0] in weights:
            continue  # the conv inside a fused module, already exported under the fused name
        if isinstance(module, (nn.Conv2d, nn.Linear)):
            weights[name] = module.weight.detach().cpu().numpy().astype(np.float32, copy=True)
    return weights


def _weight_module(model: nn.Module, name: str) -> nn.Module:
    try:
        module = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"weights: {name!r} is not a module of {type(model).__name__}") from None
    if isinstance(module, _FusedModule):
        module = module[0]
    if not isinstance(module, (nn.Conv2d, nn.Linear)):
        raise ValueError(f"weights: {name!r} is a {type(module).__name__}, not a Conv2d or Linear layer")
    return module


def load_weights(model: nn.Module, weights: Mapping[str, np.ndarray]) -> nn.Module:
    """Copy numpy arrays into the conv and linear weights of ``model``, in place; returns ``model``.

    ``weights`` maps module names to arrays of the weights' exact shape, as ``export_weights``
    returns them (export from ``model`` itself: a fused model's names are those of
    ``export_weights(..., fuse=True)``). Layers not named keep their weights. Every name and shape
    is checked before anything is copied.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> model = resnet_fmnist(8)
    >>> _ = load_weights(model, {"fc": np.zeros((10, 64), np.float32)})
    >>> float(model.fc.weight.detach().abs().sum())
    0.0
    """
    if not isinstance(weights, Mapping):
        raise TypeError(f"weights must map module names to arrays, got {type(weights).__name__}")
    targets = {}
    for name, w in weights.items():
        module = _weight_module(model, name)
        w = np.asarray(w)
        if w.shape != tuple(module.weight.shape):
            raise ValueError(
                f"weights[{name!r}] has shape {w.shape}, but the layer's weight has shape "
                f"{tuple(module.weight.shape)}"
            )
        targets[name] = (module, w)
    with torch.no_grad():
        for module, w in targets.values():
            module.weight.copy_(torch.from_numpy(np.ascontiguousarray(w, dtype=np.float32)))
    return model


def activation_sites(model: nn.Module) -> dict[str, nn.Module]:
    """The modules whose outputs int8 quantization quantizes, by name, in ``named_modules`` order.

    ``model`` must be fused (``fused_copy``): a quantized model has no separate BatchNorm, and the
    output of an unfused conv is not a tensor the int8 model ever holds. A ``FloatFunctional`` site
    maps to its ``activation_post_process`` (an ``Identity`` in a float model), the module that sees
    the result of ``add_relu``. The names equal those of the modules that
    ``torch.ao.quantization.prepare`` gives an activation observer.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> list(activation_sites(fused_copy(resnet_fmnist(8))))
    ['quant', 'conv1', 'layer1.0.conv1', 'layer1.0.conv2', 'layer1.0.add_relu', 'layer2.0.conv1', \
'layer2.0.conv2', 'layer2.0.downsample.0', 'layer2.0.add_relu', 'layer3.0.conv1', 'layer3.0.conv2', \
'layer3.0.downsample.0', 'layer3.0.add_relu', 'fc']
    """
    sites: dict[str, nn.Module] = {}
    fused_prefixes: list[str] = []
    for name, module in model.named_modules():
        if isinstance(module, nn.modules.batchnorm._BatchNorm):
            raise ValueError(
                f"model has an unfused BatchNorm ({name!r}); its activations are not the ones an int8 "
                "model quantizes: pass fused_copy(model)"
            )
        if any(name.startswith(p) for p in fused_prefixes):
            continue
        if isinstance(module, FloatFunctional):
            sites[name] = module.activation_post_process
        elif isinstance(module, _FusedModule):
            sites[name] = module
            fused_prefixes.append(name + ".")
        elif isinstance(module, (QuantStub, nn.Conv2d, nn.Linear)):
            sites[name] = module
    if not sites:
        raise ValueError(
            f"{type(model).__name__} has no activation site (no QuantStub, conv, linear or FloatFunctional)"
        )
    return sites


def _select_sites(model: nn.Module, sites: Iterable[str] | None) -> dict[str, nn.Module]:
    available = activation_sites(model)
    if sites is None:
        return available
    if isinstance(sites, str):
        raise TypeError(f"sites must be a list of site names, got the string {sites!r}")
    chosen = {}
    for name in sites:
        if name not in available:
            raise ValueError(
                f"sites: {name!r} is not an activation site of this model; the sites are {list(available)}"
            )
        chosen[name] = available[name]
    return chosen


@contextlib.contextmanager
def _hooks(modules: Mapping[str, nn.Module], make_hook: Callable[[str], Callable]) -> Iterator[None]:
    handles = [module.register_forward_hook(make_hook(name)) for name, module in modules.items()]
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _to_numpy(output: torch.Tensor) -> np.ndarray:
    return output.detach().cpu().numpy().astype(np.float32, copy=False)


def record_activations(model: nn.Module, batches: Iterable, *, sites: Iterable[str] | None = None,
                       num_batches: int | None = None) -> dict[str, np.ndarray]:
    """What each activation site outputs on ``batches``, as float32 numpy arrays (batches stacked).

    ``model`` is fused (``fused_copy``); ``batches`` yields ``x`` or ``(x, y, ...)`` (a
    ``DataLoader`` does); only the first ``num_batches`` are run when it is given. ``sites``
    (names from ``activation_sites``) restricts the recording. A forward hook on each site copies
    its output; the result for a conv site has shape ``(N, C, H, W)``, for ``fc`` ``(N, classes)``.
    Memory: everything is kept (float32, 4 bytes a value); use few images, or ``sites``.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> acts = record_activations(fused_copy(resnet_fmnist(8)), [torch.zeros(2, 1, 28, 28)])
    >>> acts["conv1"].shape, acts["fc"].shape
    ((2, 16, 28, 28), (2, 10))
    """
    chosen = _select_sites(model, sites)
    recorded: dict[str, list[np.ndarray]] = {name: [] for name in chosen}

    def make_hook(name):
        def hook(module, inputs, output):
            recorded[name].append(_to_numpy(output).copy())
        return hook

    with _hooks(chosen, make_hook):
        _run_batches(model, batches, num_batches, restore_mode=True, nothing=_NOTHING)
    return {name: np.concatenate(parts, axis=0) for name, parts in recorded.items()}


def observe_activations(model: nn.Module, batches: Iterable, make_observer: Callable[[], Callable], *,
                        sites: Iterable[str] | None = None, num_batches: int | None = None) -> dict:
    """Calibrate: one new observer per activation site, called on that site's output for every batch.

    ``make_observer()`` returns a fresh qlearn observer, e.g. ``lambda: MinMaxObserver(qmin=0,
    qmax=255)``; each is called with the site's output as a float32 numpy array, batch after batch,
    so a ``MovingAverageMinMaxObserver`` sees the batches in order. Returns ``{site: observer}``:
    ``observer.calculate_qparams()`` gives that site's ``(scale, zero_point)``.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> from qlearn.observers import MinMaxObserver
    >>> obs = observe_activations(fused_copy(resnet_fmnist(8)), [torch.ones(2, 1, 28, 28)],
    ...                           lambda: MinMaxObserver(qmin=0, qmax=255), sites=["quant"])
    >>> obs["quant"].min_val, obs["quant"].max_val
    (np.float32(1.0), np.float32(1.0))
    """
    if not callable(make_observer):
        raise TypeError(f"make_observer must be a function that returns a new observer, got {make_observer!r}")
    chosen = _select_sites(model, sites)
    observers = {name: make_observer() for name in chosen}

    def make_hook(name):
        def hook(module, inputs, output):
            observers[name](_to_numpy(output))
        return hook

    with _hooks(chosen, make_hook):
        _run_batches(model, batches, num_batches, restore_mode=True, nothing=_NOTHING)
    return observers


@contextlib.contextmanager
def fake_quantize_activations(model: nn.Module, qparams: Mapping[str, tuple] | None, qmin: int, qmax: int,
                              *, sites: Iterable[str] | None = None) -> Iterator[nn.Module]:
    """Inside this block, ``model``'s activation sites output ``qlearn.fake_quantize`` of their output.

    - Static (calibrated) ranges: ``qparams`` maps every chosen site to its ``(scale, zero_point)``
      (e.g. ``{n: o.calculate_qparams() for n, o in observers.items()}``); ``sites`` defaults to
      the keys of ``qparams``.
    - Dynamic ranges: ``qparams=None``; each output is quantized with the min-max range of that
      very batch, ``calc_qparams(x.min(), x.max(), qmin, qmax)`` (``sites`` defaults to all).

    Codes lie in ``[qmin, qmax]``, e.g. ``0, 255`` (uint8). Yields ``model``; the hooks are
    removed when the block ends, even on error. A model converted to ``channels_last`` (faster
    convolutions on CPU) keeps its outputs in that memory format.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> model = fused_copy(resnet_fmnist(8))
    >>> with fake_quantize_activations(model, {"fc": (np.float32(0.5), 0)}, -128, 127):
    ...     out = model(torch.ones(1, 1, 28, 28))
    >>> bool(torch.all(out * 2 == torch.round(out * 2)))     # every output is a multiple of 0.5
    True
    """
    if qparams is not None and not isinstance(qparams, Mapping):
        raise TypeError(f"qparams must map site names to (scale, zero_point), or be None (dynamic); got {qparams!r}")
    if sites is None and qparams is not None:
        sites = list(qparams)
    chosen = _select_sites(model, sites)
    if qparams is not None:
        missing = [name for name in chosen if name not in qparams]
        if missing:
            raise ValueError(f"qparams has no (scale, zero_point) for the site(s) {missing}")
        for name in chosen:
            if not (isinstance(qparams[name], (tuple, list)) and len(qparams[name]) == 2):
                raise ValueError(f"qparams[{name!r}] must be a pair (scale, zero_point), got {qparams[name]!r}")
    calc_qparams(0.0, 1.0, qmin, qmax)  # checks qmin and qmax before any batch runs

    def make_hook(name):
        def hook(module, inputs, output):
            # a channels_last (NHWC) output is quantized in its own memory order and stays NHWC
            nhwc = output.dim() == 4 and not output.is_contiguous() and output.is_contiguous(
                memory_format=torch.channels_last)
            x = _to_numpy(output.permute(0, 2, 3, 1) if nhwc else output)
            if qparams is None:
                scale, zero_point = calc_qparams(x.min(), x.max(), qmin, qmax)
            else:
                scale, zero_point = qparams[name]
            x_hat = torch.from_numpy(fake_quantize(x, scale, zero_point, qmin, qmax))
            return x_hat.permute(0, 3, 1, 2) if nhwc else x_hat
        return hook

    with _hooks(chosen, make_hook):
        yield model
