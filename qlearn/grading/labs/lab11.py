"""Lab 11 (``11_transformer_quantization``): weight-only quantization of a transformer, in numpy.

    11.1  quantize_w8(weight)                      int8 codes, one symmetric scale per output channel
    11.2  quantize_w4(weight, group_size)          uint4 codes, (scale, zero_point) per group, packed
    11.3  w4a16_linear(x, packed, scale, zero_point, group_size, bias)
                                                   unpack, dequantize per group, float matmul
    11.4  retrieval_agreement(reference, embeddings)
                                                   share of nearest neighbours (cosine) that stay the same
    11.Q1 which module type holds most of MiniLM's parameters
    11.Q2 how many times smaller a W4A16 linear weight is (group size 16)
    11.Q3 W8A16 against dynamic int8 (W8A8): which stays closer to float32

Every exercise is graded in numpy; the notebook wraps the learner's functions in ``nn.Module``s
(``qlearn.bridge.transformer``) to run the real model. **Division or reciprocal, float32 or
float64?** The codes of 11.1 and 11.2 are defined with torch's ``rint(w * float32(1 / scale))``.
Every case is drawn so that ``w / scale`` and ``w * (1 / scale)``, with the scale and the range
computed in float32 or in float64, give the same codes and zero-points (a draw where they do not
is replaced by the next one), so that every correct way of writing the formula passes; the scales
are compared to 1e-6 relative (float64 arithmetic rounded at the end may differ by an ulp).
"""

from __future__ import annotations

import numpy as np

from qlearn.grading.compare import compare_values, format_value
from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register
from qlearn.weight_only import quantize_w4 as _library_quantize_w4
from qlearn.weight_only import quantize_w8 as _library_quantize_w8
from qlearn.weight_only import w4a16_linear as _library_w4a16_linear

__all__ = ["quantize_w4", "quantize_w8", "retrieval_agreement", "w4a16_linear"]

NOTEBOOK = "11_transformer_quantization"
f32 = np.float32
EPS = np.finfo(np.float32).eps
SCALE_RTOL = 1e-6


# --- 11.1 -------------------------------------------------------------------------------------

def quantize_w8(weight: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Symmetric int8 codes of a linear weight ``[out, in]``, one scale per output channel: ``(q, scale)``.

    ``scale[r] = max(max_j |W[r, j]| / 127, eps)`` (float32, ``eps`` the float32 machine epsilon),
    ``q = clamp(rint(W / scale[r]), -127, 127)`` as int8, rounded half-to-even.

    >>> quantize_w8(np.array([[0.5, -1.0, 0.25], [0.0, 0.0, 0.0]], np.float32))[0]
    array([[  64, -127,   32],
           [   0,    0,    0]], dtype=int8)
    """
    return _library_quantize_w8(weight)


def _w8_ways(w: np.ndarray) -> list[np.ndarray]:
    """The codes of ``w`` four correct ways: scale and division in float32 or float64, divide or reciprocal."""
    ways = []
    for dtype in (np.float32, np.float64):
        v = w.astype(dtype)
        scale = np.maximum(np.abs(v).max(axis=1) / dtype(127), dtype(EPS))[:, None]
        ways += [np.clip(np.rint(v / scale), -127, 127), np.clip(np.rint(v * (dtype(1) / scale)), -127, 127)]
    return ways


def _agreeing_weight(rng: np.random.Generator, shape, draw) -> np.ndarray:
    """A weight from ``draw(rng, shape)`` on which every correct way of computing the codes agrees."""
    for _ in range(100):
        w = np.asarray(draw(rng, shape), f32)
        ways = _w8_ways(w)
        if all(np.array_equal(ways[0], other) for other in ways[1:]):
            return w
    raise RuntimeError("no agreeing draw in 100 tries")  # pragma: no cover - never happens for these draws


def _normal(std: float):
    return lambda rng, shape: rng.normal(0, std, shape)


def _w8_cases(rng: np.random.Generator) -> list[Case]:
    def with_outlier(rng, shape):
        w = rng.normal(0, 0.05, shape)
        w[1, 3] = 2.0  # one large weight: its row's scale grows, the other rows keep theirs
        return w

    def negative_max(rng, shape):
        w = rng.uniform(-0.2, 0.1, shape)
        w[:, 0] = -0.3  # the largest magnitude of every row is negative: code -127
        return w

    zero_row = _agreeing_weight(rng, (3, 6), _normal(0.1))
    zero_row[1] = 0.0
    return [
        Case("a random 8x16 weight (like a small nn.Linear)", (_agreeing_weight(rng, (8, 16), _normal(0.05)),)),
        Case("a random 32x12 weight, more outputs than inputs", (_agreeing_weight(rng, (32, 12), _normal(0.2)),)),
        Case("a square 6x6 weight: one scale per ROW (output channel), not per column",
             (_agreeing_weight(rng, (6, 6), lambda r, s: r.normal(0, 1, s) * r.uniform(0.01, 1, (s[0], 1))),)),
        Case("one outlier weight (2.0) in row 1: only that row's scale grows",
             (_agreeing_weight(rng, (4, 8), with_outlier),)),
        Case("every row's largest magnitude is negative: it becomes code -127",
             (_agreeing_weight(rng, (3, 5), negative_max),)),
        Case("an all-zero row: its scale is eps, its codes 0", (zero_row,)),
        Case("a single output channel (1x7)", (_agreeing_weight(rng, (1, 7), _normal(1.0)),)),
        Case("rows of very different sizes (1e-3 to 10)",
             (_agreeing_weight(rng, (5, 9), lambda r, s: r.normal(0, 1, s) * np.logspace(-3, 1, s[0])[:, None]),)),
    ]


def _compare_scale(got, expected: np.ndarray, name: str = "scale") -> str | None:
    if isinstance(got, np.ndarray) and got.dtype.kind == "f" and got.shape == expected.shape:
        got = got.astype(f32)
    reason = compare_values(got, expected, rtol=SCALE_RTOL)
    return None if reason is None else f"{name}: {reason}"


def _compare_codes(got, expected: np.ndarray, name: str) -> str | None:
    reason = compare_values(got, expected)
    return None if reason is None else f"{name}: {reason}"


def _compare_w8(got, expected) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 2:
        return f"expected a pair (q, scale), got {format_value(got)}"
    return _compare_codes(got[0], expected[0], "q") or _compare_scale(got[1], expected[1])


def _w8_wrong(steps=127.0, qmin=-127, per_tensor=False, axis=1, rnd=np.rint, eps=True, cast=np.int8):
    def wrong(weight):
        w = np.asarray(weight, f32)
        m = np.abs(w).max() if per_tensor else np.abs(w).max(axis=axis)
        scale = (m / f32(steps)).astype(f32)
        if eps:
            scale = np.maximum(scale, EPS)
        s = scale if per_tensor else (scale[:, None] if axis == 1 else scale[None, :])
        with np.errstate(divide="ignore", invalid="ignore"):
            q = np.clip(rnd(w / s), qmin, 127)
            scale_out = np.full(w.shape[0], scale, f32) if per_tensor else scale
            return q.astype(cast) if cast is not None else q, scale_out
    return wrong


register(Exercise(
    id="11.1",
    title="Quantize a linear weight to int8, one scale per output channel (W8A16)",
    points=3,
    reference=quantize_w8,
    cases=_w8_cases,
    function="quantize_w8",
    hint=("Each output channel is one row of the weight: find the largest magnitude of each row, and "
          "make it the last code of the narrow signed range, so that zero stays exactly zero.",
          "The scale of a row is its largest magnitude over 127, floored at the float32 machine epsilon "
          "so that an all-zero row does not divide by zero. Keep one scale per row and broadcast it "
          "across the columns.",
          "Round half-to-even, clamp to the narrow range while the values are still floats, and only "
          "then convert to int8; return the codes and the float32 scales of shape (out,)."),
    notebook=NOTEBOOK,
    seed=1101,
    compare=_compare_w8,
    forbidden=(
        "qlearn.weight_only.quantize_w8", "qlearn.affine.quantize", "qlearn.affine.fake_quantize",
        "qlearn.qparams.calc_qparams", "qlearn.group.quantize_per_group", "qlearn.group.fake_quantize_per_group",
        "torch.quantize_per_channel", "torch.quantize_per_tensor",
    ),
    allowed=("qlearn.qparams.EPS",),
    wrong_answers={
        "one scale per tensor instead of per output channel": _w8_wrong(per_tensor=True),
        "one scale per input channel (column), axis 0": _w8_wrong(axis=0),
        "divides by 128 (the full signed range)": _w8_wrong(steps=128.0, qmin=-128),
        "torch's full-range formula max / 127.5 with codes down to -128": _w8_wrong(steps=127.5, qmin=-128),
        "truncates instead of rounding": _w8_wrong(rnd=np.trunc),
        "no eps floor: an all-zero row divides by zero": _w8_wrong(eps=False),
        "returns float codes": _w8_wrong(cast=None),
        "returns zeros": lambda w: (np.zeros(np.shape(w), np.int8), np.zeros(np.shape(w)[0], f32)),
    },
))


# --- 11.2 -------------------------------------------------------------------------------------

def quantize_w4(weight: np.ndarray, group_size: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per-group asymmetric uint4 codes of a weight ``[out, in]``, packed: ``(packed, scale, zero_point)``.

    A group is ``group_size`` consecutive inputs of one row. For each group, in float32:
    ``lo = min(min(group), 0)``, ``hi = max(max(group), 0)``, ``scale = max((hi - lo) / 15, eps)``,
    ``zero_point = clamp(-rint(lo / scale), 0, 15)``; each weight's code is
    ``q = clamp(rint(w / scale) + zero_point, 0, 15)``. ``packed`` is uint8 ``[out, in // 2]``:
    byte ``k`` of a row holds ``q[2k]`` in its low 4 bits and ``q[2k + 1]`` in its high 4 bits.
    ``scale`` (float32) and ``zero_point`` (integers) have shape ``[out, in // group_size]``.

    >>> packed, scale, zero_point = quantize_w4(np.array([[0.75, -0.75, 0.0, 1.5]], np.float32), 2)
    >>> packed, zero_point
    (array([[ 15, 240]], dtype=uint8), array([[8, 0]], dtype=uint8))
    """
    return _library_quantize_w4(weight, group_size)


def _w4_ways(w: np.ndarray, group_size: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """(codes, zero_point) four correct ways: float32 or float64, divide or reciprocal."""
    ways = []
    for dtype in (np.float32, np.float64):
        g = w.astype(dtype).reshape(w.shape[0], -1, group_size)
        lo, hi = np.minimum(g.min(-1), 0), np.maximum(g.max(-1), 0)
        scale = np.maximum((hi - lo) / dtype(15), dtype(EPS))[..., None]
        for inverse in (False, True):
            v_lo = lo[..., None] * (dtype(1) / scale) if inverse else lo[..., None] / scale
            zp = np.clip(-np.rint(v_lo), 0, 15)
            v = g * (dtype(1) / scale) if inverse else g / scale
            ways.append((np.clip(np.rint(v) + zp, 0, 15), zp))
    return ways


def _agreeing_w4(rng: np.random.Generator, shape, group_size: int, draw) -> np.ndarray:
    for _ in range(100):
        w = np.asarray(draw(rng, shape), f32)
        ways = _w4_ways(w, group_size)
        if all(np.array_equal(ways[0][0], q) and np.array_equal(ways[0][1], z) for q, z in ways[1:]):
            return w
    raise RuntimeError("no agreeing draw in 100 tries")  # pragma: no cover


def _w4_cases(rng: np.random.Generator) -> list[Case]:
    def shifted(rng, shape):  # groups that are not centred on 0: the zero-point moves
        return rng.normal(0, 0.05, shape) + rng.choice([-0.1, 0.0, 0.1], (shape[0], 1))

    def positive(rng, shape):
        return rng.uniform(0.01, 0.3, shape)

    zero_group = _agreeing_w4(rng, (2, 8), 4, _normal(0.1))
    zero_group[1, 4:] = 0.0
    return [
        Case("a random 4x16 weight, groups of 8", (_agreeing_w4(rng, (4, 16), 8, _normal(0.05)), 8)),
        Case("a random 6x32 weight, groups of 16 (the lab's setting)",
             (_agreeing_w4(rng, (6, 32), 16, _normal(0.05)), 16)),
        Case("groups of 2: each byte holds one whole group", (_agreeing_w4(rng, (3, 8), 2, _normal(0.3)), 2)),
        Case("one group per row (group_size = in_features)", (_agreeing_w4(rng, (5, 6), 6, _normal(0.1)), 6)),
        Case("groups shifted off zero: the zero-point differs from group to group",
             (_agreeing_w4(rng, (4, 24), 8, shifted), 8)),
        Case("a positive-only weight: the range widens to contain 0, zero_point 0",
             (_agreeing_w4(rng, (2, 8), 4, positive), 4)),
        Case("a negative-only weight: zero_point 15",
             (_agreeing_w4(rng, (2, 8), 4, lambda r, s: -positive(r, s)), 4)),
        Case("an all-zero group: scale eps, every code the zero-point", (zero_group, 4)),
        Case("a square 8x8 weight: groups run along each ROW (the inputs)",
             (_agreeing_w4(rng, (8, 8), 4, lambda r, s: r.normal(0, 1, s) * r.uniform(0.01, 1, (1, s[1]))), 4)),
    ]


def _compare_w4(got, expected) -> str | None:
    if not isinstance(got, (tuple, list)) or len(got) != 3:
        return f"expected a triple (packed, scale, zero_point), got {format_value(got)}"
    packed = got[0]
    if isinstance(packed, np.ndarray) and packed.dtype != np.uint8:
        return f"packed: expected a uint8 array (whole bytes), got dtype {packed.dtype}"
    return (_compare_codes(packed, expected[0], "packed") or _compare_scale(got[1], expected[1])
            or _compare_codes(got[2], expected[2], "zero_point"))


def _w4_parts(w, group_size, symmetric=False, widen=True, rnd=np.rint):
    w = np.asarray(w, f32)
    g = w.reshape(w.shape[0], -1, group_size)
    lo, hi = g.min(-1), g.max(-1)
    if widen:
        lo, hi = np.minimum(lo, 0), np.maximum(hi, 0)
    if symmetric:
        scale = np.maximum(np.maximum(-lo, hi) / f32(7.5), EPS).astype(f32)
        zp = np.full(scale.shape, 8.0, f32)
    else:
        scale = np.maximum((hi - lo) / f32(15), EPS).astype(f32)
        zp = np.clip(-rnd(lo / scale), 0, 15)
    q = np.clip(rnd(g / scale[..., None]) + zp[..., None], 0, 15).astype(np.uint8).reshape(w.shape)
    return q, scale, zp.astype(np.uint8)


def _pack_rows(q, order="low_first"):
    q = q.astype(np.uint8)
    if order == "low_first":
        return (q[:, 0::2] | (q[:, 1::2] << 4)).astype(np.uint8)
    if order == "high_first":
        return ((q[:, 0::2] << 4) | q[:, 1::2]).astype(np.uint8)
    half = q.shape[1] // 2  # first half in the low nibbles, second half in the high ones
    return (q[:, :half] | (q[:, half:] << 4)).astype(np.uint8)


def _w4_wrong(order="low_first", **kwargs):
    def wrong(w, group_size):
        q, scale, zp = _w4_parts(w, group_size, **kwargs)
        return _pack_rows(q, order), scale, zp
    return wrong


def _w4_column_groups(w, group_size):
    w = np.asarray(w, f32)
    q, scale, zp = _w4_parts(w.T.copy(), group_size)
    return _pack_rows(np.ascontiguousarray(q.T)), scale.T.copy(), zp.T.copy()


register(Exercise(
    id="11.2",
    title="W4A16: quantize to 4 bits per group and pack two codes per byte",
    points=4,
    reference=quantize_w4,
    cases=_w4_cases,
    function="quantize_w4",
    hint=("View each row as consecutive groups of group_size inputs; every group gets its own "
          "asymmetric quantizer with 16 codes, exactly the min-max recipe of lab 02 applied group by group.",
          "A reshape to [out, in // group_size, group_size] puts each group on the last axis, so one "
          "min and one max along that axis give every group's range; widen it to contain 0 before "
          "the scale, and keep the per-group scale and zero-point in a shape that broadcasts back.",
          "Two codes share a byte: the even-indexed code of each pair goes in the low 4 bits, the "
          "odd-indexed one is shifted left by 4. Slicing a row with a step of 2 separates the pairs; "
          "work in uint8 so that the result is whole bytes."),
    notebook=NOTEBOOK,
    seed=1102,
    compare=_compare_w4,
    forbidden=(
        "qlearn.weight_only.quantize_w4", "qlearn.group.quantize_per_group", "qlearn.group.fake_quantize_per_group",
        "qlearn.affine.quantize", "qlearn.affine.fake_quantize", "qlearn.qparams.calc_qparams",
        "qlearn.packing.pack", "torch.quantize_per_channel", "torch.quantize_per_tensor",
    ),
    allowed=("qlearn.qparams.EPS",),
    wrong_answers={
        "nibbles swapped: the first code of a pair in the high 4 bits": _w4_wrong(order="high_first"),
        "packs the first half of a row with the second half": _w4_wrong(order="halves"),
        "symmetric 4-bit grid (max |w| / 7.5, zero_point 8)": _w4_wrong(symmetric=True),
        "range not widened to contain 0": _w4_wrong(widen=False),
        "zero-point truncated instead of rounded": _w4_wrong(rnd=np.trunc),
        "groups run down the columns (output channels) instead of along the rows": _w4_column_groups,
        "returns the codes unpacked": lambda w, g: _w4_parts(w, g),
        "returns zeros": lambda w, g: (np.zeros((np.shape(w)[0], np.shape(w)[1] // 2), np.uint8),
                                       np.zeros((np.shape(w)[0], np.shape(w)[1] // g), f32),
                                       np.zeros((np.shape(w)[0], np.shape(w)[1] // g), np.uint8)),
    },
))


# --- 11.3 -------------------------------------------------------------------------------------

def w4a16_linear(x: np.ndarray, packed: np.ndarray, scale: np.ndarray, zero_point: np.ndarray,
                 group_size: int, bias: np.ndarray | None = None) -> np.ndarray:
    """The output of a W4A16 linear layer: ``y = x @ W_hat.T + bias`` in float32, ``x`` of shape ``[..., in]``.

    ``packed`` is ``quantize_w4``'s uint8 ``[out, in // 2]`` (code ``2k`` in the low nibble of byte
    ``k``); ``W_hat[r, j] = (q[r, j] - zero_point[r, g]) * scale[r, g]`` with ``g = j // group_size``.
    ``bias`` may be None.

    >>> w4a16_linear(np.ones((1, 4), np.float32), np.array([[15, 240]], np.uint8),
    ...              np.array([[0.1, 0.1]], np.float32), np.array([[8, 0]], np.uint8), 2)
    array([[1.4]], dtype=float32)
    """
    return _library_w4a16_linear(x, packed, scale, zero_point, group_size, bias)


def _w4_linear_case(rng: np.random.Generator, name: str, x_shape, out: int, group_size: int,
                    bias: bool = True) -> Case:
    in_features = x_shape[-1]
    w = rng.normal(0, 0.1, (out, in_features)).astype(f32)
    packed, scale, zero_point = _library_quantize_w4(w, group_size)
    b = rng.normal(0, 0.1, out).astype(f32) if bias else None
    return Case(name, (rng.normal(0, 1, x_shape).astype(f32), packed, scale, zero_point, group_size, b))


def _w4_linear_cases(rng: np.random.Generator) -> list[Case]:
    return [
        _w4_linear_case(rng, "a batch of 3 inputs, 16 -> 4, groups of 8", (3, 16), 4, 8),
        _w4_linear_case(rng, "sequences: x of shape [2, 5, 32] (batch, tokens, features), groups of 16",
                        (2, 5, 32), 6, 16),
        _w4_linear_case(rng, "no bias (bias=None)", (4, 12), 3, 4, bias=False),
        _w4_linear_case(rng, "groups of 2: one byte per group", (2, 8), 5, 2),
        _w4_linear_case(rng, "one group per row (group_size = in_features)", (3, 10), 4, 10),
        _w4_linear_case(rng, "a single input vector [in]", (24,), 7, 8),
        _w4_linear_case(rng, "more outputs than inputs, 8 -> 20", (5, 8), 20, 4),
    ]


def _nibbles(packed, high_first=False, signed=False):
    low, high = (packed & 0x0F).astype(np.int16), (packed >> 4).astype(np.int16)
    first, second = (high, low) if high_first else (low, high)
    q = np.stack([first, second], -1).reshape(packed.shape[0], -1)
    return np.where(q >= 8, q - 16, q) if signed else q


def _w4_linear_wrong(high_first=False, signed=False, zp_sign=-1, tile=False, bias_on=True, transpose=False):
    def wrong(x, packed, scale, zero_point, group_size, bias=None):
        q = _nibbles(packed, high_first, signed).astype(f32)
        expand = (lambda a: np.tile(a, (1, group_size))) if tile else (lambda a: np.repeat(a, group_size, axis=1))
        w = (q + zp_sign * expand(zero_point.astype(f32))) * expand(scale)
        y = np.asarray(x, f32) @ (w if transpose else w.T)
        return y + bias if (bias is not None and bias_on) else y
    return wrong


register(Exercise(
    id="11.3",
    title="W4A16: unpack the nibbles, dequantize per group, and run the layer",
    points=4,
    reference=w4a16_linear,
    cases=_w4_linear_cases,
    function="w4a16_linear",
    hint=("Undo exercise 11.2 step by step: get the two 4-bit codes out of each byte in the right "
          "order, bring the zero-point and the scale of each group back to the weights of that "
          "group, then it is an ordinary linear layer.",
          "A mask of the low four bits gives the even-indexed codes, a right shift by 4 the odd ones; "
          "interleave them back into rows of in_features codes. The codes are unsigned: there is "
          "no sign to extend.",
          "Each group's scale and zero-point must cover group_size consecutive inputs (repeat each "
          "entry, do not tile the row); then multiply x by the transposed weight and add the bias "
          "unless it is None."),
    notebook=NOTEBOOK,
    seed=1103,
    rtol=1e-4,
    atol=1e-5,
    forbidden=(
        "qlearn.weight_only.w4a16_linear", "qlearn.weight_only.dequantize_w4", "qlearn.packing.unpack",
        "qlearn.group.dequantize_per_group", "qlearn.affine.dequantize",
    ),
    wrong_answers={
        "nibbles swapped: reads the high 4 bits first": _w4_linear_wrong(high_first=True),
        "sign-extends the codes as if they were signed int4": _w4_linear_wrong(signed=True),
        "adds the zero-point instead of subtracting it": _w4_linear_wrong(zp_sign=1),
        "forgets the zero-point": _w4_linear_wrong(zp_sign=0),
        "tiles the group parameters instead of repeating each one": _w4_linear_wrong(tile=True),
        "forgets the bias": _w4_linear_wrong(bias_on=False),
        "returns zeros": lambda x, p, s, z, g, b=None: np.zeros(np.shape(x)[:-1] + (p.shape[0],), f32),
    },
))


# --- 11.4 -------------------------------------------------------------------------------------

def retrieval_agreement(reference: np.ndarray, embeddings: np.ndarray) -> float:
    """The share of rows whose nearest neighbour is the same under ``embeddings`` as under ``reference``.

    Both are ``[n, d]`` arrays of the same ``n`` sentences. A row's nearest neighbour is the *other*
    row with the largest cosine similarity (the row itself never counts; rows need not have unit
    length). Returns a float in ``[0, 1]``.

    >>> retrieval_agreement(np.array([[1.0, 0.0], [0.9, 0.1], [0.0, 1.0]]),
    ...                     np.array([[1.0, 0.0], [0.9, 0.1], [1.0, -0.5]]))
    0.6666666666666666
    """
    def nearest(e):
        e = np.asarray(e, np.float64)
        e = e / np.linalg.norm(e, axis=1, keepdims=True)
        similarity = e @ e.T
        np.fill_diagonal(similarity, -np.inf)
        return similarity.argmax(axis=1)

    return float(np.mean(nearest(reference) == nearest(embeddings)))


def _clear_neighbours(e: np.ndarray, gap: float = 1e-3) -> bool:
    """True when every row's best cosine beats its second best by ``gap``: no near-ties."""
    u = e / np.linalg.norm(e, axis=1, keepdims=True)
    s = u @ u.T
    np.fill_diagonal(s, -np.inf)
    top2 = np.sort(s, axis=1)[:, -2:]
    return bool((top2[:, 1] - top2[:, 0] > gap).all())


def _embedding_pair(rng: np.random.Generator, n: int, d: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    for _ in range(200):
        ref = rng.normal(0, 1, (n, d)) * rng.uniform(0.2, 5.0, (n, 1))  # rows of different lengths
        emb = ref + rng.normal(0, noise, (n, d)) * np.linalg.norm(ref, axis=1, keepdims=True) / np.sqrt(d)
        if _clear_neighbours(ref) and _clear_neighbours(emb):
            return ref.astype(f32), emb.astype(f32)
    raise RuntimeError("no clear draw in 200 tries")  # pragma: no cover


def _retrieval_cases(rng: np.random.Generator) -> list[Case]:
    ref, _ = _embedding_pair(rng, 8, 4, 0.0)
    pairs = {
        "12 sentences, small noise: most neighbours stay": _embedding_pair(rng, 12, 6, 0.3),
        "10 sentences, large noise: many neighbours change": _embedding_pair(rng, 10, 5, 1.0),
        "16 sentences, 8 dimensions, rows of very different lengths": _embedding_pair(rng, 16, 8, 0.5),
        "identical embeddings: agreement 1.0": (ref, ref.copy()),
        "embeddings scaled by 3: cosine ignores the length, agreement 1.0": (ref, 3 * ref),
        "unrelated embeddings": (_embedding_pair(rng, 9, 3, 0.0)[0], _embedding_pair(rng, 9, 3, 0.0)[0]),
        "three sentences": _embedding_pair(rng, 3, 2, 1.0),
    }
    return [Case(name, pair) for name, pair in pairs.items()]


def _nearest_wrong(cosine=True, exclude_self=True, pick=np.argmax, euclid=False):
    def nearest(e):
        e = np.asarray(e, np.float64)
        if euclid:
            d = -np.linalg.norm(e[:, None, :] - e[None, :, :], axis=-1)
        else:
            if cosine:
                e = e / np.linalg.norm(e, axis=1, keepdims=True)
            d = e @ e.T
        if exclude_self:
            np.fill_diagonal(d, np.inf if pick is np.argmin else -np.inf)
        return pick(d, axis=1)

    return lambda ref, emb: float(np.mean(nearest(ref) == nearest(emb)))


register(Exercise(
    id="11.4",
    title="Retrieval agreement: do the nearest neighbours survive quantization?",
    points=2,
    reference=retrieval_agreement,
    cases=_retrieval_cases,
    function="retrieval_agreement",
    hint=("For each set of embeddings separately, find every row's most similar other row by cosine "
          "similarity, then count how often the two answers coincide.",
          "Dividing each row by its length turns dot products into cosines, and one matrix product "
          "gives all pairs at once; the diagonal (a row with itself) must never win.",
          "Compare the two arrays of neighbour indices element by element and return the mean as a "
          "float."),
    notebook=NOTEBOOK,
    seed=1104,
    rtol=1e-12,
    forbidden=("qlearn.bridge.transformer.retrieval_agreement", "qlearn.bridge.transformer.nearest_neighbours"),
    wrong_answers={
        "counts a row as its own nearest neighbour": _nearest_wrong(exclude_self=False),
        "raw dot product instead of cosine (rows of different lengths)": _nearest_wrong(cosine=False),
        "Euclidean distance on rows that are not unit length": _nearest_wrong(euclid=True),
        "picks the least similar row": _nearest_wrong(pick=np.argmin),
        "returns the number of agreeing rows, not the share": lambda ref, emb: float(
            len(ref) * _nearest_wrong()(ref, emb)),
        "returns zeros": lambda ref, emb: 0.0,
    },
))


# --- questions --------------------------------------------------------------------------------

register(Question(
    id="11.Q1",
    title="Where are MiniLM's parameters?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_answer",
    choices={"a": "the embedding tables (word, position, token type)",
             "b": "the attention projections (query, key, value, output) of the 6 layers",
             "c": "the feed-forward layers (intermediate and output) of the 6 layers",
             "d": "the LayerNorms"},
    answer="a",
    explanation=("The word embedding table alone is 30 522 x 384 = 11.7 M numbers, more than all 36 "
                 "Linear layers together (10.6 M): a small model with a large vocabulary keeps most of "
                 "its bytes in a lookup table that no matmul ever touches. Weight-only quantization of "
                 "the Linear layers therefore shrinks the file by well under 4x."),
    hint=("Count: the vocabulary has 30 522 tokens and each has a 384-dimensional vector.",
          "A layer has 4 attention matrices of 384 x 384 and two feed-forward matrices of 384 x 1536; "
          "multiply by 6 layers and compare."),
))

register(Question(
    id="11.Q2",
    title="How many times smaller is a W4A16 linear weight than float32?",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_answer",
    answer=5.12,
    rtol=0.005,
    explanation=("Per weight: 4 bits of code, plus a 32-bit scale and a 4-bit zero-point shared by 16 "
                 "weights, 4 + 32/16 + 4/16 = 6.25 bits, against 32: 32 / 6.25 = 5.12. The group "
                 "parameters cost more than a third of the code bits; float16 scales would give 6.1x."),
    hint=("Count the bits per weight: the code itself, plus each group's scale and zero-point "
          "divided among the weights of the group.",
          "The group has 16 weights; its scale is a float32 and its zero-point takes 4 bits."),
))

register(Question(
    id="11.Q3",
    title="W8A16 against dynamic int8 with per-channel weights",
    points=1,
    notebook=NOTEBOOK,
    variable="q3_answer",
    choices={"a": "W8A16 stays closer to float32",
             "b": "dynamic int8 (W8A8) stays closer to float32",
             "c": "both are within 0.001 of each other"},
    answer="a",
    explanation=("Both store the same kind of int8 weights, one scale per output channel. Dynamic int8 "
                 "also rounds every activation to 8 bits with one scale per tensor, and section 2 showed "
                 "channels 15-20x larger than the median: that scale is set by the outlier, and the "
                 "ordinary channels keep only a few codes. This is the problem LLM.int8() (outlier "
                 "channels in float) and SmoothQuant (move the outliers into the weights) solve."),
    hint=("Both variants quantize the weights identically; what else does dynamic int8 quantize?",
          "Think of section 2's activation outliers and a single scale for a whole activation tensor."),
))
