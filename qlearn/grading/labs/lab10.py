"""Lab 10 (``10_resnet_ptq``): post-training quantization of a trained ResNet with PyTorch.

    10.1  fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps)
                                        f = gamma / sqrt(var + eps):  W' = W * f,  b' = (b - mean) * f + beta
    10.2  calibrate(model, loader, num_batches)
                                        eval mode, no gradients, exactly the first num_batches batches
    10.3  weight_code(w, scale, zero_point)
                                        q = clamp(rint(w * float32(1 / scale)) + zero_point, -128, 127)
    10.4  convert_conv_bn(weight, bias, gamma, beta, running_mean, running_var, eps, outputs, act_qmax)
                                        one layer's convert by hand: folding, the per-channel weight
                                        observer, the weight codes, the min-max activation observer;
                                        equal to torch's converted module
    10.5  model_size(tensors)           bytes of the storages torch.save writes, per-channel
                                        quantization parameters included
    10.Q1-10.Q3                         graded "predict, then run" questions

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

import numpy as np

from qlearn.grading.compare import compare_values, format_value, tie_note
from qlearn.grading.delegation import fixture
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register

__all__ = [
    "DTYPE_BITS",
    "convert_conv_bn",
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
    hint=("In eval mode a BatchNorm is a fixed affine map per channel: write it as a per-channel factor times "
          "its input plus a per-channel offset, then substitute the layer's output for its input.",
          "The factor multiplies every weight of its output channel, which is the first axis of both a "
          "convolution's and a linear layer's weight: it has to broadcast over all the other axes. eps goes "
          "inside the square root.",
          "The new bias is the old one (zero when there is none) minus the running mean, times the same "
          "factor, plus beta. Return the new weight and the new bias, in that order."),
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
    hint=("Calibration is inference that only watches: which mode must every module be in, and what should "
          "autograd not record?",
          "Put the model itself (not a copy) in inference mode, switch gradient recording off around the loop, "
          "and feed it only the images of each (images, labels) pair.",
          "Count the batches and stop as soon as num_batches have gone through; a loader that runs out first "
          "simply ends the loop. Return the model you were given."),
    notebook=NOTEBOOK,
    seed=1002,
    forbidden=("qlearn.bridge.ptq.calibrate", "qlearn.bridge.ptq.quantize_ptq", "qlearn.bridge.ptq._run_batches",),
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
    hint=("The kernel never divides by the scale: it computes the reciprocal once, in float32, and multiplies. "
          "On a tie the last bit of that product decides the code.",
          "Round half to even (numpy's default rounding), add the zero-point, and saturate to the int8 range "
          "while the values are still floats.",
          "Cast to int8 only after the clamp (a cast first wraps 128 around to -128). Per-channel scales of shape "
          "[C, 1, 1, 1] broadcast against the weight on their own."),
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

_EPS32 = np.finfo(f32).eps  # torch's observers floor every scale at float32's eps


def convert_conv_bn(weight, bias, gamma, beta, running_mean, running_var, eps, outputs, act_qmax: int) -> dict:
    """What ``torch.ao.quantization.convert`` stores for one conv (or linear) + BatchNorm layer.

    ``weight``, ``bias`` (or ``None``) and the BatchNorm's ``gamma``, ``beta``, ``running_mean``,
    ``running_var``, ``eps`` are the float32 parameters of the unfused pair; ``outputs`` is the list of
    float32 arrays the fused layer produced on the calibration batches (what a forward hook, or the
    activation observer, sees); ``act_qmax`` is the top activation code (127 on x86/fbgemm, 255 on
    qnnpack). Returns a dict, every number computed in float32 as torch's observers compute it:

    - ``"weight"``: the int8 codes of the folded weight, per output channel, symmetric;
    - ``"weight_scale"``: float32, one per output channel: ``max|W'_c| / 127.5`` (at least eps);
    - ``"bias"``: the folded float32 bias (a quantized conv keeps its bias in float);
    - ``"scale"``, ``"zero_point"``: the output's affine ``quint8`` parameters over ``[0, act_qmax]``,
      from the smallest and largest value over all batches, the range widened to contain 0.

    >>> w = np.array([[[[0.5]]], [[[-0.25]]]], np.float32)          # a 1x1 conv, 2 output channels
    >>> ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    >>> out = convert_conv_bn(w, None, ones, zeros, zeros, ones, 0.0, [np.array([0.0, 2.54], np.float32)], 127)
    >>> out["weight"].ravel().tolist(), out["weight_scale"].tolist(), round(out["scale"], 6), out["zero_point"]
    ([127, -127], [0.003921568859368563, 0.0019607844296842813], 0.02, 0)

    The check compares ``"weight"`` with the codes the kernel computes from the returned
    ``"folded_weight"`` and ``"weight_scale"``: folding in another order than torch's moves a
    weight by a float32 rounding, which can flip the code of a weight sitting on a tie (the
    largest weight of a channel is at +-127.5 steps), and that is not an error.
    """
    w, b = fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps)
    rows = w.reshape(len(w), -1)
    largest = np.maximum(-np.minimum(rows.min(axis=1), f32(0)), np.maximum(rows.max(axis=1), f32(0)))
    w_scale = np.maximum(largest / f32(127.5), _EPS32).astype(f32)
    codes = weight_code(w, w_scale.reshape((-1,) + (1,) * (w.ndim - 1)), 0)
    lo = min(min(f32(np.min(o)) for o in outputs), f32(0))
    hi = max(max(f32(np.max(o)) for o in outputs), f32(0))
    scale = max(f32(f32(hi - lo) / f32(act_qmax)), _EPS32)
    zero_point = int(np.clip(0 - np.rint(lo / scale), 0, act_qmax))
    return {"folded_weight": w, "weight": codes, "weight_scale": w_scale, "bias": b, "scale": float(scale),
            "zero_point": zero_point}


def _convert_case(rng: np.random.Generator, name: str, shape: tuple[int, ...], *, bias: bool = False,
                  outputs=(0.0, 6.0), batches: int = 3, act_qmax: int = 127, dead: bool = False,
                  division_tie: bool = False) -> Case:
    """A conv (or linear) + BatchNorm pair with the outputs its fused layer might show an observer."""
    for _ in range(10_000):
        args = _bn_case(rng, name, shape, bias=bias).args
        if dead:
            args = (args[0].copy(),) + args[1:]
            args[0][1] = 0.0  # a pruned output channel: all its weights are 0
        w, _ = fold_batchnorm(*args)
        scale = np.maximum(np.abs(w.reshape(len(w), -1)).max(axis=1) / f32(127.5), _EPS32).astype(f32)
        scale = scale.reshape((-1,) + (1,) * (w.ndim - 1))
        by_division = np.clip(np.rint(w / scale), -128, 127)
        if not division_tie or (by_division != weight_code(w, scale, 0)).any():
            break
    else:  # pragma: no cover - the seed guarantees a hit
        raise RuntimeError("no layer found whose folded weights divide differently")
    lo, hi = outputs
    sizes = [int(n) for n in rng.integers(20, 60, batches)]
    outs = [rng.uniform(lo, hi, n).astype(f32) for n in sizes]
    if lo <= 0 <= hi:  # ReLU-like outputs hold exact zeros
        for o in outs:
            o[rng.random(o.size) < 0.3] = 0.0
    return Case(name, args + (outs, act_qmax))


def _convert_cases(rng: np.random.Generator) -> list[Case]:
    relu = _convert_case(rng, "conv 3x3 + BN + ReLU, no conv bias (as in the ResNet), 7-bit outputs", (4, 3, 3, 3))
    spread = _convert_case(rng, "the smallest value in one batch, the largest in another: observe every batch",
                           (3, 2, 3, 3), outputs=(-2.0, 2.0), batches=4)
    outs = [o.copy() for o in spread.args[7]]
    outs[0][0], outs[2][-1] = f32(-7.25), f32(9.5)
    spread = Case(spread.name, spread.args[:7] + (outs, 127))
    return [
        relu,
        _convert_case(rng, "outputs of both signs (before the add of a residual block): the zero-point moves",
                      (4, 4, 3, 3), outputs=(-3.0, 5.0)),
        spread,
        _convert_case(rng, "positive outputs that never reach 0: the range still starts at 0", (3, 2, 1, 1),
                      outputs=(0.5, 4.0)),
        _convert_case(rng, "negative outputs only: the range ends at 0, the zero-point is the top code",
                      (3, 2, 1, 1), outputs=(-4.0, -0.5)),
        _convert_case(rng, "8-bit outputs [0, 255] (qnnpack)", (4, 3, 3, 3), outputs=(-1.0, 3.0), act_qmax=255),
        _convert_case(rng, "a conv with its own bias", (3, 2, 3, 3), bias=True, outputs=(-1.0, 1.0)),
        _convert_case(rng, "a linear layer + BatchNorm1d: 2-D weight [out, in]", (5, 8), bias=True,
                      outputs=(-6.0, 2.0)),
        _convert_case(rng, "a pruned output channel (all weights 0): its scale is floored at eps, its codes 0",
                      (3, 2, 3, 3), outputs=(0.0, 3.0), dead=True),
        _convert_case(rng, "a channel whose largest weight sits on the tie +-127.5 steps, where dividing by the "
                      "scale gives another code than the kernel's float32 reciprocal", (6, 4, 1, 1),
                      division_tie=True),
        _convert_case(rng, "random layer", (int(rng.integers(2, 6)), int(rng.integers(1, 5)), 3, 3),
                      outputs=(float(rng.uniform(-3, 0)), float(rng.uniform(0.5, 8)))),
    ]


_CONVERT_KEYS = ("folded_weight", "weight", "weight_scale", "bias", "scale", "zero_point")


def _compare_converted(got, expected) -> str | None:
    if not isinstance(got, dict):
        return f"expected a dict with the keys {', '.join(_CONVERT_KEYS)}, got {format_value(got)}"
    if set(got) != set(_CONVERT_KEYS):
        return f"the dict must have exactly the keys {', '.join(_CONVERT_KEYS)}; got {', '.join(map(str, got))}"
    rules = {"folded_weight": {"rtol": 1e-5, "atol": 1e-6},  # folding in another order changes the last bits
             "bias": {"rtol": 1e-5, "atol": 1e-6},
             "weight_scale": {"rtol": 1e-6}, "scale": {"rtol": 1e-6}, "zero_point": {}}
    for key, rule in rules.items():
        problem = compare_values(got[key], expected[key], **rule)
        if problem is not None:
            return f"{key!r}: {problem}"
    # the scales and the codes must be exactly what the observer and the kernel make of YOUR folded weight
    w = np.asarray(got["folded_weight"], f32)
    rows = w.reshape(len(w), -1)
    largest = np.maximum(-np.minimum(rows.min(axis=1), f32(0)), np.maximum(rows.max(axis=1), f32(0)))
    scale = np.maximum(largest / f32(127.5), _EPS32).astype(f32)
    problem = compare_values(got["weight_scale"], scale)
    if problem is not None:
        return f"'weight_scale' is not the weight observer's scale of your 'folded_weight': {problem}"
    codes = weight_code(w, scale.reshape((-1,) + (1,) * (w.ndim - 1)), 0)
    problem = compare_values(got["weight"], codes)
    if problem is not None:
        return f"'weight' is not the kernel's codes of your 'folded_weight' and 'weight_scale': {problem}"
    return None


def _convert_wrong(fold=True, weight_div=127.5, per_tensor=False, asym_weights=False, last_batch=False,
                   widen=True, act_div=None, zp_sign=1, division=False, no_eps=False, bias_kind="folded"):
    def wrong(weight, bias, gamma, beta, running_mean, running_var, eps, outputs, act_qmax):
        if fold:
            w, b = fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps)
        else:
            w = np.asarray(weight, f32)
            b = np.zeros(len(w), f32) if bias is None else np.asarray(bias, f32)
        if bias_kind == "unfolded":
            b = np.zeros(len(w), f32) if bias is None else np.asarray(bias, f32)
        rows = w.reshape(len(w), -1)
        if asym_weights:
            largest = (rows.max(axis=1) - rows.min(axis=1)) / f32(2)
        else:
            largest = np.abs(rows).max(axis=1)
        if per_tensor:
            largest = np.full(len(w), largest.max(), f32)
        w_scale = (largest / f32(weight_div)).astype(f32)
        if not no_eps:
            w_scale = np.maximum(w_scale, _EPS32).astype(f32)
        shaped = w_scale.reshape((-1,) + (1,) * (w.ndim - 1))
        with np.errstate(divide="ignore", invalid="ignore"):
            v = w / shaped if division else w * (f32(1) / shaped)
        codes = np.clip(np.nan_to_num(np.rint(v)), -128, 127).astype(np.int8)
        seen = outputs[-1:] if last_batch else outputs
        lo = f32(min(np.min(o) for o in seen))
        hi = f32(max(np.max(o) for o in seen))
        if widen:
            lo, hi = min(lo, f32(0)), max(hi, f32(0))
        scale = max(f32((hi - lo) / f32(act_qmax if act_div is None else act_div(act_qmax))), _EPS32)
        zero_point = int(np.clip(zp_sign * (0 - np.rint(lo / scale)), 0, act_qmax))
        return {"folded_weight": w, "weight": codes, "weight_scale": w_scale, "bias": b, "scale": float(scale),
                "zero_point": zero_point}
    return wrong


register(Exercise(
    id="10.4",
    title="Convert one conv + BatchNorm layer by hand, as torch's convert does",
    points=4,
    reference=convert_conv_bn,
    cases=_convert_cases,
    function="convert_conv_bn",
    hint=("Three steps happen to one layer between the float model and the int8 one: the BatchNorm disappears "
          "into the weights, an observer watches the outputs, and convert turns what it saw into integers. "
          "Which of your earlier functions does each step?",
          "The weight observer is symmetric and per output channel: its scale comes from the largest magnitude "
          "of each channel of the folded weight, over half the number of int8 codes minus one. The activation "
          "observer keeps the smallest and the largest value over every batch, and its range always contains 0.",
          "The output scale spreads that range over the codes 0 to act_qmax, and the zero-point is the code of "
          "0.0, rounded half to even and kept inside the codes. Every scale has a floor at float32's eps, and "
          "everything is float32."),
    notebook=NOTEBOOK,
    seed=1005,
    forbidden=(
        "torch.nn.utils.fusion.fuse_conv_bn_weights", "torch.nn.utils.fusion.fuse_linear_bn_weights",
        "torch.nn.utils.fusion.fuse_conv_bn_eval", "torch.nn.utils.fusion.fuse_linear_bn_eval",
        "torch.ao.quantization.fuse_modules", "torch.ao.quantization.convert", "torch.ao.quantization.prepare",
        "qlearn.bridge.export.fused_copy", "qlearn.qparams.calc_qparams", "qlearn.affine.quantize",
        "qlearn.affine.fake_quantize", "qlearn.observers.MinMaxObserver",
    ),
    compare=_compare_converted,
    wrong_answers={
        "quantizes the unfolded weights (no BatchNorm folding)": _convert_wrong(fold=False),
        "keeps the unfolded bias": _convert_wrong(bias_kind="unfolded"),
        "weight scale max|w| / 127 (narrow range)": _convert_wrong(weight_div=127.0),
        "one weight scale for the whole tensor": _convert_wrong(per_tensor=True),
        "asymmetric weight scale (max - min) / 255": _convert_wrong(asym_weights=True, weight_div=127.5),
        "divides the weights by the scale (w / scale), unlike the kernel": _convert_wrong(division=True),
        "no eps floor: a channel of zeros gets scale 0": _convert_wrong(no_eps=True),
        "observes only the last batch": _convert_wrong(last_batch=True),
        "does not widen the output range to contain 0": _convert_wrong(widen=False),
        "output scale over act_qmax + 1 codes": _convert_wrong(act_div=lambda q: q + 1),
        "zero-point sign flipped": _convert_wrong(zp_sign=-1),
    },
))


# --- 10.5 -------------------------------------------------------------------------------------

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
    """Bytes of the storages ``torch.save`` writes for ``tensors``, a list of ``(dtype, shape, qscheme)``.

    ``dtype`` is torch's name without ``torch.`` (``DTYPE_BITS`` gives its bits per value), ``shape``
    a tuple (``()`` is a single value), ``qscheme`` ``None`` for a plain tensor, ``"per_tensor"`` or
    ``"per_channel"`` for a quantized one. Every tensor's values sit in their own storage, a whole
    number of bytes: ``ceil(numel * bits / 8)`` (3 int4 values take 2 bytes). A per-channel quantized
    tensor adds two storages, one float64 scale and one int64 zero-point per channel (axis 0); a
    per-tensor one keeps its scale and zero-point in the pickle, not in a storage.

    >>> model_size([("float32", (10,), None), ("int4", (3,), None), ("int4", (3,), None)])
    44
    >>> model_size([("qint8", (16, 1, 3, 3), "per_channel"), ("float32", (16,), None)])   # 144 + 16*16 + 64
    464
    """
    total = 0
    for dtype, shape, qscheme in tensors:
        numel = math.prod(shape)
        total += -(-numel * DTYPE_BITS[dtype] // 8)
        if qscheme == "per_channel":
            total += shape[0] * (DTYPE_BITS["float64"] + DTYPE_BITS["int64"]) // 8
    return int(total)


def _model_size_cases(rng: np.random.Generator) -> list[Case]:
    channels = [int(c) for c in rng.choice([16, 32, 64], 5)]
    conv_int8 = []
    for c in channels:
        conv_int8 += [("qint8", (c, c, 3, 3), "per_channel"), ("float32", (c,), None),
                      ("float32", (), None), ("int64", (), None)]
    return [
        Case("a float32 layer: weight and bias", ([("float32", (16, 16, 3, 3), None), ("float32", (16,), None)],)),
        Case("an int8 conv with per-channel weights: codes, then a float64 scale and an int64 zero-point "
             "per output channel, and a float32 bias",
             ([("qint8", (16, 16, 3, 3), "per_channel"), ("float32", (16,), None)],)),
        Case("a per-tensor quantized weight: its scale and zero-point add no storage",
             ([("qint8", (32, 16, 3, 3), "per_tensor"), ("float32", (32,), None)],)),
        Case("a linear layer [10, 64] per channel: one scale per OUTPUT (axis 0)",
             ([("qint8", (10, 64), "per_channel"), ("float32", (10,), None)],)),
        Case("random int8 convs, with the output scale and zero-point stored as single values", (conv_int8,)),
        Case("an odd number of int4 values: 7 values need 4 bytes", ([("int4", (7,), None)],)),
        Case("two int4 tensors of 3 values: each rounds up on its own (2 + 2 bytes)",
             ([("int4", (3,), None), ("uint4", (1, 3), None)],)),
        Case("1-bit and 2-bit values", ([("int1", (3, 3), None), ("uint2", (5,), None), ("int2", (2, 4), None)],)),
        Case("half precision and bool", ([("float16", (11,), None), ("bfloat16", (3,), None), ("bool", (5,), None)],)),
        Case("single values: shape () holds one value", ([("float32", (), None), ("int64", (), None)],)),
        Case("an empty tensor takes no bytes", ([("float32", (0, 3), None), ("int8", (4,), None)],)),
        Case("no tensors at all", ([],)),
        Case("a large model: 11 million float32 values", ([("float32", (11_689_512,), None)],)),
    ]


def _size_wrong(per_value=None, whole=False, channel_bytes=16, per_tensor_extra=0, numel=math.prod,
                channels_of=lambda shape: shape[0]):
    def wrong(tensors):
        bits, extra = [], 0
        for dtype, shape, qscheme in tensors:
            n = numel(shape)
            bits.append(n * DTYPE_BITS[dtype])
            if qscheme == "per_channel":
                extra += channels_of(shape) * channel_bytes
            elif qscheme == "per_tensor":
                extra += per_tensor_extra
        if whole:
            return -(-sum(bits) // 8) + extra
        if per_value is not None:
            return sum(per_value(b) for b in bits) + extra
        return sum(-(-b // 8) for b in bits) + extra
    return wrong


register(Exercise(
    id="10.5",
    title="Predict the bytes torch.save writes for a model's tensors",
    points=2,
    reference=model_size,
    cases=_model_size_cases,
    function="model_size",
    hint=("A storage holds whole bytes: a tensor of sub-byte values rounds up on its own, not together with "
          "the others. How many values does a shape hold, and what does an empty shape hold?",
          "A per-channel quantized tensor stores more than its codes: look at the table of section 9 for what "
          "PyTorch keeps per output channel, and in which dtypes; a per-tensor one keeps its two numbers in "
          "the pickle.",
          "The channels are the first axis of the shape. Return a Python int."),
    notebook=NOTEBOOK,
    seed=1004,
    forbidden=("qlearn.metrics.model_size_bytes", "qlearn.bridge.ptq.model_size_bytes_on_disk",),
    wrong_answers={
        "counts bits, not bytes": _size_wrong(per_value=lambda b: b),
        "rounds down": _size_wrong(per_value=lambda b: b // 8),
        "rounds up once for the whole model, not per tensor": _size_wrong(whole=True),
        "forgets the per-channel scales and zero-points": _size_wrong(channel_bytes=0),
        "per-channel scales and zero-points counted as float32/int32 (8 bytes a channel)": _size_wrong(channel_bytes=8),
        "per-tensor quantized tensors counted with a stored scale and zero-point": _size_wrong(per_tensor_extra=16),
        "one scale per input channel (axis 1)": _size_wrong(channels_of=lambda shape: shape[1]),
        "numel = len(shape)": _size_wrong(numel=lambda shape: len(shape)),
        "an empty shape () counted as 0 values": _size_wrong(numel=lambda shape: math.prod(shape) if shape else 0),
        "returns a float": lambda tensors: float(model_size(tensors)),
    },
))


# --- graded questions ("predict, then run") ------------------------------------------------------

register(Question(
    id="10.Q1",
    title="How many int8 weight codes would dividing by the scale get wrong?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_division",
    choices={"a": "none: the two are the same number",
             "b": "a few dozen, nearly all of them the largest weight of a channel",
             "c": "about 1% of them, spread evenly",
             "d": "about half of them"},
    answer="b",
    explanation=("w / s and w * fl(1/s) differ by at most a float32 rounding, which changes a code only when "
                 "w / s lies within that rounding of a tie k + 1/2. Ordinary weights rarely do; but the "
                 "symmetric scale max|w| / 127.5 puts the largest weight of every channel exactly at +-127.5 "
                 "steps, so most of the few dozen codes that differ are those."),
    hint=("Two ways of computing the same quotient differ in the last bit at most. When does the last bit "
          "change the rounded code?",
          "Where does the symmetric scale put the largest weight of each channel, in steps?"),
))

register(Question(
    id="10.Q2",
    title="How much smaller is the int8 file of the small ResNet than its float32 file?",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_size",
    choices={"a": "exactly 4 times smaller: 8 bits instead of 32",
             "b": "between 3 and 4 times smaller",
             "c": "about 2 times smaller",
             "d": "more than 4 times smaller"},
    answer="b",
    explanation=("The weights shrink by 4, but the int8 model keeps float32 biases, adds a float64 scale and an "
                 "int64 zero-point per output channel, and stores more than three times as many tensors, each "
                 "with a fixed overhead in the archive: with only 175 thousand weights these weigh enough to "
                 "bring the ratio to about 3.2. On ResNet-18 (section 13) it approaches 4."),
    hint=("What does an int8 model store besides its int8 weight codes?",
          "Per output channel PyTorch keeps a scale and a zero-point, in 64-bit types; and every stored tensor "
          "costs some bytes of its own in the archive, however small it is."),
))

register(Question(
    id="10.Q3",
    title="Per-channel or per-tensor int8 weights: which has the higher SQNR, layer by layer?",
    points=1,
    notebook=NOTEBOOK,
    variable="q3_per_channel",
    choices={"a": "per-channel is at least as good on every layer",
             "b": "per-channel is better on the first layer only",
             "c": "per-tensor is better on the deep layers, whose channels are alike",
             "d": "they are the same on every layer: both use 8 bits"},
    answer="a",
    explanation=("A per-tensor scale is the largest of the per-channel scales, so every channel's step is at "
                 "least as coarse as with its own scale: its rounding error can only grow. Per-channel scales "
                 "gain from about 1 to 8 dB here, most where the channel ranges differ most."),
    hint=("Compare one channel's per-tensor scale with its own per-channel scale: which is larger?",
          "A larger step means a larger rounding error, for every weight of that channel."),
))
