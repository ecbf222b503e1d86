"""Input checks shared by every qlearn module.

Each helper raises ``TypeError`` or ``ValueError`` with a message that names the argument, the value
received and what was expected, so that a learner knows how to fix the call.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = [
    "as_float32",
    "as_float64",
    "as_int_array",
    "check_amount",
    "check_axis",
    "check_bits",
    "check_bool",
    "check_finite",
    "check_int",
    "check_int_pair",
    "check_positive",
    "check_range",
    "check_real",
]


def _describe(value: object) -> str:
    if isinstance(value, np.ndarray):
        return f"an array of dtype {value.dtype} and shape {value.shape}"
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _real_array(x: object, name: str, dtype: type, finite: bool) -> np.ndarray:
    if isinstance(x, (str, bytes)):
        raise TypeError(f"{name} must be an array of real numbers, got the string {_describe(x)}")
    try:
        arr = np.asarray(x)
    except Exception as exc:  # ragged nested lists and the like
        raise TypeError(f"{name} must be an array of real numbers, got {_describe(x)}: {exc}") from None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(
            f"{name} must hold real numbers (integer or float), got dtype {arr.dtype}; "
            f"convert it with np.asarray({name}, dtype=np.{np.dtype(dtype).name})"
        )
    arr = arr.astype(dtype, copy=False)
    if finite:
        check_finite(arr, name)
    return arr


def as_float32(x: object, name: str = "x", *, finite: bool = True) -> np.ndarray:
    """Return ``x`` as a float32 numpy array, rejecting what cannot be quantized.

    Quantization in qlearn, as in PyTorch's kernels, is computed in float32. Integer and float
    arrays are accepted; booleans, complex numbers, strings and objects are not. With
    ``finite=True`` any NaN or infinity is an error: it would silently become a garbage code.

    >>> as_float32([1, 2.5]).dtype
    dtype('float32')
    """
    return _real_array(x, name, np.float32, finite)


def as_float64(x: object, name: str = "x", *, finite: bool = True) -> np.ndarray:
    """Return ``x`` as a float64 numpy array (for metrics, which accumulate in float64), with the
    checks of :func:`as_float32`.

    >>> as_float64(np.float32([0.1])).dtype
    dtype('float64')
    """
    return _real_array(x, name, np.float64, finite)


def as_int_array(a: object, name: str) -> np.ndarray:
    """``a`` as a numpy array of integer codes (any integer dtype, unchanged), else ``TypeError``.

    >>> as_int_array(np.array([3, -1], np.int8), "q_x").dtype
    dtype('int8')
    """
    arr = np.asarray(a)
    if arr.dtype == bool or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(
            f"{name} must hold integer codes (an integer dtype such as uint8 or int8), got dtype "
            f"{arr.dtype}; quantize real values first (qlearn.quantize)"
        )
    return arr


def check_finite(arr: np.ndarray, name: str) -> None:
    """Raise ``ValueError`` if ``arr`` holds a NaN or an infinity, saying where."""
    if arr.size and not np.isfinite(arr).all():
        bad = np.flatnonzero(~np.isfinite(arr.reshape(-1)))
        first = np.unravel_index(bad[0], arr.shape) if arr.ndim else ()
        raise ValueError(
            f"{name} contains {bad.size} non-finite value(s) (NaN or inf), the first "
            f"{float(arr.reshape(-1)[bad[0]])} at index {tuple(int(i) for i in first)}; "
            f"remove or replace them first (for example with np.nan_to_num)"
        )


def check_int(value: object, name: str) -> int:
    """Return ``value`` as a Python int, or raise ``TypeError`` if it is not a whole number."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an integer, got {_describe(value)}")
    return int(value)


def check_bits(bits: object) -> int:
    """Return ``bits`` as an int after checking that it lies in 1..32."""
    bits = check_int(bits, "bits")
    if not 1 <= bits <= 32:
        raise ValueError(f"bits must be between 1 and 32, got {bits}")
    return bits


def check_bool(value: object, name: str) -> bool:
    """Return ``value`` as a bool, or raise ``TypeError`` unless it is ``True`` or ``False``.

    >>> check_bool(np.True_, "signed")
    True
    """
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be True or False, got {value!r}")
    return bool(value)


def check_real(value: object, name: str) -> float:
    """Return ``value`` as a float, or raise ``TypeError`` unless it is a real number (not a bool).

    >>> check_real(3, "c")
    3.0
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    return float(value)


def check_positive(value: object, name: str) -> np.ndarray:
    """A positive, finite real number, or a 1-D array of them (one per channel), as float64.

    >>> check_positive(0.5, "scale"), check_positive([0.1, 0.2], "scale").shape
    (array(0.5), (2,))
    """
    if isinstance(value, (bool, np.bool_, str, bytes)):
        raise TypeError(f"{name} must be a positive real number (or a 1-D array of them), got {value!r}")
    arr = np.asarray(value)
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a positive real number (or a 1-D array of them), got dtype {arr.dtype}")
    arr = arr.astype(np.float64)
    if arr.ndim > 1:
        raise ValueError(f"{name} must be a scalar or a 1-D array (one per channel), got shape {arr.shape}")
    if not (np.isfinite(arr).all() and (arr > 0).all()):
        bad = arr.reshape(-1)[~(np.isfinite(arr.reshape(-1)) & (arr.reshape(-1) > 0))][0]
        raise ValueError(f"{name} must be positive and finite, got {float(bad)!r}")
    return arr


def check_int_pair(value: object, name: str) -> tuple[int, int]:
    """An int, or a pair of ints (height, width), as a pair: a kernel size, stride or padding.

    >>> check_int_pair(3, "stride"), check_int_pair((1, 2), "padding")
    ((3, 3), (1, 2))
    """
    if isinstance(value, numbers.Integral) and not isinstance(value, (bool, np.bool_)):
        value = (value, value)
    if not (isinstance(value, (tuple, list)) and len(value) == 2):
        raise TypeError(f"{name} must be an int or a pair of ints, got {value!r}")
    return check_int(value[0], name), check_int(value[1], name)


def check_range(qmin: object, qmax: object) -> tuple[int, int]:
    """Check an integer code range ``qmin <= qmax`` (both within int64) and return it."""
    qmin = check_int(qmin, "qmin")
    qmax = check_int(qmax, "qmax")
    if qmin > qmax:
        raise ValueError(f"qmin must not exceed qmax, got qmin={qmin} > qmax={qmax}")
    if qmin < -(2**31) or qmax > 2**32 - 1:
        raise ValueError(
            f"qmin and qmax must describe a code range of at most 32 bits, got [{qmin}, {qmax}]"
        )
    return qmin, qmax


def check_axis(axis: object, ndim: int, name: str = "axis") -> int:
    """Normalise ``axis`` (negative values count from the end) for an array of ``ndim`` dims."""
    axis = check_int(axis, name)
    if not -ndim <= axis < ndim:
        raise ValueError(f"{name}={axis} is out of range for an array with {ndim} dimension(s)")
    return axis % ndim


def check_amount(amount: object, count: int) -> int:
    """Turn a pruning ``amount`` into the number of entries to prune, as torch.nn.utils.prune does.

    A float in [0, 1] is a fraction: ``round(amount * count)`` entries, rounded half-to-even like
    Python's ``round``. An int is an exact number of entries, at most ``count``.

    >>> check_amount(0.5, 5), check_amount(3, 10)
    (2, 3)
    """
    if isinstance(amount, (bool, np.bool_)):
        raise TypeError(f"amount must be a float in [0, 1] or a non-negative int, got {amount!r}")
    if isinstance(amount, numbers.Integral):
        amount = int(amount)
        if amount < 0:
            raise ValueError(f"amount as an int counts entries to prune and must be >= 0, got {amount}")
        if amount > count:
            raise ValueError(f"amount={amount} is more entries than the {count} there are to prune")
        return amount
    if isinstance(amount, numbers.Real):
        amount = float(amount)
        if not 0.0 <= amount <= 1.0:  # also rejects NaN
            raise ValueError(f"amount as a float is a fraction and must lie in [0, 1], got {amount}")
        return round(amount * count)
    raise TypeError(f"amount must be a float in [0, 1] or a non-negative int, got {_describe(amount)}")
