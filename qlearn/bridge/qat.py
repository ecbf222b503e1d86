"""Quantization-aware training (QAT): fake quantization with gradients, learned step sizes, low bits.

Forward, a fake-quantizer rounds onto the integer grid and comes back to float (lab 02's formula,
in PyTorch's float32 order, ``x * (1 / scale)``)::

    q     = clamp(round(x * (1 / scale)) + zero_point, quant_min, quant_max)
    x_hat = (q - zero_point) * scale

Backward, rounding has a zero derivative almost everywhere, so QAT uses the **straight-through
estimator** (STE, Bengio et al. 2013): the gradient passes as if rounding were the identity, and is
zeroed where the clamp cut the value off (``mask`` = the unclamped code lies in ``[quant_min,
quant_max]``)::

    dL/dx = dL/dx_hat * mask                          (== torch.fake_quantize_per_tensor_affine)

**LSQ** (learned step size, Esser et al. 2020) also learns ``scale``. With ``v = x / scale``::

    dx_hat/dscale = round(v) - v                  inside the range
                  = quant_min - zero_point        below it
                  = quant_max - zero_point        above it
    dL/dscale     = g * sum(dL/dx_hat * dx_hat/dscale),   g = 1 / sqrt(numel * quant_max)

``g`` (the gradient scale) keeps the step size's update in proportion to the weights' updates;
this is ``torch._fake_quantize_learnable_per_tensor_affine`` with ``grad_factor = g``.

The rest of the module puts these on a model: :func:`prepare_fake_quant` swaps every ``Conv2d`` and
``Linear`` for a :class:`FakeQuantConv2d` / :class:`FakeQuantLinear` that fake-quantizes its weights
(symmetric, one learned scale per output channel; or binary / ternary) and its input activations
(one learned scale per tensor); :func:`calibrate_scales` sets the scales from data (post-training
quantization, PTQ) and :func:`train_qat` fine-tunes weights and scales (QAT) with a progress bar.
BatchNorm stays a separate layer: with one weight scale per output channel, folding BN into the
convolution later only rescales each channel's scale, so the accuracy is the same. Used in lab 08.
"""

from __future__ import annotations

import copy
import math
import numbers
import time
from collections.abc import Iterable

import torch
import torch.nn.functional as F
from torch import Tensor, nn

__all__ = [
    "FakeQuantConv2d",
    "FakeQuantLinear",
    "FakeQuantizeSTE",
    "LSQFakeQuantize",
    "QuantSpec",
    "binarize_ste",
    "calibrate_scales",
    "fake_quant_layers",
    "fake_quantize_ste",
    "lsq_fake_quantize",
    "lsq_grad_factor",
    "QAT_RUNS",
    "load_qat_checkpoint",
    "save_qat_checkpoint",
    "prepare_fake_quant",
    "quantize_weights_only",
    "ternarize_ste",
    "train_qat",
]


# --- the two autograd Functions ---------------------------------------------------------------

def _fake_quant_forward(x: Tensor, scale: Tensor, zero_point: Tensor, quant_min: int, quant_max: int):
    """``(x_hat, mask, v_rounded, inv_scale)`` in float32, PyTorch's operation order."""
    inv_scale = 1.0 / scale
    rounded = torch.round(x * inv_scale)
    q = rounded + zero_point
    mask = (q >= quant_min) & (q <= quant_max)
    x_hat = (torch.clamp(q, quant_min, quant_max) - zero_point) * scale
    return x_hat, mask, q, inv_scale


class FakeQuantizeSTE(torch.autograd.Function):
    """Fake quantization with the straight-through estimator; ``scale`` and ``zero_point`` are fixed.

    Same values and gradient as ``torch.fake_quantize_per_tensor_affine`` (bit for bit).
    Call it as ``fake_quantize_ste(x, scale, zero_point, quant_min, quant_max)``.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> Tensor:
        s = torch.tensor(scale, dtype=torch.float32)
        z = torch.tensor(float(zero_point), dtype=torch.float32)
        x_hat, mask, _, _ = _fake_quant_forward(x, s, z, quant_min, quant_max)
        ctx.save_for_backward(mask)
        return x_hat

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        (mask,) = ctx.saved_tensors
        return grad_output * mask, None, None, None, None


def fake_quantize_ste(x: Tensor, scale: float, zero_point: int, quant_min: int, quant_max: int) -> Tensor:
    """Fake-quantize ``x`` per tensor, with the STE in the backward pass.

    >>> x = torch.tensor([-1.0, 0.26, 0.5, 3.0], requires_grad=True)
    >>> y = fake_quantize_ste(x, 0.25, 0, -4, 3)   # codes -4..3: values -1.0 .. 0.75
    >>> y.tolist()
    [-1.0, 0.25, 0.5, 0.75]
    >>> y.sum().backward(); x.grad.tolist()         # 3.0 was clipped: no gradient
    [1.0, 1.0, 1.0, 0.0]
    """
    _check_range(quant_min, quant_max)
    if not (isinstance(scale, (int, float)) and scale > 0 and math.isfinite(scale)):
        raise ValueError(f"scale must be a positive finite float, got {scale!r}")
    return FakeQuantizeSTE.apply(x, float(scale), int(zero_point), quant_min, quant_max)


def lsq_grad_factor(numel: int, quant_max: int) -> float:
    """LSQ's gradient scale ``g = 1 / sqrt(numel * quant_max)``.

    ``numel`` is the number of values one scale covers (a weight tensor, one output channel, or
    the features of one activation sample); ``quant_max`` is the largest positive code.

    >>> lsq_grad_factor(100, 1)
    0.1
    """
    if numel < 1 or quant_max < 1:
        raise ValueError(f"numel and quant_max must be >= 1, got numel={numel!r}, quant_max={quant_max!r}")
    return 1.0 / math.sqrt(numel * quant_max)


def _reduce_to(grad: Tensor, shape: torch.Size) -> Tensor:
    """Sum ``grad`` over the dimensions in which ``shape`` broadcasts (size 1 or missing)."""
    if grad.shape == shape:
        return grad
    lead = grad.ndim - len(shape)
    dims = list(range(lead)) + [lead + i for i, n in enumerate(shape) if n == 1 and grad.shape[lead + i] != 1]
    return grad.sum(dim=dims, keepdim=True).reshape(shape) if dims else grad.reshape(shape)


class LSQFakeQuantize(torch.autograd.Function):
    """Fake quantization with a learned ``scale`` (LSQ): STE for ``x``, LSQ's gradient for ``scale``.

    ``scale`` is a float32 tensor that broadcasts against ``x`` (one element: per tensor; shape
    ``[C, 1, 1, 1]``: per output channel); ``zero_point`` is fixed. Per tensor this equals
    ``torch._fake_quantize_learnable_per_tensor_affine(x, scale, zero_point, quant_min, quant_max,
    grad_factor)`` in values and in both gradients.
    """

    @staticmethod
    def forward(ctx, x: Tensor, scale: Tensor, zero_point: float, quant_min: int, quant_max: int,
                grad_factor: float) -> Tensor:
        z = torch.tensor(float(zero_point), dtype=torch.float32)
        x_hat, mask, q, inv_scale = _fake_quant_forward(x, scale, z, quant_min, quant_max)
        ctx.save_for_backward(x, scale, mask, q, inv_scale)
        ctx.constants = (float(zero_point), quant_min, quant_max, grad_factor)
        return x_hat

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        x, scale, mask, q, inv_scale = ctx.saved_tensors
        zero_point, quant_min, quant_max, grad_factor = ctx.constants
        grad_x = grad_output * mask
        x_hat = (torch.clamp(q, quant_min, quant_max) - zero_point) * scale
        inside = (x_hat - x) * inv_scale
        dscale = torch.where(q < quant_min, torch.tensor(quant_min - zero_point, dtype=torch.float32),
                             torch.where(q > quant_max, torch.tensor(quant_max - zero_point, dtype=torch.float32),
                                         inside))
        grad_scale = _reduce_to(dscale * grad_output, scale.shape) * grad_factor
        return grad_x, grad_scale, None, None, None, None


def lsq_fake_quantize(x: Tensor, scale: Tensor, zero_point: float, quant_min: int, quant_max: int,
                      grad_factor: float | None = None) -> Tensor:
    """Fake-quantize ``x`` with a learnable ``scale`` (LSQ). ``grad_factor=None``: LSQ's
    ``1 / sqrt(numel_per_scale * quant_max)``.

    >>> x = torch.tensor([0.3, 0.9, -0.2, 2.0])
    >>> s = torch.tensor([0.5], requires_grad=True)
    >>> y = lsq_fake_quantize(x, s, 0, -2, 1, grad_factor=1.0)   # codes -2..1
    >>> y.tolist()
    [0.5, 0.5, 0.0, 0.5]
    >>> y.sum().backward(); round(s.grad.item(), 4)    # 0.4 + 1 (0.9 / 0.5 = 1.8 rounds to 2 > 1) + 0.4 + 1
    2.8
    """
    _check_range(quant_min, quant_max)
    if grad_factor is None:
        grad_factor = lsq_grad_factor(max(1, x.numel() // max(1, scale.numel())), max(1, quant_max))
    return LSQFakeQuantize.apply(x, scale, zero_point, quant_min, quant_max, float(grad_factor))


class _SignSTE(torch.autograd.Function):
    """``alpha * sign(w)`` or ``alpha * ternary(w)`` forward; identity gradient inside ``|w| <= 1``
    (scaled to the layer: ``|w| <= max|w|``), the clipped STE of BinaryConnect."""

    @staticmethod
    def forward(ctx, w: Tensor, ternary: bool) -> Tensor:
        dims = tuple(range(1, w.ndim))
        absw = w.abs()
        if ternary:
            delta = 0.7 * absw.mean(dim=dims, keepdim=True)
            keep = absw > delta
            alpha = (absw * keep).sum(dim=dims, keepdim=True) / keep.sum(dim=dims, keepdim=True).clamp(min=1)
            out = alpha * torch.sign(w) * keep
        else:
            alpha = absw.mean(dim=dims, keepdim=True)
            out = alpha * torch.where(w >= 0, 1.0, -1.0)
        return out

    @staticmethod
    def backward(ctx, grad_output: Tensor):
        return grad_output, None


def binarize_ste(w: Tensor) -> Tensor:
    """Binary weights ``alpha * sign(w)`` (sign(0) = +1), one ``alpha = mean|w|`` per output
    channel (XNOR-Net); identity gradient (STE).

    >>> binarize_ste(torch.tensor([[0.5, -1.5, 0.0, 1.0]])).tolist()
    [[0.75, -0.75, 0.75, 0.75]]
    """
    return _SignSTE.apply(w, False)


def ternarize_ste(w: Tensor) -> Tensor:
    """Ternary weights (TWN): 0 where ``|w| <= 0.7 mean|w|``, else ``alpha * sign(w)`` with
    ``alpha`` the mean of the kept ``|w|``; one per output channel; identity gradient (STE).

    >>> ternarize_ste(torch.tensor([[0.1, -1.0, 2.0, 0.5]])).tolist()   # delta = 0.7 * 0.9 = 0.63
    [[0.0, -1.5, 1.5, 0.0]]
    """
    return _SignSTE.apply(w, True)


def _check_range(quant_min: object, quant_max: object) -> None:
    if not (isinstance(quant_min, int) and isinstance(quant_max, int)) or quant_min >= quant_max:
        raise ValueError(f"quant_min < quant_max must be ints, got quant_min={quant_min!r}, quant_max={quant_max!r}")


# --- fake-quantized layers ----------------------------------------------------------------------

class QuantSpec:
    """How one layer is quantized: ``weight_bits`` (int >= 2, ``"ternary"``, ``"binary"`` or None
    for float), ``act_bits`` (int >= 2 or None) and ``act_signed`` (input may be negative).

    Weights are symmetric, codes ``[-2**(b-1), 2**(b-1) - 1]``, one scale per output channel;
    activations use ``[0, 2**b - 1]`` (after a ReLU) or ``[-2**(b-1), 2**(b-1) - 1]`` (signed).

    >>> QuantSpec(4, 4).weight_range, QuantSpec(4, 4).act_range, QuantSpec(8, 8, act_signed=True).act_range
    ((-8, 7), (0, 15), (-128, 127))
    """

    def __init__(self, weight_bits: int | str | None, act_bits: int | None, act_signed: bool = False) -> None:
        if not (weight_bits is None or weight_bits in ("binary", "ternary")
                or (isinstance(weight_bits, int) and 2 <= weight_bits <= 16)):
            raise ValueError(f"weight_bits must be an int in [2, 16], 'binary', 'ternary' or None, got {weight_bits!r}")
        if not (act_bits is None or (isinstance(act_bits, int) and 2 <= act_bits <= 16)):
            raise ValueError(f"act_bits must be an int in [2, 16] or None, got {act_bits!r}")
        self.weight_bits, self.act_bits, self.act_signed = weight_bits, act_bits, bool(act_signed)

    @property
    def weight_range(self) -> tuple[int, int] | None:
        if not isinstance(self.weight_bits, int):
            return None
        return -(2 ** (self.weight_bits - 1)), 2 ** (self.weight_bits - 1) - 1

    @property
    def act_range(self) -> tuple[int, int] | None:
        if self.act_bits is None:
            return None
        if self.act_signed:
            return -(2 ** (self.act_bits - 1)), 2 ** (self.act_bits - 1) - 1
        return 0, 2**self.act_bits - 1

    def __repr__(self) -> str:
        return f"QuantSpec(weight_bits={self.weight_bits!r}, act_bits={self.act_bits!r}, act_signed={self.act_signed})"


class _FakeQuantMixin:
    """Shared by the conv and linear layers: learned scales and the fake-quantized weight/input."""

    def _setup(self, spec: QuantSpec) -> None:
        self.spec = spec
        out_channels = self.weight.shape[0]
        shape = (out_channels,) + (1,) * (self.weight.ndim - 1)
        self.weight_scale = nn.Parameter(torch.ones(shape))
        self.fused = True
        self.act_scale = nn.Parameter(torch.ones(1))
        self.quantize_enabled = True

    def quantized_weight(self) -> Tensor:
        bits = self.spec.weight_bits
        if bits is None or not self.quantize_enabled:
            return self.weight
        if bits == "binary":
            return binarize_ste(self.weight)
        if bits == "ternary":
            return ternarize_ste(self.weight)
        lo, hi = self.spec.weight_range
        g = lsq_grad_factor(self.weight[0].numel(), hi)
        if self.fused:  # torch's one-pass kernel: same values and gradients, faster
            zero = torch.zeros(self.weight.shape[0])
            return torch._fake_quantize_learnable_per_channel_affine(
                self.weight, self.weight_scale.reshape(-1), zero, 0, lo, hi, g)
        return lsq_fake_quantize(self.weight, self.weight_scale, 0, lo, hi, g)

    def quantized_input(self, x: Tensor) -> Tensor:
        if self.spec.act_bits is None or not self.quantize_enabled:
            return x
        lo, hi = self.spec.act_range
        g = lsq_grad_factor(x[0].numel(), hi)
        if self.fused:
            return torch._fake_quantize_learnable_per_tensor_affine(x, self.act_scale, torch.zeros(1), lo, hi, g)
        return lsq_fake_quantize(x, self.act_scale, 0, lo, hi, g)


class FakeQuantConv2d(nn.Conv2d, _FakeQuantMixin):
    """A ``Conv2d`` that fake-quantizes its input and its weight (see :class:`QuantSpec`)."""

    def forward(self, x: Tensor) -> Tensor:
        return self._conv_forward(self.quantized_input(x), self.quantized_weight(), self.bias)


class FakeQuantLinear(nn.Linear, _FakeQuantMixin):
    """A ``Linear`` that fake-quantizes its input and its weight (see :class:`QuantSpec`)."""

    def forward(self, x: Tensor) -> Tensor:
        return F.linear(self.quantized_input(x), self.quantized_weight(), self.bias)


def _swap(layer: nn.Module, spec: QuantSpec) -> nn.Module:
    if isinstance(layer, nn.Conv2d):
        new = FakeQuantConv2d(layer.in_channels, layer.out_channels, layer.kernel_size, layer.stride,
                              layer.padding, layer.dilation, layer.groups, layer.bias is not None)
    else:
        new = FakeQuantLinear(layer.in_features, layer.out_features, layer.bias is not None)
    new.load_state_dict(layer.state_dict())
    new._setup(spec)
    return new


def fake_quant_layers(model: nn.Module) -> dict[str, nn.Module]:
    """The fake-quantized layers of ``model`` by qualified name, in model order."""
    return {n: m for n, m in model.named_modules() if isinstance(m, (FakeQuantConv2d, FakeQuantLinear))}


def prepare_fake_quant(model: nn.Module, weight_bits: int | str | None, act_bits: int | None, *,
                       first_last_bits: int | None = 8, per_layer: dict[str, int | str | None] | None = None,
                       ) -> nn.Module:
    """A copy of ``model`` with every ``Conv2d``/``Linear`` replaced by a fake-quantized one.

    The first convolution and the last linear layer use ``first_last_bits`` for weights and
    activations (8, as in LSQ and most QAT papers; ``None``: same as the others). The first
    layer's input (the normalised image) is signed; every other input follows a ReLU.
    ``per_layer`` overrides the weight bits of named layers (mixed precision). Scales start at 1:
    call :func:`calibrate_scales` next. ``model`` is left unchanged.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> fq = prepare_fake_quant(resnet_fmnist(8), 4, 4)
    >>> [(n, m.spec.weight_bits, m.spec.act_bits) for n, m in fake_quant_layers(fq).items()][:2]
    [('conv1', 8, 8), ('layer1.0.conv1', 4, 4)]
    """
    qmodel = copy.deepcopy(model)
    names = [n for n, m in qmodel.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    per_layer = dict(per_layer or {})
    unknown = sorted(set(per_layer) - set(names))
    if unknown:
        raise ValueError(f"per_layer names layers the model does not have: {unknown}; its layers are {names}")
    for i, name in enumerate(names):
        edge = i == 0 or i == len(names) - 1
        wb = first_last_bits if edge and first_last_bits is not None else weight_bits
        ab = first_last_bits if edge and first_last_bits is not None and act_bits is not None else act_bits
        wb = per_layer.get(name, wb)
        spec = QuantSpec(wb, ab, act_signed=(i == 0))
        parent_name, _, child = name.rpartition(".")
        parent = qmodel.get_submodule(parent_name) if parent_name else qmodel
        setattr(parent, child, _swap(getattr(parent, child), spec))
    return qmodel


def _mse_weight_scale(w: Tensor, lo: int, hi: int, grid: int = 40) -> Tensor:
    """Per-output-channel scale minimising ``||w - fake_quant(w)||^2`` over clipping ratios 0.3..1."""
    flat = w.detach().reshape(w.shape[0], -1)
    amax = flat.abs().amax(1).clamp(min=1e-8)
    best_err = torch.full_like(amax, float("inf"))
    best = amax / hi
    for ratio in torch.linspace(0.3, 1.0, grid):
        s = amax * ratio / hi
        q = torch.clamp(torch.round(flat / s[:, None]), lo, hi) * s[:, None]
        err = ((q - flat) ** 2).sum(1)
        better = err < best_err
        best_err = torch.where(better, err, best_err)
        best = torch.where(better, s, best)
    return best


@torch.no_grad()
def calibrate_scales(model: nn.Module, loader: Iterable, num_batches: int = 4, *, weights: str = "minmax",
                     activations: str = "minmax") -> nn.Module:
    """Set every fake-quantized layer's scales from the weights and a few batches (PTQ).

    ``weights``: ``"minmax"`` (``max|w| / quant_max`` per channel, as torch's observers) or
    ``"mse"`` (the clipping that minimises the squared error). ``activations``: ``"minmax"``
    (the largest ``|x|`` seen over the batches / quant_max) or ``"lsq"`` (LSQ's initialisation
    ``2 mean|x| / sqrt(quant_max)``, averaged over the batches). Returns ``model``, in eval mode.
    """
    if weights not in ("minmax", "mse") or activations not in ("minmax", "lsq"):
        raise ValueError(f"weights must be 'minmax' or 'mse' and activations 'minmax' or 'lsq', "
                         f"got weights={weights!r}, activations={activations!r}")
    layers = fake_quant_layers(model)
    stats: dict[str, list[float]] = {n: [] for n in layers}
    hooks = []
    for name, layer in layers.items():
        layer.quantize_enabled = False
        if layer.spec.act_bits is not None:
            hi = layer.spec.act_range[1]

            def hook(mod, inputs, _name=name, _hi=hi):
                x = inputs[0]
                value = x.abs().amax() / _hi if activations == "minmax" else 2 * x.abs().mean() / math.sqrt(_hi)
                stats[_name].append(float(value))
            hooks.append(layer.register_forward_pre_hook(hook))
    model.eval()
    try:
        seen = 0
        for xb, *_ in loader:
            if seen >= num_batches:
                break
            model(xb)
            seen += 1
    finally:
        for h in hooks:
            h.remove()
        for layer in layers.values():
            layer.quantize_enabled = True
    for name, layer in layers.items():
        if stats[name]:
            value = max(stats[name]) if activations == "minmax" else sum(stats[name]) / len(stats[name])
            layer.act_scale.fill_(max(value, 1e-8))
        if isinstance(layer.spec.weight_bits, int):
            lo, hi = layer.spec.weight_range
            w = layer.weight
            if weights == "minmax":
                s = w.reshape(w.shape[0], -1).abs().amax(1).clamp(min=1e-8) / hi
            else:
                s = _mse_weight_scale(w, lo, hi)
            layer.weight_scale.copy_(s.reshape(layer.weight_scale.shape))
    return model


def quantize_weights_only(model: nn.Module, bits: dict[str, int], *, per_channel: bool = True) -> nn.Module:
    """A float copy of ``model`` whose named layers' weights are replaced by their fake-quantized
    values (symmetric, min-max scale ``max|w| / (2**(b-1) - 1)`` per output channel or per
    tensor; codes ``[-(2**(b-1) - 1), 2**(b-1) - 1]``). Activations stay float. For the
    mixed-precision experiments of lab 08.

    >>> m = quantize_weights_only(nn.Linear(4, 2), {"": 2})
    >>> codes = torch.round(m.weight / m.weight.abs().amax(1, keepdim=True))  # qmax = 1 at 2 bits
    >>> set(codes.flatten().tolist()) <= {-1.0, 0.0, 1.0}
    True
    """
    qmodel = copy.deepcopy(model).eval()
    for name, b in bits.items():
        layer = qmodel.get_submodule(name) if name else qmodel
        if isinstance(b, bool) or not isinstance(b, numbers.Integral) or b < 2:
            raise ValueError(f"bits[{name!r}] must be an int >= 2, got {b!r}")
        w = layer.weight.detach()
        qmax = 2 ** (int(b) - 1) - 1
        amax = w.reshape(w.shape[0], -1).abs().amax(1) if per_channel else w.abs().amax().reshape(1)
        scale = (amax.clamp(min=1e-12) / qmax).reshape((-1,) + (1,) * (w.ndim - 1))
        with torch.no_grad():
            layer.weight.copy_(torch.clamp(torch.round(w / scale), -qmax, qmax) * scale)
    return qmodel


# --- training -----------------------------------------------------------------------------------

def train_qat(model: nn.Module, loader: Iterable, *, epochs: int = 1, lr: float = 0.01, weight_decay: float = 5e-5,
              max_steps: int | None = None, progress: bool = True, label_smoothing: float = 0.1,
              desc: str = "QAT") -> dict:
    """Fine-tune a fake-quantized ``model`` in place: SGD (Nesterov momentum 0.9) on weights and
    scales, cosine learning rate from ``lr`` to 0, cross-entropy with label smoothing, a tqdm bar.

    Stops after ``max_steps`` batches if given. Returns ``{"steps", "seconds", "last_loss"}``.
    Scales and BatchNorm parameters get no weight decay. Leaves ``model`` in eval mode.
    """
    from tqdm.auto import tqdm

    decay = [p for n, p in model.named_parameters() if p.ndim > 1 and not n.endswith("_scale")]
    ids = {id(p) for p in decay}
    rest = [p for p in model.parameters() if id(p) not in ids]
    optimizer = torch.optim.SGD([{"params": decay, "weight_decay": weight_decay},
                                 {"params": rest, "weight_decay": 0.0}], lr=lr, momentum=0.9, nesterov=True)
    total = epochs * len(loader) if hasattr(loader, "__len__") else (max_steps or 0)
    if max_steps is not None:
        total = min(total, max_steps) if total else max_steps
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lambda step: 0.5 * (1 + math.cos(math.pi * step / max(1, total))))
    model.train()
    start, steps, running = time.perf_counter(), 0, float("nan")
    bar = tqdm(total=total, disable=not progress, unit="batch", desc=desc, mininterval=2)
    for _ in range(epochs):
        for xb, yb in loader:
            if steps >= total:
                break
            loss = F.cross_entropy(model(xb), yb, label_smoothing=label_smoothing)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            scheduler.step()
            with torch.no_grad():
                for layer in fake_quant_layers(model).values():
                    layer.weight_scale.clamp_(min=1e-8)
                    layer.act_scale.clamp_(min=1e-8)
            running = loss.item() if math.isnan(running) else 0.9 * running + 0.1 * loss.item()
            steps += 1
            bar.update(1)
            bar.set_postfix(loss=f"{running:.3f}", refresh=False)
    bar.close()
    model.eval()
    return {"steps": steps, "seconds": round(time.perf_counter() - start, 1), "last_loss": running}


# --- the shipped full runs ----------------------------------------------------------------------

#: The full QAT runs of ``tools/train_qat.py``: bits, fine-tuning batches and their size, peak lr.
QAT_RUNS: dict[str, dict] = {
    "w4a4": {"weight_bits": 4, "act_bits": 4, "steps": 100, "batch_size": 64, "lr": 0.005},
    "w2a8": {"weight_bits": 2, "act_bits": 8, "steps": 200, "batch_size": 64, "lr": 0.01},
}


def save_qat_checkpoint(model: nn.Module, path) -> "Path":
    """Save a fake-quantized model compactly: each quantized weight as int8 codes plus one float
    scale per output channel (``<layer>.weight_codes``, ``<layer>.weight_step``), everything else
    (BatchNorm, biases, activation scales) as float32. About a quarter of the float checkpoint."""
    from pathlib import Path

    path = Path(path)
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    for name, layer in fake_quant_layers(model).items():
        if layer.spec.weight_bits is None:
            continue
        with torch.no_grad():
            w_hat = layer.quantized_weight().detach()
        dims = tuple(range(1, w_hat.ndim))
        if isinstance(layer.spec.weight_bits, int):
            step = layer.weight_scale.detach().clone()
        else:  # binary / ternary: alpha per channel (every non-zero |w_hat| equals it)
            step = w_hat.abs().amax(dim=dims, keepdim=True).clamp(min=1e-12)
        codes = torch.round(w_hat / step)
        if codes.min() < -128 or codes.max() > 127:
            raise ValueError(f"layer {name}: codes exceed int8")
        state[f"{name}.weight_codes"] = codes.to(torch.int8).contiguous()
        state[f"{name}.weight_step"] = step.contiguous()
        del state[f"{name}.weight"]
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return path


def load_qat_checkpoint(name: str, root=None, *, check_sha: bool = True) -> nn.Module:
    """A shipped full QAT run (``"w4a4"`` or ``"w2a8"``) as a
    fake-quantized ``resnet_fmnist(14)`` in eval mode. The file's sha256 is checked against
    ``qat_results.json`` next to it (``weights_only=True``: no pickled code runs).

    >>> model = load_qat_checkpoint("w4a4")
    >>> fake_quant_layers(model)["layer1.0.conv1"].spec
    QuantSpec(weight_bits=4, act_bits=4, act_signed=False)
    """
    import hashlib
    import io
    import json

    from qlearn.bridge.resnet import resnet_fmnist
    from qlearn.datasets import data_root

    if name not in QAT_RUNS:
        raise ValueError(f"name must be one of {sorted(QAT_RUNS)}, got {name!r}")
    folder = data_root(root) / "checkpoints"
    path = folder / f"qat_{name}.pt"
    fix = "Restore it from git, or rebuild it with tools/train_qat.py (see its docstring)."
    if not path.is_file():
        raise FileNotFoundError(f"QAT checkpoint not found: {path}. {fix}")
    data = path.read_bytes()
    if check_sha:
        meta = json.loads((folder / "qat_results.json").read_text())
        expected = meta["runs"][name]["sha256"]
        digest = hashlib.sha256(data).hexdigest()
        if digest != expected:
            raise ValueError(f"{path} is corrupt or was changed: sha256 {digest}, expected {expected}. {fix}")
    state = torch.load(io.BytesIO(data), map_location="cpu", weights_only=True)
    cfg = QAT_RUNS[name]
    model = prepare_fake_quant(resnet_fmnist(14), cfg["weight_bits"], cfg["act_bits"])
    for lname in fake_quant_layers(model):
        codes = state.pop(f"{lname}.weight_codes")
        step = state.pop(f"{lname}.weight_step")
        state[f"{lname}.weight"] = codes.to(torch.float32) * step
    model.load_state_dict(state)
    return model.eval()
