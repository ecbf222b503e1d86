"""Oracle tests: qlearn's observers against torch.ao.quantization's, batch after batch, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.ao.quantization import (
    MinMaxObserver as TorchMinMax,
    MovingAverageMinMaxObserver as TorchMovingAverage,
    MovingAveragePerChannelMinMaxObserver as TorchMovingAveragePerChannel,
    PerChannelMinMaxObserver as TorchPerChannel,
)

from qlearn.observers import MinMaxObserver, MovingAverageMinMaxObserver, percentile_range

# (qmin, qmax, torch dtype, whether the range is torch's default for that dtype)
RANGES = [
    (-128, 127, torch.qint8, True),
    (0, 255, torch.quint8, True),
    (-8, 7, torch.qint8, False),  # INT4 ranges: torch's "customized" quant_min / quant_max
    (0, 15, torch.quint8, False),
]


def torch_kwargs(qmin, qmax, dtype, default, symmetric, per_channel):
    if per_channel:
        qscheme = torch.per_channel_symmetric if symmetric else torch.per_channel_affine
    else:
        qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    kwargs = {"dtype": dtype, "qscheme": qscheme}
    if not default:
        kwargs.update(quant_min=qmin, quant_max=qmax)
    return kwargs


def batches(rng, shape=(4, 6, 5)):
    """Random batches with the awkward ones in between: constant, all-zero, negative-only, tiny."""
    out = [rng.standard_normal(shape).astype(np.float32)]
    out.append(np.full(shape, 3.0, dtype=np.float32))
    out.append(np.zeros(shape, dtype=np.float32))
    out.append(-np.abs(rng.standard_normal(shape)).astype(np.float32) * 7 - 1)
    out.append((rng.standard_normal(shape) * 1e-6).astype(np.float32))
    out.append((rng.laplace(size=shape) * 40).astype(np.float32))
    out.append(rng.uniform(0.5, 2.0, shape).astype(np.float32))
    return out


def sequences(rng):
    """Several batch orders, including ones that start with a constant, all-zero or negative batch."""
    b = batches(rng)
    return {
        "mixed": b,
        "all_zero_first": [b[2], b[2], b[0]],
        "constant_only": [b[1], b[1]],
        "negative_only": [b[3], b[3] * 0.5 - 2],
        "zeros_only": [b[2]],
        "positive_only": [b[6], b[6] + 1],
    }


def assert_same_state(ours, theirs, where=""):
    np.testing.assert_array_equal(ours.min_val, theirs.min_val.numpy(), err_msg=f"min_val {where}")
    np.testing.assert_array_equal(ours.max_val, theirs.max_val.numpy(), err_msg=f"max_val {where}")
    scale, zero_point = ours.calculate_qparams()
    s_ref, z_ref = theirs.calculate_qparams()
    np.testing.assert_array_equal(np.atleast_1d(scale), s_ref.numpy(), err_msg=f"scale {where}")
    np.testing.assert_array_equal(np.atleast_1d(zero_point), z_ref.numpy(), err_msg=f"zero_point {where}")
    assert np.asarray(scale).dtype == np.float32


@pytest.mark.parametrize(("qmin", "qmax", "dtype", "default"), RANGES)
@pytest.mark.parametrize("symmetric", [False, True])
def test_minmax_matches_torch(rng, qmin, qmax, dtype, default, symmetric):
    for name, seq in sequences(rng).items():
        ours = MinMaxObserver(qmin, qmax, symmetric=symmetric)
        theirs = TorchMinMax(**torch_kwargs(qmin, qmax, dtype, default, symmetric, False))
        for i, x in enumerate(seq):
            assert ours(x) is x
            theirs(torch.from_numpy(x))
            assert_same_state(ours, theirs, f"in sequence {name!r} after batch {i}")


@pytest.mark.parametrize(("qmin", "qmax", "dtype", "default"), RANGES)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize(("axis", "ch_axis"), [(0, 0), (1, 1), (-1, 2)])
def test_per_channel_minmax_matches_torch(rng, qmin, qmax, dtype, default, symmetric, axis, ch_axis):
    for seq in sequences(rng).values():
        ours = MinMaxObserver(qmin, qmax, symmetric=symmetric, axis=axis)
        theirs = TorchPerChannel(ch_axis=ch_axis, **torch_kwargs(qmin, qmax, dtype, default, symmetric, True))
        for x in seq:
            ours(x)
            theirs(torch.from_numpy(x))
            assert_same_state(ours, theirs)
        assert ours.min_val.shape == (seq[0].shape[axis],)


@pytest.mark.parametrize(("qmin", "qmax", "dtype", "default"), RANGES)
@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("c", [0.01, 1 / 3, 1.0])
def test_moving_average_matches_torch_exactly(rng, qmin, qmax, dtype, default, symmetric, c):
    # torch computes min_val + c * (batch_min - min_val) in float32 with c rounded to float32;
    # so does qlearn, and the results agree to the last bit over many batches.
    for seq in [*sequences(rng).values(), batches(rng) * 8]:
        ours = MovingAverageMinMaxObserver(c, qmin, qmax, symmetric=symmetric)
        theirs = TorchMovingAverage(c, **torch_kwargs(qmin, qmax, dtype, default, symmetric, False))
        for x in seq:
            ours(x)
            theirs(torch.from_numpy(x))
            assert_same_state(ours, theirs)


@pytest.mark.parametrize("symmetric", [False, True])
@pytest.mark.parametrize("axis", [0, 2])
def test_per_channel_moving_average_matches_torch(rng, symmetric, axis):
    for seq in [*sequences(rng).values(), batches(rng) * 3]:
        ours = MovingAverageMinMaxObserver(0.2, 0, 255, symmetric=symmetric, axis=axis)
        theirs = TorchMovingAveragePerChannel(
            0.2, ch_axis=axis, **torch_kwargs(0, 255, torch.quint8, True, symmetric, True)
        )
        for x in seq:
            ours(x)
            theirs(torch.from_numpy(x))
            assert_same_state(ours, theirs)


def test_many_random_batches_minmax(rng):
    ours = MinMaxObserver(0, 255)
    theirs = TorchMinMax()
    for _ in range(50):
        x = (rng.standard_normal(int(rng.integers(1, 300))) * rng.uniform(1e-3, 1e3)).astype(np.float32)
        ours(x)
        theirs(torch.from_numpy(x))
        assert_same_state(ours, theirs)


def test_empty_batches_are_ignored_like_torch(rng):
    ours, theirs = MovingAverageMinMaxObserver(0.5), TorchMovingAverage(0.5, dtype=torch.qint8)
    empty, empty_2d = np.zeros(0, np.float32), np.zeros((0, 3), np.float32)
    for x in [empty, rng.standard_normal(10).astype(np.float32), empty_2d]:
        ours(x)
        theirs(torch.from_numpy(x))
    assert_same_state(ours, theirs)


@pytest.mark.parametrize("p", [99.99, 99.9, 99.0, 97.3, 75.5, 50.0, 100.0])
def test_percentile_range_equals_torch_quantile_in_float64(rng, p):
    for n in [1, 2, 7, 1000, 4097]:
        x = (rng.laplace(size=n) * rng.uniform(0.01, 100)).astype(np.float32)
        lo, hi = percentile_range(x, p)
        q = torch.tensor([(100 - p) / 100, p / 100], dtype=torch.float64)
        ref = torch.quantile(torch.from_numpy(x).double(), q).float().numpy()
        np.testing.assert_array_equal([lo, hi], ref)


def test_per_channel_percentile_range_equals_torch_quantile(rng):
    x = (rng.standard_normal((3, 50, 4)) * [[[1.0]], [[10.0]], [[0.1]]]).astype(np.float32)
    lo, hi = percentile_range(x, 99.0, axis=0)
    rows = torch.from_numpy(x.reshape(3, -1)).double()
    ref = torch.quantile(rows, torch.tensor([0.01, 0.99], dtype=torch.float64), dim=1).float().numpy()
    np.testing.assert_array_equal(lo, ref[0])
    np.testing.assert_array_equal(hi, ref[1])
