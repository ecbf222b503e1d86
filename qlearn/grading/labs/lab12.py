"""Lab 12 (``12_deployment_runtimes``): shipping a quantized model to a runtime that is not PyTorch.

    12.1  qdq_pair(x, scale, zero_point, axis)
                        ONNX QuantizeLinear then DequantizeLinear, per tensor or per axis:
                        q = saturate(round_half_even(x / scale) + zero_point)  (range of zero_point's dtype)
                        x' = (q - zero_point) * scale
    12.2  minmax_qparams(feeds, input_name, qmin, qmax, symmetric)
                        what onnxruntime's MinMax calibration computes from a data reader's feeds:
                        the running min/max, widened to contain 0, then scale and zero-point
    12.Q1, 12.Q2        graded "predict, then run" questions

Both references are plain numpy; tests/test_lab12.py checks them against ONNX Runtime (the oracle):
12.1 against its QuantizeLinear/DequantizeLinear kernels, 12.2 against
``onnxruntime.quantization.quant_utils.compute_scale_zp`` and the scale ``quantize_static`` writes.
"""

from __future__ import annotations

import numpy as np

from qlearn.grading.exercise import Case, Exercise
from qlearn.grading.question import Question
from qlearn.grading.registry import register

__all__ = ["minmax_qparams", "qdq_pair"]

NOTEBOOK = "12_deployment_runtimes"
f32 = np.float32


# --- 12.1 -------------------------------------------------------------------------------------

def qdq_pair(x, scale, zero_point, axis: int = 1):
    """ONNX's QuantizeLinear followed by DequantizeLinear: returns ``(q, x_dequantized)``.

    ``scale`` (float32) and ``zero_point`` (uint8 or int8: its dtype is the dtype of ``q``) are
    scalars (per tensor) or 1-D of length ``x.shape[axis]`` (per axis; ``axis`` may be negative)::

        q  = saturate(round_half_even(x / scale) + zero_point)    saturate: clamp to the dtype's range
        x' = (q - zero_point) * scale                             float32

    >>> q, xq = qdq_pair(np.array([-1.0, 0.25, 0.75, 200.0], np.float32), np.float32(0.5), np.uint8(2))
    >>> q, xq
    (array([  0,   2,   4, 255], dtype=uint8), array([ -1. ,   0. ,   1. , 126.5], dtype=float32))
    """
    x = np.asarray(x, dtype=f32)
    scale = np.asarray(scale, dtype=f32)
    zero_point = np.asarray(zero_point)
    info = np.iinfo(zero_point.dtype)
    if scale.ndim == 1:
        shape = [1] * x.ndim
        shape[axis] = -1
        scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
    codes = np.rint(x / scale) + zero_point.astype(f32)
    q = np.clip(codes, info.min, info.max).astype(zero_point.dtype)
    x_dequantized = (q.astype(np.int32) - zero_point.astype(np.int32)).astype(f32) * scale
    return q, x_dequantized.astype(f32)


def _qdq_cases(rng: np.random.Generator) -> list[Case]:
    ties = np.array([-2.5, -1.5, -0.5, 0.5, 1.5, 2.5, 3.5], f32) * f32(0.25)
    act = rng.normal(0.5, 1.0, (2, 3, 2, 2)).astype(f32)
    weight = (rng.normal(0, 1, (4, 2, 3, 3)) * np.array([0.1, 1, 3, 0.01]).reshape(4, 1, 1, 1)).astype(f32)
    w_scale = (np.abs(weight).reshape(4, -1).max(1) / 127).astype(f32)
    return [
        Case("ties at x / scale = k + 0.5: round half to even", (ties, f32(0.25), np.uint8(10))),
        Case("ties with an int8 zero-point", (ties, f32(0.25), np.int8(0))),
        Case("uint8 saturates at both ends (no wrap-around)",
             (np.array([-300.0, -1.0, 0.0, 1.0, 300.0], f32), f32(1.0), np.uint8(128))),
        Case("int8 saturates at both ends (no wrap-around)",
             (np.array([-200.0, -129.0, 127.0, 128.0, 200.0], f32), f32(1.0), np.int8(0))),
        Case("negative zero-point, int8", (rng.normal(0, 2, 10).astype(f32), f32(0.05), np.int8(-20))),
        Case("per-channel activations: axis 1 of an NCHW tensor",
             (act, np.array([0.01, 0.02, 0.04], f32), np.array([0, 100, 200], np.uint8), 1)),
        Case("per-output-channel conv weights: axis 0, symmetric int8",
             (weight, w_scale, np.zeros(4, np.int8), 0)),
        Case("per-axis with a negative axis (-1 is the last)",
             (rng.normal(0, 1, (3, 4)).astype(f32), np.array([0.1, 0.2, 0.3, 0.4], f32),
              np.array([0, 1, -1, 5], np.int8), -1)),
        Case("random uint8 activations", (rng.uniform(0, 6, (5, 6)).astype(f32), f32(6 / 255), np.uint8(0))),
    ]


def _qdq_wrong(rounding="even", saturate=True, zp_sign=1, dequant_zp=True, axis_override=None):
    def wrong(x, scale, zero_point, axis=1):
        x = np.asarray(x, dtype=f32)
        scale = np.asarray(scale, dtype=f32)
        zero_point = np.asarray(zero_point)
        info = np.iinfo(zero_point.dtype)
        if scale.ndim == 1:
            shape = [1] * x.ndim
            shape[axis if axis_override is None else axis_override] = -1
            scale, zero_point = scale.reshape(shape), zero_point.reshape(shape)
        v = x / scale
        r = np.rint(v) if rounding == "even" else np.sign(v) * np.floor(np.abs(v) + f32(0.5))
        codes = r + zp_sign * zero_point.astype(f32)
        q = (np.clip(codes, info.min, info.max) if saturate else codes).astype(np.int64).astype(zero_point.dtype)
        zp = zero_point.astype(np.int32) if dequant_zp else 0
        return q, ((q.astype(np.int32) - zp).astype(f32) * scale).astype(f32)
    return wrong


register(Exercise(
    id="12.1",
    title="A QuantizeLinear/DequantizeLinear pair, as ONNX defines it",
    points=3,
    reference=qdq_pair,
    cases=_qdq_cases,
    function="qdq_pair",
    hint=("The codes take the integer type of the zero-point, and that type fixes the range they must stay in: "
          "out-of-range values stick to the nearest end, they never wrap around.",
          "Ties such as 2.5 go to the nearest even integer, as in every lab since lab 02. With a scale per "
          "channel, the scale and the zero-point must line up with the axis the caller names, so give them a "
          "shape that broadcasts along that axis only.",
          "Clamp while the values are still floats, then convert to the zero-point's type; dequantize from the "
          "codes you return, widened to a 32-bit integer before subtracting the zero-point."),
    notebook=NOTEBOOK,
    seed=1201,
    strict_dtype=True,
    # callables, not modules: a module name forbids nothing (any torch call on these numpy inputs is
    # refused anyway)
    forbidden=("qlearn.affine.quantize", "qlearn.affine.dequantize", "qlearn.affine.fake_quantize",
               "onnxruntime.quantization.quant_utils.quantize_nparray",
               "onnxruntime.quantization.quant_utils.quantize_data",
               "onnxruntime.InferenceSession", "onnx.reference.ReferenceEvaluator",
               "torch.quantize_per_tensor", "torch.quantize_per_channel",
               "torch.fake_quantize_per_tensor_affine", "torch.fake_quantize_per_channel_affine"),
    wrong_answers={
        "rounds half away from zero": _qdq_wrong(rounding="away"),
        "casts without saturating (wraps)": _qdq_wrong(saturate=False),
        "subtracts the zero-point when quantizing": _qdq_wrong(zp_sign=-1),
        "forgets the zero-point when dequantizing": _qdq_wrong(dequant_zp=False),
        "broadcasts the per-axis scale along axis 0 always": _qdq_wrong(axis_override=0),
    },
))


# --- 12.2 -------------------------------------------------------------------------------------

def minmax_qparams(feeds, input_name: str, qmin: int, qmax: int, symmetric: bool = False):
    """The ``(scale, zero_point)`` that onnxruntime's MinMax calibration gives the tensor ``input_name``.

    ``feeds`` is what a ``CalibrationDataReader`` hands out: dicts ``{name: float32 array}``, read in
    order up to the first ``None`` (the end of the data; what follows is never read). Over all the
    feeds' arrays for ``input_name``, with ``rmin = min(min x, 0)`` and ``rmax = max(max x, 0)``
    (``symmetric``: both ends become ``-/+ max(|rmin|, |rmax|)``)::

        scale = (rmax - rmin) / (qmax - qmin)            in float64, returned as float32
        zero_point = round_half_even(qmin - rmin / scale)     symmetric: round_half_even((qmin + qmax) / 2)

    A scale below float32's smallest normal number (all values 0) gives ``(1.0, 0)``.
    Returns ``(float(scale as float32), int(zero_point))``. No feed at all is a ``ValueError``.

    >>> minmax_qparams([{"x": np.array([0.5, 2.0], np.float32)}, None], "x", 0, 255)
    (0.007843137718737125, 0)
    """
    rmin, rmax = np.inf, -np.inf
    for feed in feeds:
        if feed is None:
            break
        values = np.asarray(feed[input_name], dtype=f32)
        rmin = min(rmin, float(values.min()))
        rmax = max(rmax, float(values.max()))
    if rmin > rmax:
        raise ValueError("feeds holds no feed before its first None: nothing was calibrated")
    rmin, rmax = min(rmin, 0.0), max(rmax, 0.0)
    if symmetric:
        absmax = max(-rmin, rmax)
        rmin, rmax = -absmax, absmax
    scale = (np.float64(rmax) - np.float64(rmin)) / (np.float64(qmax) - np.float64(qmin))
    if scale < np.finfo(f32).tiny:
        return 1.0, 0
    if symmetric:
        zero_point = np.round((qmin + qmax) / np.float64(2.0))
    else:
        zero_point = np.round(qmin - rmin / scale)
    return float(f32(scale)), int(zero_point)


def _feed(rng, name, shape, lo, hi):
    return {name: rng.uniform(lo, hi, shape).astype(f32)}


def _minmax_cases(rng: np.random.Generator) -> list[Case]:
    relu_feeds = [_feed(rng, "images", (2, 1, 3, 3), 0.0, 2.0 + k) for k in range(3)] + [None]
    signed = [_feed(rng, "x", (4, 5), -3.0, 1.0), _feed(rng, "x", (4, 5), -1.0, 4.0)]
    after_none = [_feed(rng, "images", (3, 3), -1.0, 1.0), None, _feed(rng, "images", (3, 3), -50.0, 50.0)]
    two_inputs = [{"images": rng.uniform(-1, 1, (2, 2)).astype(f32), "mask": np.full((2, 2), 100.0, f32)}
                  for _ in range(2)]
    return [
        Case("several batches of non-negative images, then None (uint8)", (relu_feeds, "images", 0, 255)),
        Case("the range grows across batches: min of the first, max of the second", (signed, "x", 0, 255)),
        Case("all values positive: the range is widened down to 0", ([_feed(rng, "x", (6,), 2.0, 3.0)], "x", 0, 255)),
        Case("all values negative: widened up to 0", ([_feed(rng, "x", (6,), -5.0, -1.0)], "x", 0, 255)),
        Case("stops at the first None: later feeds are never read", (after_none, "images", 0, 255)),
        Case("reads only input_name, not the other inputs of a feed", (two_inputs, "images", 0, 255)),
        Case("symmetric int8", (signed, "x", -128, 127, True)),
        Case("symmetric uint8: the zero-point is the middle code", (signed, "x", 0, 255, True)),
        Case("int8 affine activations", (signed, "x", -128, 127)),
        Case("all zeros: scale 1 and zero-point 0", ([{"x": np.zeros((2, 2), f32)}], "x", 0, 255)),
    ]


def _minmax_wrong(widen=True, first_only=False, stop_at_none=True, zp_sign=1, symmetric_ok=True):
    def wrong(feeds, input_name, qmin, qmax, symmetric=False):
        rmin, rmax = np.inf, -np.inf
        for feed in feeds:
            if feed is None:
                if stop_at_none:
                    break
                continue
            values = np.asarray(feed[input_name], dtype=f32)
            rmin, rmax = min(rmin, float(values.min())), max(rmax, float(values.max()))
            if first_only:
                break
        if widen:
            rmin, rmax = min(rmin, 0.0), max(rmax, 0.0)
        if symmetric and symmetric_ok:
            absmax = max(-rmin, rmax)
            rmin, rmax = -absmax, absmax
        scale = (rmax - rmin) / (qmax - qmin)
        if scale < np.finfo(f32).tiny:
            return 1.0, 0
        zero_point = np.round((qmin + qmax) / 2.0) if symmetric and symmetric_ok else np.round(qmin - zp_sign * rmin / scale)
        return float(f32(scale)), int(zero_point)
    return wrong


register(Exercise(
    id="12.2",
    title="MinMax calibration from a data reader's feeds: scale and zero-point",
    points=4,
    reference=minmax_qparams,
    cases=_minmax_cases,
    function="minmax_qparams",
    hint=("Calibration only keeps two numbers per tensor, the smallest and the largest value seen over every "
          "batch; the zero-point must land on a code, so the real value 0 must lie inside the range.",
          "Walk the feeds in order and stop at the end marker, the way ONNX Runtime stops when its reader "
          "returns None. In symmetric mode the range becomes centred on 0 and the zero-point is the middle code.",
          "The scale is the width of the range divided by the number of steps between qmin and qmax, computed in "
          "double precision; the zero-point is the code that the real value 0 maps to, rounded half to even. A "
          "range of width zero has its own answer in the docstring."),
    notebook=NOTEBOOK,
    seed=1202,
    forbidden=("qlearn.qparams.calc_qparams", "qlearn.observers.MinMaxObserver",
               "onnxruntime.quantization.quant_utils.compute_scale_zp",
               "onnxruntime.quantization.quant_utils.compute_data_quant_params",
               "onnxruntime.quantization.calibrate.MinMaxCalibrater",
               "torch.ao.quantization.observer.MinMaxObserver"),
    wrong_answers={
        "does not widen the range to contain 0": _minmax_wrong(widen=False),
        "keeps only the first batch's range": _minmax_wrong(first_only=True),
        "reads past the first None": _minmax_wrong(stop_at_none=False),
        "flips the sign of the zero-point": _minmax_wrong(zp_sign=-1),
        "ignores symmetric": _minmax_wrong(symmetric_ok=False),
    },
))


# --- questions ----------------------------------------------------------------------------------

register(Question(
    id="12.Q1",
    title="How does the QDQ model store a convolution's weight?",
    points=1,
    notebook=NOTEBOOK,
    variable="q1_answer",
    choices={"a": "as float32, with a QuantizeLinear and a DequantizeLinear in front of the Conv",
             "b": "as int8, followed by a DequantizeLinear only",
             "c": "as int8, fed straight into the Conv with no DequantizeLinear",
             "d": "as float16"},
    answer="b",
    explanation=("The weights are known when the model is quantized, so the quantizer stores their int8 codes "
                 "and only a DequantizeLinear is needed; activations are only known at run time, so they get "
                 "a QuantizeLinear/DequantizeLinear pair. That is why the graph has more DequantizeLinear nodes "
                 "than QuantizeLinear nodes."),
    hint=("Which tensors are known before the model ever runs?",
          "Count the two kinds of node in the graph: if every tensor had a pair, the counts would be equal."),
))

register(Question(
    id="12.Q2",
    title="What does float16 (TensorFlow Lite's float16 quantization) make of a weight of 1e-8?",
    points=1,
    notebook=NOTEBOOK,
    variable="q2_answer",
    choices={"a": "0", "b": "about 6e-8, the smallest float16 subnormal", "c": "1e-8, stored exactly",
             "d": "inf"},
    answer="a",
    explanation=("float16's smallest subnormal is 2**-24, about 5.96e-8; 1e-8 is below half of it (2.98e-8), "
                 "so rounding to nearest gives 0: lab 01's underflow."),
    hint=("Recall the subnormal numbers of lab 01's float16 table.",
          "Round to nearest: compare 1e-8 with half of the smallest positive float16."),
))
