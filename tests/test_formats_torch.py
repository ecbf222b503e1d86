"""Oracle tests: qlearn.formats against PyTorch's float16, bfloat16 and float8 casts.

The committed tests use a structured sample (see ``structured_sample``: every float32 exponent,
every pattern of the bits the format keeps, and the dropped bits at every rounding boundary)
that runs in a few seconds. Running this file as a script,

    python tests/test_formats_torch.py [--all] [fp16 bf16 fp8_e4m3 fp8_e5m2]

checks the same sample with 64 random dropped-bit patterns per kept pattern instead of 2, and
with ``--all`` every one of the 2^32 float32 bit patterns (about 10 CPU-minutes per format).
"""

from __future__ import annotations

import sys
import time

import numpy as np
import pytest
import torch

from qlearn.formats import FORMATS, decompose, representable_values, round_to_format

TORCH_DTYPES = {
    "fp16": torch.float16,
    "bf16": torch.bfloat16,
    "fp8_e4m3": torch.float8_e4m3fn,
    "fp8_e5m2": torch.float8_e5m2,
}
CODE_DTYPES = {8: torch.uint8, 16: torch.int16}
F32_MAX = float(np.finfo(np.float32).max)


def torch_cast(x: np.ndarray, name: str) -> np.ndarray:
    """The oracle: PyTorch's cast to the format and back to float32."""
    return torch.from_numpy(x).to(TORCH_DTYPES[name]).float().numpy()


def same(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """Elementwise: the same float32 bit pattern (so -0.0 differs from 0.0), or both NaN."""
    return (a.view(np.uint32) == b.view(np.uint32)) | (np.isnan(a) & np.isnan(b))


def structured_sample(name: str, rng: np.random.Generator, n_random: int = 2) -> np.ndarray:
    """Float32 inputs that probe every rounding decision the cast can make, with both signs.

    Rounding to M mantissa bits keeps the top bits of a float32's 23-bit mantissa and drops the
    low ``drop`` bits (more of them in the format's subnormal range). The decision depends on
    the last kept bit (for ties to even), the first dropped bit and whether any later bit is set.
    So for every float32 exponent and every pattern of the kept bits, the dropped bits take the
    values 0 (exact), 1, half - 1, half (the tie), half + 1, all ones, and ``n_random`` random ones.
    Every (sign, exponent, kept bits, round bit, sticky bit) case occurs, which is every case an
    exhaustive run over all 2^32 patterns can tell apart.
    """
    fmt = FORMATS[name]
    out = []
    for e32 in range(255):  # every float32 exponent field but inf/NaN's
        k = max(e32, 1) - 127  # the binade 2^k of these inputs (float32 subnormals: k = -126)
        drop = min(23 - fmt.man_bits + max(0, fmt.emin - k), 23)  # mantissa bits rounded away
        kept = np.arange(2 ** (23 - drop), dtype=np.uint32) << np.uint32(drop)
        half = 1 << (drop - 1)
        low = [0, 1, half - 1, half, half + 1, 2 * half - 1, *rng.integers(0, 2 * half, n_random)]
        out.append(((e32 << 23) | kept[:, None] | np.array(low, dtype=np.uint32)[None, :]).ravel())
    bits = np.concatenate(out).astype(np.uint32)
    return np.concatenate([bits, bits | np.uint32(2**31)]).view(np.float32)


@pytest.mark.parametrize("name", list(TORCH_DTYPES))
def test_properties_match_torch_finfo(name):
    fmt, info = FORMATS[name], torch.finfo(TORCH_DTYPES[name])
    assert (fmt.bits, fmt.max, fmt.smallest_normal, fmt.eps) == (
        info.bits, info.max, info.smallest_normal, info.eps)
    one = torch.tensor([1], dtype=CODE_DTYPES[fmt.bits]).view(TORCH_DTYPES[name])  # bit pattern 0...01
    assert fmt.smallest_subnormal == one.float().item()


@pytest.mark.parametrize("name", list(TORCH_DTYPES))
def test_round_to_format_matches_torch_cast(name, rng):
    x = structured_sample(name, rng)
    fmt = FORMATS[name]
    expected = torch_cast(x, name)
    overflowed = ~np.isfinite(expected) | (np.abs(x) > fmt.max)  # e4m3fn: torch saturates itself
    got = round_to_format(x, name)
    assert got.dtype == np.float32
    assert overflowed.any() and np.isin(representable_values(name), got).all()  # the sample covers all
    expected = np.where(np.isinf(expected), np.copysign(np.float32(fmt.max), x), expected)
    bad = ~same(got, expected)
    assert not bad.any(), f"{name}: {x[bad][:5]} -> {got[bad][:5]}, torch {expected[bad][:5]}"


@pytest.mark.parametrize("name", list(TORCH_DTYPES))
def test_ieee_overflow_matches_torch_everywhere(name, rng):
    specials = np.array([np.inf, -np.inf, np.nan, -np.nan], dtype=np.float32)
    x = np.concatenate([structured_sample(name, rng), specials])
    got, expected = round_to_format(x, name, overflow="ieee"), torch_cast(x, name)
    bad = ~same(got, expected)
    assert not bad.any(), f"{name}: {x[bad][:5]} -> {got[bad][:5]}, torch {expected[bad][:5]}"


def test_what_torch_does_on_overflow():
    """Proves the docstring's table: e4m3fn saturates in PyTorch, the other formats give inf."""
    x = np.array([F32_MAX, -F32_MAX, np.inf, -np.inf, np.nan], dtype=np.float32)
    e4m3 = torch_cast(x, "fp8_e4m3")
    assert e4m3[:4].tolist() == [448.0, -448.0, 448.0, -448.0] and np.isnan(e4m3[4])
    np.testing.assert_array_equal(round_to_format(x, "fp8_e4m3", overflow="ieee"), e4m3)
    for name in ("fp16", "bf16", "fp8_e5m2"):
        out = torch_cast(x, name)
        assert out[:4].tolist() == [np.inf, -np.inf, np.inf, -np.inf] and np.isnan(out[4])
        np.testing.assert_array_equal(round_to_format(x, name, overflow="ieee"), out)
    # the first float32 above e4m3's tie 464 (between 448 and the NaN slot 480) already overflows
    x = np.array([464.0, np.nextafter(np.float32(464), np.float32(1e9))], dtype=np.float32)
    assert torch_cast(x, "fp8_e4m3").tolist() == [448.0, 448.0]
    assert round_to_format(x, "fp8_e4m3", overflow="ieee").tolist() == [448.0, 448.0]
    with pytest.raises(ValueError, match="1 value"):
        round_to_format(x, "fp8_e4m3", overflow="error")


@pytest.mark.parametrize("name", list(TORCH_DTYPES))
def test_representable_values_are_torch_decoded_bit_patterns(name):
    bits = FORMATS[name].bits
    codes = torch.arange(2 ** (bits - 1), dtype=torch.int32).to(CODE_DTYPES[bits])  # sign bit 0
    values = codes.view(TORCH_DTYPES[name]).float().numpy()
    np.testing.assert_array_equal(representable_values(name), values[np.isfinite(values)])


@pytest.mark.parametrize("name", ["fp8_e4m3", "fp8_e5m2"])
def test_decompose_code_is_torch_bit_pattern(name):
    values = torch.arange(256, dtype=torch.int32).to(torch.uint8).view(TORCH_DTYPES[name]).float().numpy()
    for code, v in enumerate(values):
        if np.isfinite(v):
            fields = decompose(v, name)
            assert fields.code == code and fields.value == v


def test_float64_input_is_rounded_to_float32_first_like_torch():
    x = np.array([1 + 2**-11 + 2**-40])  # float32 makes it the tie 1 + 2^-11, which goes to 1.0
    direct = torch.from_numpy(x).to(torch.float16).double().numpy()
    np.testing.assert_array_equal(round_to_format(x, "fp16"), direct)
    assert direct[0] == 1.0


def exhaustive(names: list[str], every_pattern: bool, chunk: int = 2**22) -> None:
    """Compare with overflow='ieee' (NaN and inf included) on a big sample or all 2^32 patterns."""
    torch.set_num_threads(1)
    for name in names:
        start, mismatches, count = time.perf_counter(), 0, 0
        if every_pattern:
            chunks = (np.arange(lo, lo + chunk, dtype=np.uint64).astype(np.uint32).view(np.float32)
                      for lo in range(0, 2**32, chunk))
        else:
            sample = structured_sample(name, np.random.default_rng(0), n_random=64)
            chunks = (sample[lo:lo + chunk] for lo in range(0, sample.size, chunk))
        for x in chunks:
            bad = ~same(round_to_format(x, name, overflow="ieee"), torch_cast(x, name))
            count += x.size
            if bad.any():
                mismatches += int(bad.sum())
                print(f"  {name}: mismatch at bit patterns {x[bad][:3].view(np.uint32)}", flush=True)
        seconds = time.perf_counter() - start
        print(f"{name}: {mismatches} mismatches in {count} inputs ({seconds:.0f} s)", flush=True)


if __name__ == "__main__":
    args = sys.argv[1:]
    exhaustive([a for a in args if a != "--all"] or list(TORCH_DTYPES), every_pattern="--all" in args)
