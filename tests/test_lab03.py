"""Lab 03's exercises: correct solutions written in other ways pass, the typical bugs fail.

The generic grading tests check every lab's reference and wrong answers; these add what is
particular to lab 03: division versus torch's reciprocal never fails a correct group quantizer,
loops and vectorized code both pass, the references agree with torch, and the promised edge cases
are among the inputs.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

import labkit
from qlearn.grading import EXERCISES
from qlearn.grading.labs import lab03
from qlearn.grading.registry import get_item as labkit_item
from qlearn.packing import pack, unpack
from qlearn.qparams import calc_qparams, qrange

IDS = ("03.1", "03.2", "03.3", "03.4", "03.5", "03.Q1", "03.Q2")
EXERCISE_IDS = tuple(i for i in IDS if "Q" not in i)
_passes = labkit.passes


def test_lab03_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab03, IDS, "03_granularity", points=15)


def test_lab03_exports_what_it_documents():
    labkit.assert_module_exports(lab03, {"compress_groups", "pack_int4", "per_channel_qparams",
                                         "quantize_groups", "unpack_int4"})


def test_importing_lab03_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab03")


# --- correct solutions, written the ways learners write them ---------------------------------

def _per_channel_loop(w, axis, qmin, qmax, symmetric=False):
    scales, zero_points = [], []
    for c in range(w.shape[axis]):
        channel = np.take(w, c, axis=axis)
        s, z = calc_qparams(channel.min(), channel.max(), qmin, qmax, symmetric)
        scales.append(s)
        zero_points.append(z)
    return np.array(scales, np.float32), np.array(zero_points)


def _per_channel_reduce(w, axis, qmin, qmax, symmetric=False):
    others = tuple(a for a in range(w.ndim) if a != axis % w.ndim)
    return calc_qparams(w.min(axis=others), w.max(axis=others), qmin, qmax, symmetric)


def _groups_division(w, group_size, qmin, qmax, symmetric=False, dtype=np.float32):
    rows, cols = w.shape
    g = w.reshape(rows, cols // group_size, group_size)
    scale, zero_point = calc_qparams(g.min(axis=2).ravel(), g.max(axis=2).ravel(), qmin, qmax, symmetric)
    scale, zero_point = scale.reshape(rows, -1), zero_point.reshape(rows, -1)
    v = g.astype(dtype) / scale.astype(dtype)[..., None]
    q = np.clip(np.rint(v) + zero_point[..., None], qmin, qmax)
    return q.astype(np.int64).reshape(w.shape), scale, zero_point


def _groups_reciprocal_float64(w, group_size, qmin, qmax, symmetric=False):
    rows, cols = w.shape
    g = w.reshape(rows, cols // group_size, group_size).astype(np.float64)
    scale, zero_point = calc_qparams(g.min(axis=2).ravel().astype(np.float32),
                                     g.max(axis=2).ravel().astype(np.float32), qmin, qmax, symmetric)
    inv = 1.0 / scale.astype(np.float64).reshape(rows, -1, 1)
    q = np.clip(np.rint(g * inv) + zero_point.reshape(rows, -1, 1), qmin, qmax).astype(np.int32)
    return q.reshape(w.shape), scale.reshape(rows, -1), zero_point.reshape(rows, -1)


def _groups_loop(w, group_size, qmin, qmax, symmetric=False):
    rows, cols = w.shape
    q = np.zeros(w.shape, np.int32)
    scale = np.zeros((rows, cols // group_size), np.float32)
    zero_point = np.zeros((rows, cols // group_size), np.int64)
    for r in range(rows):
        for k in range(cols // group_size):
            part = w[r, k * group_size:(k + 1) * group_size]
            s, z = calc_qparams(part.min(), part.max(), qmin, qmax, symmetric)
            q[r, k * group_size:(k + 1) * group_size] = np.clip(np.round(part / s) + z, qmin, qmax)
            scale[r, k], zero_point[r, k] = s, z
    return q, scale, zero_point


def _pack_bytes_loop(q):
    flat = [int(v) & 0xF for v in np.asarray(q).reshape(-1)]
    if len(flat) % 2:
        flat.append(0)
    return np.array([flat[i] | (flat[i + 1] << 4) for i in range(0, len(flat), 2)], dtype=np.uint8)


def _pack_uint8_view(q):
    u = np.asarray(q).reshape(-1).astype(np.int8).view(np.uint8) & 0x0F
    if u.size % 2:
        u = np.append(u, np.uint8(0))
    return (u[0::2] | (u[1::2] << 4)).astype(np.uint8)


def _unpack_arithmetic_shift(packed, count):
    s = np.asarray(packed).view(np.int8)
    low = (s << 4) >> 4  # int8: shift the low nibble up, then back with sign extension
    high = s >> 4
    return np.stack([low, high], axis=1).reshape(-1)[:count].astype(np.int8)


def _unpack_loop(packed, count):
    out = []
    for byte in np.asarray(packed).tolist():
        for nibble in (byte & 0xF, byte >> 4):
            out.append(nibble - 16 if nibble >= 8 else nibble)
    return np.array(out[:count], dtype=np.int16)


def _compress_with_own_pieces(w, bits, group_size):
    # group quantization as in 03.2, then a loop that packs 8 // bits codes per byte
    rows, cols = w.shape
    qmin, qmax = qrange(bits)
    q, scale, _ = _groups_division(w, group_size, qmin, qmax, True)
    flat = [int(v) & (2**bits - 1) for v in q.reshape(-1)]
    per = 8 // bits
    flat += [0] * (-len(flat) % per)
    packed = [sum(flat[i + j] << (bits * j) for j in range(per)) for i in range(0, len(flat), per)]
    return np.array(packed, dtype=np.uint8), scale


def _compress_float64(w, bits, group_size):
    rows, cols = w.shape
    qmin, qmax = qrange(bits)
    g = w.reshape(rows, -1, group_size).astype(np.float64)
    m = np.maximum(-np.minimum(g.min(axis=2), 0), np.maximum(g.max(axis=2), 0)).astype(np.float32)
    scale = np.maximum(m / np.float32((qmax - qmin) / 2), np.finfo(np.float32).eps).astype(np.float32)
    q = np.clip(np.rint(g / scale[..., None]), qmin, qmax).astype(np.int64).reshape(-1)
    q = np.concatenate([q, np.zeros(-q.size % (8 // bits), np.int64)]) & (2**bits - 1)
    packed = np.zeros(q.size // (8 // bits), np.uint8)
    for j in range(8 // bits):
        packed |= (q[j::8 // bits] << (bits * j)).astype(np.uint8)
    return packed, scale


SOLUTIONS = [
    ("03.5", "03.2 and a packing loop", _compress_with_own_pieces),
    ("03.5", "float64 groups, strided packing, no calc_qparams", _compress_float64),
    ("03.1", "a Python loop with np.take", _per_channel_loop),
    ("03.1", "min/max over every other axis", _per_channel_reduce),
    ("03.2", "division in float32", _groups_division),
    ("03.2", "division in float64", lambda *a: _groups_division(*a, dtype=np.float64)),
    ("03.2", "reciprocal in float64", _groups_reciprocal_float64),
    ("03.2", "a loop over groups with np.round", _groups_loop),
    ("03.3", "a Python loop over bytes", _pack_bytes_loop),
    ("03.3", "uint8 view of the int8 codes", _pack_uint8_view),
    ("03.4", "int8 arithmetic shifts", _unpack_arithmetic_shift),
    ("03.4", "a Python loop, int16 result", _unpack_loop),
]


@pytest.mark.parametrize(("exercise_id", "name", "fn"), SOLUTIONS, ids=[f"{e} {n}" for e, n, _ in SOLUTIONS])
def test_correct_solutions_written_differently_pass(exercise_id, name, fn):
    passed, message = _passes(exercise_id, fn)
    assert passed, message


# --- the references and the wrong answers ----------------------------------------------------

# The reference passing and every declared wrong answer failing are tested for all labs in
# tests/test_grading.py (test_reference_passes_its_own_check, test_typical_wrong_answers_are_rejected).


def test_the_brief_s_wrong_answers_are_declared():
    names = {e: " | ".join(EXERCISES[e].wrong_answers) for e in EXERCISE_IDS}
    assert "per-tensor instead of per-channel" in names["03.1"]
    assert "wrong axis" in names["03.1"]
    assert "groups across rows" in names["03.2"]
    assert "nibble order swapped" in names["03.3"] and "nibble order swapped" in names["03.4"]
    assert "sign not restored" in names["03.4"]
    assert "always two codes per byte" in names["03.5"] and "no padding" in names["03.5"]


# --- the references agree with torch, the cases cover the edges ------------------------------

def test_per_channel_reference_equals_torch_observer(rng):
    w = (rng.normal(0, 1, (8, 4, 3, 3)) * rng.uniform(0.01, 2, (8, 1, 1, 1))).astype(np.float32)
    obs = torch.ao.quantization.PerChannelMinMaxObserver(ch_axis=0, dtype=torch.qint8,
                                                          qscheme=torch.per_channel_symmetric)
    obs(torch.from_numpy(w))
    t_scale, t_zero_point = obs.calculate_qparams()
    scale, zero_point = lab03.per_channel_qparams(w, 0, -128, 127, True)
    assert np.array_equal(scale, t_scale.numpy()) and np.array_equal(zero_point, t_zero_point.numpy())


def test_pack_reference_matches_torch_quint4x2_layout():
    codes = np.array([1, 2, 15, 7, 0, 9], np.uint8)
    q = torch.quantize_per_tensor(torch.tensor(codes, dtype=torch.float32), 1.0, 0, torch.quint4x2)
    signed = np.where(codes >= 8, codes.astype(np.int16) - 16, codes).astype(np.int8)  # same bit patterns
    assert np.array_equal(lab03.pack_int4(signed), q.int_repr().numpy())


def test_group_cases_agree_on_division_and_reciprocal():
    for case in EXERCISES["03.2"].make_cases():
        w, group_size, qmin, qmax, symmetric = case.args
        assert lab03._group_codes_agree(w, group_size, qmin, qmax, symmetric), case.name


def test_promised_edge_cases_are_present():
    pack_cases = {c.name: c.args for c in EXERCISES["03.3"].make_cases()}
    assert any(np.asarray(a[0]).size % 2 for a in pack_cases.values())      # an odd count
    assert any(np.asarray(a[0]).ndim > 1 for a in pack_cases.values())      # a 2-D input
    assert any({-8, 7} <= set(np.asarray(a[0]).ravel().tolist()) for a in pack_cases.values())
    axes = {c.args[1] for c in EXERCISES["03.1"].make_cases()}
    assert {0, 1, -1} <= axes
    groups = EXERCISES["03.2"].make_cases()
    assert any(c.args[0].shape[0] == c.args[0].shape[1] for c in groups)   # square: axis confusion shows


# --- 03.5: a layer stored in packed groups ------------------------------------------------------

def test_compress_groups_unpacks_to_the_group_codes():
    rng = np.random.default_rng(3)
    w = rng.normal(0, 0.1, (6, 32)).astype(np.float32)
    for bits in (2, 4, 8):
        packed, scale = lab03.compress_groups(w, bits, 8)
        qmin, qmax = qrange(bits)
        q, s, z = lab03.quantize_groups(w, 8, qmin, qmax, True)
        assert packed.dtype == np.uint8 and packed.size == w.size * bits // 8
        assert np.array_equal(unpack(packed, bits, w.size, signed=True), q.reshape(-1))
        assert np.array_equal(scale, s) and not z.any()


def test_compress_cases_cover_every_width_padding_and_layout():
    cases = EXERCISES["03.5"].make_cases()
    assert {c.args[1] for c in cases} == {2, 4, 8}
    assert any(c.args[0].size * c.args[1] % 8 for c in cases)  # padding needed
    assert any(c.args[0].shape[0] == c.args[0].shape[1] for c in cases)  # square
    for case in cases:
        w, bits, group_size = case.args
        assert lab03._group_codes_agree(w, group_size, *qrange(bits), True), case.name


def test_compress_groups_called_on_the_library_is_delegation():
    def delegating(w, bits, group_size):
        q, scale, _ = lab03.quantize_groups(w, group_size, *qrange(bits), True)
        return pack(q, bits, signed=True), scale

    passed, message = _passes("03.5", delegating)
    assert not passed


# --- the questions ----------------------------------------------------------------------------

def test_question_03_q2_bits_per_weight():
    assert 4 + 32 / 16 == labkit_item("03.Q2").answer
    assert _passes("03.Q2", 6.0)[0] and not _passes("03.Q2", 4.0)[0]


def test_question_03_q1_a_channel_far_below_half_a_step_uses_one_level():
    qmin, qmax = qrange(4)
    scale, _ = calc_qparams(np.float32(-0.45), np.float32(0.45), qmin, qmax, symmetric=True)
    channel = np.random.default_rng(0).uniform(-1e-4, 1e-4, 144).astype(np.float32)
    assert np.unique(np.clip(np.rint(channel / scale), qmin, qmax)).tolist() == [0]
    assert _passes("03.Q1", 1)[0] and not _passes("03.Q1", 16)[0]


# --- the explorer of section 2 (qlearn/viz/granularity.py) --------------------------------------

def test_granularity_explorer_draws_with_the_quantizer_it_is_given():
    from qlearn.viz.granularity import GranularityExplorer

    rng = np.random.default_rng(0)
    weights = {"conv": rng.normal(0, 1, (4, 2, 3, 3)).astype(np.float32),
               "linear": rng.normal(0, 1, (3, 16)).astype(np.float32)}
    calls = []

    def quantize(rows, bits, granularity):
        calls.append((rows.shape, bits, granularity))
        step = np.abs(rows).max() / (2 ** (bits - 1) - 1)
        return np.rint(rows / step) * step

    explorer = GranularityExplorer(weights, "conv", quantize, bits=4)
    assert calls[-1] == ((4, 18), 4, "per-tensor")
    explorer.update(layer="linear", bits=2, granularity="per-channel")
    assert calls[-1] == ((3, 16), 2, "per-channel")
    assert explorer._summary() == "GranularityExplorer(layer='linear', bits=2, granularity='per-channel')"
    assert "SQNR of the layer" in explorer.readout.value and len(explorer.axes[1].patches) == 3
    with pytest.raises(ValueError, match="layer 'fc' is not in weights"):
        GranularityExplorer(weights, "fc", quantize)
    with pytest.raises(ValueError, match="granularity must be one of"):
        GranularityExplorer(weights, "conv", quantize, granularity="per-row")


def test_granularity_module_exports_and_keeps_torch_out():
    labkit.assert_module_exports("qlearn.viz.granularity", {"GRANULARITIES", "GranularityExplorer", "draw_channels"})
    labkit.assert_no_torch_import("qlearn.viz.granularity")
