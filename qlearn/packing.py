"""Storing sub-byte codes: ``8 // bits`` codes of 1, 2 or 4 bits share one uint8.

Code ``i`` goes into byte ``i // per_byte`` at bit offset ``bits * (i % per_byte)``, with
``per_byte = 8 // bits``: **element 0 sits in the low bits of byte 0**. This is the layout of
torch's ``quint4x2`` and ``quint2x4`` (``int_repr()`` of ``[1, 2]`` as quint4x2 is ``[0x21]``)::

    byte = sum(code[j] << (bits * j) for j in range(per_byte))
    code[j] = (byte >> (bits * j)) & (2**bits - 1)

A signed code is stored as its ``bits``-bit two's complement (-1 in 4 bits is ``0b1111``), so
``unpack`` must be told ``signed=True`` to get it back. ``bits=8`` is allowed and is a plain copy
(an int8 code is reinterpreted as its uint8 bit pattern).
"""

from __future__ import annotations

import numpy as np

from qlearn._validate import check_bool, check_int

__all__ = ["pack", "unpack"]

PACK_BITS = (1, 2, 4, 8)


def _check_bits(bits: object) -> int:
    bits = check_int(bits, "bits")
    if bits not in PACK_BITS:
        raise ValueError(f"bits must be one of {PACK_BITS} (a whole number of codes per byte), got {bits}")
    return bits


def pack(q: object, bits: int, signed: bool = False) -> np.ndarray:
    """Pack integer codes into a 1-D uint8 array, ``8 // bits`` codes per byte, low bits first.

    Each code must fit: ``[0, 2**bits - 1]`` unsigned or ``[-2**(bits-1), 2**(bits-1) - 1]`` with
    ``signed=True`` (stored as two's complement, ``code & (2**bits - 1)``). ``q`` is flattened in
    C order and padded with zero codes to a multiple of ``8 // bits``, so the result has
    ``ceil(q.size * bits / 8)`` bytes.

    >>> pack([1, 2, 3], bits=4)                 # 0x21, 0x03
    array([33,  3], dtype=uint8)
    >>> pack([-1, 1, 0, -2], bits=2, signed=True)   # 0b10_00_01_11
    array([135], dtype=uint8)
    """
    bits, signed = _check_bits(bits), check_bool(signed, "signed")
    codes = np.asarray(q)
    if codes.dtype == bool or not np.issubdtype(codes.dtype, np.integer):
        raise TypeError(f"q must hold integer codes, got dtype {codes.dtype}; quantize first")
    codes = codes.reshape(-1)
    qmin, qmax = (-(2 ** (bits - 1)), 2 ** (bits - 1) - 1) if signed else (0, 2**bits - 1)
    bad = (codes < qmin) | (codes > qmax)  # checked before any cast, so nothing can wrap
    if bad.any():
        kind = "signed" if signed else "unsigned"
        hint = "" if signed or codes.min() >= 0 else "; pass signed=True for two's-complement codes"
        raise ValueError(
            f"code {codes[bad][0]} does not fit in {bits} {kind} bits [{qmin}, {qmax}] "
            f"({int(bad.sum())} code(s) out of range){hint}"
        )
    per_byte = 8 // bits
    u = codes.astype(np.int64) & (2**bits - 1)  # two's complement within bits
    u = np.concatenate([u, np.zeros(-u.size % per_byte, dtype=np.int64)]).reshape(-1, per_byte)
    shifts = bits * np.arange(per_byte)
    return (u << shifts).sum(axis=1).astype(np.uint8)


def unpack(packed: object, bits: int, count: int, signed: bool = False) -> np.ndarray:
    """Inverse of ``pack``: the first ``count`` codes, as uint8 (or int8 with ``signed=True``), 1-D.

    ``code[i] = (packed[i // per_byte] >> (bits * (i % per_byte))) & (2**bits - 1)``; with
    ``signed=True`` a code ``>= 2**(bits-1)`` has ``2**bits`` subtracted. ``packed`` must have exactly
    ``ceil(count * bits / 8)`` bytes. Reshape the result yourself.

    >>> unpack(np.array([33, 3], dtype=np.uint8), bits=4, count=3)
    array([1, 2, 3], dtype=uint8)
    >>> unpack(np.array([135], dtype=np.uint8), bits=2, count=4, signed=True)
    array([-1,  1,  0, -2], dtype=int8)
    """
    bits, signed = _check_bits(bits), check_bool(signed, "signed")
    count = check_int(count, "count")
    if count < 0:
        raise ValueError(f"count must be >= 0, got {count}")
    packed = np.asarray(packed)
    if packed.dtype != np.uint8 or packed.ndim != 1:
        raise TypeError(
            f"packed must be a 1-D uint8 array (the output of pack), got {packed.dtype} of shape {packed.shape}"
        )
    need = -(-count * bits // 8)
    if packed.size != need:
        raise ValueError(
            f"packed has {packed.size} byte(s) but {count} codes of {bits} bits need "
            f"ceil({count} * {bits} / 8) = {need}"
        )
    per_byte = 8 // bits
    shifts = bits * np.arange(per_byte, dtype=np.uint8)
    codes = ((packed[:, None] >> shifts) & (2**bits - 1)).reshape(-1)[:count].astype(np.int16)
    if signed:
        codes = np.where(codes >= 2 ** (bits - 1), codes - 2**bits, codes)
    return codes.astype(np.int8 if signed else np.uint8)
