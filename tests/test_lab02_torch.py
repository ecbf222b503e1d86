"""Oracle tests: the expected answers of lab 02's exercises are what PyTorch computes."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.ao.quantization import MinMaxObserver

from qlearn.grading import EXERCISES


def _torch_codes(x, scale, zero_point, qmin, qmax):
    x_hat = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), float(scale), int(zero_point), qmin, qmax)
    return np.rint(x_hat.numpy() / np.float32(scale)).astype(np.int64) + zero_point


@pytest.mark.parametrize("case", EXERCISES["02.1"].make_cases(), ids=lambda c: c.name)
def test_quantize_cases_match_torch(case):
    expected = EXERCISES["02.1"].reference(*case.args)
    assert np.array_equal(expected.astype(np.int64), _torch_codes(*case.args))


@pytest.mark.parametrize("case", EXERCISES["02.2"].make_cases(), ids=lambda c: c.name)
def test_fake_quantize_cases_match_torch(case):
    # x_hat is torch's fake-quantization; clipped is where torch's codes before the clamp leave the range
    x, scale, zero_point, qmin, qmax = case.args
    x_hat, clipped = EXERCISES["02.2"].reference(*case.args)
    theirs = torch.fake_quantize_per_tensor_affine(torch.from_numpy(x), float(scale), int(zero_point), qmin, qmax)
    assert np.array_equal(x_hat, theirs.numpy())
    codes = torch.round(torch.from_numpy(x) * (1 / torch.tensor(scale))) + zero_point
    assert np.array_equal(clipped, ((codes < qmin) | (codes > qmax)).numpy())


@pytest.mark.parametrize("case", EXERCISES["02.5"].make_cases(), ids=lambda c: c.name)
def test_pow2_codes_are_torch_codes_with_that_scale(case):
    x, qmin, qmax = case.args
    q, scale, zero_point = EXERCISES["02.5"].reference(*case.args)
    assert np.log2(scale) == np.round(np.log2(scale))
    assert np.array_equal(q.astype(np.int64), _torch_codes(x, scale, zero_point, qmin, qmax))


def _observer(qmin, qmax, symmetric):
    dtype = torch.qint8 if qmin < 0 else torch.quint8
    qscheme = torch.per_tensor_symmetric if symmetric else torch.per_tensor_affine
    return MinMaxObserver(dtype=dtype, qscheme=qscheme, quant_min=qmin, quant_max=qmax)


@pytest.mark.parametrize(("exercise_id", "symmetric"), [("02.3", False), ("02.4", True)])
def test_qparams_cases_match_torch_minmax_observer(exercise_id, symmetric):
    for case in EXERCISES[exercise_id].make_cases():
        xmin, xmax, qmin, qmax = case.args
        observer = _observer(qmin, qmax, symmetric)
        observer(torch.tensor([xmin, xmax], dtype=torch.float32))
        scale, zero_point = observer.calculate_qparams()
        expected = EXERCISES[exercise_id].reference(*case.args)
        assert (np.float32(scale.item()), int(zero_point.item())) == expected, case.name
