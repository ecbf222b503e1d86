"""Comparing a learner's answer with the expected one, and describing both in a few short lines.

The default rule is strict on purpose: quantization is exact integer arithmetic, so codes must be
equal, not close. An array must have the expected shape and the same kind of dtype (integer codes
stay integers, floats stay floats); its values must be equal. A tolerance applies to float values
only, and only when an exercise sets ``rtol``/``atol``.

Every description is deterministic (fixed numpy print options, no memory addresses), because
notebooks that print them are compared output for output by nbval.

Torch tensors compare like arrays: an expected ``torch.Tensor`` wants a tensor of the same shape and
dtype kind (the exact dtype with ``strict_dtype``) and equal values, or values within ``rtol``/``atol``.
Their values are read as numpy arrays (bfloat16 and float8 widened to float32, exactly), never with
the tensor's own ``==``. Nothing here imports torch: a tensor can exist only once torch is loaded.

Nothing here trusts the returned object: :func:`plain_problem` accepts only plain ``ndarray``s of
numbers, dense ``torch.Tensor``s, numpy and Python numbers, and tuples, lists and dicts of them (an ndarray subclass whose
``==`` always says True is refused before any comparison), and the functions the comparison needs
(``math.isclose``, ``np.isclose``, ...) are captured when this module is imported, so patching them
later from a notebook changes nothing.
"""

from __future__ import annotations

import math
import numbers
import re
import sys
from typing import Any

import numpy as np

__all__ = ["compare_values", "first_difference", "format_value", "plain_problem", "tie_note"]

# Captured at import time: a notebook that patches math.isclose or np.isclose later cannot pass a check.
_isclose, _isnan, _isinf, _floor = math.isclose, math.isnan, math.isinf, math.floor
_np_isclose, _np_isnan, _np_argwhere, _np_asarray = np.isclose, np.isnan, np.argwhere, np.asarray
_np_ndarray, _np_generic, _np_bool, _np_float32, _np_float64 = np.ndarray, np.generic, np.bool_, np.float32, np.float64
_np_rint, _np_broadcast_to = np.rint, np.broadcast_to
_array2string = np.array2string
_isinstance, _type, _len, _float, _int, _bool = isinstance, type, len, float, int, bool
_PLAIN_SCALARS = (int, float, bool, complex, str, bytes, type(None))
_NUMBER_KINDS = "biufc"

_THRESHOLD = 12  # arrays with more elements are abbreviated: [a, b, c, ..., x, y, z]
_KINDS = {"i": "an integer", "u": "an integer", "f": "a float", "b": "a boolean", "c": "a complex"}
_SAME_KIND = {"i": "iu", "u": "iu", "f": "f", "b": "b", "c": "c"}


_ANY_KIND = {"i": "any integer dtype", "u": "any integer dtype", "f": "any float dtype",
             "b": "dtype bool", "c": "any complex dtype"}


_TORCH_KINDS = {"bool": "b", "uint8": "u", "uint16": "u", "uint32": "u", "uint64": "u", "int8": "i",
                "int16": "i", "int32": "i", "int64": "i", "float16": "f", "bfloat16": "f", "float32": "f",
                "float64": "f", "float8_e4m3fn": "f", "float8_e5m2": "f", "float8_e4m3fnuz": "f",
                "float8_e5m2fnuz": "f", "complex64": "c", "complex128": "c"}


def _is_tensor(value: Any) -> bool:
    """Exactly a ``torch.Tensor`` (or ``torch.nn.Parameter``); ``False`` without importing torch."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return _type(value) in (torch.Tensor, torch.nn.Parameter)
    except AttributeError:
        return False


def _tensor_kind(value: Any) -> str:
    return _TORCH_KINDS.get(str(value.dtype).removeprefix("torch."), "?")


def _tensor_problem(value: Any) -> str | None:
    import torch

    if _tensor_kind(value) == "?":
        return f"returned a tensor of dtype {value.dtype}: return a tensor of numbers (not quantized)"
    if value.layout != torch.strided or getattr(value, "is_nested", False) or value.device.type == "meta":
        return "returned a tensor that is not dense: return a dense tensor (.to_dense())"
    return None


def _tensor_numpy(value: Any) -> np.ndarray:
    """The tensor's values as a numpy array: bfloat16 and float8 widened to float32 (exactly)."""
    import torch

    data = value.detach().to("cpu").resolve_conj().resolve_neg()
    name = str(data.dtype).removeprefix("torch.")
    if name == "bfloat16" or name.startswith("float8"):
        data = data.to(torch.float32)
    try:
        return data.numpy().copy()
    except (TypeError, RuntimeError):  # an integer dtype this numpy bridge lacks
        return data.to(torch.int64 if _tensor_kind(value) in "iu" else torch.float64).numpy().copy()


def format_value(value: Any, *, width: int = 80, exact_dtype: bool = True) -> str:
    """A short, deterministic text for ``value``: arrays abbreviated with ``np.array2string``.

    With ``exact_dtype=False`` an array names the dtype kind instead of its dtype: that is how an
    expected value is shown when any integer (or float) dtype is accepted.

    >>> format_value(np.arange(30, dtype=np.int8))
    'array([ 0,  1,  2, ..., 27, 28, 29], dtype=int8, shape=(30,))'
    >>> format_value(np.array([-2, 0, 127], np.int8), exact_dtype=False)
    'array([ -2,   0, 127], any integer dtype)'
    >>> format_value((np.float32(0.5), 3))
    '(np.float32(0.5), 3)'
    """
    if isinstance(value, np.ndarray):
        text = np.array2string(
            value, max_line_width=width, precision=8, suppress_small=False, separator=", ",
            prefix="array(", threshold=_THRESHOLD, edgeitems=3, floatmode="maxprec", sign="-",
        )
        shape = f", shape={value.shape}" if value.size > _THRESHOLD else ""
        dtype = f"dtype={value.dtype}" if exact_dtype else _ANY_KIND.get(value.dtype.kind, f"dtype={value.dtype}")
        return f"array({text}, {dtype}{shape})"
    if _is_tensor(value) and _tensor_problem(value) is None:
        array = _tensor_numpy(value)
        text = np.array2string(
            array, max_line_width=width, precision=8, suppress_small=False, separator=", ",
            prefix="tensor(", threshold=_THRESHOLD, edgeitems=3, floatmode="maxprec", sign="-",
        )
        shape = f", shape={tuple(value.shape)}" if array.size > _THRESHOLD else ""
        dtype = f"dtype={value.dtype}" if exact_dtype else _ANY_KIND.get(_tensor_kind(value), f"dtype={value.dtype}")
        return f"tensor({text}, {dtype}{shape})"
    if isinstance(value, tuple):
        inner = ", ".join(format_value(v, width=width, exact_dtype=exact_dtype) for v in value)
        return f"({inner},)" if len(value) == 1 else f"({inner})"
    if isinstance(value, list):
        if len(value) > 12:
            head = ", ".join(format_value(v, width=width, exact_dtype=exact_dtype) for v in value[:3])
            return f"[{head}, ... ({len(value)} items)]"
        return "[" + ", ".join(format_value(v, width=width, exact_dtype=exact_dtype) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k!r}: {format_value(v, width=width, exact_dtype=exact_dtype)}"
                               for k, v in value.items()) + "}"
    text = re.sub(r" at 0x[0-9a-fA-F]+", "", repr(value))  # no memory addresses: output stays stable
    return text if len(text) <= 200 else text[:197] + "..."


# numpy's own scalar types, captured at import: a subclass may claim ``__module__ = "numpy"``
_NUMPY_SCALARS = frozenset(t for t in set(np.sctypeDict.values()) if issubclass(t, np.generic)
                           and t.__module__ == "numpy")


def plain_problem(value: Any, _depth: int = 0) -> str | None:
    """``None`` if ``value`` is plain data, else why not. Run it before comparing a learner's result.

    Plain data: an exact ``np.ndarray`` of a number dtype (bool, int, uint, float, complex), a
    numpy scalar of such a dtype, a Python number, string, ``None``, and exact tuples, lists and
    dicts of these. Subclasses are refused: they can redefine ``==``.

    >>> plain_problem((np.zeros(2, np.float32), 3, [1.5, None]))
    >>> class Liar(np.ndarray):
    ...     def __eq__(self, other): return np.ones(self.shape, bool)
    >>> plain_problem(np.zeros(3).view(Liar))
    'returned a Liar, a subclass of np.ndarray: return a plain numpy array (np.asarray(...))'
    >>> class Float(np.float64): pass
    >>> Float.__module__ = "numpy"
    >>> plain_problem(Float(1.0))
    'returned a Float, not a plain numpy number: return a plain number'
    >>> plain_problem(np.array([1, "a"], dtype=object))
    'returned an array of dtype object: return an array of numbers'
    """
    kind = _type(value)
    if kind in _PLAIN_SCALARS:
        return None
    if _is_tensor(value):
        return _tensor_problem(value)
    if kind is _np_ndarray:
        if value.dtype.kind not in _NUMBER_KINDS or value.dtype.fields is not None:
            return f"returned an array of dtype {value.dtype}: return an array of numbers"
        return None
    if _isinstance(value, _np_generic):
        if kind not in _NUMPY_SCALARS or value.dtype.kind not in _NUMBER_KINDS:
            return f"returned a {kind.__name__}, not a plain numpy number: return a plain number"
        return None
    if _depth > 20:
        return "returned containers nested too deep"
    if kind in (tuple, list):
        for item in value:
            problem = plain_problem(item, _depth + 1)
            if problem is not None:
                return problem
        return None
    if kind is dict:
        for key, item in value.items():
            for part in (key, item):
                problem = plain_problem(part, _depth + 1)
                if problem is not None:
                    return problem
        return None
    torch = sys.modules.get("torch")
    if torch is not None and _isinstance(value, torch.Tensor):
        return f"returned a {kind.__name__}, a subclass of torch.Tensor: return a plain tensor"
    for base, fix in ((_np_ndarray, "a plain numpy array (np.asarray(...))"), (tuple, "a plain tuple"),
                      (list, "a plain list"), (dict, "a plain dict"), (float, "a plain float"),
                      (int, "a plain int")):
        if _isinstance(value, base):
            where = "np.ndarray" if base is _np_ndarray else base.__name__
            return f"returned a {kind.__name__}, a subclass of {where}: return {fix}"
    return f"returned a {kind.__name__} object: return numbers, numpy arrays, or tuples of them"


def first_difference(got: Any, expected: Any) -> tuple[int, ...] | None:
    """The index of the first element where two arrays of the same shape differ, else ``None``.

    >>> first_difference(np.array([[1, 2], [3, 4]]), np.array([[1, 2], [3, 5]]))
    (1, 1)
    """
    if _type(got) is not _np_ndarray or _type(expected) is not _np_ndarray or got.shape != expected.shape:
        return None
    bad = _np_argwhere(got != expected)
    if bad.shape[0] == 0 or got.ndim == 0:
        return None
    return tuple(_int(i) for i in bad[0])


def tie_note(x: Any, scale: Any, got: Any, expected: Any, name: str = "x") -> str | None:
    """At the first wrong code, a note when ``x * (1 / scale)`` sits exactly on a tie ``k + 1/2``.

    The kernels (``torch.quantize_per_tensor``, ``qlearn.quantize``) multiply by the float32
    reciprocal of the scale; ``np.rint`` then rounds a tie to the even integer.

    >>> x = np.array([0.25, 1.25], np.float32)
    >>> tie_note(x, np.float32(0.5), np.array([1, 3]), np.array([0, 2]))
    'at index 0, x / scale = 0.5 lies exactly halfway between 0 and 1: np.rint rounds a tie to the even one, 0 (round half up would give 1, half away from zero 1)'
    >>> tie_note(x, np.float32(0.5), np.array([0, 3]), np.array([0, 3])) is None
    True
    """
    index = first_difference(got, expected)
    if index is None:
        return None
    try:
        x32 = _np_asarray(x, dtype=_np_float32)
        inv = _np_float32(1) / _np_asarray(scale, dtype=_np_float32)
        v = _np_broadcast_to(x32 * inv, _np_asarray(expected).shape)[index]
    except (TypeError, ValueError, IndexError):
        return None
    v = _float(v)
    low = _floor(v)
    if v - low != 0.5:
        return None
    even = low if low % 2 == 0 else low + 1
    where = f"at index {index[0]}" if _len(index) == 1 else f"at index {index}"
    return (f"{where}, {name} / scale = {v!r} lies exactly halfway between {low} and {low + 1}: np.rint "
            f"rounds a tie to the even one, {even} (round half up would give {low + 1}, half away from "
            f"zero {low + 1 if v > 0 else low})")


def _type_name(value: Any) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    if _is_tensor(value):
        return f"a torch tensor of dtype {value.dtype} and shape {tuple(value.shape)}"
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
    if _isnan(expected) or _isnan(got):
        return _isnan(expected) and _isnan(got)
    if rtol == 0 and atol == 0:
        return got == expected
    if _isinf(expected) or _isinf(got):
        return got == expected
    return _isclose(got, expected, rel_tol=rtol, abs_tol=atol)


def _tolerance(rtol: float, atol: float) -> str:
    return "" if rtol == 0 and atol == 0 else f" (tolerance rtol={rtol:g}, atol={atol:g})"


def _compare_arrays(got: Any, expected: np.ndarray, rtol: float, atol: float,
                    strict_dtype: bool) -> str | None:
    if isinstance(got, np.generic):
        got = _np_asarray(got)
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
        ok = _np_isclose(got, expected, rtol=rtol, atol=atol, equal_nan=True)
    elif kind in "fc":
        ok = (got == expected) | (_np_isnan(got) & _np_isnan(expected))
    else:
        ok = got == expected
    ok = _np_asarray(ok, dtype=_np_bool)
    if ok.all():
        return None
    bad = _np_argwhere(~ok)
    index = tuple(int(i) for i in bad[0])
    where = f"at index {index[0]}" if len(index) == 1 else f"at index {index}"
    return (
        f"{bad.shape[0]} of {expected.size} values differ{_tolerance(rtol, atol)}; the first {where}: "
        f"returned {str(got[index])}, expected {str(expected[index])}"
    )


def _compare_tensors(got: Any, expected: Any, rtol: float, atol: float, strict_dtype: bool) -> str | None:
    if not _is_tensor(got):
        hint = "; convert it with torch.from_numpy(...)" if isinstance(got, np.ndarray) else ""
        return f"expected a torch tensor, got {_type_name(got)}{hint}"
    if tuple(got.shape) != tuple(expected.shape):
        return f"returned shape {tuple(got.shape)}, expected shape {tuple(expected.shape)}"
    if strict_dtype and got.dtype != expected.dtype:
        return f"returned dtype {got.dtype}, expected dtype {expected.dtype}"
    kind, got_kind = _tensor_kind(expected), _tensor_kind(got)
    if got_kind not in _SAME_KIND.get(kind, kind):
        what = _KINDS.get(kind, str(expected.dtype))
        return f"returned dtype {got.dtype}, expected {what} dtype such as {expected.dtype}"
    g, e = _tensor_numpy(got), _tensor_numpy(expected)
    if g.ndim == 0:  # compare 0-d tensors as 1-element arrays: the message reads the same
        g, e = g.reshape(1), e.reshape(1)
    return _compare_arrays(g, e, rtol, atol, False)


def compare_values(got: Any, expected: Any, *, rtol: float = 0.0, atol: float = 0.0,
                   strict_dtype: bool = False) -> str | None:
    """Return ``None`` if ``got`` matches ``expected``, else a short reason why not.

    - arrays: same shape, same dtype kind (exact dtype with ``strict_dtype``), equal values
      (NaN equals NaN); float values within ``rtol``/``atol`` if either is non-zero;
    - ints: an integer (Python or numpy) with the same value; floats: any real number, equal or
      ``math.isclose`` within the tolerance; bools: a bool;
    - tuples and lists: the same length, compared item by item; dicts: same keys, then values;
    - torch tensors: a tensor (not an array) of the same shape and dtype kind, values as for arrays.

    ``got`` must be plain data (:func:`plain_problem`): an ndarray subclass or an object with its
    own ``__eq__`` is refused before anything is compared.

    >>> compare_values(np.array([1, 2], np.int8), np.array([1, 3], np.int8))
    '1 of 2 values differ; the first at index 1: returned 2, expected 3'
    >>> compare_values(256.0, 256)
    'expected an integer, got float 256.0'
    >>> compare_values(0.30000001, 0.3, rtol=1e-6) is None
    True
    """
    problem = plain_problem(got)
    if problem is not None:
        return problem
    if _is_tensor(expected):
        return _compare_tensors(got, expected, rtol, atol, strict_dtype)
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
