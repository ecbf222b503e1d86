"""Oracle tests: per-group quantization against torch's quantized_decomposed group kernels.

``torch.ops.quantized_decomposed.quantize_per_channel_group`` computes
``clamp(round(x * (1 / scale) + zero_point))``: the zero-point is added in float32 *before*
rounding. qlearn (like ``torch.quantize_per_channel``) computes ``round(x * (1 / scale)) +
zero_point``. These tests show that the codes agree exactly when the zero-point is 0, and that
otherwise they differ exactly where float32 ``v + zero_point`` rounds differently from
``round(v) + zero_point`` (ties with an odd zero-point, and sums that round onto a tie).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.ao.quantization.fx._decomposed  # noqa: F401  (registers torch.ops.quantized_decomposed)
from torch.ao.quantization import PerChannelMinMaxObserver

from qlearn import quantize
from qlearn.group import dequantize_per_group, quantize_per_group

DECOMPOSED = torch.ops.quantized_decomposed


def torch_group_quantize(x, scale, zero_point, qmin, qmax, group_size):
    dtype = torch.int8 if qmin < 0 else torch.uint8
    q = DECOMPOSED.quantize_per_channel_group(
        torch.from_numpy(x), torch.from_numpy(scale), torch.from_numpy(zero_point),
        qmin, qmax, dtype, group_size,
    )
    return q.numpy()


def torch_group_dequantize(q, scale, zero_point, qmin, qmax, group_size):
    dtype = torch.int8 if qmin < 0 else torch.uint8
    x_hat = DECOMPOSED.dequantize_per_channel_group(
        torch.from_numpy(q), torch.from_numpy(scale), torch.from_numpy(zero_point),
        qmin, qmax, dtype, group_size, torch.float32,
    )
    return x_hat.numpy()


def weights(rng, m, n):
    """A weight-like matrix: rows with different magnitudes, some exact ties, an outlier per row."""
    x = rng.standard_normal((m, n)) * rng.uniform(0.01, 5, (m, 1))
    x[:, rng.integers(0, n, m)] *= 20
    return x.astype(np.float32)


@pytest.mark.parametrize("qrange_", [(-8, 7), (-128, 127)])
@pytest.mark.parametrize(("m", "n", "group_size"), [(16, 128, 32), (7, 96, 2), (3, 256, 256)])
def test_symmetric_codes_match_torch_exactly(rng, qrange_, m, n, group_size):
    # zero_point = 0: torch's round(v + 0) and qlearn's round(v) + 0 are the same operation.
    qmin, qmax = qrange_
    x = weights(rng, m, n)
    # exact ties v = k + 0.5 in the first group of every row
    q, scale, zero_point = quantize_per_group(x, group_size, qmin, qmax, symmetric=True)
    assert (zero_point == 0).all()
    ties = (rng.integers(-6, 6, (m, 2)) + 0.5) * scale[:, :1]
    x[:, 1:3] = ties.astype(np.float32)
    q, scale, zero_point = quantize_per_group(x, group_size, qmin, qmax, symmetric=True)
    ref = torch_group_quantize(x, scale, zero_point, qmin, qmax, group_size)
    np.testing.assert_array_equal(q, ref)
    np.testing.assert_array_equal(
        dequantize_per_group(q, scale, zero_point, group_size),
        torch_group_dequantize(q, scale, zero_point, qmin, qmax, group_size),
    )


@pytest.mark.parametrize("qrange_", [(0, 15), (-8, 7), (0, 255), (-128, 127)])
def test_asymmetric_codes_differ_from_torch_only_where_predicted(rng, qrange_):
    qmin, qmax = qrange_
    g = 16
    x = weights(rng, 64, 128)
    # Put ties v = k + 0.5 (k well inside the code range) into every group, between its min and max.
    _, scale, zero_point = quantize_per_group(x, g, qmin, qmax)
    k = rng.integers(qmin + 2, qmax - 2, scale.shape) - zero_point
    groups = x.reshape(64, -1, g)
    inner = np.argsort(groups, axis=-1)[..., 1:2]  # neither the min nor the max of the group
    np.put_along_axis(groups, inner, ((k + 0.5) * scale)[..., None].astype(np.float32), axis=-1)
    q, scale, zero_point = quantize_per_group(x, g, qmin, qmax)
    ref = torch_group_quantize(x, scale, zero_point, qmin, qmax, g)

    inv = np.float32(1) / np.repeat(scale, g, axis=1)
    zp = np.repeat(zero_point, g, axis=1)
    v = x * inv  # float32, as both kernels compute it
    torch_formula = np.clip(np.rint(v + zp.astype(np.float32)), qmin, qmax)  # zp added in float32
    qlearn_formula = np.clip(np.rint(v) + zp, qmin, qmax)
    np.testing.assert_array_equal(ref, torch_formula)  # torch's kernel is the formula we state
    np.testing.assert_array_equal(q, qlearn_formula)
    differ = q != ref
    assert differ.any()  # the ties with an odd zero-point
    # Where they differ, v is a half-integer to within the float32 rounding of v + zero_point.
    frac = np.abs(v.astype(np.float64) - np.floor(v) - 0.5)
    assert (frac[differ] <= np.spacing(np.abs(v + zp).astype(np.float32))[differ]).all()
    assert (np.abs(q.astype(int) - ref)[differ] == 1).all()
    dequantized = dequantize_per_group(q, scale, zero_point, g)
    np.testing.assert_array_equal(dequantized, torch_group_dequantize(q, scale, zero_point, qmin, qmax, g))


def test_the_two_known_differences_on_hand_made_values():
    # One group of 4 on codes 0..255: range [-1, 254] gives scale 1.0 and zero_point 1.
    x = np.array([[-1.0, 254.0, 0.5, 0.49999997]], dtype=np.float32)
    q, scale, zero_point = quantize_per_group(x, 4, 0, 255)
    assert scale.tolist() == [[1.0]] and zero_point.tolist() == [[1]]
    ref = torch_group_quantize(x, scale, zero_point, 0, 255, 4)
    # 0.5: qlearn round(0.5) + 1 = 1; torch round(1.5) = 2 (a tie broken after adding 1).
    # 0.49999997: qlearn round(0.49999997) + 1 = 1; torch: 1.49999997 is 1.5 in float32 -> 2.
    np.testing.assert_array_equal(q, [[0, 255, 1, 1]])
    np.testing.assert_array_equal(ref, [[0, 255, 2, 2]])
    # qlearn's codes are those of torch.quantize_per_tensor with the same parameters.
    ref_pt = torch.quantize_per_tensor(torch.from_numpy(x), 1.0, 1, torch.quint8).int_repr().numpy()
    np.testing.assert_array_equal(q, ref_pt)


@pytest.mark.parametrize(("qrange_", "dtype"), [((-128, 127), torch.qint8), ((0, 255), torch.quint8)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_group_parameters_equal_per_channel_observer_on_the_groups(rng, qrange_, dtype, symmetric):
    qmin, qmax = qrange_
    g = 8
    x = weights(rng, 12, 64)
    x[0, :8] = 0.0  # an all-zero group
    x[1, 8:16] = -3.0  # a constant negative group
    _, scale, zero_point = quantize_per_group(x, g, qmin, qmax, symmetric=symmetric)
    qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=dtype, qscheme=qscheme)
    obs(torch.from_numpy(x.reshape(-1, g)))
    s_ref, z_ref = obs.calculate_qparams()
    np.testing.assert_array_equal(scale.ravel(), s_ref.numpy())
    np.testing.assert_array_equal(zero_point.ravel(), z_ref.numpy())


@pytest.mark.parametrize(("qrange_", "dtype"), [((-128, 127), torch.qint8), ((0, 255), torch.quint8)])
@pytest.mark.parametrize("symmetric", [False, True])
def test_whole_row_groups_equal_torch_per_channel_quantization(rng, qrange_, dtype, symmetric):
    qmin, qmax = qrange_
    x = weights(rng, 10, 48)
    q, scale, zero_point = quantize_per_group(x, 48, qmin, qmax, symmetric=symmetric)
    qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=dtype, qscheme=qscheme)
    obs(torch.from_numpy(x))
    s_ref, z_ref = obs.calculate_qparams()
    ref = torch.quantize_per_channel(torch.from_numpy(x), s_ref.double(), z_ref, 0, dtype)
    np.testing.assert_array_equal(q, ref.int_repr().numpy())
    np.testing.assert_array_equal(q, quantize(x, s_ref.numpy(), z_ref.numpy(), qmin, qmax, axis=0))


def test_torch_per_token_chooser_uses_a_different_symmetric_scale(rng):
    # The documented difference: torch's choose_qparams_per_token divides max|x| by 127, qlearn
    # (like torch's observers) by (qmax - qmin) / 2 = 127.5.
    x = weights(rng, 4, 32)
    amax = np.abs(x).max(axis=1, keepdims=True)
    s_torch, _ = DECOMPOSED.choose_qparams_per_token(torch.from_numpy(x), torch.int8)
    _, scale, _ = quantize_per_group(x, 32, -128, 127, symmetric=True)
    np.testing.assert_array_equal(s_torch.numpy(), amax / np.float32(127))
    np.testing.assert_array_equal(scale, amax / np.float32(127.5))
