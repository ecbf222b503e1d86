"""Comparing a learner's answer with the expected one, and describing both in a few short lines.

The default rule is strict on purpose: quantization is exact integer arithmetic, so codes must be
equal, not close. An array must have the expected shape and the same kind of dtype (integer codes
stay integers, floats stay floats); its values must be equal. A tolerance applies to float values
only, and only when an exercise sets ``rtol``/``atol``.

Every description is deterministic (fixed numpy print options, no memory addresses), because
notebooks that print them are compared output for output by nbval.
"""

from __future__ import annotations

import math
import numbers
import re
from typing import Any

import numpy as np

__all__ = ["compare_values", "format_value"]

_THRESHOLD = 12  # arrays with more elements are abbreviated: [a, b, c, ..., x, y, z]
_KINDS = {"i": "an integer", "u": "an integer", "f": "a float", "b": "a boolean", "c": "a complex"}
_SAME_KIND = {"i": "iu", "u": "iu", "f": "f", "b": "b", "c": "c"}


def format_value(value: Any, *, width: int = 80) -> str:
    """A short, deterministic text for ``value``: arrays abbreviated with ``np.array2string``.

    >>> format_value(np.arange(30, dtype=np.int8))
    'array([ 0,  1,  2, ..., 27, 28, 29], dtype=int8, shape=(30,))'
    >>> format_value((np.float32(0.5), 3))
    '(np.float32(0.5), 3)'
    """
    if isinstance(value, np.ndarray):
        text = np.array2string(
            value, max_line_width=width, precision=8, suppress_small=False, separator=", ",
            prefix="array(", threshold=_THRESHOLD, edgeitems=3, floatmode="maxprec", sign="-",
        )
        shape = f", shape={value.shape}" if value.size > _THRESHOLD else ""
        return f"array({text}, dtype={value.dtype}{shape})"
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v, width=width) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        if len(value) > 12:
            head = ", ".join(format_value(v, width=width) for v in value[:3])
            return f"[{head}, ... ({len(value)} items)]"
        return "[" + ", ".join(format_value(v, width=width) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {format_value(v, width=width)}" for k, v in value.items()) + "}"
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))  # no memory addresses: output stays stable
    return text if len(text) <= 200 else text[:197] + "..."


def _type_name(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if value is None:
        return "None"
    if isinstance(value, (list, tuple, dict)):
        return f"a {type(value).__name__} of {len(value)} items"
    return f"{type(value).__name__} {format_value(value)}"


def _is_integer(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_))


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, (bool, np.bool_))


def _scalar(value: Any) -> Any:
    """A 0-d array counts as the number it holds."""
    if isinstance(value, np.ndarray) and value.ndim == 0:
        return value[()]
    return value


def _close(got: float, expected: float, rtol: float, atol: float) -> bool:
    if math.isnan(expected) or math.isnan(got):
        return math.isnan(expected) and math.isnan(got)
    if rtol == 0 and atol == 0:
        return got == expected
    if math.isinf(expected) or math.isinf(got):
        return got == expected
    return math.isclose(got, expected, rel_tol=rtol, abs_tol=atol)


def _tolerance(rtol: float, atol: float) -> str:
    return "" if rtol == 0 and atol == 0 else f" (tolerance rtol={rtol:g}, atol={atol:g})"


def _compare_arrays(got: Any, expected: np.ndarray, rtol: float, atol: float,
                    strict_dtype: bool) -> str | None:
    if isinstance(got, np.generic):
        got = np.asarray(got)
    if not isinstance(got, np.ndarray):
        hint = "; convert it with np.asarray(...)" if isinstance(got, (list, tuple)) else ""
        return f"expected a numpy array, got {_type_name(got)}{hint}"
    if got.shape != expected.shape:
        return f"returned shape {got.shape}, expected shape {expected.shape}"
    kind = expected.dtype.kind
    if strict_dtype and got.dtype != expected.dtype:
        return f"returned dtype {got.dtype}, expected dtype {expected.dtype}"
    if got.dtype.kind not in _SAME_KIND.get(kind, kind):
        what = _KINDS.get(kind, str(expected.dtype))
        return f"returned dtype {got.dtype}, expected {what} dtype such as {expected.dtype}"
    if kind == "f" and (rtol or atol):
        ok = np.isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    elif kind in "fc":
        ok = (got == expected) | (np.isnan(got) & np.isnan(expected))
    else:
        ok = got == expected
    ok = np.asarray(ok, dtype=bool)
    if ok.all():
        return None
    bad = np.argwhere(~ok)
    index = tuple(int(i) for i in bad[0])
    where = f"at index {index[0]}" if len(index) == 1 else f"at index {index}"
    return (
        f"{bad.shape[0]} of {expected.size} values differ{_tolerance(rtol, atol)}; the first {where}: "
        f"returned {str(got[index])}, expected {str(expected[index])}"
    )


def compare_values(got: Any, expected: Any, *, rtol: float = 0.0, atol: float = 0.0,
                   strict_dtype: bool = False) -> str | None:
    """Return ``None`` if ``got`` matches ``expected``, else a short reason why not.

    - arrays: same shape, same dtype kind (exact dtype with ``strict_dtype``), equal values
      (NaN equals NaN); float values within ``rtol``/``atol`` if either is non-zero;
    - ints: an integer (Python or numpy) with the same value; floats: any real number, equal or
      ``math.isclose`` within the tolerance; bools: a bool;
    - tuples and lists: the same length, compared item by item; dicts: same keys, then values.

    >>> compare_values(np.array([1, 2], np.int8), np.array([1, 3], np.int8))
    '1 of 2 values differ; the first at index 1: returned 2, expected 3'
    >>> compare_values(256.0, 256)
    'expected an integer, got float 256.0'
    >>> compare_values(0.30000001, 0.3, rtol=1e-6) is None
    True
    """
    if isinstance(expected, np.ndarray) and expected.ndim > 0:
        return _compare_arrays(got, expected, rtol, atol, strict_dtype)
    expected = _scalar(expected)
    if isinstance(expected, (bool, np.bool_)):
        got = _scalar(got)
        if not isinstance(got, (bool, np.bool_)):
            return f"expected a bool (True or False), got {_type_name(got)}"
        return None if bool(got) == bool(expected) else f"returned {got}, expected {expected}"
    if _is_integer(expected):
        got = _scalar(got)
        if not _is_integer(got):
            return f"expected an integer, got {_type_name(got)}"
        return None if int(got) == int(expected) else f"returned {int(got)}, expected {int(expected)}"
    if _is_real(expected):
        got = _scalar(got)
        if not _is_real(got):
            return f"expected a number, got {_type_name(got)}"
        if _close(float(got), float(expected), rtol, atol):
            return None
        return f"returned {float(got)!r}, expected {float(expected)!r}{_tolerance(rtol, atol)}"
    if isinstance(expected, (tuple, list)):
        if not isinstance(got, (tuple, list)):
            return f"expected a {type(expected).__name__} of {len(expected)} items, got {_type_name(got)}"
        if len(got) != len(expected):
            return f"returned {len(got)} items, expected {len(expected)}"
        for i, (g, e) in enumerate(zip(got, expected)):
            reason = compare_values(g, e, rtol=rtol, atol=atol, strict_dtype=strict_dtype)
            if reason is not None:
                return f"item {i} (of {len(expected)}): {reason}"
        return None
    if isinstance(expected, dict):
        if not isinstance(got, dict):
            return f"expected a dict, got {_type_name(got)}"
        if set(got) != set(expected):
            return f"returned keys {sorted(map(str, got))}, expected keys {sorted(map(str, expected))}"
        for key in expected:
            reason = compare_values(got[key], expected[key], rtol=rtol, atol=atol, strict_dtype=strict_dtype)
            if reason is not None:
                return f"key {key!r}: {reason}"
        return None
    if expected is None:
        return None if got is None else f"expected None, got {_type_name(got)}"
    try:
        equal = bool(got == expected)
    except Exception:  # an object whose == does not give a single truth value
        equal = False
    return None if equal else f"returned {format_value(got)}, expected {format_value(expected)}"
