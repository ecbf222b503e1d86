"""Lab 09 (``09_gradient_quantization``): compressing the gradients of data-parallel training.

    09.1  allreduce_time(num_params, bits, workers, bandwidth_gbit, latency)
                      bytes = ceil(num_params * bits / 8);  t = 2 (p-1) latency + 2 (p-1)/p * bytes * 8 / bandwidth
    09.2  qsgd_quantize(g, s, seed)        QSGD: (||g||_2, sign(g) * floor(|g| / ||g|| * s + u))
    09.3  ef_sgd(targets, lr, steps, compressor, k, error_feedback)
                      distributed SGD with a compressed step per worker, each with its own residual
    09.4  compress_int8(grad, residual, seed)   (torch) the core of the int8 DDP hook:
                      int8 codes by stochastic rounding, one scale, the new error-feedback residual

    09.Q1 .. 09.Q4    predict, then run

Randomness in the cases is an int ``seed`` (the contract says how to draw from it), so every answer
is exact and checkable. **Exactness of stochastic rounding.** ``floor(x + u)`` depends on how ``x``
is computed only where ``x + u`` lands within a rounding error of an integer; the cases of 09.2 and
09.4 are built so that the ways a learner may compute ``x`` (division or reciprocal, float32 or
float64) give the same codes: values where they disagree are replaced by 0 (as lab 02 does).
Lab 09's torch exercise imports torch only inside its functions: importing this module does not
import torch.
"""

from __future__ import annotations

import math

import numpy as np

from qlearn.comm_cost import gradient_bytes, ring_allreduce_time
from qlearn.compression import compress, qsgd
from qlearn.grading.compare import compare_values, format_value
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register

__all__ = ["allreduce_time", "compress_int8", "ef_sgd", "qsgd_quantize"]

NOTEBOOK = "09_gradient_quantization"
f32 = np.float32
EPS32 = float(np.finfo(np.float32).eps)


# --- 09.1 -------------------------------------------------------------------------------------

def allreduce_time(num_params: int, bits: int, workers: int, bandwidth_gbit: float, latency: float) -> float:
    """Seconds one ring all-reduce of a gradient takes (the alpha-beta model).

    The gradient has ``num_params`` values of ``bits`` bits; it takes ``ceil(num_params * bits / 8)``
    bytes (a partial byte is still a byte). Among ``workers`` workers each worker sends
    ``2 (p - 1) / p`` times those bytes over a link of ``bandwidth_gbit`` Gbit/s (``1e9`` bit/s),
    in ``2 (p - 1)`` rounds that each cost ``latency`` seconds. One worker needs no time.

    >>> round(allreduce_time(11_689_512, 32, 8, 10.0, 5e-6), 4)
    0.0655
    """
    return ring_allreduce_time(gradient_bytes(num_params, bits), workers, bandwidth_gbit, latency)


def _allreduce_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case("ResNet-18 in float32 (11,689,512 values), 8 workers, 10 Gbit/s", (11_689_512, 32, 8, 10.0, 5e-6)),
        Case("the same on 64 workers: 2 (p-1)/p grows from 1.75 to 1.97", (11_689_512, 32, 64, 10.0, 5e-6)),
        Case("100 Gbit/s links", (11_689_512, 32, 8, 100.0, 5e-6)),
        Case("2 workers: each sends exactly the gradient once", (50_890, 32, 2, 10.0, 1e-5)),
        Case("one worker: nothing to send, 0 seconds", (50_890, 32, 1, 10.0, 1e-5)),
        Case("int8 gradients: 8 bits per value", (1_000_000, 8, 16, 25.0, 2e-6)),
        Case("1 bit per value, 1001 values: 126 bytes (the partial byte counts)", (1001, 1, 4, 1.0, 0.0)),
        Case("no latency: bandwidth only", (7_850, 32, 4, 1.0, 0.0)),
        Case("a tiny gradient: latency dominates", (10, 32, 64, 100.0, 1e-5)),
        Case("random model size and cluster",
             (int(rng.integers(10**5, 10**8)), int(rng.choice([32, 16, 8])), int(rng.integers(2, 257)),
              float(rng.choice([1.0, 10.0, 25.0, 100.0])), float(rng.choice([1e-6, 5e-6, 2e-5])))),
    ]


def _time_wrong(bytes_fn=lambda n, b: math.ceil(n * b / 8), factor=lambda p: 2 * (p - 1) / p,
                bits_per_gbit=1e9, hops=lambda p: 2 * (p - 1)):
    def wrong(num_params, bits, workers, bandwidth_gbit, latency):
        nbytes = bytes_fn(num_params, bits)
        return hops(workers) * latency + factor(workers) * nbytes * 8 / (bandwidth_gbit * bits_per_gbit)
    return wrong


register(Exercise(
    id="09.1",
    title="The time of one ring all-reduce",
    points=2,
    reference=allreduce_time,
    cases=_allreduce_cases,
    function="allreduce_time",
    hint=("Two parts add up: a fixed cost per round of the ring, and the time to push the bytes through "
          "one link. Count how many rounds a ring of p workers needs, and what share of the gradient "
          "one worker sends in total.",
          "Bytes first, rounded up to whole bytes; then bits per second: a gigabit is a billion bits, "
          "and a byte is eight bits. Each worker sends 2 (p - 1) / p of the gradient in 2 (p - 1) rounds."),
    notebook=NOTEBOOK,
    seed=901,
    rtol=1e-9,
    atol=1e-15,
    forbidden=("qlearn.comm_cost.ring_allreduce_time", "qlearn.comm_cost.gradient_bytes",
               "qlearn.comm_cost.ring_allreduce_bytes_sent"),
    wrong_answers={
        "Gbit/s read as Gbyte/s (the factor 8 is missing)": _time_wrong(bits_per_gbit=8e9),
        "each worker sends the whole gradient once (no 2 (p-1)/p)": _time_wrong(factor=lambda p: 1.0),
        "each worker sends the whole gradient p times": _time_wrong(factor=lambda p: p),
        "only the reduce-scatter half: (p-1)/p": _time_wrong(factor=lambda p: (p - 1) / p),
        "latency paid once, not per round": _time_wrong(hops=lambda p: 1),
        "bits not divided by 8 (bytes counted as bits)": _time_wrong(bytes_fn=lambda n, b: n * b),
        "partial bytes dropped (rounded down)": _time_wrong(bytes_fn=lambda n, b: n * b // 8),
        "returns milliseconds": lambda *a: 1e3 * allreduce_time(*a),
    },
))


# --- 09.2 -------------------------------------------------------------------------------------

def qsgd_quantize(g: np.ndarray, s: int, seed: int) -> tuple[float, np.ndarray]:
    """QSGD with ``s`` levels: returns ``(norm, codes)``, the numbers a worker sends.

    ``norm = ||g||_2`` (a Python or numpy float), and ``codes`` holds one integer in ``[-s, s]`` per
    value, ``codes_i = sign(g_i) * floor(|g_i| / norm * s + u_i)`` with
    ``u = np.random.default_rng(seed).random(g.shape)``, drawn once, before anything else. The
    receiver decodes ``norm * codes / s``. A zero gradient sends ``(0.0, zeros)``.

    >>> qsgd_quantize(np.array([3.0, -4.0]), 1, 0)
    (5.0, array([ 1, -1]))
    """
    return qsgd(np.asarray(g, np.float64), s, np.random.default_rng(seed))


def _qsgd_variants(g: np.ndarray, s: int, u: np.ndarray) -> list[np.ndarray]:
    g64 = g.astype(np.float64)
    norm64 = np.sqrt(np.sum(g64 * g64))
    norm_la = np.linalg.norm(g64)
    g32 = g.astype(f32)
    norm32 = np.sqrt(np.sum(g32 * g32, dtype=f32))
    out = []
    for r in (np.abs(g64) / norm64 * s, np.abs(g64) * s / norm64, np.abs(g64) / norm_la * s,
              np.abs(g64) * (s / norm64), np.abs(g32) / norm32 * f32(s)):
        out.append(np.floor(r + u))
    return out


def _qsgd_case(name: str, g: np.ndarray, s: int, seed: int) -> Case:
    """Keep only the values where every way of computing |g| / norm * s gives the same level."""
    g = np.asarray(g, np.float64)
    if np.any(g):
        u = np.random.default_rng(seed).random(g.shape)
        levels = _qsgd_variants(g, s, u)
        same = np.logical_and.reduce([lv == levels[0] for lv in levels[1:]])
        if not same.all():
            raise RuntimeError(f"case {name!r}: the level depends on how it is computed; pick another seed")
    return Case(name, (g, s, seed))


def _qsgd_cases(rng: np.random.Generator) -> list[Case]:
    return [
        _qsgd_case("two values, s = 1 (a 3-4-5 triangle)", np.array([3.0, -4.0]), 1, 0),
        _qsgd_case("one-hot gradient: |g_i| / norm * s is exactly s", np.array([0.0, -2.5, 0.0, 0.0]), 4, 3),
        _qsgd_case("a zero gradient sends (0, zeros)", np.zeros(6), 4, 5),
        _qsgd_case("s = 1: codes in {-1, 0, 1} (ternary)", rng.normal(0, 1, 12), 1, 11),
        _qsgd_case("s = 4 on a small gradient", rng.normal(0, 0.01, 10), 4, 12),
        _qsgd_case("s = 127 (about 8 bits)", rng.normal(0, 1, 16), 127, 13),
        _qsgd_case("a 2-D gradient (a weight matrix)", rng.normal(0, 1, (3, 4)), 8, 14),
        _qsgd_case("negative values only", -np.abs(rng.normal(0, 1, 8)), 2, 15),
        _qsgd_case("random gradient of 100 values, s = 16", rng.normal(0, 1, 100), 16, int(rng.integers(10**6))),
    ]


def _compare_qsgd(got, expected) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (norm, codes), got {format_value(got)}"
    norm, codes = got
    if isinstance(norm, np.ndarray) and norm.ndim == 0:
        norm = norm[()]
    if not isinstance(norm, (float, int, np.floating, np.integer)) or isinstance(norm, bool):
        return f"the norm must be a number, got {format_value(norm)}"
    reason = compare_values(float(norm), float(expected[0]), rtol=1e-12, atol=0.0)
    if reason is not None:
        return f"norm: {reason}"
    if not isinstance(codes, np.ndarray) or codes.dtype.kind not in "iu":
        return (f"the codes must be an integer array (levels from -s to s), got {format_value(codes)}; "
                f"cast with .astype(np.int64)")
    reason = compare_values(codes, expected[1])
    return None if reason is None else f"codes: {reason}"


def _qsgd_wrong(level=lambda r, u: np.floor(r + u), norm=lambda g: np.sqrt(np.sum(g * g)), draw_first=True):
    def wrong(g, s, seed):
        g = np.asarray(g, np.float64)
        rng = np.random.default_rng(seed)
        if not draw_first:
            rng.random()
        u = rng.random(g.shape)
        n = float(norm(g))
        if n == 0.0:
            return 0.0, np.zeros(g.shape, np.int64)
        return n, (np.sign(g) * level(np.abs(g) / n * s, u)).astype(np.int64)
    return wrong


register(Exercise(
    id="09.2",
    title="QSGD: s levels, scaled by the norm, stochastic rounding",
    points=3,
    reference=qsgd_quantize,
    cases=_qsgd_cases,
    function="qsgd_quantize",
    hint=("Each value becomes a fraction of the gradient's length, stretched onto s levels; between two "
          "levels, a coin weighted by the distance decides. The sign travels separately.",
          "Draw the uniform numbers once, for the whole shape, before anything else. Floor of (level + "
          "uniform) rounds up with probability equal to the fractional part. Guard the all-zero gradient "
          "before dividing by its norm."),
    notebook=NOTEBOOK,
    seed=902,
    compare=_compare_qsgd,
    forbidden=("qlearn.compression.qsgd", "qlearn.compression.stochastic_round", "qlearn.compression.terngrad"),
    allowed=("qlearn.compression.qsgd_decode",),
    wrong_answers={
        "deterministic rounding (np.rint) instead of stochastic": _qsgd_wrong(level=lambda r, u: np.rint(r)),
        "always rounds down (no random draw)": _qsgd_wrong(level=lambda r, u: np.floor(r)),
        "rounds up when u < 1 - fraction (the other coin)": _qsgd_wrong(
            level=lambda r, u: np.floor(r) + (u < 1 - (r - np.floor(r)))),
        "scaled by the max instead of the 2-norm (TernGrad's scale)": _qsgd_wrong(norm=lambda g: np.max(np.abs(g))),
        "scaled by the 1-norm": _qsgd_wrong(norm=lambda g: np.sum(np.abs(g))),
        "draws the random numbers after another draw": _qsgd_wrong(draw_first=False),
        "forgets the sign": lambda g, s, seed: (lambda n, c: (n, np.abs(c)))(*qsgd_quantize(g, s, seed)),
        "returns the decoded gradient instead of the codes": lambda g, s, seed: (
            lambda n, c: (n, n * c / s))(*qsgd_quantize(g, s, seed)),
    },
))


# --- 09.3 -------------------------------------------------------------------------------------

def ef_sgd(targets: np.ndarray, lr: float, steps: int, compressor: str, k: int,
           error_feedback: bool) -> np.ndarray:
    """Data-parallel SGD where every worker compresses its step, with or without error feedback.

    Worker ``i`` minimises ``f_i(w) = ||w - targets[i]||^2 / 2`` (its gradient is ``w - targets[i]``);
    together they minimise the average, whose minimum is the mean of the targets. From ``w_0 = 0``,
    for ``steps`` steps, each worker ``i`` forms ``p_i = lr * grad_i(w) + e_i``, sends
    ``delta_i = compress(compressor, p_i, k=k)`` (:func:`qlearn.compression.compress`: ``"sign"`` or
    ``"topk"``) and keeps ``e_i = p_i - delta_i``; then ``w <- w - mean_i(delta_i)``. Every residual
    ``e_i`` starts at 0. Without ``error_feedback`` the residuals stay 0 (``p_i = lr * grad_i(w)``).
    Returns the ``steps + 1`` iterates ``w_0, ..., w_T`` as the rows of a float64 array.

    >>> ef_sgd(np.array([[1.0, 0.0], [0.0, 1.0]]), 0.5, 1, "topk", 1, True)
    array([[0.  , 0.  ],
           [0.25, 0.25]])
    """
    targets = np.asarray(targets, np.float64)
    workers, d = targets.shape
    w = np.zeros(d)
    residuals = np.zeros((workers, d))
    path = [w.copy()]
    for _ in range(steps):
        total = np.zeros(d)
        for i in range(workers):
            p = lr * (w - targets[i]) + residuals[i]
            delta = compress(compressor, p, k=k)
            if error_feedback:
                residuals[i] = p - delta
            total += delta
        w = w - total / workers
        path.append(w.copy())
    return np.array(path)


def _ef_cases(rng: np.random.Generator) -> list[Case]:
    three = np.array([[4.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    return [
        Case("one step, top-1, two workers", (np.array([[1.0, 0.0], [0.0, 1.0]]), 0.5, 1, "topk", 1, True)),
        Case("three workers, scaled sign, with error feedback", (three, 0.1, 30, "sign", 1, True)),
        Case("three workers, scaled sign, without error feedback", (three, 0.1, 30, "sign", 1, False)),
        Case("three workers, top-1, with error feedback", (three, 0.1, 30, "topk", 1, True)),
        Case("three workers, top-1, without error feedback", (three, 0.1, 30, "topk", 1, False)),
        Case("one worker, top-2 of 5, with error feedback", (rng.normal(0, 1, (1, 5)), 0.3, 12, "topk", 2, True)),
        Case("zero steps: only w_0", (three, 0.1, 0, "sign", 1, True)),
        Case("random targets: 4 workers, 6 values, sign, error feedback",
             (rng.normal(0, 1, (4, 6)), 0.05, 25, "sign", 1, True)),
        Case("random targets: 3 workers, 8 values, top-3, error feedback",
             (rng.normal(0, 1, (3, 8)), 0.2, 25, "topk", 3, True)),
    ]


def _ef_wrong(mode: str):
    def wrong(targets, lr, steps, compressor, k, error_feedback):
        targets = np.asarray(targets, np.float64)
        workers, d = targets.shape
        w = np.zeros(d)
        residuals = np.zeros((workers, d))
        shared = np.zeros(d)
        path = [w.copy()]
        for _ in range(steps):
            total = np.zeros(d)
            for i in range(workers):
                e = shared if mode == "shared" else residuals[i]
                use_e = error_feedback and mode != "never"
                p = lr * (w - targets[i]) + (e if use_e or mode == "always" else 0.0)
                delta = compress(compressor, p, k=k)
                if error_feedback or mode == "always":
                    new = {"keeps p": p, "sign flipped": delta - p}.get(mode, p - delta)
                    if mode == "shared":
                        shared = new
                    else:
                        residuals[i] = new
                total += delta
            w = w - (total if mode == "sum" else total / workers)
            path.append(w.copy())
        return np.array(path)
    return wrong


register(Exercise(
    id="09.3",
    title="Error feedback: what a step does not send, the next step sends",
    points=4,
    reference=ef_sgd,
    cases=_ef_cases,
    function="ef_sgd",
    hint=("Each worker carries its own memory of what it did not send; add it before compressing, and "
          "after sending keep the difference between what it wanted to send and what it sent.",
          "One residual per worker, all zero at the start. Inside a step: add the residual to the scaled "
          "gradient, compress that sum, store the sum minus the compressed value, and move the weights by "
          "the average of the compressed values of all workers. Record w before the first step."),
    notebook=NOTEBOOK,
    seed=903,
    rtol=1e-9,
    atol=1e-12,
    forbidden=("qlearn.compression.ef_sgd", "qlearn.compression.ErrorFeedback",
               "qlearn.compression.train_compressed"),
    allowed=("qlearn.compression.compress", "qlearn.compression.sign_compress", "qlearn.compression.sign_decode",
             "qlearn.compression.topk_compress", "qlearn.compression.topk_decode"),
    wrong_answers={
        "no error feedback at all": _ef_wrong("never"),
        "error feedback even when error_feedback is False": _ef_wrong("always"),
        "one residual shared by all workers": _ef_wrong("shared"),
        "keeps p as the residual (forgets to subtract what was sent)": _ef_wrong("keeps p"),
        "residual sign flipped: delta - p": _ef_wrong("sign flipped"),
        "sums the workers' steps instead of averaging": _ef_wrong("sum"),
        "leaves out w_0": lambda *a: ef_sgd(*a)[1:],
    },
))


# --- 09.4 -------------------------------------------------------------------------------------

def compress_int8(grad, residual, seed: int):
    """The core of our int8 DDP hook (torch): ``(codes, scale, new_residual)``.

    With ``g = grad + residual`` (float32 tensors of one shape): ``scale = max(max|g| / 127, EPS)``,
    a 0-dim float32 tensor, with ``EPS = torch.finfo(torch.float32).eps``; then
    ``u = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed))``, drawn once;
    ``codes = clamp(floor(g / scale + u), -127, 127)`` as a ``torch.int8`` tensor of ``g``'s shape;
    and ``new_residual = g - codes * scale`` (float32), the part of ``g`` that was not sent.

    >>> import torch
    >>> codes, scale, res = compress_int8(torch.tensor([1.27, -0.5, 0.0]), torch.zeros(3), 0)
    >>> codes.tolist(), round(float(scale), 6)
    ([127, -50, 0], 0.01)
    """
    import torch

    g = grad + residual
    scale = torch.clamp(g.abs().max() / 127, min=EPS32)
    u = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed))
    codes = torch.clamp(torch.floor(g / scale + u), -127, 127).to(torch.int8)
    return codes, scale, g - codes.to(torch.float32) * scale


def _int8_variants(g, scale, u):
    """The codes by division and by reciprocal, in float32 and float64 (before the clamp)."""
    import torch

    g64, s64, u64 = g.double(), scale.double(), u.double()
    return [torch.floor(g / scale + u), torch.floor(g * (1 / scale) + u),
            torch.floor(g64 / s64 + u64), torch.floor(g64 * (1 / s64) + u64)]


def _int8_case(name: str, grad: np.ndarray, residual: np.ndarray, seed: int) -> Case:
    """A case whose codes do not depend on how ``g / scale + u`` is computed (see the module doc)."""
    import torch

    grad_t, res_t = torch.from_numpy(np.asarray(grad, f32).copy()), torch.from_numpy(np.asarray(residual, f32).copy())
    for _ in range(50):
        g = grad_t + res_t
        scale = torch.clamp(g.abs().max() / 127, min=EPS32)
        u = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed))
        variants = _int8_variants(g, scale, u)
        same = torch.stack([torch.clamp(v, -127, 127) == torch.clamp(variants[0], -127, 127)
                            for v in variants]).all(0)
        if bool(same.all()):
            return Case(name, (grad_t, res_t, seed))
        keep = same | (g.abs() == g.abs().max())  # never remove the largest value: it sets the scale
        grad_t, res_t = torch.where(keep, grad_t, 0.0), torch.where(keep, res_t, 0.0)
    raise RuntimeError(f"case {name!r}: codes depend on the arithmetic; pick another seed")  # pragma: no cover


def _int8_cases(rng: np.random.Generator) -> list[Case]:
    zeros = np.zeros
    return [
        _int8_case("three values, no residual: the largest maps to 127", np.array([1.27, -0.5, 0.0]), zeros(3), 0),
        _int8_case("a residual is added before quantizing", np.array([0.3, -0.2, 0.05, 0.0]),
                   np.array([0.01, 0.02, -0.03, 0.004]), 1),
        _int8_case("the largest magnitude is negative: it maps to -127", np.array([0.2, -2.54, 1.0, 0.7]),
                   zeros(4), 2),
        _int8_case("an all-zero gradient: scale = EPS, codes 0, residual 0", zeros(5), zeros(5), 3),
        _int8_case("a tiny gradient (1e-9): the scale stays above EPS", np.full(4, 1e-9), zeros(4), 4),
        _int8_case("a 2-D bucket (a weight matrix) keeps its shape", rng.normal(0, 0.01, (4, 6)), zeros((4, 6)), 5),
        _int8_case("many values at one level: stochastic rounding spreads them over two codes",
                   np.concatenate([[1.27], np.full(15, 0.0035)]), zeros(16), 6),
        _int8_case("every value on the top code: in float32, 127 + u rounds up to 128.0 when u > 1 - 2**-18 "
                   "(seed 3022 draws one such u): clamp before the int8 cast",
                   np.full(64, 127 / 64), zeros(64), 3022),
        _int8_case("random bucket with a random residual", rng.normal(0, 0.02, 64), rng.normal(0, 1e-4, 64),
                   int(rng.integers(10**6))),
        _int8_case("random bucket, no residual", rng.normal(0, 1.0, 40), zeros(40), int(rng.integers(10**6))),
    ]


def _compare_int8(got, expected) -> str | None:
    import torch

    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"expected a triple (codes, scale, new_residual), got {format_value(got)}"
    names = ("codes", "scale", "new_residual")
    for name, value in zip(names, got):
        if type(value) is not torch.Tensor:
            return f"{name} must be a torch.Tensor, got {type(value).__name__}"
    codes, scale, residual = got
    if codes.dtype != torch.int8:
        return f"codes must be a torch.int8 tensor (what the hook sends), got {codes.dtype}"
    if scale.dtype != torch.float32 or scale.numel() != 1:
        return f"scale must be one float32 value (a 0-dim tensor), got {scale.dtype} of shape {tuple(scale.shape)}"
    if residual.dtype != torch.float32:
        return f"new_residual must be float32, got {residual.dtype}"
    reason = compare_values(codes.detach().numpy(), expected[0].numpy(), strict_dtype=True)
    if reason is not None:
        return f"codes: {reason}"
    reason = compare_values(scale.detach().reshape(()).numpy()[()], expected[1].numpy()[()])
    if reason is not None:
        return f"scale: {reason}"
    reason = compare_values(residual.detach().numpy(), expected[2].numpy(), rtol=1e-6, atol=1e-9)
    return None if reason is None else f"new_residual: {reason}"


def _int8_wrong(mode: str):
    def wrong(grad, residual, seed):
        import torch

        g = grad if mode == "no residual" else grad + residual
        top = 128 if mode == "scale 128" else 127
        scale = g.abs().max() / top if mode == "no eps" else torch.clamp(g.abs().max() / top, min=EPS32)
        if mode == "global rng":
            u = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed + 1))
        else:
            u = torch.rand(g.shape, generator=torch.Generator().manual_seed(seed))
        x = g / scale
        if mode == "nearest":
            q = torch.round(x)
        elif mode == "trunc":
            q = torch.trunc(x + u)
        else:
            q = torch.floor(x + u)
        if mode == "wraps":
            codes = q.to(torch.int32).to(torch.int8)
        else:
            codes = torch.clamp(q, -127, 127).to(torch.int8)
        sent = codes.to(torch.float32) * scale
        new_residual = {"residual = sent": sent, "residual flipped": sent - g}.get(mode, g - sent)
        if mode == "codes as float":
            codes = codes.to(torch.float32)
        return codes, scale, new_residual
    return wrong


register(Exercise(
    id="09.4",
    title="The int8 hook's core: stochastic rounding, one scale, error feedback (torch)",
    points=4,
    reference=compress_int8,
    cases=_int8_cases,
    function="compress_int8",
    hint=("Add what the last step did not send, choose one scale so that the largest magnitude lands on the "
          "last code, round at random so that the average code is exact, and remember what you did not send.",
          "The uniform numbers come from a fresh generator seeded with the seed, drawn once for the whole "
          "shape; floor of (value over scale plus uniform) is the stochastic rounding. Clamp while the values "
          "are still floats, then convert to int8. The new residual is the input plus old residual minus the "
          "dequantized codes."),
    notebook=NOTEBOOK,
    seed=904,
    compare=_compare_int8,
    plain_result=False,
    forbidden=("qlearn.bridge.ddp_hooks.compress_int8", "qlearn.bridge.ddp_hooks.decompress_int8",
               "torch.quantize_per_tensor", "torch.fake_quantize_per_tensor_affine"),
    allowed=("torch",),
    wrong_answers={
        "rounds to nearest (deterministic, biased on average)": _int8_wrong("nearest"),
        "truncates toward zero instead of floor": _int8_wrong("trunc"),
        "forgets the residual": _int8_wrong("no residual"),
        "new residual flipped: sent - g": _int8_wrong("residual flipped"),
        "keeps what was sent as the residual": _int8_wrong("residual = sent"),
        "scale max|g| / 128": _int8_wrong("scale 128"),
        "no EPS floor (an all-zero bucket divides by 0)": _int8_wrong("no eps"),
        "draws from another generator": _int8_wrong("global rng"),
        "casts to int8 without clamping (wraps around)": _int8_wrong("wraps"),
        "returns float codes": _int8_wrong("codes as float"),
    },
))


# --- questions --------------------------------------------------------------------------------

register(Question(
    id="09.Q1", title="From 8 to 64 workers on the same 10 Gbit/s links", points=1, notebook=NOTEBOOK,
    variable="q1_answer",
    choices={"a": "about 8 times longer", "b": "about the same (a little longer)", "c": "about 8 times shorter"},
    answer="b",
    explanation=("Each worker sends 2 (p-1)/p of the gradient: 1.75x at p = 8, 1.97x at p = 64. The bandwidth "
                 "term hardly grows; only the latency term grows with p, and for a large gradient it is small."),
    hint=("Look at the share of the gradient one worker sends in a ring, as p grows.",
          "2 (p - 1) / p tends to 2: compare it at p = 8 and p = 64."),
))

register(Question(
    id="09.Q2", title="The mean squared error of stochastically rounding 0.3", points=1, notebook=NOTEBOOK,
    variable="q2_answer", choices=None, answer=0.21, atol=0.005,
    explanation=("0.3 rounds to 1 with probability 0.3 (error 0.7) and to 0 with probability 0.7 (error 0.3): "
                 "0.3 * 0.49 + 0.7 * 0.09 = 0.21 = f (1 - f). Rounding to nearest always gives 0: error 0.09, "
                 "smaller, but the same every time, so it never averages out."),
    hint=("Two outcomes, each with its probability and its squared error.",
          "Up with probability equal to the fractional part f; the answer is f times (1 - f)."),
))

register(Question(
    id="09.Q3", title="Top-1% sparsification without error feedback on Fashion-MNIST", points=1,
    notebook=NOTEBOOK, variable="q3_answer",
    choices={"a": "it reaches the same test loss as uncompressed SGD after the same steps",
             "b": "it ends clearly higher: the small coordinates are never sent, so they barely move",
             "c": "it diverges: the loss becomes infinite"},
    answer="b",
    explanation=("Each step sends only the largest 1% of each worker's gradient; the other 99% is dropped for "
                 "good, and most weights hardly move. Error feedback sends the dropped part later, once it "
                 "has grown, and recovers the uncompressed loss."),
    hint=("What happens to a coordinate whose gradient is never among the largest?",
          "Without memory, a dropped value is lost; the update is a descent direction, but a tiny one."),
))

register(Question(
    id="09.Q4", title="The int8 hook with 64 workers", points=1, notebook=NOTEBOOK, variable="q4_answer",
    choices={"a": "4 times fewer bytes than a float32 ring all-reduce, as with 2 workers",
             "b": "about the same bytes",
             "c": "about 8 times more bytes"},
    answer="c",
    explanation=("The int8 hook all-gathers: each worker sends its n-byte message to p - 1 others, (p - 1) n bytes, "
                 "while a ring all-reduce of 4n bytes sends 2 (p - 1) / p * 4n. The ratio is 8 / p: 4x fewer at "
                 "p = 2, equal at p = 8, 8x more at p = 64. Codes that cannot be summed do not scale."),
    hint=("The int8 codes cannot be summed in int8, so every worker needs every other worker's codes.",
          "Compare (p - 1) n with 2 (p - 1) / p times 4n."),
))
