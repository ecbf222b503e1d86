"""Lab 03 (``03_granularity``): one scale per tensor, per channel or per group, and sub-byte storage.

    03.1  per_channel_qparams(w, axis, qmin, qmax, symmetric)      one (scale, zero_point) per slice along axis
    03.2  quantize_groups(w, group_size, qmin, qmax, symmetric)    (q, scale, zero_point), groups along each row
    03.3  pack_int4(q)                                             two signed 4-bit codes per byte, low nibble first
    03.4  unpack_int4(packed, count)                               the inverse, signs restored
    03.5  compress_groups(w, bits, group_size)                     (packed bytes, scales): a layer stored
                                                                   in symmetric 2/4/8-bit groups, end to end

**Division or reciprocal?** 03.2 computes codes. PyTorch's kernels (and ``qlearn.quantize``) compute
``rint(w * float32(1 / scale))``, the textbook ``rint(w / scale)``; the two differ only where
``w / scale`` lies within one float32 rounding of a tie ``k + 1/2``. Every input of 03.2 is built
so that both (in float32 and in float64) give the same codes: a row on which they disagree is
drawn again. 03.1 asks for the parameters only, computed with ``qlearn.calc_qparams`` (the float32
formula of PyTorch's observers that lab 02 built), so no such question arises. No wrong answer is
accepted for it: ``tests/test_lab03.py`` proves that every wrong answer below is rejected.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from qlearn.group import quantize_per_group
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register
from qlearn.packing import pack, unpack
from qlearn.qparams import calc_qparams

__all__ = ["compress_groups", "pack_int4", "per_channel_qparams", "quantize_groups", "unpack_int4"]

NOTEBOOK = "03_granularity"
f32 = np.float32


# --- 03.1 -------------------------------------------------------------------------------------

def per_channel_qparams(w: np.ndarray, axis: int, qmin: int, qmax: int, symmetric: bool = False):
    """One ``(scale, zero_point)`` per slice of ``w`` along ``axis`` (torch's ``PerChannelMinMaxObserver``).

    Channel ``c`` is ``np.take(w, c, axis)``: its minimum and maximum go through ``calc_qparams``.
    Returns ``(scale, zero_point)``: a float32 array and an int64 array of length ``w.shape[axis]``.

    >>> w = np.array([[0.5, -1.0], [2.0, 4.0]], np.float32)       # 2 output channels (rows)
    >>> per_channel_qparams(w, 0, -128, 127, symmetric=True)
    (array([0.00784314, 0.03137255], dtype=float32), array([0, 0]))
    """
    rows = np.moveaxis(np.asarray(w), axis, 0).reshape(np.shape(w)[axis], -1)
    return calc_qparams(rows.min(axis=1), rows.max(axis=1), qmin, qmax, symmetric)


def _per_channel_cases(rng: np.random.Generator) -> list[Case]:
    def channels(*scales):  # one normal channel per scale, along axis 0
        return np.stack([rng.normal(0.0, s, 12) for s in scales]).astype(f32)

    conv = (rng.normal(0.0, 1.0, (6, 3, 3, 3)) * rng.uniform(0.01, 1.0, (6, 1, 1, 1))).astype(f32)
    relu = np.maximum(rng.normal(0.2, 1.0, (4, 5, 3, 3)), 0).astype(f32)  # NCHW activations
    odd = channels(0.1, 0.1, 0.1)
    odd[1] = 0.0                          # a dead channel: every weight 0
    odd[2] = 0.75                         # a constant channel
    one_sided = np.stack([rng.uniform(0.1, 2.0, 8), rng.uniform(-3.0, -0.5, 8),
                          rng.uniform(-1.0, 1.0, 8)]).astype(f32)
    outlier = channels(0.05, 0.05, 0.05, 0.05)
    outlier[2, 7] = 3.0                   # one outlier weight: only its own channel's scale grows
    linear = channels(0.02, 0.5, 0.1, 1.5, 0.3)
    return [
        Case("conv weight (out=6, in=3, 3, 3), axis 0, symmetric int8 (torch's default)",
             (conv, 0, -128, 127, True)),
        Case("linear weight (5, 12), axis 0, asymmetric uint8", (linear, 0, 0, 255, False)),
        Case("linear weight along axis 1 (one range per input column), asymmetric", (linear, 1, 0, 255, False)),
        Case("NCHW ReLU activations, channel axis 1, asymmetric uint8 (ranges start at 0)",
             (relu, 1, 0, 255, False)),
        Case("3-D tensor, axis -1 (the last axis), symmetric 4-bit", (relu[0] - 0.3, -1, -8, 7, True)),
        Case("a dead channel (all 0) and a constant channel (all 0.75): eps floor, range widened to 0",
             (odd, 0, -128, 127, False)),
        Case("positive-only, negative-only and mixed channels: each range widened to contain 0",
             (one_sided, 0, 0, 255, False)),
        Case("one outlier weight in channel 2, symmetric int8", (outlier, 0, -128, 127, True)),
        Case("a 1-D tensor along axis 0: one channel per value", (linear[1], 0, -128, 127, False)),
    ]


def _rows_of(w, axis):
    return np.moveaxis(w, axis, 0).reshape(w.shape[axis], -1)


def _per_tensor(w, axis, qmin, qmax, symmetric=False):
    scale, zero_point = calc_qparams(w.min(), w.max(), qmin, qmax, symmetric)
    n = w.shape[axis]
    return np.full(n, scale, f32), np.full(n, zero_point, np.int64)


def _reduce_over_axis(w, axis, qmin, qmax, symmetric=False):
    lo, hi = w.min(axis=axis).reshape(-1), w.max(axis=axis).reshape(-1)
    return calc_qparams(lo, hi, qmin, qmax, symmetric)


def _reshape_without_moveaxis(w, axis, qmin, qmax, symmetric=False):
    rows = w.reshape(w.shape[axis], -1)
    return calc_qparams(rows.min(axis=1), rows.max(axis=1), qmin, qmax, symmetric)


def _not_widened(w, axis, qmin, qmax, symmetric=False):
    rows = _rows_of(w, axis)
    lo, hi = rows.min(axis=1), rows.max(axis=1)
    if symmetric:
        scale = np.maximum(np.maximum(np.abs(lo), np.abs(hi)) / f32((qmax - qmin) / 2), np.finfo(f32).eps)
        return scale.astype(f32), np.zeros(lo.shape, np.int64)
    scale = np.maximum((hi - lo) / f32(qmax - qmin), np.finfo(f32).eps).astype(f32)
    return scale, np.clip(qmin - np.rint(lo / scale), qmin, qmax).astype(np.int64)


_PER_CHANNEL_WRONG: dict[str, Callable] = {
    "per-tensor instead of per-channel (one range for the whole tensor)": _per_tensor,
    "wrong axis: always axis 0": lambda w, axis, qmin, qmax, symmetric=False: per_channel_qparams(
        w, 0, qmin, qmax, symmetric),
    "reduces over axis instead of keeping it": _reduce_over_axis,
    "reshape(w.shape[axis], -1) without moving the axis first": _reshape_without_moveaxis,
    "ignores symmetric (always asymmetric)": lambda w, axis, qmin, qmax, symmetric=False: per_channel_qparams(
        w, axis, qmin, qmax, False),
    "range not widened to contain 0": _not_widened,
    "max |w| only (symmetric) when asymmetric is asked": lambda w, axis, qmin, qmax, symmetric=False: (
        per_channel_qparams(w, axis, qmin, qmax, True) if qmin < 0 else per_channel_qparams(
            np.abs(w), axis, qmin, qmax, False)),
    "returns lists instead of arrays": lambda w, axis, qmin, qmax, symmetric=False: tuple(
        a.tolist() for a in per_channel_qparams(w, axis, qmin, qmax, symmetric)),
}

register(Exercise(
    id="03.1",
    title="Per-channel quantization parameters",
    points=2,
    reference=per_channel_qparams,
    cases=_per_channel_cases,
    function="per_channel_qparams",
    hint=(
        "A channel is everything whose index along axis is the same. Gather each channel's values into one "
        "row, and the per-tensor recipe of lab 02 applies row by row.",
        "numpy can move an axis to the front; after that, a reshape that keeps the first dimension puts "
        "each channel in its own row. A reshape alone, without moving the axis, mixes the channels "
        "whenever axis is not 0.",
        "calc_qparams works on arrays of minima and maxima, one per channel, and returns one scale and "
        "one zero-point per channel.",
    ),
    notebook=NOTEBOOK,
    seed=301,
    forbidden=(
        "qlearn.observers.MinMaxObserver", "qlearn.observers.MovingAverageMinMaxObserver",
        "qlearn.group._group_qparams", "qlearn.group.quantize_per_group",
        "qlearn.group.fake_quantize_per_group", "torch.ao.quantization.observer.PerChannelMinMaxObserver",
        "torch.ao.quantization.observer.MovingAveragePerChannelMinMaxObserver",
    ),
    allowed=("qlearn.qparams.calc_qparams",),
    wrong_answers=_PER_CHANNEL_WRONG,
))


# --- 03.2 -------------------------------------------------------------------------------------

def quantize_groups(w: np.ndarray, group_size: int, qmin: int, qmax: int, symmetric: bool = False):
    """Quantize a 2-D ``w`` with one ``(scale, zero_point)`` per ``group_size`` consecutive values of a row.

    Row ``r`` is cut into ``w.shape[1] // group_size`` groups ``w[r, g*G:(g+1)*G]``; each group gets
    ``calc_qparams(min, max, qmin, qmax, symmetric)`` and its codes ``clamp(round(w / scale) +
    zero_point, qmin, qmax)``. Returns ``(q, scale, zero_point)``: ``q`` has the shape of ``w``,
    ``scale`` and ``zero_point`` have shape ``(rows, w.shape[1] // group_size)``.

    >>> w = np.array([[0.1, -0.2, 0.3, 0.4], [10.0, 20.0, -30.0, 40.0]], np.float32)
    >>> q, scale, zero_point = quantize_groups(w, 2, -8, 7, symmetric=True)
    >>> q
    array([[ 4, -8,  6,  7],
           [ 4,  7, -6,  7]], dtype=int8)
    >>> scale.shape
    (2, 2)
    """
    return quantize_per_group(w, group_size, qmin, qmax, axis=-1, symmetric=symmetric)


def _group_codes_agree(w: np.ndarray, group_size: int, qmin: int, qmax: int, symmetric: bool) -> bool:
    """True if ``w / scale`` and ``w * (1 / scale)``, in float32 and float64, give the same codes."""
    _, scale, zero_point = quantize_per_group(w, group_size, qmin, qmax, symmetric=symmetric)
    s = np.repeat(scale, group_size, axis=-1)
    z = np.repeat(zero_point, group_size, axis=-1)
    w64, s64 = w.astype(np.float64), s.astype(np.float64)
    ways = [w * (f32(1) / s), w / s, w64 / s64, w64 * (1.0 / s64)]
    codes = [np.clip(np.rint(v) + z, qmin, qmax) for v in ways]
    return all(np.array_equal(c, codes[0]) for c in codes[1:])


def _group_matrix(rng: np.random.Generator, rows: int, cols: int, group_size: int, qmin: int, qmax: int,
                  symmetric: bool, draw: Callable[[np.random.Generator, int], np.ndarray]) -> np.ndarray:
    """Rows drawn by ``draw`` until each row's codes do not depend on division versus reciprocal."""
    out = np.empty((rows, cols), f32)
    for r in range(rows):
        while True:
            row = draw(rng, cols).astype(f32)[None, :]
            if _group_codes_agree(row, group_size, qmin, qmax, symmetric):
                out[r] = row
                break
    return out


def _groups_cases(rng: np.random.Generator) -> list[Case]:
    def normal(scale):
        return lambda g, n: g.normal(0.0, scale, n)

    def with_outlier(g, n):
        v = g.normal(0.0, 0.05, n)
        v[g.integers(n)] = g.choice([-1.0, 1.0]) * g.uniform(0.5, 1.0)
        return v

    def relu(g, n):
        return np.maximum(g.normal(0.1, 1.0, n), 0.0)

    w4 = _group_matrix(rng, 4, 16, 4, -8, 7, True, normal(0.1))
    w8 = _group_matrix(rng, 3, 32, 8, 0, 255, False, normal(1.0))
    outl = _group_matrix(rng, 4, 24, 8, -8, 7, True, with_outlier)
    pos = _group_matrix(rng, 2, 12, 4, 0, 15, False, relu)
    two = _group_matrix(rng, 3, 8, 4, -2, 1, True, normal(0.3))
    square = _group_matrix(rng, 8, 8, 2, -128, 127, True, normal(0.5))
    const = np.array([[0.5] * 4 + [0.0] * 4 + [-0.25] * 4], f32)
    return [
        Case("4 rows of 16, groups of 4, symmetric 4-bit [-8, 7]", (w4, 4, -8, 7, True)),
        Case("3 rows of 32, groups of 8, asymmetric uint8", (w8, 8, 0, 255, False)),
        Case("one outlier per row: only its own group gets a coarse step", (outl, 8, -8, 7, True)),
        Case("ReLU-like rows (>= 0), groups of 4, asymmetric 4-bit [0, 15]", (pos, 4, 0, 15, False)),
        Case("2-bit codes [-2, 1], groups of 4", (two, 4, -2, 1, True)),
        Case("a square 8 x 8 matrix, groups of 2 (groups must run along rows, not columns)",
             (square, 2, -128, 127, True)),
        Case("group_size = row length: per-channel", (w8, 32, 0, 255, False)),
        Case("constant groups (0.5, all zeros, -0.25): eps floor and ranges widened to 0",
             (const, 4, -8, 7, False)),
    ]


def _groups_wrong(layout: str):
    def wrong(w, group_size, qmin, qmax, symmetric=False):
        rows, cols = w.shape
        n = cols // group_size
        if layout == "columns":      # groups of consecutive values down each column
            return quantize_per_group(w, group_size, qmin, qmax, axis=0, symmetric=symmetric)
        if layout == "interleaved":  # reshape(rows, group_size, n): every n-th value of a row
            g = w.reshape(rows, group_size, n).transpose(0, 2, 1).reshape(rows, cols)
            q, s, z = quantize_per_group(g, group_size, qmin, qmax, symmetric=symmetric)
            return q.reshape(rows, n, group_size).transpose(0, 2, 1).reshape(rows, cols), s, z
        if layout == "per-row":      # group_size ignored: one scale per row, repeated
            q, s, z = quantize_per_group(w, cols, qmin, qmax, symmetric=symmetric)
            return q, np.repeat(s, n, axis=1), np.repeat(z, n, axis=1)
        if layout == "per-tensor":   # one scale for everything
            q, s, z = quantize_per_group(w.reshape(1, -1), w.size, qmin, qmax, symmetric=symmetric)
            return q.reshape(w.shape), np.full((rows, n), s[0, 0], f32), np.full((rows, n), z[0, 0])
        q, s, z = quantize_per_group(w, group_size, qmin, qmax, symmetric=symmetric)
        if layout == "group layout":  # codes left as (groups, group_size)
            return q.reshape(-1, group_size), s, z
        if layout == "flat params":   # scales as one flat vector
            return q, s.reshape(-1), z.reshape(-1)
        if layout == "asymmetric":
            return quantize_per_group(w, group_size, qmin, qmax, symmetric=False)
        if layout == "no clamp":
            sc, zp = np.repeat(s, group_size, axis=1), np.repeat(z, group_size, axis=1)
            return (np.rint(w / sc) + zp).astype(np.int32), s, z
        raise AssertionError(layout)
    return wrong


register(Exercise(
    id="03.2",
    title="Group quantization along the rows",
    points=3,
    reference=quantize_groups,
    cases=_groups_cases,
    function="quantize_groups",
    hint=(
        "A group is a run of consecutive values of one row. Give the array a shape in which every group "
        "is its own last axis, and each group becomes a small tensor with its own range.",
        "The order of the new axes decides which values form a group: groups, then the values of a group, "
        "keeps them consecutive. The parameters come out with one entry per group; broadcast them back "
        "over the values of their group to compute the codes.",
        "The codes follow lab 02 (round half-to-even, then the zero-point, then the clamp) and must come "
        "back with the shape of w, the parameters with the shape (rows, groups).",
    ),
    notebook=NOTEBOOK,
    seed=302,
    forbidden=(
        "qlearn.group.quantize_per_group", "qlearn.group.fake_quantize_per_group",
        "qlearn.group.dequantize_per_group", "qlearn.group._group_qparams", "qlearn.group._to_groups",
        "qlearn.group._from_groups",
    ),
    allowed=("qlearn.qparams.calc_qparams", "qlearn.affine.quantize",),
    wrong_answers={
        "groups across rows (consecutive values down a column)": _groups_wrong("columns"),
        "interleaved groups: reshape(rows, group_size, -1)": _groups_wrong("interleaved"),
        "one scale per row (group_size ignored)": _groups_wrong("per-row"),
        "one scale for the whole tensor": _groups_wrong("per-tensor"),
        "codes left in group layout (groups, group_size)": _groups_wrong("group layout"),
        "scales returned flat, not (rows, groups)": _groups_wrong("flat params"),
        "ignores symmetric (always asymmetric)": _groups_wrong("asymmetric"),
        "missing clamp": _groups_wrong("no clamp"),
    },
))


# --- 03.3 -------------------------------------------------------------------------------------

def pack_int4(q: np.ndarray) -> np.ndarray:
    """Pack signed 4-bit codes (``-8..7``) two to a byte: code ``2i`` in the low nibble of byte ``i``.

    ``q`` is flattened in C order; each code is stored as its 4-bit two's complement
    (``code & 0xF``: -1 is ``0xF``); an odd count is padded with a zero code. Returns a 1-D uint8
    array of ``ceil(q.size / 2)`` bytes (torch's ``quint4x2`` layout; ``qlearn.pack(q, 4, signed=True)``).

    >>> pack_int4(np.array([1, 2, -1], np.int8))        # 0x21, then 0x0F
    array([33, 15], dtype=uint8)
    """
    return pack(q, 4, signed=True)


def _codes4(rng: np.random.Generator, shape) -> np.ndarray:
    return rng.integers(-8, 7, shape, endpoint=True).astype(np.int8)


def _pack_cases(rng: np.random.Generator) -> list[Case]:
    return [
        Case("16 random codes in [-8, 7]", (_codes4(rng, 16),)),
        Case("an odd count (9 codes): pad with a zero code", (_codes4(rng, 9),)),
        Case("a 2-D array (3, 4): flatten row by row (C order)", (_codes4(rng, (3, 4)),)),
        Case("a 3-D array (2, 3, 3) of codes", (_codes4(rng, (2, 3, 3)),)),
        Case("the extremes -8 and 7", (np.array([-8, 7, 7, -8, -8, -8], np.int8),)),
        Case("-1 and 0 alternating: -1 is 0b1111", (np.array([-1, 0, 0, -1, -1, -1, 0, 0], np.int8),)),
        Case("a single code", (np.array([-3], np.int8),)),
        Case("codes as int32", (_codes4(rng, 10).astype(np.int32),)),
    ]


def _pairs(q):
    flat = np.asarray(q).reshape(-1).astype(np.int32)
    if flat.size % 2:
        flat = np.append(flat, 0)
    return flat[0::2], flat[1::2]


def _pack_swapped(q):
    lo, hi = _pairs(q)
    return (((lo & 0xF) << 4) | (hi & 0xF)).astype(np.uint8)


def _pack_offset(q):
    lo, hi = _pairs(q)
    return ((lo + 8) | ((hi + 8) << 4)).astype(np.uint8)


def _pack_no_mask(q):
    lo, hi = _pairs(q)
    return (lo | (hi << 4)).astype(np.uint8)


def _pack_no_padding(q):
    flat = np.asarray(q).reshape(-1).astype(np.int32)
    lo, hi = flat[0:flat.size - flat.size % 2:2], flat[1::2]
    return ((lo & 0xF) | ((hi & 0xF) << 4)).astype(np.uint8)


def _pack_fortran(q):
    return pack(np.asarray(q).reshape(-1, order="F"), 4, signed=True)


def _pack_int8(q):
    return pack(q, 4, signed=True).view(np.int8)


register(Exercise(
    id="03.3",
    title="Pack two signed 4-bit codes into each byte",
    points=2,
    reference=pack_int4,
    cases=_pack_cases,
    function="pack_int4",
    hint=(
        "Each byte holds two codes: the first of a pair in the low four bits, the second in the high four. "
        "A negative code is stored as its 4-bit two's complement.",
        "Flatten in C order and widen the integers before shifting. Masking a code to its low four bits "
        "both makes its two's complement and keeps its sign bits out of the other nibble.",
        "An odd count needs one zero code of padding. Return unsigned bytes, one per pair.",
    ),
    notebook=NOTEBOOK,
    seed=303,
    forbidden=("qlearn.packing.pack",),
    wrong_answers={
        "nibble order swapped (first code in the high nibble)": _pack_swapped,
        "offset binary (q + 8) instead of two's complement": _pack_offset,
        "no & 0xF mask: negative codes spill into the high nibble": _pack_no_mask,
        "odd count not padded: the last code is lost": _pack_no_padding,
        "flattened column by column (Fortran order)": _pack_fortran,
        "returns int8 bytes instead of uint8": _pack_int8,
        "returns the codes unpacked": lambda q: np.asarray(q).reshape(-1).astype(np.uint8),
    },
))


# --- 03.4 -------------------------------------------------------------------------------------

def unpack_int4(packed: np.ndarray, count: int) -> np.ndarray:
    """The first ``count`` signed 4-bit codes stored in the uint8 array ``packed`` (low nibble first).

    ``code = (byte >> 4 * (i % 2)) & 0xF``, minus 16 when it is 8 or more (its sign bit is set).
    Returns a 1-D int8 array (``qlearn.unpack(packed, 4, count, signed=True)``).

    >>> unpack_int4(np.array([33, 15], np.uint8), 3)
    array([ 1,  2, -1], dtype=int8)
    """
    return unpack(packed, 4, count, signed=True)


def _unpack_cases(rng: np.random.Generator) -> list[Case]:
    def case(name, codes):
        codes = np.asarray(codes, np.int8)
        return Case(name, (pack(codes, 4, signed=True), codes.size))

    return [
        case("16 random codes", _codes4(rng, 16)),
        case("an odd count (11 codes): drop the padding nibble", _codes4(rng, 11)),
        case("every code from -8 to 7", np.arange(-8, 8)),
        case("the extremes: -8 (0b1000) and 7 (0b0111)", [-8, 7, 7, -8, -8, -8, 7, 7]),
        case("-1 (0b1111) next to 0", [-1, 0, 0, -1, -1, -1]),
        case("a single code", [-5]),
        case("64 random codes", _codes4(rng, 64)),
    ]


def _nibbles(packed):
    b = np.asarray(packed).astype(np.int32)
    return b & 0xF, b >> 4


def _unpack_with(order="low first", sign="twos", trim=True):
    def wrong(packed, count):
        lo, hi = _nibbles(packed)
        first, second = (lo, hi) if order == "low first" else (hi, lo)
        codes = np.stack([first, second], axis=1).reshape(-1)
        if trim:
            codes = codes[:count]
        if sign == "twos":
            codes = np.where(codes >= 8, codes - 16, codes)
        elif sign == "offset":
            codes = codes - 8
        return codes.astype(np.int8)
    return wrong


register(Exercise(
    id="03.4",
    title="Unpack signed 4-bit codes",
    points=2,
    reference=unpack_int4,
    cases=_unpack_cases,
    function="unpack_int4",
    hint=(
        "Undo the packing step by step: split each byte into its two nibbles, put them back in order, "
        "low nibble first, and give each code its sign back.",
        "A 4-bit value of 8 or more has its sign bit set and stands for that value minus 16. The last "
        "nibble may be padding: return exactly count codes, as int8.",
    ),
    notebook=NOTEBOOK,
    seed=304,
    forbidden=("qlearn.packing.unpack",),
    wrong_answers={
        "sign not restored (returns 0..15)": _unpack_with(sign="none"),
        "nibble order swapped (high nibble first)": _unpack_with(order="high first"),
        "padding not removed (returns 2 * len(packed) codes)": _unpack_with(trim=False),
        "offset binary: subtracts 8 from every code": _unpack_with(sign="offset"),
        "returns the bytes unchanged": lambda packed, count: np.asarray(packed).astype(np.int8),
    },
))


# --- 03.5 -------------------------------------------------------------------------------------

def compress_groups(w: np.ndarray, bits: int, group_size: int):
    """Store a 2-D ``w`` in symmetric ``bits``-bit groups, packed: ``(packed, scale)``.

    The int4/int2 weight formats of large language models, end to end. Each run of ``group_size``
    consecutive values of a row gets its own symmetric scale (``calc_qparams`` with ``symmetric=True``
    on the signed range of ``bits`` bits, ``qrange(bits)``; the zero-point is 0 and is not stored);
    its codes are rounded half-to-even and clamped into that range; the codes of the whole matrix,
    in C order, are packed ``8 // bits`` to a byte, the first in the lowest bits, each as its
    ``bits``-bit two's complement, the last byte padded with zero codes. ``bits`` is 2, 4 or 8.
    Returns ``packed`` (1-D uint8, ``ceil(w.size * bits / 8)`` bytes) and ``scale`` (float32, shape
    ``(rows, cols // group_size)``); ``cols`` is a multiple of ``group_size``.

    >>> w = np.array([[0.1, -0.2, 0.3, 0.4], [10.0, 20.0, -30.0, 40.0]], np.float32)
    >>> packed, scale = compress_groups(w, 4, 2)
    >>> [f"0x{b:02X}" for b in packed], scale.shape
    (['0x84', '0x76', '0x74', '0x7A'], (2, 2))
    """
    qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
    q, scale, _ = quantize_per_group(w, group_size, qmin, qmax, axis=-1, symmetric=True)
    return pack(q, bits, signed=True), scale


def _compress_cases(rng: np.random.Generator) -> list[Case]:
    def normal(scale):
        return lambda g, n: g.normal(0.0, scale, n)

    def with_outlier(g, n):
        v = g.normal(0.0, 0.05, n)
        v[g.integers(n)] = g.choice([-1.0, 1.0]) * g.uniform(0.5, 1.0)
        return v

    def matrix(rows, cols, group_size, bits, draw):
        return _group_matrix(rng, rows, cols, group_size, -(2 ** (bits - 1)), 2 ** (bits - 1) - 1, True, draw)

    const = np.array([[0.5] * 4 + [0.0] * 4 + [-0.25] * 4], f32)
    return [
        Case("4 bits, 4 rows of 16, groups of 8", (matrix(4, 16, 8, 4, normal(0.1)), 4, 8)),
        Case("2 bits, 3 rows of 8, groups of 4: four codes per byte", (matrix(3, 8, 4, 2, normal(0.3)), 2, 4)),
        Case("8 bits, 2 rows of 8, groups of 4: one code per byte, as its uint8 pattern",
             (matrix(2, 8, 4, 8, normal(1.0)), 8, 4)),
        Case("4 bits, 3 rows of 3 (groups of 3): an odd count, the last byte padded",
             (matrix(3, 3, 3, 4, normal(0.2)), 4, 3)),
        Case("2 bits, 3 rows of 6 (groups of 2): 18 codes, two zero codes of padding",
             (matrix(3, 6, 2, 2, normal(0.5)), 2, 2)),
        Case("4 bits, one outlier per row: only its own group gets a coarse step",
             (matrix(4, 24, 8, 4, with_outlier), 4, 8)),
        Case("4 bits, a square 8 x 8 matrix, groups of 2 (groups run along rows, not columns)",
             (matrix(8, 8, 2, 4, normal(0.5)), 4, 2)),
        Case("4 bits, group_size = row length: one scale per row", (matrix(2, 16, 16, 4, normal(1.0)), 4, 16)),
        Case("constant groups (0.5, all zeros, -0.25): the epsilon floor", (const, 4, 4)),
        Case("2 bits, codes -2 and 1 at both ends of the range",
             (np.array([[-1.5, 1.0, 0.25, -0.5], [3.0, -1.0, 0.0, 2.0]], f32), 2, 4)),
    ]


def _compress_wrong(*, order="low first", symmetric=True, mask=True, pad=True, per_byte=None, signed_bytes=False,
                    flat_scale=False, layout="groups"):
    """A compress_groups with one typical mistake switched on."""
    def wrong(w, bits, group_size):
        qmin, qmax = -(2 ** (bits - 1)), 2 ** (bits - 1) - 1
        if layout == "per-row":
            q, s, _ = quantize_per_group(w, w.shape[1], qmin, qmax, symmetric=symmetric)
            s = np.repeat(s, w.shape[1] // group_size, axis=1)
        else:
            q, s, _ = quantize_per_group(w, group_size, qmin, qmax, symmetric=symmetric)
            if not symmetric:  # asymmetric codes shifted into the signed range, zero-point dropped
                q = np.clip(q, qmin, qmax)
        per = (8 // bits) if per_byte is None else per_byte(bits)
        flat = np.asarray(q).reshape(-1).astype(np.int64)
        if pad:
            flat = np.concatenate([flat, np.zeros(-flat.size % per, np.int64)])
        else:
            flat = flat[: flat.size - flat.size % per]
        fields = (flat & (2**bits - 1)) if mask else flat
        fields = fields.reshape(-1, per)
        shifts = bits * np.arange(per)
        if order != "low first":
            shifts = shifts[::-1]
        packed = (np.bitwise_or.reduce(fields << shifts, axis=1) & 0xFF).astype(np.uint8)
        if signed_bytes:
            packed = packed.view(np.int8)
        return packed, (s.reshape(-1) if flat_scale else s)
    return wrong


register(Exercise(
    id="03.5",
    title="Store a layer in packed 2-, 4- or 8-bit groups",
    points=4,
    reference=compress_groups,
    cases=_compress_cases,
    function="compress_groups",
    hint=(
        "Two mechanisms in a row: the group quantization of 03.2 (symmetric, signed codes of the given "
        "bits) and the packing of 03.3, generalised from two codes per byte to as many as fit.",
        "A byte holds 8 // bits codes. Code number i of the flattened matrix goes into byte i // (8 // bits), "
        "shifted up by bits times its position inside that byte, the first one unshifted. Mask each code "
        "to its low bits first, as in 03.3.",
        "Pad the flattened codes with zero codes up to a whole number of bytes, return the bytes as "
        "unsigned 8-bit integers and the scales with one entry per group, shaped (rows, groups).",
    ),
    notebook=NOTEBOOK,
    seed=305,
    forbidden=(
        "qlearn.packing.pack", "qlearn.group.quantize_per_group", "qlearn.group.fake_quantize_per_group",
        "qlearn.group.dequantize_per_group", "qlearn.group._group_qparams", "qlearn.group._to_groups",
        "qlearn.group._from_groups",
    ),
    allowed=("qlearn.qparams.calc_qparams", "qlearn.qparams.qrange"),
    wrong_answers={
        "first code in the highest bits": _compress_wrong(order="high first"),
        "asymmetric groups (zero-point dropped)": _compress_wrong(symmetric=False),
        "no mask: negative codes spill into their neighbours": _compress_wrong(mask=False),
        "no padding: the last codes are lost": _compress_wrong(pad=False),
        "always two codes per byte, whatever the bits": _compress_wrong(per_byte=lambda bits: 2),
        "one scale per row (group_size ignored)": _compress_wrong(layout="per-row"),
        "scales returned flat, not (rows, groups)": _compress_wrong(flat_scale=True),
        "bytes returned as int8": _compress_wrong(signed_bytes=True),
    },
))


# --- questions: predict, then run --------------------------------------------------------------

register(Question(
    id="03.Q1",
    title="How many of the 16 levels does a channel 4500 times smaller than the layer use?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_answer",
    answer=1,
    explanation=("The shared step is 0.45 / 7.5, about 0.06. Every weight of the channel lies within 0.0001 "
                 "of 0, far less than half a step, so every one rounds to code 0: the channel uses one "
                 "level, 0, and is switched off (0 dB)."),
    hint=("Compute the step of one scale per tensor: the layer's largest magnitude spread over half the "
          "code range.",
          "A weight rounds to 0 when it lies within half a step of 0. How many different codes are left?"),
))

register(Question(
    id="03.Q2",
    title="Bits per weight of 4-bit codes in groups of 16 with float32 scales",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_answer",
    answer=6,
    rtol=0.01,
    explanation=("4 bits of code per weight, plus one 32-bit scale shared by 16 weights, 32 / 16 = 2 bits "
                 "each: 6 bits per weight, as much as int6 codes would take. Groups of 128 with float16 "
                 "scales cost 4 + 16/128 = 4.125."),
    hint=("Count the code bits and the scale bits of one group, then divide by the weights in it.",),
))
