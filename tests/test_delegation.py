"""Delegation earns nothing: every exercise rejects a solution that hands its work to the library.

Generated from the catalogue: for EVERY exercise and EVERY callable it forbids, a solution that
calls it (through a plain wrapper lambda, and through a renamed import) is "delegated" with 0
points; so is anything that reaches ``qlearn.grading`` (the reference under any name,
``implementation``'s fallback, ``check`` itself). An honest solution per exercise, written with
numpy and the exercise's allowed helpers only, passes. ``disarm`` (the grader's child process)
makes the same callables raise ``DelegationError`` for every alias. Lying results (an ndarray
subclass whose ``==`` is always True) and patched comparison functions (``math.isclose``) pass
nothing.
"""

from __future__ import annotations

import importlib
import inspect
import json
import math
import subprocess
import sys
import textwrap
import types
import warnings

import numpy as np
import pytest

from qlearn.affine import code_dtype, fake_quantize, quantize
from qlearn.grading import EXERCISES, check, implementation, reference
from qlearn.grading.checker import evaluate, run_cases
from qlearn.grading.delegation import DelegationError, Watcher, resolve_forbidden, resolve_name
from qlearn.grading.labs import lab10
from qlearn import qparams
from qlearn.qparams import EPS, calc_qparams

f32 = np.float32
ALL_IDS = list(EXERCISES)


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch's deprecation notices for quantized tensors
        yield


# --- honest solutions: numpy, the standard library and the allowed helpers ----------------------

def clamp(x, lo, hi):
    return np.minimum(np.maximum(np.asarray(x), lo), hi)


def num_codes(qmin, qmax):
    return int(qmax) - int(qmin) + 1


def relative_error(x, x_hat):
    x, x_hat = np.asarray(x, np.float64), np.asarray(x_hat, np.float64)
    size, error = float(np.sqrt(np.sum(x * x))), float(np.sqrt(np.sum((x - x_hat) ** 2)))
    if size == 0.0:
        return 0.0 if error == 0.0 else math.inf
    return error / size


def qrange(bits, signed=True):
    return (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)


def saturate_cast(x, dtype):
    info = np.iinfo(dtype)
    return np.clip(np.asarray(x), info.min, info.max).astype(dtype)


def decode_float(sign, exponent, mantissa, fmt):
    top, s, frac = 2**fmt.exp_bits - 1, (-1.0 if sign else 1.0), mantissa / 2**fmt.man_bits
    if fmt.ieee and exponent == top:
        return s * math.inf if mantissa == 0 else math.nan
    if not fmt.ieee and exponent == top and mantissa == 2**fmt.man_bits - 1:
        return math.nan
    if exponent == 0:
        return s * 2.0 ** (1 - fmt.bias) * frac
    return s * 2.0 ** (exponent - fmt.bias) * (1 + frac)


def round_to_format(x, fmt):
    x = np.asarray(x, np.float64)
    a = np.abs(x)
    _, k = np.frexp(a)
    ulp = np.ldexp(1.0, np.maximum(k - 1, 1 - fmt.bias) - fmt.man_bits)
    r = np.minimum(np.rint(a / ulp) * ulp, fmt.max)  # fmt.max: an allowed helper
    return (np.sign(x) * r).astype(f32)


def quantize_tensor(x, scale, zero_point, qmin, qmax):
    v = np.rint(np.asarray(x, f32) * (f32(1) / f32(scale))) + zero_point
    return np.clip(v, qmin, qmax).astype(code_dtype(qmin, qmax))


def fake_quantize_tensor(x, scale, zero_point, qmin, qmax):
    v = np.rint(np.asarray(x, f32) * (f32(1) / f32(scale))) + zero_point
    q = np.clip(v, qmin, qmax).astype(np.int64)
    return ((q - zero_point) * f32(scale)).astype(f32), (v < qmin) | (v > qmax)


def compute_qparams(xmin, xmax, qmin, qmax):
    lo, hi = np.minimum(f32(xmin), f32(0)), np.maximum(f32(xmax), f32(0))
    scale = np.maximum((hi - lo) / f32(qmax - qmin), EPS)  # EPS: an allowed constant
    return f32(scale), int(np.clip(qmin - np.rint(lo / scale), qmin, qmax))


def symmetric_qparams(xmin, xmax, qmin, qmax):
    m = np.maximum(-np.minimum(f32(xmin), f32(0)), np.maximum(f32(xmax), f32(0)))
    return f32(np.maximum(m / f32((qmax - qmin) / 2), EPS)), 0


def per_channel_qparams(w, axis, qmin, qmax, symmetric=False):
    rows = np.moveaxis(np.asarray(w), axis, 0).reshape(np.shape(w)[axis], -1)
    return calc_qparams(rows.min(axis=1), rows.max(axis=1), qmin, qmax, symmetric)  # allowed helper


def quantize_groups(w, group_size, qmin, qmax, symmetric=False):
    w = np.asarray(w, f32)
    groups = w.reshape(-1, group_size)
    scale, zero_point = calc_qparams(groups.min(axis=1), groups.max(axis=1), qmin, qmax, symmetric)
    q = quantize(groups, scale, zero_point, qmin, qmax, axis=0)  # allowed: the grouping is the exercise
    shape = (w.shape[0], w.shape[1] // group_size)
    return q.reshape(w.shape), scale.reshape(shape), zero_point.reshape(shape)


def pack_int4(q):
    nibbles = (np.asarray(q).reshape(-1).astype(np.int64) & 0xF).astype(np.uint8)
    if nibbles.size % 2:
        nibbles = np.append(nibbles, np.uint8(0))
    return (nibbles[0::2] | (nibbles[1::2] << 4)).astype(np.uint8)


def unpack_int4(packed, count):
    packed = np.asarray(packed, np.uint8)
    nibbles = np.stack([packed & 0xF, packed >> 4], axis=1).reshape(-1)[:count].astype(np.int16)
    return np.where(nibbles >= 8, nibbles - 16, nibbles).astype(np.int8)


def percentile_clip_range(x, p, symmetric=False):
    v = np.asarray(x, f32).reshape(-1).astype(np.float64)
    if symmetric:
        t = f32(np.percentile(np.abs(v), p))
        return -t, t
    lo, hi = np.percentile(v, [100 - p, p])
    return f32(min(lo, 0.0)), f32(max(hi, 0.0))  # the range always contains 0


def mse_optimal_clip(x, bits, candidates):
    x = np.asarray(x, f32)
    qmin, qmax = qparams.qrange(bits)  # an allowed helper
    errors = []
    for t in candidates:
        scale, zero_point = calc_qparams(-f32(t), f32(t), qmin, qmax, symmetric=True)
        x_hat = fake_quantize(x, scale, zero_point, qmin, qmax)
        errors.append(float(np.mean(np.square(x.astype(np.float64) - x_hat))))
    return float(candidates[int(np.argmin(errors))])


def ema_update(old_min, old_max, x, c):
    x = np.asarray(x, f32)
    lo, hi = x.min(), x.max()
    if old_min is None and old_max is None:
        return f32(lo), f32(hi)
    return (f32(f32(old_min) + f32(c) * (lo - f32(old_min))),
            f32(f32(old_max) + f32(c) * (hi - f32(old_max))))


def int_matmul(a_q, b_q, a_zero_point, b_zero_point):
    a = np.asarray(a_q).astype(np.int32) - np.int32(a_zero_point)
    b = np.asarray(b_q).astype(np.int32) - np.int32(b_zero_point)
    return np.matmul(a, b, dtype=np.int32)


def quantize_multiplier(M):
    q, e = math.frexp(float(M))
    M0, shift = int(np.rint(q * 2**31)), -e
    if M0 == 2**31:
        M0, shift = 2**30, shift - 1
    return M0, shift


def requantize(acc, M0, shift, output_zero_point, qmin, qmax):
    ab = np.asarray(acc).astype(np.int64) * np.int64(M0)
    num = ab + np.where(ab >= 0, 2**30, 1 - 2**30)
    high = np.where(num >= 0, num // 2**31, -((-num) // 2**31))  # rounds ties up, then C division
    if shift < 0:
        y = np.clip((np.asarray(acc).astype(np.int64) * M0 + (1 << (30 + shift))) >> (31 + shift),
                    -(2**31), 2**31 - 1)
    else:
        mask = (1 << shift) - 1
        y = (high >> shift) + ((high & mask) > ((mask >> 1) + (high < 0)))  # ties away from zero
    return np.clip(y + output_zero_point, qmin, qmax).astype(np.uint8 if qmin >= 0 and qmax <= 255 else
                                                               np.int8 if qmin >= -128 and qmax <= 127 else
                                                               np.int32)


def fold_batchnorm(weight, bias, gamma, beta, running_mean, running_var, eps=1e-5):
    weight = np.asarray(weight, f32)
    gamma, beta = np.asarray(gamma, f32), np.asarray(beta, f32)
    mean, var = np.asarray(running_mean, f32), np.asarray(running_var, f32)
    bias = np.zeros_like(mean) if bias is None else np.asarray(bias, f32)
    inv_std = f32(1) / np.sqrt(var + f32(eps))
    new_weight = weight * (gamma * inv_std).reshape((-1,) + (1,) * (weight.ndim - 1))
    return new_weight.astype(f32), ((bias - mean) * inv_std * gamma + beta).astype(f32)


def calibrate(model, loader, num_batches):
    import torch

    model.eval()
    with torch.no_grad():
        for i, (images, _) in enumerate(loader):
            if i >= num_batches:
                break
            model(images)
    return model


def weight_code(w, scale, zero_point):
    w = np.asarray(w, f32)
    q = np.rint(w * (f32(1) / np.asarray(scale, f32))) + np.asarray(zero_point, np.int64)
    return np.clip(q, -128, 127).astype(np.int8)


def model_size(tensors):
    total = 0
    for dtype, shape, qscheme in tensors:
        numel = 1
        for n in shape:
            numel *= n
        total += -(-numel * lab10.DTYPE_BITS[dtype] // 8)  # DTYPE_BITS: data, not a call
        if qscheme == "per_channel":
            total += shape[0] * (8 + 8)  # a float64 scale and an int64 zero-point per channel
    return total


# --- lab 06 (L06's honest solutions, written apart from lab06.py) ---------------------------------

def _prune_count(amount, count):
    return amount if isinstance(amount, int) else round(amount * count)

def magnitude_prune_mask(w, amount):
    keep = np.ones(w.size, bool)
    keep[np.argsort(np.abs(w).reshape(-1), kind="stable")[:_prune_count(amount, w.size)]] = False
    return keep.reshape(w.shape)

def ln_structured_prune_mask(w, amount, n, dim):
    rows = np.moveaxis(np.abs(w.astype(np.float64)), dim, 0).reshape(w.shape[dim], -1)
    norms = rows.max(axis=1) if n == np.inf else (rows**n).sum(axis=1) ** (1.0 / n)
    keep = np.ones(len(norms), bool)
    keep[np.argsort(norms, kind="stable")[:_prune_count(amount, len(norms))]] = False
    shape = [1] * w.ndim
    shape[dim % w.ndim] = len(norms)
    return np.broadcast_to(keep.reshape(shape), w.shape).copy()

def compress_2_4(w, bits):
    rows, cols = w.shape
    groups = np.abs(w).reshape(rows, cols // 4, 4)
    keep = np.ones(groups.shape, bool)
    np.put_along_axis(keep, np.argsort(groups, axis=-1, kind="stable")[..., :2], False, axis=-1)
    mask = keep.reshape(rows, cols)
    kept = rows * cols // 2
    return (mask, w[mask].reshape(rows, -1), np.nonzero(keep)[2].reshape(rows, -1),
            -(-kept * bits // 8) + -(-kept * 2 // 8))

def global_prune_masks(weights, amount):
    mags = np.concatenate([np.abs(w).reshape(-1) for w in weights])
    keep = np.ones(mags.size, bool)
    keep[np.argsort(mags, kind="stable")[:_prune_count(amount, mags.size)]] = False
    return [part.reshape(w.shape) for part, w in zip(np.split(keep, np.cumsum([w.size for w in weights])[:-1]), weights)]

def break_even_sparsity(rows, cols, bits, fmt):
    def width(v):
        return next(b for b in (1, 2, 4, 8) if v < 256**b)
    size, best = rows * cols, None
    for nnz in range(size + 1):
        if fmt == "bitmap":
            cost = -(-size // 8) + -(-nnz * bits // 8)
        else:
            cost = -(-nnz * bits // 8) + nnz * width(cols - 1) + (rows + 1) * width(nnz)
        if cost <= -(-size * bits // 8):
            best = nnz
    return None if best is None else 1.0 - best / size


# --- lab 11 (L11's honest solutions) -------------------------------------------------------------

def quantize_w8(weight):
    from qlearn.qparams import EPS  # an allowed helper
    scale = np.maximum(np.abs(weight).max(axis=1) / np.float32(127), EPS)
    return np.clip(np.rint(weight / scale[:, None]), -127, 127).astype(np.int8), scale


def quantize_w4(weight, group_size):
    from qlearn.qparams import EPS
    out, n = weight.shape
    g = weight.reshape(out, n // group_size, group_size)
    lo, hi = np.minimum(g.min(-1), 0), np.maximum(g.max(-1), 0)
    scale = np.maximum((hi - lo) / np.float32(15), EPS)
    zp = np.clip(-np.rint(lo / scale), 0, 15)
    q = np.clip(np.rint(g / scale[..., None]) + zp[..., None], 0, 15).astype(np.uint8).reshape(out, n)
    return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8), scale, zp.astype(np.uint8)


def w4a16_linear(x, packed, scale, zero_point, group_size, bias=None):
    q = np.stack([packed & 15, packed >> 4], axis=-1).reshape(packed.shape[0], -1).astype(np.float32)
    w = (q - np.repeat(zero_point, group_size, 1)) * np.repeat(scale, group_size, 1)
    y = x @ w.T
    return y if bias is None else y + bias


def retrieval_agreement(reference, embeddings):
    def nearest(e):
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        s = e @ e.T
        np.fill_diagonal(s, -np.inf)
        return s.argmax(1)
    return float(np.mean(nearest(reference) == nearest(embeddings)))


class _FromLabTest:
    """An honest solution that lives in a lab's own test file (tests/test_labNN.py): written there
    apart from the lab's reference, and checked there too; looked up when a test here needs it."""

    def __init__(self, module, name, *args):
        self.module, self.name, self.args = module, name, args

    def load(self):
        fn = getattr(importlib.import_module(self.module), self.name)
        return fn(*self.args) if self.args else fn  # _conv("single") builds the solution

    def __repr__(self):
        return f"{self.module}.{self.name}{self.args or ''}"


class _Honest(dict):
    def __getitem__(self, ex_id):
        value = super().__getitem__(ex_id)
        return value.load() if isinstance(value, _FromLabTest) else value


HONEST = _Honest({
    "00.1": clamp, "00.2": num_codes, "00.3": relative_error, "00.4": _FromLabTest("test_lab00", "_bits_while"),
    "01.1": qrange, "01.2": saturate_cast, "01.3": decode_float, "01.4": round_to_format,
    "01.5": _FromLabTest("test_lab01", "_encode_frexp"),
    "02.1": quantize_tensor, "02.2": fake_quantize_tensor, "02.3": compute_qparams, "02.4": symmetric_qparams,
    "02.5": _FromLabTest("test_lab02", "_pow2_doubling"),
    "03.1": per_channel_qparams, "03.2": quantize_groups, "03.3": pack_int4, "03.4": unpack_int4,
    "03.5": _FromLabTest("test_lab03", "_compress_float64"),
    "04.1": percentile_clip_range, "04.2": mse_optimal_clip, "04.3": _FromLabTest("test_lab04", "_kl_loop"),
    "04.4": ema_update,
    "05.1": int_matmul, "05.2": quantize_multiplier, "05.3": requantize,
    "05.4": _FromLabTest("test_lab05", "_conv", "single"),
    "06.1": magnitude_prune_mask, "06.2": ln_structured_prune_mask, "06.3": compress_2_4,
    "06.4": global_prune_masks, "06.5": break_even_sparsity,
    "07.1": _FromLabTest("test_lab07", "_choose_step_by_step"), "07.2": _FromLabTest("test_lab07", "_cubic_alt"),
    "07.3": _FromLabTest("test_lab07", "_slice_lexsort"), "07.4": _FromLabTest("test_lab07", "_kmeans_loops"),
    "07.5": _FromLabTest("test_lab07", "_huffman_other_ties"),
    "08.1": _FromLabTest("test_lab08", "_ste_solution"), "08.2": _FromLabTest("test_lab08", "_lsq_solution"),
    "08.3": _FromLabTest("test_lab08", "_binary_solution"), "08.4": _FromLabTest("test_lab08", "_ternary_solution"),
    "08.5": _FromLabTest("test_lab08", "_dp_solution"),
    "09.1": _FromLabTest("test_lab09", "_time_seconds_first"), "09.2": _FromLabTest("test_lab09", "_qsgd_loop"),
    "09.3": _FromLabTest("test_lab09", "_ef_with_lists"), "09.4": _FromLabTest("test_lab09", "_int8_reciprocal"),
    "10.1": fold_batchnorm, "10.2": calibrate, "10.3": weight_code,
    "10.4": _FromLabTest("test_lab10", "_convert_float64"), "10.5": model_size,
    "11.1": quantize_w8, "11.2": quantize_w4, "11.3": w4a16_linear, "11.4": retrieval_agreement,
    "12.1": _FromLabTest("test_lab12", "_qdq_loop"), "12.2": _FromLabTest("test_lab12", "_minmax_two_pass"),
})
# Exercises that cannot have an honest solution here, with the reason (none so far: every exercise,
# torch ones included, has one above or in its lab's test file).
NO_HONEST: dict[str, str] = {}
HONEST_IDS = [i for i in HONEST if i in EXERCISES]


def test_every_exercise_has_an_honest_solution_or_a_reason():
    missing = sorted(set(EXERCISES) - set(HONEST) - set(NO_HONEST))
    assert not missing, f"exercises without an honest solution in HONEST (or a reason in NO_HONEST): {missing}"
    assert not set(HONEST) - set(EXERCISES), f"HONEST solves unknown exercises: {sorted(set(HONEST) - set(EXERCISES))}"
    assert all(reason.strip() for reason in NO_HONEST.values())
    local = [i for i in HONEST_IDS if not isinstance(dict.__getitem__(HONEST, i), _FromLabTest)]
    assert all(HONEST[i].__name__ == EXERCISES[i].function for i in local), (
        [(i, HONEST[i].__name__, EXERCISES[i].function) for i in local if HONEST[i].__name__ != EXERCISES[i].function])


@pytest.mark.parametrize("ex_id", HONEST_IDS)
def test_an_honest_solution_passes_under_the_watch(ex_id, quiet):
    result = check(ex_id, HONEST[ex_id], verbose=False)
    assert result.status == "passed", result.message
    assert result.points == EXERCISES[ex_id].points


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_every_exercise_declares_what_it_forbids(ex_id):
    ex = EXERCISES[ex_id]
    assert isinstance(ex.forbidden, tuple) and isinstance(ex.allowed, tuple)
    assert not set(ex.forbidden) & set(ex.allowed)
    for name in ex.forbidden + ex.allowed:  # every name exists (torch is installed in the test env)
        assert resolve_name(name) is not None, name
    for name in ex.forbidden:  # ...and names callables (a module of the same name would forbid nothing)
        assert resolve_forbidden([name]), name


@pytest.mark.parametrize("lab", sorted({ex.lab for ex in EXERCISES.values()}))
def test_no_exercise_forbids_what_another_of_its_lab_allows(lab):
    # the grader disarms a whole lab's forbidden callables in one process
    exercises = [ex for ex in EXERCISES.values() if ex.lab == lab]
    forbidden = {f for ex in exercises for f in resolve_forbidden(ex)}
    codes = {f.__code__ for f in forbidden if isinstance(f, types.FunctionType)}
    for ex in exercises:
        for name in ex.allowed:
            for function in resolve_forbidden([name]):
                assert function not in forbidden, (ex.id, name)
                if isinstance(function, types.FunctionType):
                    assert function.__code__ not in codes, (ex.id, name)


@pytest.mark.parametrize("ex_id", ALL_IDS)
def test_allowed_helpers_never_reach_a_forbidden_callable(ex_id):
    # an allowed helper that calls a forbidden one internally would fail honest solutions
    ex = EXERCISES[ex_id]
    forbidden_codes = {f.__code__ for f in resolve_forbidden(ex) if isinstance(f, types.FunctionType)}
    for name in ex.allowed:
        obj = resolve_name(name)
        if isinstance(obj, types.FunctionType):
            assert obj.__code__ not in forbidden_codes, name


# --- delegating to each forbidden callable is rejected ----------------------------------------

def _dummy_args(target):
    """Arguments that get a call *into* ``target`` (binding succeeds); the watch stops it there."""
    import torch

    if isinstance(target, (types.MethodDescriptorType, types.WrapperDescriptorType)):
        return (torch.zeros(1),), {}
    try:
        signature = inspect.signature(target)
    except (TypeError, ValueError):
        return (), {}
    args = []
    for p in signature.parameters.values():
        if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty:
            args.append(None)
    kwargs = {p.name: None for p in signature.parameters.values()
              if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    return tuple(args), kwargs


def _delegations():
    rows = []
    for ex_id in ALL_IDS:
        for name in EXERCISES[ex_id].forbidden:
            rows.append((ex_id, name))
    return rows


DELEGATIONS = _delegations()


def _renamed_import(name):
    """``from module import attr as _alias`` (or the owner for ``Class.method``), in a fresh namespace."""
    parts = name.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        module = ".".join(parts[:cut])
        try:
            importlib.import_module(module)
        except ImportError:
            continue
        rest = parts[cut:]
        namespace: dict = {}
        exec(f"from {module} import {rest[0]} as _alias", namespace)
        path = "".join(f".{attr}" for attr in rest[1:])
        return namespace, f"_alias{path}"
    raise AssertionError(name)


def _is_autograd_function(cls) -> bool:
    import torch

    return issubclass(cls, torch.autograd.Function)


@pytest.mark.parametrize("ex_id, name", DELEGATIONS, ids=[f"{i}-{n}" for i, n in DELEGATIONS])
def test_delegating_to_a_forbidden_callable_is_rejected(ex_id, name, quiet):
    ex = EXERCISES[ex_id]
    obj = resolve_name(name)
    assert obj is not None
    suffix = ""
    if inspect.isclass(obj) and inspect.isabstract(obj):  # cannot be built: call one of its methods
        suffix = "." + next(k for k, v in vars(obj).items() if inspect.isfunction(v) and k != "__init__")
        obj = getattr(obj, suffix[1:])
    elif inspect.isclass(obj) and _is_autograd_function(obj):  # used through apply, never built
        suffix, obj = ".apply", obj.apply
    args, kwargs = _dummy_args(obj)

    wrapper = lambda *a, **k: obj(*args, **kwargs)  # noqa: E731 - a learner's one-line wrapper
    namespace, expression = _renamed_import(name)
    expression += suffix
    namespace.update(args=args, kwargs=kwargs)
    exec(compile(f"def solution(*a, **k):\n    return {expression}(*args, **kwargs)\n", "<learner>", "exec"),
         namespace)
    for fn in (wrapper, namespace["solution"]):
        results = run_cases(ex, fn)
        assert results[0].status == "delegated", (results[0].status, results[0].reason)
        # the reason names this callable, or the forbidden one it reaches first (a subclass of a
        # forbidden class runs the __init__ it inherits from it)
        assert any(n in results[0].reason for n in (name, *ex.forbidden)), results[0].reason
    result = check(ex_id, wrapper, verbose=False)
    assert (result.status, result.points, result.passed) == ("delegated", 0, False)
    first = result.message.splitlines()[0]
    assert first.startswith(f"Exercise {ex_id} failed: 0/{ex.points} points")
    assert any(n in result.message for n in (name, *ex.forbidden))
    assert "allowed:" in result.message and "numpy" in result.message


def test_a_delegation_is_caught_however_the_learner_got_hold_of_it(quiet):
    import qlearn
    from qlearn import quantize as q

    forms = {
        "renamed import": lambda x, s, z, a, b: q(x, s, z, a, b),
        "attribute of the package": lambda x, s, z, a, b: qlearn.quantize(x, s, z, a, b),
        "a copy of its code": _copy(quantize.__code__),
        "a copy with code.replace": _copy(quantize.__code__.replace(co_name="quantize")),
        "called from a thread": lambda x, s, z, a, b: _in_thread(lambda: q(x, s, z, a, b)),
        "the error swallowed": lambda x, s, z, a, b: _swallow(lambda: q(x, s, z, a, b), x, s, z, a, b),
    }
    for label, fn in forms.items():
        status, message = evaluate(EXERCISES["02.1"], fn)
        assert status == "delegated", (label, message)
        assert "qlearn.affine.quantize" in message, label


def _copy(code):
    fn = types.FunctionType(code, quantize.__globals__, "mine", quantize.__defaults__)
    fn.__kwdefaults__ = quantize.__kwdefaults__
    return fn


def _in_thread(fn):
    import threading

    out = {}
    thread = threading.Thread(target=lambda: out.update(value=fn()))
    thread.start()
    thread.join()
    return out.get("value")


def _swallow(fn, x, s, z, a, b):
    try:
        return fn()
    except BaseException:  # the learner catches the DelegationError and answers anyway
        return np.clip(np.rint(x * (f32(1) / s)) + z, a, b).astype(np.int32)


# --- the grading package is always forbidden --------------------------------------------------

GRADING_ROUTES = {
    "the reference": lambda ex_id: EXERCISES[ex_id].reference,
    "reference(id)": lambda ex_id: reference(ex_id),
    "a lambda around EXERCISES[id].reference": lambda ex_id: lambda *a, **k: EXERCISES[ex_id].reference(*a, **k),
    "implementation(id, broken)": lambda ex_id: implementation(ex_id, lambda *a, **k: None),
    "a lambda around implementation(...)": lambda ex_id: lambda *a, **k: implementation(
        ex_id, lambda *b, **c: None)(*a, **k),
    "a lambda that calls check": lambda ex_id: lambda *a, **k: check(ex_id, HONEST[ex_id], verbose=False),
    "a wrong answer from the catalogue": lambda ex_id: next(iter(EXERCISES[ex_id].wrong_answers.values())),
}


@pytest.mark.parametrize("route", GRADING_ROUTES)
@pytest.mark.parametrize("ex_id", HONEST_IDS)
def test_anything_from_the_grading_package_is_rejected(ex_id, route, quiet):
    fn = GRADING_ROUTES[route](ex_id)
    results = run_cases(EXERCISES[ex_id], fn)
    assert results[0].status == "delegated", (route, results[0].status, results[0].reason)
    assert "qlearn.grading" in results[0].reason


def test_importing_a_reference_under_another_name_is_rejected():
    namespace: dict = {}
    exec("from qlearn.grading.labs.lab00 import clamp as my_clamp\n"
         "def clamp(x, lo, hi):\n    return my_clamp(x, lo, hi)\n", namespace)
    result = check("00.1", namespace["clamp"], verbose=False)
    assert result.status == "delegated"
    assert "qlearn.grading.labs.lab00.clamp" in result.message


def test_the_fallback_of_implementation_still_works_for_demos():
    broken = lambda x, lo, hi: None  # noqa: E731
    fallback = implementation("00.1", broken)
    assert fallback is EXERCISES["00.1"].reference
    assert fallback(np.array([-3.0, 0.5, 9.0]), -1.0, 1.0).tolist() == [-1.0, 0.5, 1.0]
    assert implementation("00.1", clamp) is clamp
    # ...but a solution built on that fallback is rejected
    assert check("00.1", lambda x, lo, hi: fallback(x, lo, hi), verbose=False).status == "delegated"


def test_case_fixtures_are_not_delegation():
    # 10.2's cases hand the learner a TinyObservedModel and a FakeLoader from qlearn.grading.labs.lab10
    assert check("10.2", calibrate, verbose=False).passed


def test_a_package_imported_inside_the_solution_is_still_watched(quiet):
    # the forbidden names are resolved again when the solution imports their package itself
    code = textwrap.dedent("""
        import subprocess, sys
        from qlearn.grading import check
        def quantize_tensor(x, scale, zero_point, qmin, qmax):
            import torch
            t = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), int(zero_point), torch.qint32)
            return t.int_repr().numpy()
        assert "torch" not in sys.modules
        print(check("02.1", quantize_tensor, verbose=False).status)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.stdout.strip().splitlines()[-1] == "delegated", out.stderr[-2000:]


def test_switching_the_watch_off_is_rejected():
    import threading

    def sneaky(x, s, z, a, b):
        sys.setprofile(None)
        return quantize(x, s, z, a, b)

    def sneakier(x, s, z, a, b):
        threading.setprofile(None)
        return quantize(x, s, z, a, b)

    for fn in (sneaky, sneakier):
        status, message = evaluate(EXERCISES["02.1"], fn)
        assert status == "delegated" and "setprofile" in message


def test_the_watch_ends_with_the_call():
    watcher = Watcher(EXERCISES["02.1"])
    assert watcher.call(lambda: 1 + 1) == 2 and watcher.violation is None
    assert sys.getprofile() is None
    assert quantize(np.float32(1.0), f32(1.0), 0, 0, 255) == 1  # no watch outside the call
    with pytest.raises(DelegationError, match="qlearn.affine.quantize"):
        watcher.call(quantize, np.float32(1.0), f32(1.0), 0, 0, 255)
    assert sys.getprofile() is None


# --- results that lie, comparisons that are patched -------------------------------------------

class AlwaysEqual(np.ndarray):
    def __eq__(self, other):
        return np.ones(np.broadcast(self, other).shape, dtype=bool)

    def __ne__(self, other):
        return np.zeros(np.broadcast(self, other).shape, dtype=bool)


class Liar:
    def __eq__(self, other):
        return True

    def __len__(self):
        return 2

    def __iter__(self):
        return iter((f32(1.0), 0))


def test_an_ndarray_subclass_whose_eq_is_always_true_fails():
    result = check("00.1", lambda x, lo, hi: np.zeros(np.shape(x)).view(AlwaysEqual), verbose=False)
    assert result.status == "failed"
    assert "subclass of np.ndarray" in result.message


@pytest.mark.parametrize("got", [
    Liar(), np.array([1, 2], dtype=object), [Liar()], (f32(1.0), Liar()), {"a": Liar()},
    type("MyFloat", (float,), {"__eq__": lambda self, other: True})(0.0),
    type("MyTuple", (tuple,), {"__eq__": lambda self, other: True})(()),
])
def test_odd_objects_are_refused_before_any_comparison(got):
    from qlearn.grading.compare import compare_values

    assert compare_values(got, np.array([1.0, 2.0])) is not None
    assert compare_values(got, (f32(1.0), 0)) is not None
    assert check("02.3", lambda *a: got, verbose=False).status == "failed"


def test_patching_math_isclose_does_not_pass_a_check(monkeypatch):
    def wrong(x, x_hat):  # off by 10%
        return 1.1 * relative_error(x, x_hat)

    monkeypatch.setattr(math, "isclose", lambda *a, **k: True)
    monkeypatch.setattr(np, "isclose", lambda *a, **k: np.True_)
    monkeypatch.setattr(np, "allclose", lambda *a, **k: True)
    monkeypatch.setattr(np, "array_equal", lambda *a, **k: True)
    assert check("00.3", wrong, verbose=False).status == "failed"
    assert check("00.3", relative_error, verbose=False).status == "passed"


# --- disarm: the grader's child process -------------------------------------------------------

DISARM_SCRIPT = r"""
import inspect, json, sys, types, warnings
warnings.simplefilter("ignore")
import torch
import qlearn
from qlearn import quantize as early_alias            # bound before disarm
from qlearn.grading.labs.lab00 import clamp as early_clamp
from qlearn.grading import EXERCISES
from qlearn.grading.delegation import DelegationError, disarm, resolve_name
from qlearn.grading.labs.lab10 import FakeLoader, TinyObservedModel
import numpy as np

def dummy(target):
    if isinstance(target, (types.MethodDescriptorType, types.WrapperDescriptorType)):
        return (torch.zeros(1),), {}
    try:
        sig = inspect.signature(target)
    except (TypeError, ValueError):
        return (), {}
    args = [None for p in sig.parameters.values()
            if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD) and p.default is p.empty]
    kwargs = {p.name: None for p in sig.parameters.values() if p.kind is p.KEYWORD_ONLY and p.default is p.empty}
    return tuple(args), kwargs

def target(name):
    obj = resolve_name(name)
    if inspect.isclass(obj) and inspect.isabstract(obj):  # cannot be built: call one of its methods
        return getattr(obj, next(k for k, v in vars(obj).items() if inspect.isfunction(v) and k != "__init__"))
    if inspect.isclass(obj) and issubclass(obj, torch.autograd.Function):  # used through apply, not built
        return obj.apply
    return obj

plans = {}
catalogue = [(ex.id, ex.forbidden) for ex in EXERCISES.values()]
reference_021 = EXERCISES["02.1"].reference
for _, names in catalogue:
    for name in names:
        plans[name] = dummy(target(name))
done = disarm([ex_id for ex_id, _ in catalogue])
out = {"disarmed": len(done), "calls": {}}
def attempt(label, fn):
    try:
        fn()
        out["calls"][label] = "no error"
    except DelegationError as exc:
        out["calls"][label] = "DelegationError: " + str(exc)
    except Exception as exc:
        out["calls"][label] = type(exc).__name__ + ": " + str(exc)
for _, names in catalogue:
    for name in names:
        obj = target(name)
        args, kwargs = plans[name]
        attempt(name, lambda: obj(*args, **kwargs))
attempt("early alias of qlearn.quantize", lambda: early_alias(np.zeros(2, np.float32), 1.0, 0, 0, 255))
attempt("early alias of the 00.1 reference", lambda: early_clamp(np.zeros(2), 0, 1))
attempt("EXERCISES['02.1'].reference", lambda: reference_021(np.zeros(2, np.float32), 1.0, 0, 0, 255))
attempt("EXERCISES['02.1']", lambda: EXERCISES["02.1"])
from qlearn.grading import implementation, check
attempt("implementation", lambda: implementation("00.1", lambda *a: None))
attempt("check", lambda: check("00.1", lambda *a: None))
model = TinyObservedModel(np.ones((2, 3), np.float32), np.zeros(2, np.float32))
loader = FakeLoader([np.ones((4, 3))] * 2, [np.zeros(4)] * 2)
model.eval()
for images, _ in loader:
    model(images)
out["fixtures work"] = len(model.observers["input"].log) == 2
out["allowed helper works"] = qlearn.code_dtype(0, 255) == np.uint8 and qlearn.FORMATS["fp8_e4m3"].max == 448.0
print(json.dumps(out))
"""


def test_disarm_makes_every_forbidden_callable_raise_for_every_alias():
    proc = subprocess.run([sys.executable, "-c", DISARM_SCRIPT], capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    out = json.loads(proc.stdout.strip().splitlines()[-1])
    assert out["fixtures work"] and out["allowed helper works"]
    for label, outcome in out["calls"].items():
        assert outcome.startswith("DelegationError: "), (label, outcome)
    for ex in EXERCISES.values():
        for name in ex.forbidden:
            assert f"exercise {ex.id}" in out["calls"][name] or f", {ex.id}" in out["calls"][name] \
                or f"exercises {ex.id}" in out["calls"][name], (name, out["calls"][name])
            assert "write it yourself" in out["calls"][name]


# --- hidden cases -----------------------------------------------------------------------------

@pytest.mark.parametrize("ex_id", HONEST_IDS)
def test_a_secret_seed_changes_the_random_cases_and_keeps_the_edge_cases(ex_id):
    from labkit import same_value  # by value: a torch tensor's pickle holds its storage address

    def same_cases(a, b):
        return [c.name for c in a] == [c.name for c in b] and all(
            same_value(x.args, y.args) and same_value(dict(x.kwargs), dict(y.kwargs)) for x, y in zip(a, b))

    ex = EXERCISES[ex_id]
    visible, hidden = ex.make_cases(), ex.make_cases(seed=987_654_321)
    assert same_cases(visible, ex.make_cases(seed=ex.seed))
    assert not same_cases(visible, hidden), "the cases do not depend on the seed"
    assert [c.name for c in visible if not c.random] == [c.name for c in hidden if not c.random]
    assert check(ex_id, HONEST[ex_id], verbose=False).passed
    results = run_cases(ex, HONEST[ex_id], hidden)
    assert [r.status for r in results] == ["passed"] * len(hidden)


def test_compare_case_judges_a_result_that_came_back_as_plain_data():
    from qlearn.grading.checker import compare_case

    ex = EXERCISES["02.1"]
    case = ex.make_cases(seed=5)[0]
    got = quantize_tensor(*case.args)
    assert compare_case(ex, case, got) is None
    assert compare_case(ex, case, got.astype(np.int64).tolist()) is not None  # a list is not an array
    wrong = got.copy()
    wrong.flat[0] += 1
    assert "values differ" in compare_case(ex, case, wrong)
    assert compare_case(ex, case, got.view(AlwaysEqual)).endswith("(np.asarray(...))")



def test_torch_kernels_under_other_names_are_rejected_on_numpy_exercises():
    # torch's own kernels reach an exercise's job by names no forbidden list can enumerate
    # (aten ops, torch._C aliases): on an exercise with numpy inputs, any call into torch counts
    import torch

    def quantize_tensor(x, scale, zero_point, qmin, qmax):
        t = torch.from_numpy(np.asarray(x, np.float32))
        q = torch._C._VariableFunctions.quantize_per_tensor(t, float(scale), int(zero_point), torch.qint32)
        return np.clip(q.int_repr().numpy(), qmin, qmax)

    def dequantize_tensor(q, scale, zero_point):
        qt = torch._make_per_tensor_quantized_tensor(torch.from_numpy(np.asarray(q).astype(np.int32)),
                                                     float(scale), int(zero_point))
        return torch.ops.aten.dequantize(qt).numpy()

    attempts = [(i, fn) for i, fn in (("02.1", quantize_tensor), ("02.2", dequantize_tensor))
                if EXERCISES[i].function == fn.__name__]  # 02.2 became a fake-quantize round trip
    assert attempts
    for exercise_id, fn in attempts:
        result = check(exercise_id, fn, verbose=False)
        assert result.status == "delegated" and result.points == 0, result.message
        assert "not with torch's kernels" in result.message
