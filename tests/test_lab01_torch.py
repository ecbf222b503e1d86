"""Lab 01 references against PyTorch: decode every bit pattern, round the exercise cases, integer ranges."""

import math

import numpy as np
import pytest
import torch

from qlearn.formats import FORMATS
from qlearn.grading import EXERCISES
from qlearn.grading.labs import lab01

DTYPES = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}


@pytest.mark.parametrize("name", list(DTYPES))
def test_decode_float_matches_torch_on_every_bit_pattern(name):
    fmt, dtype = FORMATS[name], DTYPES[name]
    if fmt.bits == 8:
        codes = torch.arange(256, dtype=torch.int32).to(torch.uint8)
        theirs = codes.view(dtype).float().numpy()
    else:
        codes = torch.arange(-(2**15), 2**15, dtype=torch.int32).to(torch.int16)
        theirs = codes.view(dtype).float().numpy()
    codes = codes.numpy().astype(np.int64) & (2**fmt.bits - 1)
    M, E = fmt.man_bits, fmt.exp_bits
    ours = np.array([lab01.decode_float(int(c >> (E + M)), int((c >> M) & (2**E - 1)), int(c & (2**M - 1)), fmt)
                     for c in codes])
    with np.errstate(invalid="ignore"):  # NaN payloads from torch's bit views
        theirs = theirs.astype(np.float64)
    assert np.array_equal(ours, theirs, equal_nan=True)


# the custom formats (fp6, fp4, another bias) have no torch dtype: qlearn.formats is tested on them
TORCH_CASES = [c for c in EXERCISES["01.4"].make_cases() if c.args[1].name in DTYPES]


def test_most_round_cases_have_a_torch_dtype():
    assert len(TORCH_CASES) >= 12


@pytest.mark.parametrize("case", TORCH_CASES, ids=lambda c: c.name)
def test_round_cases_match_torch_casts(case):
    x, fmt = case.args
    dtype = DTYPES[fmt.name]
    ours = lab01.round_to_format(x, fmt)
    theirs = torch.from_numpy(np.asarray(x, np.float32)).to(dtype).float().numpy()
    inside = np.abs(np.asarray(x, np.float32)) <= fmt.max
    assert np.array_equal(ours[inside], theirs[inside])
    # beyond the largest value, torch gives inf (ieee) or saturates (e4m3fn); the exercise saturates
    assert np.all(np.abs(ours[~inside]) == fmt.max)


@pytest.mark.parametrize("bits", [8, 16, 32])
@pytest.mark.parametrize("signed", [True, False])
def test_qrange_matches_torch_iinfo(bits, signed):
    dtype = {(8, True): torch.int8, (8, False): torch.uint8, (16, True): torch.int16,
             (16, False): torch.uint16, (32, True): torch.int32, (32, False): torch.uint32}[bits, signed]
    info = torch.iinfo(dtype)
    assert lab01.qrange(bits, signed) == (info.min, info.max)


def test_saturate_cast_differs_from_torch_wrapping_cast():
    x = np.array([-300, 200, 255, 5], np.int64)
    wrapped = torch.from_numpy(x).to(torch.int8).numpy()
    assert wrapped.tolist() == [-44, -56, -1, 5]  # torch wraps like numpy
    assert lab01.saturate_cast(x, np.int8).tolist() == [-128, 127, 127, 5]


_RAW = {"fp16": (torch.float16, torch.int16), "bf16": (torch.bfloat16, torch.int16),
        "fp8_e4m3": (torch.float8_e4m3fn, torch.uint8), "fp8_e5m2": (torch.float8_e5m2, torch.uint8)}


@pytest.mark.parametrize("case", [c for c in EXERCISES["01.5"].make_cases() if c.args[1].name in _RAW],
                         ids=lambda c: c.name)
def test_encode_cases_match_torch_bit_patterns(case):
    # encode_float's fields, put together, are the bits torch stores (saturating cases: torch's cast
    # saturates fn formats too, and ieee ones overflow to inf, so those are compared with the max)
    x, fmt = case.args
    dtype, raw = _RAW[fmt.name]
    s, e, m = EXERCISES["01.5"].reference(x, fmt)
    value = min(abs(x), fmt.max) * (-1.0 if math.copysign(1.0, x) < 0 else 1.0)
    bits = int(torch.tensor([value], dtype=torch.float32).to(dtype).view(raw).item()) & (2**fmt.bits - 1)
    assert (s << (fmt.exp_bits + fmt.man_bits)) | (e << fmt.man_bits) | m == bits
