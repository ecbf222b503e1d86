"""Rounding real values to integers: the one lossy step of quantization, made an explicit choice.

====================  ===================================  ==================================
``rounding``          rule                                 2.5, -2.5, 3.5 become
====================  ===================================  ==================================
``"half_even"``       nearest, ties to the even integer    2, -2, 4   (torch.round, np.rint)
``"half_away"``       nearest, ties away from zero         3, -3, 4   (C ``round``, school)
``"floor"``           towards -inf                         2, -3, 3
``"ceil"``            towards +inf                         3, -2, 4
``"stochastic"``      up with probability ``x - floor(x)`` random; unbiased: E[r(x)] = x
====================  ===================================  ==================================

PyTorch's quantization kernels use ``nearbyint`` in the default floating-point mode, which is
half-to-even. Half-away-from-zero is what many people learn at school; on data with many exact
ties (for example integers divided by 2) it adds a systematic bias.
"""

from __future__ import annotations

import numpy as np

__all__ = ["ROUNDING_MODES", "round_to_int", "check_rounding"]

ROUNDING_MODES = ("half_even", "half_away", "floor", "ceil", "stochastic")


def check_rounding(rounding: object, rng: object) -> None:
    """Raise a clear error for an unknown ``rounding`` mode or a missing/wrong ``rng``."""
    if rounding not in ROUNDING_MODES:
        raise ValueError(f"rounding must be one of {', '.join(map(repr, ROUNDING_MODES))}; got {rounding!r}")
    if rounding == "stochastic" and not isinstance(rng, np.random.Generator):
        raise TypeError(
            "rounding='stochastic' needs an explicit random generator, for example "
            f"rng=np.random.default_rng(0); got rng={rng!r}"
        )


def round_to_int(v, rounding: str = "half_even", rng: np.random.Generator | None = None,
                 out: np.ndarray | None = None) -> np.ndarray:
    """Round the float array ``v`` to integer values (kept in ``v``'s float dtype).

    ``stochastic``: ``r(v) = floor(v) + [u < v - floor(v)]`` with ``u ~ U[0, 1)`` drawn from ``rng``,
    so ``E[r(v)] = v``: the rounding error averages out instead of piling up.

    >>> v = np.array([0.5, 1.5, 2.5, -2.5, 2.4], dtype=np.float32)
    >>> round_to_int(v).tolist(), round_to_int(v, "half_away").tolist()
    ([0.0, 2.0, 2.0, -2.0, 2.0], [1.0, 2.0, 3.0, -3.0, 2.0])
    """
    check_rounding(rounding, rng)
    v = np.asarray(v)
    if not np.issubdtype(v.dtype, np.floating):
        raise TypeError(f"v must be a float array, got dtype {v.dtype}")
    if rounding == "half_even":
        return np.rint(v, out=out)
    if rounding == "floor":
        return np.floor(v, out=out)
    if rounding == "ceil":
        return np.ceil(v, out=out)
    if rounding == "half_away":
        # trunc, then step away from zero where the dropped fraction is at least one half. This is
        # exact; the popular floor(|v| + 0.5) is not (0.49999997 + 0.5 rounds up to 1.0 in float32).
        t = np.trunc(v)
        r = np.where(np.abs(v - t) >= 0.5, t + np.sign(v), t).astype(v.dtype, copy=False)
    else:  # stochastic
        f = np.floor(v)
        u = rng.random(v.shape, dtype=np.float64)
        r = (f + (u < (v - f))).astype(v.dtype, copy=False)
    if out is None:
        return r
    out[...] = r
    return out
