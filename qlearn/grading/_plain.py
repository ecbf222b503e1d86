"""Plain data between the grader and its sandboxed child: JSON, with arrays as dtype/shape/base64.

The grader (``qlearn.grading.grade``) never unpickles anything a submission produced. Values cross
the pipe as JSON built by :func:`encode` and read back by :func:`decode`:

- ``None``, ``bool``, ``int``, ``str`` as themselves; a ``float`` as ``{"f": repr}`` (so that
  ``inf`` and ``nan`` survive); lists as lists; tuples as ``{"t": [...]}``; dicts with string keys
  as ``{"d": [[key, value], ...]}``;
- a plain ``numpy.ndarray`` of a numeric or boolean dtype as ``{"a": dtype, "s": shape, "b": base64}``
  of its C-contiguous bytes; a numpy scalar as ``{"n": dtype, "b": base64}``;
- a numpy dtype, or a scalar type such as ``np.int8`` passed as an argument, as ``{"dt": name}`` or
  ``{"ty": name}``;
- a ``qlearn.FloatFormat`` as ``{"ff": {field: value}}``; the lab-10 stand-ins for a model and a
  loader as ``{"obj": "TinyObservedModel" | "FakeLoader", ...}`` (the child builds its own copies).

Anything else (an ndarray subclass, an object with its own ``==``, ...) is not encoded: the child
sends ``{"x": type name}`` and the grader reports "returned a <type>: return a plain numpy array or
a Python number". :func:`decode` always builds fresh plain objects, so a returned value cannot lie
about its equality. This file imports only the standard library and numpy: the child runs it from
its source text (see ``_runner.py``), without importing ``qlearn.grading``.

>>> import numpy as np
>>> value = (np.array([1, -2], np.int8), 0.5, float("inf"), {"k": [None, True]})
>>> back = decode(encode(value))
>>> back[0].dtype, back[0].tolist(), back[1:]
(dtype('int8'), [1, -2], (0.5, inf, {'k': [None, True]}))
>>> class Liar(np.ndarray):
...     def __eq__(self, other): return True
>>> encode(np.zeros(2).view(Liar))
{'x': 'Liar'}
"""

from __future__ import annotations

import base64
import math

import numpy as np

__all__ = ["PlainError", "decode", "encode"]

_KINDS = "biuf"  # bool, signed and unsigned integers, floats: the only array dtypes that cross
_MAX_DEPTH = 20
_MAX_ITEMS = 10_000_000  # array elements per value: a runaway result is refused, not decoded


class PlainError(ValueError):
    """A value that is not plain data, or a message that does not decode."""


def _dtype_ok(dtype: np.dtype) -> bool:
    return dtype.kind in _KINDS and not dtype.fields and dtype.shape == () and dtype.itemsize <= 16


def encode(value, depth: int = 0):
    """``value`` as JSON-ready plain data (see the module doc); unsupported objects become ``{"x": type}``."""
    if depth > _MAX_DEPTH:
        return {"x": "a structure nested too deeply"}
    kind = type(value)
    if value is None or kind is bool or kind is str:
        return value
    if kind is int:
        return value if abs(value) < 2**63 else {"i": str(value)}
    if kind is float:
        return {"f": repr(value)}
    if kind is list:
        return [encode(v, depth + 1) for v in value]
    if kind is tuple:
        return {"t": [encode(v, depth + 1) for v in value]}
    if kind is dict and all(type(k) is str for k in value):
        return {"d": [[k, encode(v, depth + 1)] for k, v in value.items()]}
    if kind is np.ndarray:
        if not _dtype_ok(value.dtype):
            return {"x": f"an array of dtype {value.dtype}"}
        data = np.ascontiguousarray(value)
        return {"a": data.dtype.str, "s": list(data.shape), "b": base64.b64encode(data.tobytes()).decode()}
    if isinstance(value, np.generic) and kind.__module__ == "numpy" and _dtype_ok(value.dtype):
        return {"n": value.dtype.str, "b": base64.b64encode(np.asarray(value).tobytes()).decode()}
    if isinstance(value, np.dtype):
        return {"dt": value.str} if _dtype_ok(value) else {"x": f"dtype {value}"}
    if isinstance(value, type) and issubclass(value, np.generic) and value.__module__ == "numpy":
        return {"ty": np.dtype(value).str}
    fields = getattr(value, "_plain_fields", None)
    if kind.__name__ == "FloatFormat" and fields is None:
        import dataclasses

        if dataclasses.is_dataclass(value):
            return {"ff": {f.name: encode(getattr(value, f.name), depth + 1)
                           for f in dataclasses.fields(value)}}
    if kind.__name__ in ("TinyObservedModel", "FakeLoader") and kind.__module__.startswith("qlearn.grading"):
        return _encode_lab10(value, depth)
    return {"x": kind.__name__}


def _encode_lab10(value, depth):
    if type(value).__name__ == "TinyObservedModel":
        return {"obj": "TinyObservedModel", "weight": encode(value.weight, depth + 1),
                "bias": encode(value.bias, depth + 1)}
    return {"obj": "FakeLoader", "images": encode(list(value.images), depth + 1),
            "labels": encode(list(value.labels), depth + 1)}


def _b64(text) -> bytes:
    if type(text) is not str:
        raise PlainError("base64 data must be a string")
    try:
        return base64.b64decode(text.encode("ascii"), validate=True)
    except Exception as exc:
        raise PlainError(f"bad base64 data ({exc})") from None


def _dtype(text) -> np.dtype:
    if type(text) is not str or len(text) > 8:
        raise PlainError(f"bad dtype {text!r}")
    try:
        dtype = np.dtype(text)
    except TypeError:
        raise PlainError(f"bad dtype {text!r}") from None
    if not _dtype_ok(dtype):
        raise PlainError(f"dtype {dtype} is not allowed (only bool, integer and float arrays)")
    return dtype


def decode(data, depth: int = 0, objects=None):
    """Plain Python and numpy values from :func:`encode`'s output; ``PlainError`` if malformed.

    ``objects`` maps ``"ff"``, ``"TinyObservedModel"``, ``"FakeLoader"`` to constructors (the child
    passes its own); without it such values are refused.
    """
    if depth > _MAX_DEPTH + 2:
        raise PlainError("a structure nested too deeply")
    kind = type(data)
    if data is None or kind is bool or kind is str or kind is int:
        return data
    if kind is list:
        return [decode(v, depth + 1, objects) for v in data]
    if kind is not dict or len(data) == 0:
        raise PlainError(f"unexpected {kind.__name__} in the data")
    if "f" in data and len(data) == 1:
        text = data["f"]
        if type(text) is not str or len(text) > 40:
            raise PlainError("bad float")
        try:
            return float(text)
        except ValueError:
            raise PlainError(f"bad float {text!r}") from None
    if "i" in data and len(data) == 1:
        text = data["i"]
        if type(text) is not str or len(text) > 4000 or not text.lstrip("-").isdigit():
            raise PlainError("bad integer")
        return int(text)
    if "t" in data and len(data) == 1 and type(data["t"]) is list:
        return tuple(decode(v, depth + 1, objects) for v in data["t"])
    if "d" in data and len(data) == 1 and type(data["d"]) is list:
        out = {}
        for item in data["d"]:
            if type(item) is not list or len(item) != 2 or type(item[0]) is not str:
                raise PlainError("bad dict item")
            out[item[0]] = decode(item[1], depth + 1, objects)
        return out
    if set(data) == {"a", "s", "b"}:
        dtype, shape = _dtype(data["a"]), data["s"]
        if type(shape) is not list or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
            raise PlainError(f"bad shape {shape!r}")
        size = math.prod(shape)
        if size > _MAX_ITEMS:
            raise PlainError(f"an array of {size} elements is too large")
        raw = _b64(data["b"])
        if len(raw) != size * dtype.itemsize:
            raise PlainError("the array data does not match its shape and dtype")
        return np.frombuffer(raw, dtype=dtype).reshape(shape).copy()
    if set(data) == {"n", "b"}:
        dtype = _dtype(data["n"])
        raw = _b64(data["b"])
        if len(raw) != dtype.itemsize:
            raise PlainError("the scalar data does not match its dtype")
        return np.frombuffer(raw, dtype=dtype)[0]
    if set(data) == {"dt"}:
        return _dtype(data["dt"])
    if set(data) == {"ty"}:
        return _dtype(data["ty"]).type
    if set(data) == {"x"}:
        return Unsupported(str(data["x"])[:100])
    if objects is not None and set(data) == {"ff"} and type(data["ff"]) is dict:
        return objects["ff"](**{k: decode(v, depth + 1, objects) for k, v in data["ff"].items()})
    if objects is not None and data.get("obj") in ("TinyObservedModel", "FakeLoader"):
        fields = {k: decode(v, depth + 1, objects) for k, v in data.items() if k != "obj"}
        return objects[data["obj"]](**fields)
    raise PlainError(f"unexpected data with keys {sorted(map(str, data))[:5]}")


class Unsupported:
    """A value the child could not send as plain data; only its type name crossed the pipe."""

    __slots__ = ("type_name",)

    def __init__(self, type_name: str) -> None:
        self.type_name = type_name

    def __eq__(self, other) -> bool:
        return False

    __hash__ = None

    def __repr__(self) -> str:
        return f"<a {self.type_name}, not plain data>"
