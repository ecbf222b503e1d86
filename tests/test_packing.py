"""Tests for qlearn.packing: hand-packed bytes, round trips, sizes and the range checks."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from qlearn.packing import pack, unpack


def test_golden_bytes():
    # element 0 in the low bits of byte 0
    assert pack([0x1, 0x2], 4).tolist() == [0x21]
    assert pack([0xF, 0x0, 0xA], 4).tolist() == [0x0F, 0x0A]  # padded with a zero code
    assert pack([1, 2, 3, 0], 2).tolist() == [0b00_11_10_01]
    assert pack([1, 0, 0, 0, 0, 0, 0, 1, 1], 1).tolist() == [0b1000_0001, 0b0000_0001]
    assert pack([0, 255, 7], 8).tolist() == [0, 255, 7]
    # signed: two's complement within bits
    assert pack([-1, 7, -8], 4, signed=True).tolist() == [0x7F, 0x08]
    assert pack([-2, -1, 0, 1], 2, signed=True).tolist() == [0b01_00_11_10]
    assert pack([-1, 0], 1, signed=True).tolist() == [0b01]
    assert pack(np.array([-128, -1, 127], dtype=np.int8), 8, signed=True).tolist() == [128, 255, 127]


def test_unpack_golden():
    assert unpack(np.array([0x21], dtype=np.uint8), 4, 2).tolist() == [1, 2]
    assert unpack(np.array([0x7F, 0x08], dtype=np.uint8), 4, 3, signed=True).tolist() == [-1, 7, -8]
    assert unpack(np.array([0x7F, 0x08], dtype=np.uint8), 4, 3).tolist() == [15, 7, 8]
    assert unpack(np.array([0b1000_0001], dtype=np.uint8), 1, 8).tolist() == [1, 0, 0, 0, 0, 0, 0, 1]
    assert unpack(np.array([128, 255], dtype=np.uint8), 8, 2, signed=True).tolist() == [-128, -1]


def test_pack_flattens_in_c_order_and_returns_1d_uint8():
    q = np.array([[1, 2], [3, 4]], dtype=np.uint8)
    out = pack(q, 4)
    assert out.dtype == np.uint8 and out.shape == (2,)
    assert out.tolist() == [0x21, 0x43]
    assert unpack(out, 4, q.size).reshape(q.shape).tolist() == q.tolist()


@given(
    bits=st.sampled_from([1, 2, 4, 8]),
    signed=st.booleans(),
    shape=hnp.array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=7),
    data=st.data(),
)
def test_round_trip_and_size(bits, signed, shape, data):
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    dtype = data.draw(st.sampled_from([np.int8, np.int16, np.int64] if signed else [np.uint8, np.int32, np.uint64]))
    q = data.draw(hnp.arrays(dtype, shape, elements=st.integers(qmin, qmax)))
    packed = pack(q, bits, signed=signed)
    assert packed.dtype == np.uint8 and packed.ndim == 1
    assert packed.size == -(-q.size * bits // 8)  # ceil(count * bits / 8)
    out = unpack(packed, bits, q.size, signed=signed)
    assert out.dtype == (np.int8 if signed else np.uint8) and out.shape == (q.size,)
    assert np.array_equal(out, q.reshape(-1))


@given(bits=st.sampled_from([1, 2, 4]), data=st.data())
def test_signed_codes_share_bit_patterns_with_unsigned(bits, data):
    # a signed code is stored as code mod 2**bits: the same bytes as those unsigned codes
    q = data.draw(hnp.arrays(np.int8, st.integers(0, 20), elements=st.integers(-(2 ** (bits - 1)), 2 ** (bits - 1) - 1)))
    assert np.array_equal(pack(q, bits, signed=True), pack(q.astype(np.int64) % 2**bits, bits))


def test_empty():
    assert pack(np.zeros(0, dtype=np.int8), 4).shape == (0,)
    assert unpack(np.zeros(0, dtype=np.uint8), 2, 0).shape == (0,)


def test_pack_range_errors():
    with pytest.raises(ValueError, match=r"code 9 does not fit in 4 signed bits \[-8, 7\]"):
        pack([1, 9], 4, signed=True)
    with pytest.raises(ValueError, match=r"code 16 does not fit in 4 unsigned bits \[0, 15\]"):
        pack([16], 4)
    with pytest.raises(ValueError, match="pass signed=True"):
        pack([-1], 4)
    with pytest.raises(ValueError, match=r"code 2 does not fit in 1 unsigned bits"):
        pack([0, 1, 2], 1)
    with pytest.raises(ValueError, match=r"code 2 does not fit in 2 signed bits \[-2, 1\]"):
        pack([2], 2, signed=True)
    # no wrap-around before the check: a huge uint64 is reported as itself
    with pytest.raises(ValueError, match=f"code {2**63 + 5} does not fit"):
        pack(np.array([2**63 + 5], dtype=np.uint64), 8)


def test_argument_errors():
    with pytest.raises(ValueError, match=r"bits must be one of \(1, 2, 4, 8\).*got 3"):
        pack([1], 3)
    with pytest.raises(TypeError, match="integer codes, got dtype float64"):
        pack([1.0, 2.0], 4)
    with pytest.raises(TypeError, match="dtype bool"):
        pack([True], 1)
    with pytest.raises(TypeError, match="signed must be True or False"):
        pack([1], 4, signed=1)
    with pytest.raises(ValueError, match=r"packed has 2 byte\(s\) but 5 codes of 4 bits need .* = 3"):
        unpack(np.zeros(2, dtype=np.uint8), 4, 5)
    with pytest.raises(TypeError, match="1-D uint8"):
        unpack(np.zeros(2, dtype=np.int16), 4, 4)
    with pytest.raises(TypeError, match="1-D uint8"):
        unpack(np.zeros((1, 2), dtype=np.uint8), 4, 4)
    with pytest.raises(ValueError, match="count must be >= 0"):
        unpack(np.zeros(0, dtype=np.uint8), 4, -1)
    with pytest.raises(ValueError, match="bits must be one of"):
        unpack(np.zeros(1, dtype=np.uint8), 16, 1)
