"""One quantization experiment on a tensor, as the plots and widgets show it (numpy only).

``quantize_tensor`` picks the code range, chooses ``(scale, zero_point)`` from a clipping range
(the min-max of ``x`` by default), fake-quantizes ``x`` and measures the result:

    codes:      symmetric -> signed   [-2^(b-1), 2^(b-1) - 1]   (like torch.qint8, zero_point 0)
                asymmetric -> unsigned [0, 2^b - 1]              (like torch.quint8)
    grid:       the real values (q - zero_point) * scale of the codes q = qmin .. qmax
    clipped:    fraction of x outside [grid_min, grid_max]
    SQNR:       qlearn.metrics.sqnr_db(x, x_hat)
"""

from __future__ import annotations

import dataclasses

import numpy as np

from qlearn._validate import as_float32, check_bits
from qlearn.affine import dequantize, fake_quantize
from qlearn.metrics import sqnr_db
from qlearn.qparams import calc_qparams, qrange

__all__ = ["QuantizationResult", "check_clip", "quantize_tensor"]


@dataclasses.dataclass(frozen=True)
class QuantizationResult:
    """What ``quantize_tensor`` measured. ``x_hat`` is the fake-quantized ``x`` (float32, same shape)."""

    x_hat: np.ndarray
    bits: int
    symmetric: bool
    rounding: str
    scale: float
    zero_point: int
    qmin: int
    qmax: int
    grid_min: float  # (qmin - zero_point) * scale: the most negative representable value
    grid_max: float  # (qmax - zero_point) * scale: the largest representable value
    clipped: float  # fraction of x outside [grid_min, grid_max]
    sqnr_db: float

    @property
    def levels(self) -> int:
        """Number of quantization levels ``qmax - qmin + 1`` (``2**bits``)."""
        return self.qmax - self.qmin + 1


def check_clip(clip: object) -> tuple[float, float] | None:
    """Return ``clip`` as ``(lo, hi)`` floats (or ``None``), checking ``lo <= hi`` and finiteness."""
    if clip is None:
        return None
    try:
        lo, hi = (float(v) for v in clip)  # type: ignore[union-attr]
    except (TypeError, ValueError):
        raise TypeError(f"clip must be None (min-max of x) or a pair (lo, hi) of numbers, got {clip!r}") from None
    if not (np.isfinite(lo) and np.isfinite(hi)):
        raise ValueError(f"clip must hold finite numbers, got {clip!r}")
    if lo > hi:
        raise ValueError(f"clip = (lo, hi) needs lo <= hi, got {clip!r}")
    return lo, hi


def quantize_tensor(x, bits: int = 8, symmetric: bool = False, clip=None, rounding: str = "half_even",
                    rng: np.random.Generator | None = None) -> QuantizationResult:
    """Fake-quantize ``x`` per tensor with ``bits`` bits and measure the damage.

    ``clip=(lo, hi)`` is the range handed to ``calc_qparams`` (which widens it to contain 0);
    ``None`` uses ``(x.min(), x.max())``. Symmetric quantization uses signed codes, asymmetric
    unsigned codes, as torch's ``qint8`` / ``quint8`` defaults do.

    >>> r = quantize_tensor([-1.0, 0.0, 0.5, 2.0], bits=2)   # codes 0..3, scale 1, grid -1, 0, 1, 2
    >>> r.x_hat.tolist(), r.scale, r.zero_point, r.clipped     # 0.5 is a tie: half-to-even gives 0
    ([-1.0, 0.0, 0.0, 2.0], 1.0, 1, 0.0)
    >>> quantize_tensor([-1.0, 0.0, 0.5, 2.0], bits=2, clip=(-1.0, 0.5)).clipped  # 2.0 > grid max 0.5
    0.25
    """
    bits = check_bits(bits)
    if not isinstance(symmetric, (bool, np.bool_)):
        raise TypeError(f"symmetric must be True or False, got {symmetric!r}")
    x = as_float32(x, "x")
    if x.size == 0:
        raise ValueError("x is empty (shape {}): there is nothing to quantize".format(x.shape))
    lohi = check_clip(clip)
    lo, hi = (float(x.min()), float(x.max())) if lohi is None else lohi
    qmin, qmax = qrange(bits, signed=bool(symmetric))
    scale, zero_point = calc_qparams(lo, hi, qmin, qmax, symmetric=bool(symmetric))
    x_hat = fake_quantize(x, scale, zero_point, qmin, qmax, rounding=rounding, rng=rng)
    grid_min, grid_max = dequantize(np.array([qmin, qmax], dtype=np.int64), scale, zero_point).tolist()
    outside = np.count_nonzero(x < np.float32(grid_min)) + np.count_nonzero(x > np.float32(grid_max))
    return QuantizationResult(
        x_hat=x_hat, bits=bits, symmetric=bool(symmetric), rounding=rounding,
        scale=float(scale), zero_point=int(zero_point), qmin=qmin, qmax=qmax,
        grid_min=grid_min, grid_max=grid_max, clipped=float(outside / x.size), sqnr_db=sqnr_db(x, x_hat),
    )
