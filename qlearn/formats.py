"""Floating-point number formats (fp32, fp16, bf16, fp8, or any ExMy) and rounding to them.

A binary floating-point format "ExMy" stores 1 sign bit ``s``, ``E`` exponent bits (the field ``e``,
read as an unsigned integer) and ``M`` mantissa bits (the field ``m``). With the exponent ``bias``
(``2**(E-1) - 1`` by default) a bit pattern means

    normal    (e >= 1):  value = (-1)^s * 2^(e - bias) * (1 + m / 2^M)
    subnormal (e == 0):  value = (-1)^s * 2^(1 - bias) * (m / 2^M)      (m == 0 gives +0 or -0)

Subnormals give *gradual underflow*: below the smallest normal ``2^(1 - bias)`` the spacing stays
``2^(1 - bias - M)`` all the way down to zero, instead of jumping straight to zero.

The top exponent field ``e = 2^E - 1`` is used in one of two ways:

- ``ieee=True`` (IEEE 754 style: fp32, fp16, bf16, fp8_e5m2): reserved for specials, ``m == 0`` is
  +-inf and ``m != 0`` is NaN. fp8_e5m2 reaches ``max = 2^15 * 1.75 = 57344``.
- ``ieee=False`` ("fn", finite, like fp8_e4m3fn): no infinities, and only the all-ones pattern
  ``S.1111.111`` is NaN, so the top binade holds ordinary numbers. fp8_e4m3fn reaches
  ``max = 2^8 * 1.75 = 448`` instead of the 240 an IEEE-style E4M3 would have.

Rounding (``round_to_format``) goes to the nearest representable value; a tie goes to the value
whose last mantissa bit is 0 ("ties to even"), exactly as PyTorch's ``tensor.to(dtype)`` does. The
input is first converted to float32, as everywhere in qlearn and as PyTorch does for float64
input, and the rounding itself is done exactly in float64.

Overflow, a value whose *rounded* magnitude exceeds ``fmt.max``, is an explicit choice:

==============  ==========================  ===========================  ============
``overflow``    finite overflow             +-inf input                  NaN input
==============  ==========================  ===========================  ============
``"saturate"``  +-max (FP8 training)        ValueError                   ValueError
``"ieee"``      as ``torch`` casts: +-inf   +-inf (ieee) / +-max (fn)    NaN
                (ieee=True), +-max (fn)
``"error"``     ValueError                  ValueError                   ValueError
==============  ==========================  ===========================  ============

``"ieee"`` reproduces PyTorch 2.14's casts bit for bit. Note what it does for fn formats: PyTorch
saturates float8_e4m3fn (465, 1e6 and inf all become 448). Other libraries (ml_dtypes, the OCP
FP8 "non-saturating" mode, older PyTorch releases) return NaN there instead: check which
convention your hardware or library follows.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from qlearn._validate import _describe, as_float32, check_int

__all__ = [
    "FORMATS",
    "OVERFLOW_MODES",
    "FloatFields",
    "FloatFormat",
    "decompose",
    "representable_values",
    "round_to_format",
]

OVERFLOW_MODES = ("saturate", "ieee", "error")

_F32_MAX = float(np.finfo(np.float32).max)


@dataclasses.dataclass(frozen=True)
class FloatFormat:
    """A binary floating-point format with ``exp_bits`` exponent and ``man_bits`` mantissa bits.

    ``value = (-1)^s * 2^(e - bias) * (1 + m / 2^M)`` for normals (``e >= 1``) and
    ``(-1)^s * 2^(1 - bias) * (m / 2^M)`` for subnormals (``e == 0``), with ``M = man_bits``.
    ``bias`` defaults to ``2**(exp_bits - 1) - 1``. ``ieee=True`` reserves the top exponent field
    for inf/NaN; ``ieee=False`` ("fn") has no inf and only the all-ones pattern is NaN. Every value
    must fit in float64, which bounds ``exp_bits <= 11``, ``man_bits <= 52`` and the bias;
    ``man_bits >= 1`` so that "ties to even" has a last mantissa bit to look at.

    The properties use the names of ``numpy.finfo`` / ``torch.finfo``:

    - ``max``: the largest finite value
    - ``smallest_normal`` (alias ``min_normal``): ``2^(1 - bias)``
    - ``smallest_subnormal`` (alias ``min_subnormal``): ``2^(1 - bias - M)``, the smallest positive
      value
    - ``eps``: ``2^-M``, the gap between 1 and the next larger value
    - ``bits``: ``1 + E + M``
    - ``emin``, ``emax``: the exponents of the lowest normal and the highest binade (``1 - bias``
      and ``max = 2^emax * (...)``)

    >>> e4m3 = FloatFormat(4, 3, ieee=False)
    >>> e4m3.max, e4m3.smallest_normal, e4m3.smallest_subnormal, e4m3.eps, e4m3.bits
    (448.0, 0.015625, 0.001953125, 0.125, 8)
    >>> FloatFormat(4, 3).max          # IEEE-style E4M3 gives up its top binade to inf/NaN
    240.0
    """

    exp_bits: int
    man_bits: int
    bias: int | None = None
    _: dataclasses.KW_ONLY
    ieee: bool = True
    name: str | None = dataclasses.field(default=None, compare=False)

    def __post_init__(self) -> None:
        exp_bits = check_int(self.exp_bits, "exp_bits")
        man_bits = check_int(self.man_bits, "man_bits")
        if not isinstance(self.ieee, (bool, np.bool_)):
            raise TypeError(f"ieee must be True or False, got {_describe(self.ieee)}")
        ieee = bool(self.ieee)
        if not 1 <= exp_bits <= 11:
            raise ValueError(f"exp_bits must be between 1 and 11 (float64 has 11), got {exp_bits}")
        if not 1 <= man_bits <= 52:
            raise ValueError(
                f"man_bits must be between 1 and 52 (float64 has 52), got {man_bits}; with no "
                "mantissa bit, ties to even (last mantissa bit 0) would mean nothing"
            )
        if ieee and exp_bits < 2:
            raise ValueError(
                "an ieee=True format needs exp_bits >= 2, since the top exponent is reserved for "
                f"inf/NaN, got exp_bits={exp_bits}; use ieee=False for a format without infinities"
            )
        bias = 2 ** (exp_bits - 1) - 1 if self.bias is None else check_int(self.bias, "bias")
        top = 2**exp_bits - 2 if ieee else 2**exp_bits - 1
        if 1 - bias - man_bits < -1074 or top - bias > 1023:
            raise ValueError(
                f"bias={bias} puts the values of an E{exp_bits}M{man_bits} format outside float64 "
                f"(smallest subnormal 2^{1 - bias - man_bits} must be >= 2^-1074 and the largest "
                f"exponent {top - bias} must be <= 1023)"
            )
        if self.name is not None and not isinstance(self.name, str):
            raise TypeError(f"name must be a string or None, got {_describe(self.name)}")
        name = self.name
        if name is None:
            name = f"e{exp_bits}m{man_bits}" + ("" if ieee else "fn")
            if bias != 2 ** (exp_bits - 1) - 1:
                name += f"_bias{bias}"
        for field, value in (("exp_bits", exp_bits), ("man_bits", man_bits), ("bias", bias),
                             ("ieee", ieee), ("name", name)):
            object.__setattr__(self, field, value)  # a frozen dataclass is filled in this way

    @property
    def bits(self) -> int:
        """Total width ``1 + exp_bits + man_bits``."""
        return 1 + self.exp_bits + self.man_bits

    @property
    def emin(self) -> int:
        """Exponent of the smallest normal binade: ``1 - bias``."""
        return 1 - self.bias

    @property
    def emax(self) -> int:
        """Exponent of the largest binade that holds a finite value: ``max = 2^emax * (...)``."""
        return (self._max_code >> self.man_bits) - self.bias

    @property
    def _max_code(self) -> int:
        """The bit pattern (without sign) of ``max``: just below the first inf/NaN pattern."""
        if self.ieee:
            return ((2**self.exp_bits - 1) << self.man_bits) - 1  # 0.11110.11 for e5m2
        return 2 ** (self.exp_bits + self.man_bits) - 2  # 0.1111.110 for e4m3fn

    @property
    def max(self) -> float:
        """The largest finite value."""
        return float(_decode(self._max_code, self))

    @property
    def smallest_normal(self) -> float:
        """The smallest positive normal value ``2^(1 - bias)``."""
        return float(2.0**self.emin)

    @property
    def smallest_subnormal(self) -> float:
        """The smallest positive value ``2^(1 - bias - man_bits)``."""
        return float(2.0 ** (self.emin - self.man_bits))

    @property
    def eps(self) -> float:
        """Machine epsilon ``2^-man_bits``: the gap between 1.0 and the next value."""
        return float(2.0**-self.man_bits)

    min_normal = smallest_normal
    min_subnormal = smallest_subnormal


FORMATS: dict[str, FloatFormat] = {
    "fp32": FloatFormat(8, 23, name="fp32"),
    "fp16": FloatFormat(5, 10, name="fp16"),
    "bf16": FloatFormat(8, 7, name="bf16"),
    "fp8_e4m3": FloatFormat(4, 3, ieee=False, name="fp8_e4m3"),  # = torch.float8_e4m3fn
    "fp8_e5m2": FloatFormat(5, 2, name="fp8_e5m2"),
}
_ALIASES = {"fp8_e4m3fn": "fp8_e4m3"}


def _as_format(fmt: object) -> FloatFormat:
    """Turn a format name (a key of ``FORMATS`` or an alias) or a ``FloatFormat`` into a FloatFormat."""
    if isinstance(fmt, FloatFormat):
        return fmt
    if isinstance(fmt, str):
        key = _ALIASES.get(fmt, fmt)
        if key in FORMATS:
            return FORMATS[key]
        names = ", ".join(repr(n) for n in [*FORMATS, *_ALIASES])
        raise ValueError(f"unknown format fmt={fmt!r}; expected one of {names} or a FloatFormat")
    raise TypeError(f"fmt must be a format name such as 'fp16' or a FloatFormat, got {_describe(fmt)}")


def _decode(code, fmt: FloatFormat) -> np.ndarray:
    """Value of the non-negative bit pattern(s) ``code`` (sign bit 0), by the module formulas."""
    code = np.asarray(code, dtype=np.int64)
    e = code >> fmt.man_bits  # exponent field
    m = (code & (2**fmt.man_bits - 1)).astype(np.float64)  # mantissa field
    normal = np.ldexp(m + 2.0**fmt.man_bits, e - fmt.bias - fmt.man_bits)  # 2^(e-bias) (1 + m/2^M)
    subnormal = np.ldexp(m, fmt.emin - fmt.man_bits)  # 2^(1-bias) (m / 2^M)
    return np.where(e == 0, subnormal, normal)


def _result_dtype(fmt: FloatFormat) -> type:
    """float32, unless fmt.max exceeds float32's: then a float32 can round to a value beyond it."""
    return np.float32 if fmt.max <= _F32_MAX else np.float64


def round_to_format(x, fmt: str | FloatFormat, *, overflow: str = "saturate") -> np.ndarray:
    """Round ``x`` to the nearest value of the format ``fmt``, ties to even.

    ``fmt`` is a name from ``FORMATS`` (or ``"fp8_e4m3fn"``) or a ``FloatFormat``. Step by step,
    in float64, which holds every float32 and every value of the format exactly:

        k   = floor(log2 |x|)           the binade of x: 2^k <= |x| < 2^(k+1)
        k   = max(k, 1 - bias)          below the smallest normal the spacing is the subnormal one
        ulp = 2^(k - M)                 the gap between neighbouring values in that binade
        r   = rint(|x| / ulp) * ulp     rint: a tie goes to the even multiple (last mantissa bit 0)
        out = sign(x) * r               (r may reach 2^(k+1), the first value of the next binade)

    ``overflow`` says what happens when ``|round(x)| > fmt.max``: ``"saturate"`` (default) gives
    ``+-fmt.max``; ``"ieee"`` does what PyTorch's cast does (+-inf for ieee formats, +-max for fn
    formats, NaN and inf pass through); ``"error"`` raises ``ValueError``. NaN or inf in ``x`` is
    an error except with ``overflow="ieee"``. Signs are kept: tiny negatives become ``-0.0``.

    The result is float32 (float64 only for formats whose max exceeds float32's) and equals
    ``torch.from_numpy(x).to(dtype).float()`` for float16, bfloat16, float8_e4m3fn, float8_e5m2.

    >>> round_to_format([1 + 2**-11, 1 + 3 * 2**-11, 70000.0], "fp16").tolist()   # two ties to even
    [1.0, 1.001953125, 65504.0]
    >>> round_to_format([0.3, -1e-5, 465.0, 2**-10], "fp8_e4m3").tolist()
    [0.3125, -0.0, 448.0, 0.0]
    >>> round_to_format([62000.0], "fp8_e5m2", overflow="ieee").tolist()
    [inf]
    """
    fmt = _as_format(fmt)
    if not isinstance(overflow, str) or overflow not in OVERFLOW_MODES:
        raise ValueError(f"overflow must be one of {', '.join(map(repr, OVERFLOW_MODES))}; got {overflow!r}")
    x = as_float32(x, "x", finite=False)
    finite = np.isfinite(x)
    if overflow != "ieee" and not finite.all():
        bad = x[~finite]
        raise ValueError(
            f"x contains {bad.size} non-finite value(s) (NaN or inf), the first {bad[0]!r}; replace "
            "them first, or pass overflow='ieee' to let them through as PyTorch's cast does"
        )
    a = np.where(finite, np.abs(x), 0).astype(np.float64)  # |x|, exact in float64
    _, k = np.frexp(a)  # a = f * 2^k with 0.5 <= f < 1: frexp's k is floor(log2 a) + 1, exactly
    k = np.maximum(k - 1, fmt.emin)
    ulp_exp = k - fmt.man_bits  # ulp = 2^ulp_exp; ldexp(a, n) = a * 2^n is exact
    r = np.ldexp(np.rint(np.ldexp(a, -ulp_exp)), ulp_exp)  # rint(|x| / ulp) * ulp
    over = r > fmt.max
    if overflow == "error" and over.any():
        raise ValueError(
            f"x has {int(over.sum())} value(s) whose rounded magnitude exceeds {fmt.name}.max = "
            f"{fmt.max!r}, the largest |x| being {float(a[over].max())!r}; scale x down first "
            "or pass overflow='saturate' to clamp them"
        )
    if overflow == "ieee":  # inf and NaN pass through; fn formats have no inf and saturate
        r = np.where(over | np.isinf(x), np.inf if fmt.ieee else fmt.max, r)
        r = np.where(np.isnan(x), np.nan, r)
    else:
        r = np.where(over, fmt.max, r)
    return np.copysign(r, x).astype(_result_dtype(fmt))


class FloatFields(NamedTuple):
    """The bit fields of one value in a format, and what they decode to."""

    sign: int  # s: 0 for +, 1 for -
    exponent: int  # e: the biased exponent field; 0 marks a subnormal (or zero)
    mantissa: int  # m: the mantissa (fraction) field as an integer in [0, 2^M)
    code: int  # the whole pattern s|e|m as an unsigned integer (torch: .view(torch.uint8))
    bits: str  # the pattern as "s eeee mmm"
    value: float  # the value it encodes (x after rounding to the format)


def decompose(value, fmt: str | FloatFormat, *, overflow: str = "saturate") -> FloatFields:
    """Round the scalar ``value`` to ``fmt`` and split it into sign, exponent and mantissa fields.

    Read the result with ``(-1)^sign * 2^(exponent - bias) * (1 + mantissa / 2^M)`` (normal,
    ``exponent >= 1``) or ``(-1)^sign * 2^(1 - bias) * (mantissa / 2^M)`` (``exponent == 0``).
    ``overflow`` is passed on to ``round_to_format``.

    >>> decompose(-1.75, "fp8_e4m3")    # -1 * 2^(7 - 7) * (1 + 6/8)
    FloatFields(sign=1, exponent=7, mantissa=6, code=190, bits='1 0111 110', value=-1.75)
    >>> decompose(2**-8, "fp8_e4m3").bits   # subnormal: 2^(1 - 7) * (2/8)
    '0 0000 010'
    """
    value = as_float32(value, "value", finite=False)
    if value.ndim != 0:
        raise TypeError(f"value must be a single number, got an array of shape {value.shape}")
    r = float(round_to_format(value, fmt, overflow=overflow))
    fmt = _as_format(fmt)
    sign = int(np.signbit(r))
    a, top = abs(r), 2**fmt.exp_bits - 1
    if np.isnan(a):  # only reachable with overflow="ieee"
        exponent, mantissa = top, (2**fmt.man_bits - 1 if not fmt.ieee else 2 ** (fmt.man_bits - 1))
    elif np.isinf(a):
        exponent, mantissa = top, 0
    elif a < fmt.smallest_normal:
        exponent, mantissa = 0, int(a / fmt.smallest_subnormal)
    else:
        k = int(np.frexp(a)[1]) - 1  # a = 2^k * (1 + mantissa / 2^M)
        exponent, mantissa = k + fmt.bias, int((a / 2.0**k - 1) * 2**fmt.man_bits)
    code = (sign << (fmt.exp_bits + fmt.man_bits)) | (exponent << fmt.man_bits) | mantissa
    bits = f"{sign} {exponent:0{fmt.exp_bits}b} {mantissa:0{fmt.man_bits}b}"
    return FloatFields(sign, exponent, mantissa, code, bits, r)


def representable_values(fmt: str | FloatFormat) -> np.ndarray:
    """All finite non-negative values of a format of at most 16 bits, sorted (for plots).

    Bit patterns ``0 .. 2^(E+M) - 1`` with sign 0 are decoded in order, which is increasing order;
    the inf/NaN patterns are left out. ``+0.0`` is included once (``-0.0`` is not).

    >>> representable_values(FloatFormat(2, 1, ieee=False)).tolist()   # an fp4 E2M1 with one NaN
    [0.0, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0]
    >>> len(representable_values("fp8_e4m3")), len(representable_values("fp16"))
    (127, 31744)
    """
    fmt = _as_format(fmt)
    if fmt.bits > 16:
        raise ValueError(
            f"representable_values lists formats of at most 16 bits; {fmt.name} has {fmt.bits} "
            f"(2^{fmt.bits - 1} values)"
        )
    codes = np.arange(fmt._max_code + 1)  # every pattern up to max: the specials all lie above it
    return _decode(codes, fmt).astype(_result_dtype(fmt))
