"""Gradient compressors for data-parallel training, in numpy (used in lab 09, sections 3 to 6).

Each compressor turns a gradient ``g`` (a float array of ``d`` values) into what a worker sends,
and back into the estimate ``g_hat`` that the receiver uses. Randomness always comes through an
explicit ``rng: np.random.Generator``.

==============  ==========================================================  =========  ===============
compressor      what is sent                                                unbiased?  bits sent
==============  ==========================================================  =========  ===============
stochastic      ``floor(x / scale + u)``, ``u ~ U[0, 1)``: int8 codes        yes        ``8 d + 32``
qsgd            ``||g||_2`` and ``sign(g_i) * level_i``, levels ``0..s``     yes        ``32 + d (1 + ceil(log2(s + 1)))``
terngrad        ``max |g|`` and a ternary code ``{-1, 0, 1}`` per value      yes        ``32 + 2 d``
sign            ``mean |g|`` and one sign bit per value (signSGD, scaled)    no         ``32 + d``
topk            the ``k`` largest ``|g_i|``: their indices and values        no         ``k (32 + 32)``
==============  ==========================================================  =========  ===============

Biased compressors (sign, top-k) need **error feedback** (:func:`ef_sgd`, :class:`ErrorFeedback`):
what a step did not send is added to the next step's gradient, so nothing is lost, only delayed.
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "COMPRESSORS",
    "ErrorFeedback",
    "compress",
    "compressed_bits",
    "ef_sgd",
    "qsgd",
    "qsgd_decode",
    "qsgd_variance_bound",
    "sign_compress",
    "sign_decode",
    "stochastic_round",
    "terngrad",
    "terngrad_decode",
    "train_compressed",
    "topk_compress",
    "topk_decode",
]


def _as_vector(g: object, name: str = "g") -> np.ndarray:
    arr = np.asarray(g)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)):
        raise TypeError(f"{name} must be an array of real numbers, got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.size and not np.isfinite(arr).all():
        raise ValueError(f"{name} holds {int((~np.isfinite(arr)).sum())} NaN or infinite value(s); "
                         f"a gradient to compress must be finite")
    return arr


def _check_rng(rng: object) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(f"rng must be a np.random.Generator (np.random.default_rng(seed)), got {type(rng).__name__}")
    return rng


# --- stochastic rounding ----------------------------------------------------------------------

def stochastic_round(x: object, rng: np.random.Generator) -> np.ndarray:
    """Round each value down or up at random: ``floor(x + u)`` with ``u = rng.random(x.shape)``.

    ``x`` rounds up with probability ``x - floor(x)``, so ``E[result] = x``: unbiased, unlike
    ``np.rint``, whose error is the same every time. The variance of one value is
    ``f (1 - f)`` with ``f = x - floor(x)``, at most 1/4.

    >>> stochastic_round(np.array([0.0, 1.0, -2.0]), np.random.default_rng(0))
    array([ 0.,  1., -2.])
    >>> float(stochastic_round(np.full(100_000, 0.25), np.random.default_rng(0)).mean())
    0.24916
    """
    x = _as_vector(x, "x")
    return np.floor(x + _check_rng(rng).random(x.shape))


# --- QSGD -------------------------------------------------------------------------------------

def qsgd(g: object, s: int, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """QSGD (Alistarh et al., 2017) with ``s`` levels: returns ``(norm, codes)``.

    With ``norm = ||g||_2``, ``r_i = |g_i| / norm * s`` and ``u = rng.random(g.shape)`` (drawn once):
    ``level_i = floor(r_i + u_i)`` (stochastic rounding) and ``codes_i = sign(g_i) * level_i``, an
    integer in ``[-s, s]``. Decoding gives ``norm * codes / s`` (:func:`qsgd_decode`), unbiased.
    A zero gradient gives ``(0.0, zeros)``.

    >>> qsgd(np.array([3.0, -4.0]), 1, np.random.default_rng(0))
    (5.0, array([ 1, -1]))
    """
    g = _as_vector(g)
    if isinstance(s, bool) or not isinstance(s, (int, np.integer)) or s < 1:
        raise ValueError(f"s (the number of levels) must be an int >= 1, got {s!r}")
    u = _check_rng(rng).random(g.shape)
    norm = float(np.sqrt(np.sum(g * g)))
    if norm == 0.0:
        return 0.0, np.zeros(g.shape, np.int64)
    level = np.floor(np.abs(g) / norm * s + u)
    return norm, (np.sign(g) * level).astype(np.int64)


def qsgd_decode(norm: float, codes: np.ndarray, s: int) -> np.ndarray:
    """The gradient estimate of QSGD: ``norm * codes / s``.

    >>> qsgd_decode(5.0, np.array([1, -1]), 1)
    array([ 5., -5.])
    """
    return norm * np.asarray(codes, np.float64) / s


def qsgd_variance_bound(g: object, s: int) -> float:
    """Alistarh et al.'s bound on QSGD's total variance: ``E||Q(g) - g||^2 <= min(d / s^2, sqrt(d) / s) ||g||^2``.

    >>> qsgd_variance_bound(np.ones(4), 1)
    8.0
    """
    g = _as_vector(g)
    d = g.size
    return float(min(d / s**2, math.sqrt(d) / s) * np.sum(g * g))


# --- TernGrad ---------------------------------------------------------------------------------

def terngrad(g: object, rng: np.random.Generator) -> tuple[float, np.ndarray]:
    """TernGrad (Wen et al., 2017): ``(scale, codes)`` with ``scale = max |g|`` and codes in ``{-1, 0, 1}``.

    ``codes_i = sign(g_i) * floor(|g_i| / scale + u_i)``, ``u = rng.random(g.shape)``: the decoded
    ``scale * codes`` is unbiased. (QSGD with ``s = 1`` and the max-norm instead of the 2-norm.)

    >>> terngrad(np.array([0.5, -1.0, 0.0]), np.random.default_rng(1))
    (1.0, array([ 1, -1,  0]))
    """
    g = _as_vector(g)
    u = _check_rng(rng).random(g.shape)
    scale = float(np.max(np.abs(g))) if g.size else 0.0
    if scale == 0.0:
        return 0.0, np.zeros(g.shape, np.int64)
    return scale, (np.sign(g) * np.floor(np.abs(g) / scale + u)).astype(np.int64)


def terngrad_decode(scale: float, codes: np.ndarray) -> np.ndarray:
    """``scale * codes``.

    >>> terngrad_decode(2.0, np.array([1, 0, -1]))
    array([ 2.,  0., -2.])
    """
    return scale * np.asarray(codes, np.float64)


# --- sign compression -------------------------------------------------------------------------

def sign_compress(g: object) -> tuple[float, np.ndarray]:
    """Scaled sign (signSGD with a magnitude): ``(mean |g|, signs)``, signs in ``{-1, +1}`` (0 counts as +1).

    One bit per value plus one float. Biased: ``E[mean|g| * sign(g)] != g``.

    >>> sign_compress(np.array([0.5, -1.5, 0.0, 2.0]))
    (1.0, array([ 1, -1,  1,  1], dtype=int8))
    """
    g = _as_vector(g)
    scale = float(np.mean(np.abs(g))) if g.size else 0.0
    return scale, np.where(g < 0, -1, 1).astype(np.int8)


def sign_decode(scale: float, signs: np.ndarray) -> np.ndarray:
    """``scale * signs``.

    >>> sign_decode(0.5, np.array([1, -1], np.int8))
    array([ 0.5, -0.5])
    """
    return scale * np.asarray(signs, np.float64)


# --- top-k ------------------------------------------------------------------------------------

def topk_compress(g: object, k: int) -> tuple[np.ndarray, np.ndarray]:
    """The ``k`` entries of largest magnitude: ``(indices, values)``, indices in increasing order.

    The kept set is exactly lab 06's magnitude mask with ``d - k`` entries pruned:
    ``np.flatnonzero(qlearn.pruning.magnitude_mask(g, d - k))`` (ties: the lower index is dropped first).

    >>> topk_compress(np.array([0.1, -3.0, 0.5, 2.0]), 2)
    (array([1, 3]), array([-3.,  2.]))
    """
    g = _as_vector(g).ravel()
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or not 0 <= k <= g.size:
        raise ValueError(f"k must be an int in [0, {g.size}] (the number of values kept), got {k!r}")
    order = np.argsort(np.abs(g), kind="stable")
    indices = np.sort(order[g.size - k:])
    return indices, g[indices]


def topk_decode(indices: np.ndarray, values: np.ndarray, size: int) -> np.ndarray:
    """A dense vector of ``size`` zeros with ``values`` at ``indices``.

    >>> topk_decode(np.array([1, 3]), np.array([-3.0, 2.0]), 4)
    array([ 0., -3.,  0.,  2.])
    """
    out = np.zeros(size, np.float64)
    out[np.asarray(indices, np.int64)] = values
    return out


# --- one interface for all of them ------------------------------------------------------------

#: name -> (unbiased?, description)
COMPRESSORS: dict[str, tuple[bool, str]] = {
    "none": (True, "float32, uncompressed"),
    "stochastic8": (True, "int8, stochastic rounding, one scale"),
    "qsgd": (True, "QSGD, s levels"),
    "terngrad": (True, "TernGrad, ternary"),
    "sign": (False, "scaled sign, 1 bit"),
    "topk": (False, "top-k values and indices"),
}


def compressed_bits(name: str, d: int, *, s: int = 4, k: int | None = None) -> int:
    """Bits one worker sends for a gradient of ``d`` values with compressor ``name`` (see the table above).

    >>> [compressed_bits(n, 1000, k=10) for n in ("none", "stochastic8", "qsgd", "terngrad", "sign", "topk")]
    [32000, 8032, 4032, 2032, 1032, 640]
    """
    if name == "none":
        return 32 * d
    if name == "stochastic8":
        return 8 * d + 32
    if name == "qsgd":
        return 32 + d * (1 + math.ceil(math.log2(s + 1)))
    if name == "terngrad":
        return 32 + 2 * d
    if name == "sign":
        return 32 + d
    if name == "topk":
        if k is None:
            raise ValueError("compressed_bits('topk', d) needs k, the number of values kept")
        return 64 * k
    raise ValueError(f"unknown compressor {name!r}; choose one of {sorted(COMPRESSORS)}")


def compress(name: str, g: object, rng: np.random.Generator | None = None, *, s: int = 4,
             k: int | None = None) -> np.ndarray:
    """Compress ``g`` with compressor ``name`` and decode it again: the estimate the receiver uses.

    >>> compress("sign", np.array([0.5, -1.5]))
    array([ 1., -1.])
    >>> compress("topk", np.array([0.5, -1.5, 0.1]), k=1)
    array([ 0. , -1.5,  0. ])
    """
    g = _as_vector(g)
    if name == "none":
        return g.astype(np.float32).astype(np.float64)
    if name == "stochastic8":
        m = float(np.max(np.abs(g))) if g.size else 0.0
        scale = m / 127 if m > 0 else 1.0
        return np.clip(stochastic_round(g / scale, rng), -127, 127) * scale
    if name == "qsgd":
        norm, codes = qsgd(g, s, rng)
        return qsgd_decode(norm, codes, s)
    if name == "terngrad":
        return terngrad_decode(*terngrad(g, rng))
    if name == "sign":
        return sign_decode(*sign_compress(g)).reshape(g.shape)
    if name == "topk":
        if k is None:
            raise ValueError("compress('topk', g) needs k, the number of values kept")
        return topk_decode(*topk_compress(g, k), g.size).reshape(g.shape)
    raise ValueError(f"unknown compressor {name!r}; choose one of {sorted(COMPRESSORS)}")


# --- error feedback ---------------------------------------------------------------------------

class ErrorFeedback:
    """Error feedback for one worker: ``p = g + e;  sent = C(p);  e = p - sent``.

    ``compressor(p) -> decoded estimate``. The residual ``e`` starts at zero; what a step does not
    send is added to the next step's input.

    >>> ef = ErrorFeedback(lambda p: np.where(np.abs(p) >= 1, p, 0.0))   # sends only |p| >= 1
    >>> ef(np.array([0.6, 2.0])), ef(np.array([0.6, 2.0]))
    (array([0., 2.]), array([1.2, 2. ]))
    """

    def __init__(self, compressor: Callable[[np.ndarray], np.ndarray]) -> None:
        self.compressor = compressor
        self.residual: np.ndarray | None = None

    def __call__(self, g: np.ndarray) -> np.ndarray:
        p = np.asarray(g, np.float64) + (0.0 if self.residual is None else self.residual)
        sent = np.asarray(self.compressor(p), np.float64)
        self.residual = p - sent
        return sent


def ef_sgd(grad_fn: Callable[[np.ndarray], np.ndarray], w0: np.ndarray, lr: float, steps: int,
           compressor: Callable[[np.ndarray], np.ndarray], error_feedback: bool = True) -> np.ndarray:
    """SGD with a compressed step, with or without error feedback (EF-SGD, Karimireddy et al., 2019).

    Returns the ``steps + 1`` iterates ``w_0 .. w_T`` as rows of a float64 array. With error
    feedback, starting from ``e_0 = 0``::

        p_t = lr * grad_fn(w_t) + e_t;   delta_t = compressor(p_t);   w_{t+1} = w_t - delta_t;   e_{t+1} = p_t - delta_t

    Without it, ``delta_t = compressor(lr * grad_fn(w_t))`` and nothing is remembered.

    >>> sign = lambda p: np.mean(np.abs(p)) * np.sign(p)
    >>> ef_sgd(lambda w: w, np.array([1.0, -0.5]), 0.5, 2, sign)[-1]
    array([ 0.375, -0.375])
    """
    w = np.array(w0, dtype=np.float64)
    e = np.zeros_like(w)
    path = [w.copy()]
    for _ in range(steps):
        p = lr * np.asarray(grad_fn(w), np.float64)
        if error_feedback:
            p = p + e
        delta = np.asarray(compressor(p), np.float64)
        if error_feedback:
            e = p - delta
        w = w - delta
        path.append(w.copy())
    return np.array(path)


# --- the experiment: logistic regression on Fashion-MNIST with compressed gradients -----------

def _softmax_loss_grad(W: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray):
    """Mean cross-entropy of ``softmax(x @ W + b)`` and its gradients with respect to ``W`` and ``b``."""
    z = x @ W + b
    z = z - z.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    n = len(y)
    loss = float(-np.mean(np.log(p[np.arange(n), y] + 1e-12)))
    p[np.arange(n), y] -= 1.0
    return loss, x.T @ p / n, p.mean(axis=0)


def train_compressed(x: np.ndarray, y: np.ndarray, x_test: np.ndarray, y_test: np.ndarray, name: str, *,
                     error_feedback: bool = False, workers: int = 4, steps: int = 300, batch_size: int = 32,
                     lr: float = 0.5, s: int = 4, k_fraction: float = 0.01, eval_every: int = 10,
                     seed: int = 0) -> dict:
    """Data-parallel logistic regression, simulated: each of ``workers`` sends a compressed gradient.

    Every step, each worker computes the gradient of its own batch of ``batch_size`` images (its own
    shard of ``x``), compresses it with :func:`compress` (``name``; with ``error_feedback`` it keeps
    its own residual, :class:`ErrorFeedback`), and the average of the decoded gradients updates the
    weights: ``w -= lr * mean_i(g_hat_i)``. Returns the test loss every ``eval_every`` steps, the
    bits each worker sent so far at those steps, and the final test accuracy:
    ``{"steps", "loss", "bits", "accuracy", "d"}``. Used in lab 09, section 6, and bench/bench_gradients.py.
    """
    x = np.asarray(x, np.float64)
    x_test = np.asarray(x_test, np.float64)
    features, classes = x.shape[1], 10
    d = features * classes + classes
    k = max(1, round(k_fraction * d))
    rng = np.random.default_rng(seed)
    shards = [np.arange(i, len(x), workers) for i in range(workers)]
    orders = [rng.permutation(shard) for shard in shards]
    W, b = np.zeros((features, classes)), np.zeros(classes)

    def compressor(g):
        return compress(name, g, rng, s=s, k=k)

    feedback = [ErrorFeedback(compressor) for _ in range(workers)]
    bits_per_step = compressed_bits(name, d, s=s, k=k)
    log = {"steps": [], "loss": [], "bits": [], "d": d}

    def evaluate(step):
        log["steps"].append(step)
        log["loss"].append(_softmax_loss_grad(W, b, x_test, y_test)[0])
        log["bits"].append(step * bits_per_step)

    evaluate(0)
    for step in range(steps):
        total = np.zeros(d)
        for i in range(workers):
            order = orders[i]
            start = (step * batch_size) % len(order)
            batch = order[start:start + batch_size]
            _, gW, gb = _softmax_loss_grad(W, b, x[batch], y[batch])
            g = np.concatenate([gW.ravel(), gb])
            total += feedback[i](g) if error_feedback else compressor(g)
        step_vector = lr * total / workers
        W -= step_vector[:-classes].reshape(features, classes)
        b -= step_vector[-classes:]
        if (step + 1) % eval_every == 0:
            evaluate(step + 1)
    log["accuracy"] = float(np.mean(np.argmax(x_test @ W + b, axis=1) == y_test))
    return log
