"""Lab 10 (``10_resnet_ptq``): post-training quantization of a trained ResNet with PyTorch.

    10.1  fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps)
                                        f = gamma / sqrt(var + eps):  W' = W * f,  b' = (b - mean) * f + beta
    10.2  calibrate(model, loader, num_batches)
                                        eval mode, no gradients, exactly the first num_batches batches
    10.3  weight_code(w, scale, zero_point)
                                        q = clamp(rint(w * float32(1 / scale)) + zero_point, -128, 127)
    10.4  model_size(tensors)           sum over tensors of ceil(numel * bits(dtype) / 8) bytes

**Division or reciprocal?** Exercise 10.3 asks for the code that PyTorch's kernel stores, and the
kernel multiplies by the float32 reciprocal of the scale. Here the difference is not rare: a
symmetric int8 scale ``max|w| / 127.5`` puts the largest weight of every channel exactly on the
tie ``w / scale = ±127.5``, where ``w / scale`` and ``w * (1 / scale)`` round to different codes
for a few channels in every network. The exercise says so and teaches it, so ``w / scale`` is a
wrong answer here (one case is built where the two disagree); every other case is built so that
the two agree, and ties use power-of-two scales.

Exercise 10.2 checks a side effect: ``calibrate`` must run batches through the model it is given.
Its cases use :class:`TinyObservedModel`, a stand-in for a prepared model whose observers record
every batch they see (the model's mode, whether gradients were on, the batch), and
:class:`FakeLoader`, a small loader of ``(images, labels)`` batches. Both hold numpy data only (so
that the cases pickle the same way every time); torch is imported when a batch is produced, so
importing the exercise catalogue does not import torch.
"""

from __future__ import annotations

import copy
import math
from collections.abc import Callable

import numpy as np

from qlearn.grading.compare import compare_values, format_value, tie_note
from qlearn.grading.delegation import fixture
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.registry import register

__all__ = [
    "DTYPE_BITS",
    "FakeLoader",
    "RecordingObserver",
    "TinyObservedModel",
    "calibrate",
    "fold_batchnorm",
    "model_size",
    "weight_code",
]

NOTEBOOK = "10_resnet_ptq"
f32 = np.float32


# --- 10.1 -------------------------------------------------------------------------------------

def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps: float = 1e-5):
    """Fold an eval-mode BatchNorm into the layer before it: returns ``(weight', bias')``.

    With ``inv_std = 1 / sqrt(running_var + eps)``, one value per output channel (axis 0)::

        W' = W * (gamma * inv_std)                      (broadcast along axis 0)
        b' = (b - running_mean) * inv_std * gamma + beta     (b = 0 when bias is None)

    In float32, in the order ``torch.nn.utils.fusion.fuse_conv_bn_weights`` uses.

    >>> w, b = fold_batchnorm(np.ones((2, 1, 1, 1), np.float32), None, np.array([1, 2], np.float32),
    ...                       np.array([0, 1], np.float32), np.array([1, 1], np.float32),
    ...                       np.array([4, 4], np.float32), eps=0.0)
    >>> w.ravel(), b
    (array([0.5, 1. ], dtype=float32), array([-0.5,  0. ], dtype=float32))
    """
    weight = np.asarray(weight, dtype=f32)
    gamma, beta = np.asarray(gamma, dtype=f32), np.asarray(beta, dtype=f32)
    mean, var = np.asarray(running_mean, dtype=f32), np.asarray(running_var, dtype=f32)
    bias = np.zeros_like(mean) if bias is None else np.asarray(bias, dtype=f32)
    inv_std = f32(1) / np.sqrt(var + f32(eps))
    shape = (-1,) + (1,) * (weight.ndim - 1)
    new_weight = weight * (gamma * inv_std).reshape(shape)
    new_bias = (bias - mean) * inv_std * gamma + beta
    return new_weight.astype(f32), new_bias.astype(f32)


def _bn_case(rng: np.random.Generator, name: str, shape: tuple[int, ...], *, bias: bool, eps: float = 1e-5,
             var_low: float = 1e-3, var_high: float = 2.0) -> Case:
    c = shape[0]
    return Case(name, (
        rng.normal(0, 0.3, shape).astype(f32),
        rng.normal(0, 0.1, c).astype(f32) if bias else None,
        rng.uniform(0.2, 2.0, c).astype(f32),
        rng.normal(0, 0.5, c).astype(f32),
        rng.normal(0, 1.0, c).astype(f32),
        np.exp(rng.uniform(np.log(var_low), np.log(var_high), c)).astype(f32),
        eps,
    ))


def _fold_cases(rng: np.random.Generator) -> list[Case]:
    dead = _bn_case(rng, "a channel with almost no variance (var 1e-7): eps decides", (3, 2, 1, 1),
                    bias=False)
    var = dead.args[5].copy()
    var[1] = f32(1e-7)
    dead = Case(dead.name, dead.args[:5] + (var, dead.args[6]))
    return [
        _bn_case(rng, "conv 1x1 without bias (as in the ResNet): bias=None", (3, 2, 1, 1), bias=False),
        _bn_case(rng, "conv 1x1 with a bias", (3, 2, 1, 1), bias=True),
        _bn_case(rng, "square conv 3x3 (C_out == C_in): fold along the OUTPUT channels, axis 0", (2, 2, 3, 3),
                 bias=False),
        _bn_case(rng, "conv 3x3 with a bias", (3, 1, 3, 3), bias=True),
        _bn_case(rng, "linear layer + BatchNorm1d: 2-D weight [out, in]", (4, 3), bias=True),
        _bn_case(rng, "eps = 1e-3 with small variances", (3, 2, 1, 1), bias=True, eps=1e-3, var_low=1e-4,
                 var_high=1e-2),
        dead,
        Case("identity BatchNorm (gamma 1, beta 0, mean 0, var 1 - eps): nothing changes",
             (np.arange(8, dtype=f32).reshape(2, 1, 2, 2), None, np.ones(2, f32), np.zeros(2, f32),
              np.zeros(2, f32), np.full(2, 1 - 1e-5, f32), 1e-5)),
    ]


def _fold_wrong(eps=True, sqrt=True, mean=True, beta=True, bias_gamma=True, axis=0):
    def wrong(weight, bias, gamma, beta_, running_mean, running_var, eps_=1e-5):
        var = running_var + (f32(eps_) if eps else f32(0))
        with np.errstate(divide="ignore", invalid="ignore"):
            inv_std = f32(1) / (np.sqrt(var) if sqrt else var)
        shape = [1] * weight.ndim
        shape[axis] = -1
        b = np.zeros_like(running_mean) if bias is None else bias
        b = (b - (running_mean if mean else 0)) * inv_std * (gamma if bias_gamma else 1)
        b = b + (beta_ if beta else 0)
        return weight * (gamma * inv_std).reshape(shape), b.astype(f32)
    return wrong


register(Exercise(
    id="10.1",
    title="Fold a BatchNorm into the convolution before it",
    points=3,
    reference=fold_batchnorm,
    cases=_fold_cases,
    function="fold_batchnorm",
    hint=("inv_std = 1 / np.sqrt(running_var + eps) gives one factor per output channel. Scale the "
          "weights along axis 0: weight * (gamma * inv_std).reshape((-1,) + (1,) * (weight.ndim - 1)) "
          "works for 4-D conv and 2-D linear weights. bias' = (bias - running_mean) * inv_std * gamma "
          "+ beta, with bias = 0 when it is None. Return (weight', bias')."),
    notebook=NOTEBOOK,
    seed=1001,
    forbidden=(
        "torch.nn.utils.fusion.fuse_conv_bn_weights", "torch.nn.utils.fusion.fuse_linear_bn_weights",
        "torch.nn.utils.fusion.fuse_conv_bn_eval", "torch.nn.utils.fusion.fuse_linear_bn_eval",
        "torch.ao.quantization.fuse_modules", "qlearn.bridge.export.fused_copy",
    ),
    rtol=1e-5,
    atol=1e-6,
    wrong_answers={
        "forgets eps": _fold_wrong(eps=False),
        "divides by the variance, not the standard deviation": _fold_wrong(sqrt=False),
        "forgets to subtract the running mean from the bias": _fold_wrong(mean=False),
        "forgets beta": _fold_wrong(beta=False),
        "does not scale the bias by gamma": _fold_wrong(bias_gamma=False),
        "scales the input channels (axis 1)": _fold_wrong(axis=1),
        "returns the weights unchanged": lambda w, b, g, be, m, v, eps=1e-5: (
            w, _fold_wrong()(w, b, g, be, m, v, eps)[1]),
    },
))


# --- 10.2 -------------------------------------------------------------------------------------

@fixture
class _Generation:
    """How many deep copies away from the check's case an object is (each ``deepcopy`` adds one)."""

    def __init__(self, value: int = 0) -> None:
        self.value = value

    def __deepcopy__(self, memo) -> _Generation:
        return _Generation(self.value + 1)


@fixture
class RecordingObserver:
    """A stand-in for an activation observer: a running min/max that also logs every batch it sees.

    Each entry of ``log`` is ``(training, grad_enabled, batch_size, round(sum, 4))``.
    """

    def __init__(self) -> None:
        self.min_val, self.max_val = math.inf, -math.inf
        self.log: list[tuple[bool, bool, int, float]] = []

    def observe(self, x, training: bool) -> None:
        import torch

        self.log.append((training, torch.is_grad_enabled(), int(x.shape[0]), round(float(x.sum()), 4)))
        self.min_val = min(self.min_val, float(x.min()))
        self.max_val = max(self.max_val, float(x.max()))


@fixture
class TinyObservedModel:
    """A stand-in for a prepared model: ``y = x @ W.T + b`` with an observer on its input and output.

    It behaves like an ``nn.Module`` where calibration needs it: ``model(x)`` (or
    ``model.forward(x)``), ``model.eval()`` and ``model.train(mode)`` (both return the model), and
    ``model.training``. It starts in training mode, like every freshly built module.
    """

    def __init__(self, weight: np.ndarray, bias: np.ndarray) -> None:
        self.weight, self.bias = np.asarray(weight, f32), np.asarray(bias, f32)
        self.training = True
        self.observers = {"input": RecordingObserver(), "output": RecordingObserver()}
        self.generation = _Generation()

    def forward(self, x):
        import torch

        self.observers["input"].observe(x, self.training)
        y = x @ torch.from_numpy(self.weight).T + torch.from_numpy(self.bias)
        self.observers["output"].observe(y, self.training)
        return y

    __call__ = forward

    def train(self, mode: bool = True) -> TinyObservedModel:
        self.training = bool(mode)
        return self

    def eval(self) -> TinyObservedModel:
        return self.train(False)

    def __repr__(self) -> str:
        mode = "training" if self.training else "eval"
        seen = len(self.observers["input"].log)
        return f"TinyObservedModel(Linear({self.weight.shape[1]} -> {self.weight.shape[0]}), {mode} mode, " \
               f"observers have seen {seen} batches)"


@fixture
class FakeLoader:
    """A small loader: yields ``(images, labels)`` pairs of torch tensors, in order, every time.

    Like a ``DataLoader`` it has a length (the number of batches) and no indexing.
    """

    def __init__(self, images: list[np.ndarray], labels: list[np.ndarray]) -> None:
        self.images = [np.asarray(x, f32) for x in images]
        self.labels = [np.asarray(y, np.int64) for y in labels]

    def __iter__(self):
        import torch

        for x, y in zip(self.images, self.labels):
            yield torch.from_numpy(x.copy()), torch.from_numpy(y.copy())

    def __len__(self) -> int:
        return len(self.images)

    def __repr__(self) -> str:
        sizes = ", ".join(str(len(x)) for x in self.images)
        return f"FakeLoader({len(self)} batches of (images, labels), batch sizes [{sizes}])"


def calibrate(model, loader, num_batches: int):
    """Run the first ``num_batches`` batches of ``loader`` through ``model``, then return ``model``.

    The model is put in eval mode first (BatchNorm and Dropout must behave as at inference) and no
    gradients are recorded (``torch.no_grad()``). The batches are ``(images, labels)`` pairs; only
    the images go through the model, so that its observers record their ranges. A loader with fewer
    than ``num_batches`` batches is used entirely.

    >>> model = TinyObservedModel(np.ones((2, 3), np.float32), np.zeros(2, np.float32))
    >>> loader = FakeLoader([np.ones((4, 3))] * 5, [np.zeros(4)] * 5)
    >>> calibrate(model, loader, 2)
    TinyObservedModel(Linear(3 -> 2), eval mode, observers have seen 2 batches)
    """
    import torch

    model.eval()
    with torch.no_grad():
        for i, (images, _) in enumerate(loader):
            if i >= num_batches:
                break
            model(images)
    return model


def _loader(rng: np.random.Generator, sizes: list[int], features: int = 3) -> FakeLoader:
    images = [rng.normal(0, 1, (n, features)).astype(f32) for n in sizes]
    labels = [rng.integers(0, 10, n) for n in sizes]
    return FakeLoader(images, labels)


def _model(rng: np.random.Generator, features: int = 3) -> TinyObservedModel:
    return TinyObservedModel(rng.normal(0, 1, (2, features)).astype(f32), rng.normal(0, 0.1, 2).astype(f32))


def _calibrate_cases(rng: np.random.Generator) -> list[Case]:
    def case(name, sizes, num_batches, features=3):
        return Case(name, (_model(rng, features), _loader(rng, sizes, features), num_batches))

    return [
        case("5 batches, num_batches=3: stop after the third batch", [4] * 5, 3),
        case("num_batches=1: the first batch only", [4] * 4, 1),
        case("num_batches equals the number of batches (4)", [3] * 4, 4),
        case("num_batches=10 but the loader has only 3 batches: use them all, no error", [5] * 3, 10),
        case("batches of different sizes (the last one is smaller)", [8, 8, 8, 3], 4),
        case("a longer loader: 12 batches, num_batches=7", [2] * 12, 7, features=5),
        case("random loader", [int(n) for n in rng.integers(1, 9, 6)], int(rng.integers(2, 6))),
    ]


def _compare_calibrated(got, expected) -> str | None:
    if got is None:
        return "returned None: return the model (calibrate changes it in place, then returns it)"
    if type(got) is not TinyObservedModel:  # exactly the stand-in model: a subclass could fake its logs
        return f"expected the model, got {format_value(got)}"
    if got.generation.value != expected.generation.value:
        return ("calibrated a copy of the model: the observers of the model you were given saw nothing. "
                "Run the batches through `model` itself and return it")
    for name, observer in expected.observers.items():
        log, want = got.observers[name].log, observer.log
        if len(log) != len(want):
            return (f"the observers saw {len(log)} batches, expected {len(want)}: run exactly num_batches "
                    f"batches (or every batch if the loader has fewer)")
        if any(training for training, *_ in log):
            return ("the model was in training mode while it calibrated: call model.eval() first "
                    "(BatchNorm and Dropout behave differently in training mode)")
        if any(grad for _, grad, *_ in log):
            return ("gradients were recorded while it calibrated: run the batches inside "
                    "`with torch.no_grad():`")
        if [entry[2:] for entry in log] != [entry[2:] for entry in want]:
            return ("the observers saw other batches than expected: run the loader's batches in order, "
                    "from the first")
    if got.training:
        return "the model is in training mode at the end: leave it in eval mode"
    return None


def _calibrate_wrong(eval_mode=True, no_grad=True, extra=0, limit=True, skip=0, copy_model=False,
                     returns=True):
    def wrong(model, loader, num_batches):
        import torch

        if copy_model:
            model = copy.deepcopy(model)
        if eval_mode:
            model.eval()
        with torch.no_grad() if no_grad else torch.enable_grad():
            for i, (images, _) in enumerate(loader):
                if limit and i >= num_batches + extra:
                    break
                if i >= skip:
                    model(images)
        return model if returns else None
    return wrong


register(Exercise(
    id="10.2",
    title="Write the calibration loop",
    points=2,
    reference=calibrate,
    cases=_calibrate_cases,
    function="calibrate",
    hint=("model.eval(), then `with torch.no_grad():` loop over `for i, (images, labels) in "
          "enumerate(loader):`, stop (break) when i reaches num_batches, else call model(images). "
          "A loader shorter than num_batches simply ends the loop. Return the model."),
    notebook=NOTEBOOK,
    seed=1002,
    forbidden=("qlearn.bridge.ptq.calibrate", "qlearn.bridge.ptq.quantize_ptq", "qlearn.bridge.export._run",),
    allowed=("torch",),  # the loop runs a torch model: torch.no_grad() and friends are part of the job
    compare=_compare_calibrated,
    plain_result=False,  # the answer is the model itself: _compare_calibrated checks its exact type
    wrong_answers={
        "forgets model.eval()": _calibrate_wrong(eval_mode=False),
        "records gradients (no torch.no_grad())": _calibrate_wrong(no_grad=False),
        "runs every batch of the loader": _calibrate_wrong(limit=False),
        "off by one: runs num_batches + 1 batches": _calibrate_wrong(extra=1),
        "off by one: runs num_batches - 1 batches": _calibrate_wrong(extra=-1),
        "skips the first batch": _calibrate_wrong(skip=1),
        "calibrates a copy of the model": _calibrate_wrong(copy_model=True),
        "returns None": _calibrate_wrong(returns=False),
    },
))


# --- 10.3 -------------------------------------------------------------------------------------

def weight_code(w, scale, zero_point):
    """The int8 code PyTorch stores for the weight(s) ``w``:

        q = clamp(rint(w * float32(1 / scale)) + zero_point, -128, 127)

    ``scale`` (float32) and ``zero_point`` are numbers or arrays that broadcast against ``w`` (one
    per output channel: shape ``[C, 1, 1, 1]``). The kernel multiplies by the float32 reciprocal of
    the scale, and ``rint`` rounds half-to-even. Returns int8 codes with the shape of ``w``.

    >>> weight_code(np.array([0.013, -0.5, 0.0375, 9.0], np.float32), np.float32(0.025), 0)
    array([  1, -20,   2, 127], dtype=int8)
    """
    w = np.asarray(w, dtype=f32)
    inv_scale = f32(1) / np.asarray(scale, dtype=f32)
    q = np.rint(w * inv_scale) + np.asarray(zero_point, dtype=np.int64)
    return np.clip(q, -128, 127).astype(np.int8)


def _division_agrees(w: np.ndarray, scale: np.ndarray) -> np.ndarray:
    """Where ``w / scale`` and ``w * (1 / scale)`` (float32 and float64) round to the same integer."""
    w64, s64 = w.astype(np.float64), np.asarray(scale, np.float64)
    ways = [w * (f32(1) / scale), w / scale, w64 / s64, w64 * (1.0 / s64)]
    codes = [np.rint(v) for v in ways]
    return np.logical_and.reduce([c == codes[0] for c in codes[1:]])


def _per_channel(w: np.ndarray) -> np.ndarray:
    """torch's symmetric per-channel int8 scale: max|w_c| / 127.5, shape [C, 1, ...]."""
    m = np.abs(w.reshape(w.shape[0], -1)).max(axis=1)
    scale = np.maximum(m / f32(127.5), np.finfo(f32).eps).astype(f32)
    return scale.reshape((-1,) + (1,) * (w.ndim - 1))


def _weight_code_cases(rng: np.random.Generator) -> list[Case]:
    def agreeing(w, scale):
        return np.where(_division_agrees(w, scale), w, f32(0)).astype(f32)

    w = rng.normal(0, 0.05, (4, 1, 2, 2)).astype(f32)
    s = _per_channel(w)
    body = agreeing(w, s)
    # channels whose largest weight lands on a tie (+-127.5 steps) that division rounds differently
    for _ in range(10_000):
        extreme = rng.normal(0, 0.05, (6, 4)).astype(f32)
        es = _per_channel(extreme)
        by_division = np.clip(np.rint(extreme / es), -128, 127)
        if (by_division != weight_code(extreme, es, 0)).any():  # float32 division gives another code
            break
    else:  # pragma: no cover - the seed guarantees a hit
        raise RuntimeError("no weight found where division and reciprocal disagree")
    w2 = rng.normal(0, 1.0, (3, 5)).astype(f32)
    s2 = np.full((3, 1), f32(0.02), f32)
    half = f32(0.5)
    return [
        Case("a single weight: 0.0137 with scale 0.001", (f32(0.0137), f32(0.001), 0)),
        Case("a single negative weight: -0.2 with scale 0.003", (f32(-0.2), f32(0.003), 0)),
        Case("ties: w / scale = k + 1/2 rounds half-to-even (1.5 -> 2, 2.5 -> 2, -0.5 -> 0)",
             (np.array([-3.5, -2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5], f32) * half, half, 0)),
        Case("saturation: beyond 127 steps clamps to 127, beyond -128 to -128 (no wrap-around)",
             (np.array([-500.0, -129.0, -128.0, 127.0, 128.0, 300.0], f32), f32(1.0), 0)),
        Case("a conv weight [4, 1, 2, 2] with per-channel scales [4, 1, 1, 1], as torch's weight observer "
             "sets them", (body, s, 0)),
        Case("per-channel scales of a linear weight [6, 4]: each row's largest weight sits on a tie at "
             "+-127.5 steps, and the kernel's reciprocal decides",
             (extreme, es, 0)),
        Case("a 2-D linear weight, saturating on purpose (scale 0.02)", (agreeing(w2, s2), s2, 0)),
        Case("a zero-point of 10 (asymmetric int8): round first, then add it",
             (np.array([-1.3, -0.25, 0.0, 0.25, 1.3, 1.25], f32), f32(0.01), 10)),
        Case("a constant tensor", (np.full((2, 3), 0.3, f32), f32(0.05), 0)),
        Case("an all-zero tensor: every code is the zero-point", (np.zeros(5, f32), f32(0.1), -3)),
    ]


def _code_wrong(op="reciprocal", rnd=np.rint, clamp=(-128, 127), zp_sign=1, cast_first=False):
    def wrong(w, scale, zero_point):
        w = np.asarray(w, f32)
        scale = np.asarray(scale, f32)
        v = w / scale if op == "division" else w * (f32(1) / scale)
        q = rnd(v) + zp_sign * np.asarray(zero_point)
        if cast_first:
            return np.clip(q.astype(np.int64).astype(np.int8), *clamp)
        if clamp is None:
            return q.astype(np.int64)
        return np.clip(q, *clamp).astype(np.int8)
    return wrong


def _half_away(v):
    return np.sign(v) * np.floor(np.abs(v) + 0.5)


def _explain_code(case: Case, got, expected) -> str | None:
    """When the first wrong code sits on a tie, show ``w / scale`` there (the feedback's note)."""
    return tie_note(case.args[0], case.args[1], got, expected, name="w")


register(Exercise(
    id="10.3",
    title="The int8 code of a weight, as the kernel computes it",
    points=2,
    reference=weight_code,
    cases=_weight_code_cases,
    function="weight_code",
    hint=("Multiply by the float32 reciprocal, as the kernel does: w * (np.float32(1) / scale). Round "
          "half-to-even with np.rint, add zero_point, clamp to [-128, 127] with np.clip while the values "
          "are still floats, then cast to np.int8. Broadcasting handles one scale per channel."),
    notebook=NOTEBOOK,
    seed=1003,
    forbidden=(
        "qlearn.affine.quantize", "qlearn.affine.fake_quantize", "qlearn.group.quantize_per_group",
        "qlearn.group.fake_quantize_per_group", "qlearn.affine._codes", "qlearn.affine._per_tensor_blocked",
        "torch.quantize_per_tensor",
        "torch.quantize_per_channel", "torch.fake_quantize_per_tensor_affine",
        "torch.fake_quantize_per_channel_affine",
    ),
    wrong_answers={
        "divides by the scale (w / scale), unlike the kernel": _code_wrong(op="division"),
        "rounds half away from zero": _code_wrong(rnd=_half_away),
        "truncates toward zero instead of rounding": _code_wrong(rnd=np.trunc),
        "missing clamp": _code_wrong(clamp=None),
        "int8 cast before the clamp (wraps around)": _code_wrong(cast_first=True),
        "narrow range [-127, 127]": _code_wrong(clamp=(-127, 127)),
        "zero-point subtracted": _code_wrong(zp_sign=-1),
        "uint8 range [0, 255]": _code_wrong(clamp=(0, 255)),
    },
    explain=_explain_code,
))


# --- 10.4 -------------------------------------------------------------------------------------

#: Bits per value of each dtype (torch's names, without ``torch.``). Sub-byte dtypes are packed.
DTYPE_BITS: dict[str, int] = {
    "float64": 64, "int64": 64,
    "float32": 32, "int32": 32, "qint32": 32,
    "float16": 16, "bfloat16": 16, "int16": 16,
    "int8": 8, "uint8": 8, "qint8": 8, "quint8": 8, "bool": 8,
    "int4": 4, "uint4": 4,
    "int2": 2, "uint2": 2,
    "int1": 1, "uint1": 1,
}


def model_size(tensors) -> int:
    """Bytes needed to store each tensor in its own storage: ``sum ceil(numel * bits(dtype) / 8)``.

    ``tensors`` is a list of ``(dtype, numel)`` pairs, e.g. ``[("qint8", 2304), ("float64", 16)]``;
    ``DTYPE_BITS`` gives the bits of each dtype. Each storage is a whole number of bytes, so a
    sub-byte tensor is rounded up on its own (3 int4 values take 2 bytes).

    >>> model_size([("float32", 10), ("int4", 3), ("int4", 3)])
    44
    """
    return int(sum(-(-numel * DTYPE_BITS[dtype] // 8) for dtype, numel in tensors))


def _model_size_cases(rng: np.random.Generator) -> list[Case]:
    channels = [int(c) for c in rng.choice([16, 32, 64], 5)]
    conv_int8 = []
    for c in channels:
        conv_int8 += [("qint8", c * c * 9), ("float64", c), ("int64", c), ("float32", c)]
    return [
        Case("a float32 layer: weight and bias", ([("float32", 2304), ("float32", 16)],)),
        Case("an int8 conv: codes, per-channel float64 scales and int64 zero-points, float32 bias",
             ([("qint8", 2304), ("float64", 16), ("int64", 16), ("float32", 16)],)),
        Case("random int8 convs", (conv_int8,)),
        Case("an odd number of int4 values: 7 values need 4 bytes", ([("int4", 7)],)),
        Case("two int4 tensors of 3 values: each rounds up on its own (2 + 2 bytes)",
             ([("int4", 3), ("uint4", 3)],)),
        Case("1-bit and 2-bit values", ([("int1", 9), ("uint2", 5), ("int2", 8)],)),
        Case("half precision and bool", ([("float16", 11), ("bfloat16", 3), ("bool", 5)],)),
        Case("an empty tensor takes no bytes", ([("float32", 0), ("int8", 4)],)),
        Case("no tensors at all", ([],)),
        Case("a large model: 11 million float32 values", ([("float32", 11_689_512)],)),
    ]


def _size_wrong(fn: Callable[[str, int], float], whole: bool = False):
    def wrong(tensors):
        if whole:
            return -(-sum(numel * DTYPE_BITS[dtype] for dtype, numel in tensors) // 8)
        return sum(fn(dtype, numel) for dtype, numel in tensors)
    return wrong


register(Exercise(
    id="10.4",
    title="The size of a model's tensors in bytes",
    points=2,
    reference=model_size,
    cases=_model_size_cases,
    function="model_size",
    hint=("For each (dtype, numel): numel * DTYPE_BITS[dtype] bits, rounded UP to whole bytes for that "
          "tensor on its own: -(-bits // 8) or math.ceil(bits / 8). Add them up and return a Python int."),
    notebook=NOTEBOOK,
    seed=1004,
    forbidden=("qlearn.metrics.model_size_bytes", "qlearn.bridge.ptq.model_size_bytes_on_disk",),
    wrong_answers={
        "counts bits, not bytes": _size_wrong(lambda d, n: n * DTYPE_BITS[d]),
        "4 bytes for every value": _size_wrong(lambda d, n: 4 * n),
        "rounds down": _size_wrong(lambda d, n: n * DTYPE_BITS[d] // 8),
        "rounds up once for the whole model, not per tensor": _size_wrong(None, whole=True),
        "one byte for each sub-byte value": _size_wrong(lambda d, n: n * max(DTYPE_BITS[d], 8) // 8),
        "returns a float": _size_wrong(lambda d, n: n * DTYPE_BITS[d] / 8),
    },
))
