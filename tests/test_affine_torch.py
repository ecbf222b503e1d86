"""Oracle tests: qlearn's affine quantization against PyTorch's own kernels, code for code."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp
from torch.ao.quantization import MinMaxObserver, PerChannelMinMaxObserver

from qlearn import calc_qparams, dequantize, fake_quantize, quantize

TORCH_DTYPES = {(0, 255): torch.quint8, (-128, 127): torch.qint8}


def bits_of(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.int32)


def tensor_with_ties(rng, n, scale):
    """Random values plus exact ties k + 0.5 (in units of scale) and out-of-range values."""
    x = rng.standard_normal(n).astype(np.float32) * np.float32(scale) * 60
    k = rng.integers(-300, 300, n // 3)
    x[: n // 3] = ((k + 0.5) * np.float32(scale)).astype(np.float32)
    x[-5:] = np.float32([1e6, -1e6, 0.0, -0.0, scale * 1000])
    return x


@pytest.mark.parametrize("qrange_", [(0, 255), (-128, 127)])
@pytest.mark.parametrize("n", [1000, 300_000])  # the second one takes qlearn's blocked path
def test_quantize_per_tensor_matches_torch(rng, qrange_, n):
    qmin, qmax = qrange_
    for _ in range(20):
        scale = np.float32(rng.uniform(1e-3, 0.2))
        zp = int(rng.integers(qmin, qmax + 1))
        x = tensor_with_ties(rng, n, scale)
        ref = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), zp, TORCH_DTYPES[qrange_])
        np.testing.assert_array_equal(quantize(x, scale, zp, qmin, qmax), ref.int_repr().numpy())
        np.testing.assert_array_equal(
            bits_of(dequantize(quantize(x, scale, zp, qmin, qmax), scale, zp)), bits_of(ref.dequantize().numpy())
        )


def test_division_would_not_match_torch(rng):
    """The trap this suite guards: round(x / scale) differs from torch's round(x * (1/scale)) at ties."""
    scale = np.float32(0.0123)
    x = tensor_with_ties(rng, 100_000, scale)
    torch_codes = torch.quantize_per_tensor(torch.from_numpy(x), float(scale), 0, torch.qint8).int_repr().numpy()
    by_division = np.clip(np.rint(x / scale), -128, 127)
    assert (by_division != torch_codes).sum() > 0
    np.testing.assert_array_equal(quantize(x, scale, 0, -128, 127), torch_codes)


@pytest.mark.parametrize("axis", [0, 1, 3])
def test_quantize_per_channel_matches_torch(rng, axis):
    x = rng.standard_normal((8, 6, 3, 5)).astype(np.float32) * 3
    n = x.shape[axis]
    scales = rng.uniform(1e-3, 0.1, n).astype(np.float32)
    zps = rng.integers(-20, 20, n)
    ref = torch.quantize_per_channel(
        torch.from_numpy(x), torch.from_numpy(scales.astype(np.float64)), torch.from_numpy(zps), axis, torch.qint8
    )
    q = quantize(x, scales, zps, -128, 127, axis=axis)
    np.testing.assert_array_equal(q, ref.int_repr().numpy())
    np.testing.assert_array_equal(bits_of(dequantize(q, scales, zps, axis=axis)), bits_of(ref.dequantize().numpy()))


@pytest.mark.parametrize(("qmin", "qmax"), [(0, 255), (-128, 127), (0, 15), (-8, 7), (-1, 0)])
@pytest.mark.parametrize("n", [3000, 200_000])  # the second one takes qlearn's blocked path
def test_fake_quantize_per_tensor_matches_torch(rng, qmin, qmax, n):
    for _ in range(20 if n < 10_000 else 3):
        scale = np.float32(rng.uniform(1e-3, 0.2))
        zp = int(rng.integers(qmin, qmax + 1))
        x = tensor_with_ties(rng, n, scale)
        ref = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), float(scale), zp, qmin, qmax)
        np.testing.assert_array_equal(bits_of(fake_quantize(x, scale, zp, qmin, qmax)), bits_of(ref.numpy()))


def test_fake_quantize_per_channel_matches_torch(rng):
    x = rng.standard_normal((16, 9)).astype(np.float32) * 2
    scales = rng.uniform(1e-3, 0.1, 16).astype(np.float32)
    zps = rng.integers(0, 256, 16)
    ref = torch.fake_quantize_per_channel_affine(
        torch.from_numpy(x), torch.from_numpy(scales), torch.from_numpy(zps).int(), 0, 0, 255
    )
    np.testing.assert_array_equal(bits_of(fake_quantize(x, scales, zps, 0, 255, axis=0)), bits_of(ref.numpy()))


@given(hnp.arrays(np.float32, st.integers(1, 64), elements=st.floats(-1e4, 1e4, width=32)), st.booleans())
def test_calc_qparams_matches_minmax_observer(x, signed):
    qmin, qmax = (-128, 127) if signed else (0, 255)
    dtype = torch.qint8 if signed else torch.quint8
    for qscheme, symmetric in ((torch.per_tensor_affine, False), (torch.per_tensor_symmetric, True)):
        obs = MinMaxObserver(dtype=dtype, qscheme=qscheme)
        obs(torch.from_numpy(x))
        t_scale, t_zp = obs.calculate_qparams()
        scale, zp = calc_qparams(x.min(), x.max(), qmin, qmax, symmetric=symmetric)
        assert bits_of(np.float32([scale])) == bits_of(t_scale.numpy())
        assert zp == int(t_zp)


@pytest.mark.parametrize("x", [np.zeros(5), np.full(5, 3.25), np.full(5, -7.0), np.float32([1e-30, 2e-30])])
def test_calc_qparams_constant_tensors_match_torch(x):
    x = x.astype(np.float32)
    obs = MinMaxObserver(dtype=torch.quint8)
    obs(torch.from_numpy(x))
    t_scale, t_zp = obs.calculate_qparams()
    assert calc_qparams(x.min(), x.max(), 0, 255) == (np.float32(t_scale.item()), int(t_zp))


@pytest.mark.parametrize("symmetric", [False, True])
def test_calc_qparams_per_channel_matches_torch(rng, symmetric):
    w = (rng.standard_normal((12, 30)) * rng.uniform(0.01, 5, (12, 1))).astype(np.float32)
    w[3] = 0.0  # an all-zero channel
    w[4] = np.abs(w[4])  # a positive-only channel
    qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    obs = PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8, qscheme=qscheme)
    obs(torch.from_numpy(w))
    t_scale, t_zp = obs.calculate_qparams()
    scale, zp = calc_qparams(w.min(axis=1), w.max(axis=1), -128, 127, symmetric=symmetric)
    np.testing.assert_array_equal(bits_of(scale), bits_of(t_scale.numpy()))
    np.testing.assert_array_equal(zp, t_zp.numpy())
