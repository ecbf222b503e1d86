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
  loader as ``{"obj": "TinyObservedModel" | "FakeLoader", ...}`` (the child builds its own copies);
- a dense torch tensor (exactly ``torch.Tensor`` or ``torch.nn.Parameter``, strided, not quantized,
  any of the dtypes in ``TORCH_DTYPES``, on any device) as ``{"tt": dtype name, "s": shape, "b":
  base64}`` of its bytes (C order, on the CPU); ``requires_grad`` and the device are dropped. It
  decodes to a fresh ``torch.Tensor`` built from those bytes (never unpickled). torch is imported
  only to decode a tensor, and :func:`encode` uses torch only if it is already loaded (a tensor can
  exist only then): a job without tensors never loads torch.

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
import sys

import numpy as np

__all__ = ["TORCH_DTYPES", "PlainError", "carries_tensors", "decode", "encode", "is_tensor"]

#: torch dtypes that cross, by name (``str(dtype)`` without ``torch.``), with their size in bytes
TORCH_DTYPES = {"bool": 1, "uint8": 1, "int8": 1, "int16": 2, "int32": 4, "int64": 8, "uint16": 2,
                "uint32": 4, "uint64": 8, "float16": 2, "bfloat16": 2, "float32": 4, "float64": 8,
                "complex64": 8, "complex128": 16, "float8_e4m3fn": 1, "float8_e5m2": 1,
                "float8_e4m3fnuz": 1, "float8_e5m2fnuz": 1}

_KINDS = "biuf"  # bool, signed and unsigned integers, floats: the only array dtypes that cross
_MAX_DEPTH = 20
_MAX_ITEMS = 10_000_000  # array elements per value: a runaway result is refused, not decoded


class PlainError(ValueError):
    """A value that is not plain data, or a message that does not decode."""


def _dtype_ok(dtype: np.dtype) -> bool:
    return dtype.kind in _KINDS and not dtype.fields and dtype.shape == () and dtype.itemsize <= 16


def is_tensor(value) -> bool:
    """Whether ``value`` is exactly a ``torch.Tensor`` (or ``torch.nn.Parameter``), without importing
    torch: if torch is not loaded, nothing is a tensor.

    >>> is_tensor(np.zeros(2))
    False
    """
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    try:
        return type(value) in (torch.Tensor, torch.nn.Parameter)
    except AttributeError:  # a torch that is still being imported
        return False


def _encode_tensor(value):
    import torch

    name = str(value.dtype).removeprefix("torch.")
    if name not in TORCH_DTYPES:
        return {"x": f"a tensor of dtype {value.dtype}"}
    if value.layout != torch.strided or value.is_quantized or getattr(value, "is_nested", False) \
            or value.device.type == "meta":
        return {"x": "a tensor that is not dense (sparse, quantized, nested or meta)"}
    if value.numel() > _MAX_ITEMS:
        return {"x": f"a tensor of {value.numel()} elements, too large"}
    data = value.detach().to("cpu").resolve_conj().resolve_neg().contiguous()
    raw = data.reshape(-1).view(torch.uint8).numpy().tobytes()
    return {"tt": name, "s": list(data.shape), "b": base64.b64encode(raw).decode()}


def carries_tensors(data) -> bool:
    """Whether encoded data (:func:`encode`'s output) holds a torch tensor: then its reader needs torch.

    >>> carries_tensors(encode((np.zeros(2), [1, {"k": 2.0}])))
    False
    """
    if type(data) is list:
        return any(carries_tensors(v) for v in data)
    if type(data) is dict:
        if "tt" in data and "s" in data and "b" in data and len(data) == 3:
            return True
        return any(carries_tensors(v) for v in data.values())
    return False


def encode(value, depth: int = 0):
    """``value`` as JSON-ready plain data (see the module doc); unsupported objects become ``{"x": type}``."""
    if depth > _MAX_DEPTH:
        return {"x": "a structure nested too deeply"}
    if is_tensor(value):
        return _encode_tensor(value)
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
    if set(data) == {"tt", "s", "b"}:
        return _decode_tensor(data)
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


def _decode_tensor(data):
    name, shape = data["tt"], data["s"]
    if type(name) is not str or name not in TORCH_DTYPES:
        raise PlainError(f"tensor dtype {str(name)[:20]!r} is not allowed")
    if type(shape) is not list or len(shape) > 32 or not all(type(n) is int and n >= 0 for n in shape):
        raise PlainError(f"bad shape {shape!r}")
    size = math.prod(shape)
    if size > _MAX_ITEMS:
        raise PlainError(f"a tensor of {size} elements is too large")
    raw = _b64(data["b"])
    if len(raw) != size * TORCH_DTYPES[name]:
        raise PlainError("the tensor data does not match its shape and dtype")
    import torch

    dtype = getattr(torch, name, None)
    if not isinstance(dtype, torch.dtype):
        raise PlainError(f"this version of torch has no dtype {name}")
    if size == 0:
        return torch.empty(shape, dtype=dtype)
    # a fresh tensor that owns a copy of the bytes
    return torch.frombuffer(bytearray(raw), dtype=torch.uint8).view(dtype).reshape(shape).clone()


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
