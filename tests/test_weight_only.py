"""qlearn.weight_only: golden tables, properties (Hypothesis), and oracles against torch.

The oracles: W8A16 codes are what ``torch.quantize_per_channel`` stores with the same scales; the
W4A16 bytes of each row are torch's ``quint4x2`` storage of the same codes; both layers compute
what ``torch.nn.functional.linear`` computes on the dequantized weight.
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import qlearn.weight_only as wo
from qlearn.weight_only import (dequantize_w4, linear_weight_bytes, quantize_w4, quantize_w8, w4a16_linear,
                                w8a16_linear)

f32 = np.float32
EPS = np.finfo(np.float32).eps


def test_exports():
    assert set(wo.__all__) == {"dequantize_w4", "linear_weight_bytes", "quantize_w4", "quantize_w8",
                               "w4a16_linear", "w8a16_linear"}


# --- golden tables, computed by hand ----------------------------------------------------------

def test_w8_golden_table():
    w = np.array([[1.27, -0.635, 0.005, 0.0], [-2.54, 0.01, 0.03, 1.0]], f32)
    q, scale = quantize_w8(w)
    # row 0: scale 0.01 -> 127, -63.5 -> -64 (half-to-even), 0.5 -> 0, 0; row 1: scale 0.02
    assert q.dtype == np.int8 and scale.dtype == np.float32
    assert q.tolist() == [[127, -64, 0, 0], [-127, 0, 2, 50]]
    np.testing.assert_allclose(scale, [0.01, 0.02], rtol=1e-7)


def test_w4_golden_table():
    # one row, groups of 4: [0, 1.5] -> scale 0.1, zp 0 | [-0.3, 1.2] -> scale 0.1, zp 3
    w = np.array([[0.0, 0.5, 1.0, 1.5, -0.3, 0.0, 0.6, 1.2]], f32)
    packed, scale, zero_point = quantize_w4(w, 4)
    codes = [0, 5, 10, 15, 0, 3, 9, 15]
    assert packed.tolist() == [[codes[0] | codes[1] << 4, codes[2] | codes[3] << 4,
                                codes[4] | codes[5] << 4, codes[6] | codes[7] << 4]]
    assert zero_point.tolist() == [[0, 3]] and zero_point.dtype == np.uint8
    np.testing.assert_allclose(scale, [[0.1, 0.1]], rtol=1e-6)


def test_w8a16_linear_scales_after_the_matmul():
    x = np.array([[1.0, -1.0], [0.5, 2.0]], f32)
    q = np.array([[100, -20], [0, 127]], np.int8)
    scale = np.array([0.5, 0.25], f32)
    expected = np.array([[(100 + 20) * 0.5, -127 * 0.25], [(50 - 40) * 0.5, 254 * 0.25]], f32)
    np.testing.assert_array_equal(w8a16_linear(x, q, scale), expected)
    np.testing.assert_array_equal(w8a16_linear(x, q, scale, np.array([1.0, 2.0], f32)), expected + [1, 2])


def test_linear_weight_bytes():
    assert linear_weight_bytes(10, 16, "fp32") == 640
    assert linear_weight_bytes(10, 16, "w8") == 160 + 40
    assert linear_weight_bytes(10, 16, "w4", group_size=8) == 80 + 4 * 20 + 10
    assert linear_weight_bytes(1, 6, "w4", group_size=2) == 3 + 12 + 2  # 3 zero-points: 2 bytes
    assert linear_weight_bytes(384, 384, "w4", group_size=16, scale_bytes=2) == 73728 + 2 * 9216 + 4608
    assert 4 * 384 * 1536 / linear_weight_bytes(384, 1536, "w4", group_size=16) == 5.12


# --- errors name the argument -----------------------------------------------------------------

@pytest.mark.parametrize("call, match", [
    (lambda: quantize_w8(np.ones(4, f32)), "weight must be a non-empty 2-D"),
    (lambda: quantize_w4(np.ones((2, 8), f32), 3), "group_size must be an even divisor"),
    (lambda: quantize_w4(np.ones((2, 8), f32), 16), "group_size must be an even divisor"),
    (lambda: w8a16_linear(np.ones((1, 3), f32), np.ones((2, 4), np.int8), np.ones(2, f32)), "x must end with"),
    (lambda: w8a16_linear(np.ones((1, 4), f32), np.ones((2, 4), np.int8), np.ones(3, f32)), "scale must have shape"),
    (lambda: dequantize_w4(np.ones((2, 4), np.uint8), np.ones((2, 3), f32), np.ones((2, 2)), 4),
     "scale must have shape"),
    (lambda: linear_weight_bytes(4, 8, "w4"), "needs group_size"),
    (lambda: linear_weight_bytes(4, 8, "int3"), "scheme must be"),
])
def test_errors_name_the_argument(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_type_errors():
    with pytest.raises(TypeError, match="q must be 2-D integer codes"):
        w8a16_linear(np.ones((1, 4), f32), np.ones((2, 4), f32), np.ones(2, f32))
    with pytest.raises(TypeError, match="packed must be uint8"):
        dequantize_w4(np.ones((2, 4), np.int8), np.ones((2, 2), f32), np.ones((2, 2)), 4)


# --- properties --------------------------------------------------------------------------------

def _weights(rows=st.integers(1, 6), cols=st.sampled_from([2, 4, 8, 16, 24])):
    return st.tuples(rows, cols).flatmap(lambda shape: arrays(
        np.float32, shape, elements=st.floats(-4, 4, width=32, allow_subnormal=False)))


@given(_weights())
def test_w8_properties(w):
    q, scale = quantize_w8(w)
    assert q.dtype == np.int8 and q.shape == w.shape and scale.shape == (w.shape[0],)
    assert np.abs(q).max() <= 127
    nonzero = np.abs(w).max(axis=1) > 127 * EPS
    assert (np.abs(q[nonzero]).max(axis=1) == 127).all()  # the largest weight of a row is the last code
    w_hat = q.astype(np.float64) * scale[:, None]
    assert (np.abs(w_hat - w) <= scale[:, None] / 2 * (1 + 1e-6) + 1e-12).all()  # round trip <= scale / 2
    q_neg, scale_neg = quantize_w8(-w)
    np.testing.assert_array_equal(scale_neg, scale)
    np.testing.assert_array_equal(q_neg, -q)  # half-to-even rounding is symmetric: -W gives -q


@given(_weights(), st.sampled_from([2, 4, 8]))
def test_w4_properties(w, group_size):
    if w.shape[1] % group_size:
        group_size = 2
    packed, scale, zero_point = quantize_w4(w, group_size)
    assert packed.dtype == np.uint8 and packed.shape == (w.shape[0], w.shape[1] // 2)
    assert scale.shape == zero_point.shape == (w.shape[0], w.shape[1] // group_size)
    assert (zero_point <= 15).all()
    w_hat = dequantize_w4(packed, scale, zero_point, group_size)
    step = np.repeat(scale, group_size, axis=1)
    assert (np.abs(w_hat.astype(np.float64) - w) <= step / 2 * (1 + 1e-5) + 1e-12).all()
    assert (w_hat[w == 0] == 0).all()  # zero is exactly representable: the range always contains it


@given(_weights(cols=st.sampled_from([8, 16])), st.integers(1, 3))
def test_w4a16_linear_is_the_linear_of_the_dequantized_weight(w, batch):
    x = np.linspace(-1, 1, batch * w.shape[1], dtype=f32).reshape(batch, w.shape[1])
    packed, scale, zero_point = quantize_w4(w, 8)
    expected = x.astype(np.float64) @ dequantize_w4(packed, scale, zero_point, 8).T.astype(np.float64)
    np.testing.assert_allclose(w4a16_linear(x, packed, scale, zero_point, 8), expected, rtol=1e-5, atol=1e-5)


# --- oracles: torch ---------------------------------------------------------------------------

def test_w8_codes_are_torchs_per_channel_codes(rng):
    torch = pytest.importorskip("torch")
    w = rng.normal(0, 0.05, (64, 48)).astype(f32)
    w[3] = 0.0
    q, scale = quantize_w8(w)
    stored = torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(scale).double(),
                                        torch.zeros(64, dtype=torch.long), 0, torch.qint8)
    np.testing.assert_array_equal(stored.int_repr().numpy(), q)


def test_w4_bytes_are_torchs_quint4x2_storage(rng):
    torch = pytest.importorskip("torch")
    w = rng.normal(0, 0.05, (8, 32)).astype(f32)
    packed, scale, zero_point = quantize_w4(w, 16)
    from qlearn.packing import unpack

    codes = unpack(packed.reshape(-1), 4, w.size).reshape(w.shape).astype(np.float32)
    for r in range(len(w)):
        stored = torch.quantize_per_tensor(torch.from_numpy(codes[r]), 1.0, 0, torch.quint4x2).int_repr()
        np.testing.assert_array_equal(stored.numpy(), packed[r])


def test_w4_codes_match_torchs_group_quantizer_where_no_tie(rng):
    """torch adds the zero-point before rounding (see qlearn.group): equal away from half-integers."""
    torch = pytest.importorskip("torch")
    import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers quantized_decomposed)

    w = rng.normal(0, 0.05, (16, 64)).astype(f32)
    packed, scale, zero_point = quantize_w4(w, 16)
    from qlearn.packing import unpack

    ours = unpack(packed.reshape(-1), 4, w.size).reshape(w.shape)
    theirs = torch.ops.quantized_decomposed.quantize_per_channel_group(
        torch.from_numpy(w), torch.from_numpy(scale), torch.from_numpy(zero_point.astype(np.int64)),
        0, 15, torch.uint8, 16).numpy()
    v = w * np.repeat(np.float32(1) / scale, 16, axis=1)
    far_from_tie = np.abs(v - np.floor(v) - 0.5) > 1e-4
    assert far_from_tie.mean() > 0.99
    np.testing.assert_array_equal(ours[far_from_tie], theirs[far_from_tie])


def test_layers_equal_torch_linear_on_the_dequantized_weights(rng):
    torch = pytest.importorskip("torch")
    x = rng.normal(0, 1, (3, 5, 32)).astype(f32)
    w = rng.normal(0, 0.1, (12, 32)).astype(f32)
    b = rng.normal(0, 0.1, 12).astype(f32)
    q, scale = quantize_w8(w)
    w8 = torch.from_numpy(q.astype(f32) * scale[:, None])
    expected = torch.nn.functional.linear(torch.from_numpy(x), w8, torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(w8a16_linear(x, q, scale, b), expected, rtol=1e-5, atol=1e-5)
    packed, s4, z4 = quantize_w4(w, 8)
    w4 = torch.from_numpy(dequantize_w4(packed, s4, z4, 8))
    expected = torch.nn.functional.linear(torch.from_numpy(x), w4, torch.from_numpy(b)).numpy()
    np.testing.assert_allclose(w4a16_linear(x, packed, s4, z4, 8, b), expected, rtol=1e-5, atol=1e-5)
