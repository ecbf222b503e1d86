"""Oracle tests: qlearn.pack lays out 4-bit and 2-bit codes exactly as torch's quint4x2 / quint2x4.

With ``scale=1`` and ``zero_point=0`` a float tensor of whole numbers quantizes to itself, and
``int_repr()`` of a sub-byte quantized tensor returns its packed bytes (``ceil(n * bits / 8)`` uint8).
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from qlearn.packing import pack, unpack

DTYPES = {4: torch.quint4x2, 2: torch.quint2x4}


def _torch_packed(codes: np.ndarray, bits: int) -> np.ndarray:
    x = torch.from_numpy(codes.astype(np.float32))
    return torch.quantize_per_tensor(x, 1.0, 0, DTYPES[bits]).int_repr().numpy()


@pytest.mark.parametrize("bits", [4, 2])
@pytest.mark.parametrize("count", [1, 2, 3, 4, 5, 8, 17, 64, 101])
def test_pack_matches_torch_sub_byte_storage(rng, bits, count):
    codes = rng.integers(0, 2**bits, size=count).astype(np.uint8)
    expected = _torch_packed(codes, bits)
    assert expected.dtype == np.uint8 and expected.size == -(-count * bits // 8)
    np.testing.assert_array_equal(pack(codes, bits), expected)
    np.testing.assert_array_equal(unpack(expected, bits, count), codes)


@pytest.mark.parametrize("bits", [4, 2])
def test_element_zero_is_in_the_low_bits_like_torch(bits):
    codes = np.array([1, 0, 0, 0], dtype=np.uint8)[: 8 // bits]
    assert _torch_packed(codes, bits).tolist() == [1]
    assert pack(codes, bits).tolist() == [1]


def test_signed_4bit_codes_match_torch_after_offset():
    # torch has no signed 4-bit dtype; a signed code c is stored as c mod 16, which quint4x2 holds as is
    codes = np.arange(-8, 8, dtype=np.int8)
    np.testing.assert_array_equal(pack(codes, 4, signed=True), _torch_packed(codes.astype(np.int64) % 16, 4))
