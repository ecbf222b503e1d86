"""Oracle tests: qlearn.intops against PyTorch's quantized kernels (fbgemm, x86, qnnpack).

PyTorch's CPU kernels requantize in float32, qlearn in fixed point (gemmlowp), so the output codes
may differ by one code near a tie. These tests pin down all of it:

- qlearn's output is never more than one code away, and rarely (a bound on the fraction);
- PyTorch's output is exactly a float32 formula, emulated here in numpy (fbgemm and x86: float
  bias, ``rint((float(acc) + b * (1 / (s_x s_w))) * M)``; qnnpack: int32 bias,
  ``rint(float(acc + q_b) * M)``, with ``M = float32(s_x s_w) / s_y`` in float32);
- every code where qlearn and PyTorch differ lies near a tie, within the bound of the step that
  separates them: gemmlowp's double rounding, float32 arithmetic, or the float bias.

Activations use 7 bits (quint8 codes in [0, 127]), like PyTorch's default qconfig for x86/fbgemm:
on CPUs without AVX-512 VNNI, fbgemm sums pairs of uint8 x int8 products in saturating int16
registers, which 8-bit activations can overflow.
"""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import torch
import torch.ao.nn.quantized as nnq

from qlearn import calc_qparams, intops, quantize
from qlearn.intops import (
    im2col,
    int_matmul,
    quantize_bias,
    quantize_multiplier,
    quantized_conv2d,
    quantized_linear,
    requantize,
)

f32 = np.float32
ENGINES = ("fbgemm", "x86", "qnnpack")
FLOAT_BIAS_ENGINES = ("fbgemm", "x86")  # add the float bias in float32; qnnpack quantizes it to int32

warnings.filterwarnings("ignore", message=r"torch\.quantize_per_tensor, torch\.quantize_per_channel")
warnings.filterwarnings("ignore", message=r"torch\.ao\.quantization is deprecated")


@pytest.fixture(autouse=True)
def _restore_engine(request):
    engine = getattr(getattr(request.node, "callspec", None), "params", {}).get("engine")
    if engine is not None and engine not in torch.backends.quantized.supported_engines:
        pytest.skip(f"this build of torch has no {engine!r} engine (Apple silicon and ARM Linux have only qnnpack)")
    engine, threads = torch.backends.quantized.engine, torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.backends.quantized.engine = engine
    torch.set_num_threads(threads)


# --- the same layer in torch and in numpy ------------------------------------------------------------

def _layer(rng, shape_x, shape_w, per_channel, conv):
    """Float data, weights and bias; their torch and numpy codes; and an output scale from the float output."""
    x = np.maximum(rng.normal(0.3, 1.0, shape_x), 0).astype(f32) if conv else rng.normal(0, 1, shape_x).astype(f32)
    w = rng.normal(0, 0.05, shape_w).astype(f32)
    b = rng.normal(0, 0.2, shape_w[0]).astype(f32)
    s_x, z_x = calc_qparams(x.min(), x.max(), 0, 127)
    axes = tuple(range(1, w.ndim))
    if per_channel:
        s_w, _ = calc_qparams(w.min(axis=axes), w.max(axis=axes), -128, 127, symmetric=True)
        w_t = torch.quantize_per_channel(torch.from_numpy(w), torch.from_numpy(s_w.astype(np.float64)),
                                         torch.zeros(len(s_w), dtype=torch.long), 0, torch.qint8)
        w_q = quantize(w, s_w, np.zeros(len(s_w), np.int64), -128, 127, axis=0)
    else:
        s_w, _ = calc_qparams(w.min(), w.max(), -128, 127, symmetric=True)
        w_t = torch.quantize_per_tensor(torch.from_numpy(w), float(s_w), 0, torch.qint8)
        w_q = quantize(w, s_w, 0, -128, 127)
    x_t = torch.quantize_per_tensor(torch.from_numpy(x), float(s_x), int(z_x), torch.quint8)
    x_q = quantize(x, s_x, z_x, 0, 127).astype(np.uint8)
    assert np.array_equal(x_t.int_repr().numpy(), x_q) and np.array_equal(w_t.int_repr().numpy(), w_q)
    return dict(x=x, w=w, b=b, s_x=s_x, z_x=int(z_x), s_w=s_w, x_t=x_t, w_t=w_t, x_q=x_q, w_q=w_q)


def _output_qparams(y):
    s_y, z_y = calc_qparams(y.min(), y.max(), 0, 255)
    return s_y, int(z_y)


def _torch_linear(engine, L, s_y, z_y):
    torch.backends.quantized.engine = engine
    layer = nnq.Linear(L["w"].shape[1], L["w"].shape[0])
    layer.set_weight_bias(L["w_t"], torch.from_numpy(L["b"]))
    layer.scale, layer.zero_point = float(s_y), int(z_y)
    return layer(L["x_t"]).int_repr().numpy().astype(np.int64)


def _torch_conv(engine, L, s_y, z_y, stride, padding):
    torch.backends.quantized.engine = engine
    c_out, c_in, kh, kw = L["w"].shape
    layer = nnq.Conv2d(c_in, c_out, (kh, kw), stride=stride, padding=padding)
    layer.set_weight_bias(L["w_t"], torch.from_numpy(L["b"]))
    layer.scale, layer.zero_point = float(s_y), int(z_y)
    return layer(L["x_t"]).int_repr().numpy().astype(np.int64)


def _linear_case(rng, per_channel=False):
    L = _layer(rng, (64, 256), (48, 256), per_channel, conv=False)
    s_y, z_y = _output_qparams(L["x"] @ L["w"].T + L["b"])
    acc = int_matmul(L["x_q"], L["w_q"].T, L["z_x"], 0).astype(np.int64)  # (batch, out): channels last
    return L, s_y, z_y, acc


def _conv_case(rng, stride, padding, per_channel=False):
    L = _layer(rng, (2, 8, 10, 10), (16, 8, 3, 3), per_channel, conv=True)
    y = torch.nn.functional.conv2d(torch.from_numpy(L["x"]), torch.from_numpy(L["w"]), torch.from_numpy(L["b"]),
                                   stride, padding).numpy()
    s_y, z_y = _output_qparams(y)
    cols = im2col(L["x_q"], 3, stride, padding, pad_value=L["z_x"])  # (N, C*9, L)
    acc = np.einsum("nkl,ok->nlo", cols.astype(np.int64) - L["z_x"], L["w_q"].reshape(16, -1).astype(np.int64))
    return L, s_y, z_y, acc, y.shape  # acc: (N, L, C_out), channels last


def _to_nchw(codes_nlo, shape):
    n, c, h, w = shape
    return codes_nlo.reshape(n, h, w, c).transpose(0, 3, 1, 2)


# --- the ladder from qlearn's fixed point to torch's float32 ------------------------------------------

def _ladder(L, s_y, z_y, acc):
    """Requantize ``acc`` (channels last) four ways, each one step closer to torch's kernels."""
    s_x, s_w, b = L["s_x"], np.asarray(L["s_w"]), L["b"]
    bias_q = quantize_bias(b, s_x, s_w).astype(np.int64)
    M0, shift = quantize_multiplier(float(s_x) * s_w.astype(np.float64) / float(s_y))
    acc_b = acc + bias_q
    atw = (f32(s_x) * s_w.astype(f32)).astype(f32)  # torch: act_times_w_scale, in float32
    multiplier = (atw / f32(s_y)).astype(f32)  # torch: M in float32
    bias_f = (b / atw) if atw.ndim else b * (f32(1) / atw)  # fbgemm: per channel divides, per tensor multiplies
    return {
        "fixed point, two roundings (qlearn)": requantize(acc_b, M0, shift, z_y, 0, 255).astype(np.int64),
        "fixed point, one rounding": requantize(acc_b, M0, shift, z_y, 0, 255, single_rounding=True).astype(np.int64),
        "float32, int32 bias (qnnpack)": np.clip(np.rint(acc_b.astype(f32) * multiplier) + z_y, 0, 255).astype(np.int64),
        "float32, float bias (fbgemm)": np.clip(
            np.rint((acc.astype(f32) + bias_f.astype(f32)).astype(f32) * multiplier) + z_y, 0, 255).astype(np.int64),
        "_exact": (acc_b * (float(s_x) * s_w.astype(np.float64) / float(s_y)),
                   (acc + b.astype(np.float64) / atw.astype(np.float64)) * (float(s_x) * s_w.astype(np.float64)
                                                                             / float(s_y)), shift),
    }


def _torch_formula(engine):
    return "float32, float bias (fbgemm)" if engine in FLOAT_BIAS_ENGINES else "float32, int32 bias (qnnpack)"


def _distance_to_tie(v):
    return np.abs(v - np.floor(v) - 0.5)


def _assert_every_difference_is_near_a_tie(steps, M):
    """Each step of the ladder changes a code only where the value is within its bound of a tie."""
    names = [n for n in steps if not n.startswith("_")]
    exact_int_bias, exact_float_bias, shift = steps["_exact"]
    shift = np.broadcast_to(shift, exact_int_bias.shape)
    M = np.broadcast_to(M, exact_int_bias.shape)
    bounds = {
        names[1]: 2.0 ** -(shift + 1) + 1e-6,  # double rounding: half of 2**-shift
        names[2]: np.abs(exact_int_bias) * 2.0**-21 + 1e-6,  # float32: a few float32 roundings
        names[3]: M / 2 + np.abs(exact_float_bias) * 2.0**-21 + 1e-6,  # the bias, not rounded to int32
    }
    for before, after in zip(names, names[1:]):
        differ = steps[before] != steps[after]
        assert np.abs(steps[before] - steps[after]).max() <= 1
        value = exact_float_bias if after == names[3] else exact_int_bias
        assert np.all(_distance_to_tie(value[differ]) <= bounds[after][differ]), after


# --- tests ---------------------------------------------------------------------------------------------

def test_quantize_bias_matches_torch_qint32(rng):
    b = rng.normal(0, 0.5, 200).astype(f32)
    s_x, s_w = f32(0.0173), f32(0.00231)
    torch_q = torch.quantize_per_tensor(torch.from_numpy(b), float(s_x) * float(s_w), 0, torch.qint32)
    assert np.array_equal(quantize_bias(b, s_x, s_w), torch_q.int_repr().numpy())
    s_wc = rng.uniform(0.001, 0.01, 200).astype(f32)
    scales = torch.from_numpy((f32(s_x) * s_wc).astype(f32).astype(np.float64))
    torch_c = torch.quantize_per_channel(torch.from_numpy(b), scales, torch.zeros(200, dtype=torch.long), 0,
                                         torch.qint32)
    assert np.array_equal(quantize_bias(b, s_x, s_wc), torch_c.int_repr().numpy())


def test_im2col_matches_torch_unfold(rng):
    x = rng.integers(0, 256, (2, 3, 9, 8))
    for kernel, stride, padding in [(3, 1, 1), ((2, 3), (2, 1), (0, 2)), (1, 2, 0)]:
        ours = im2col(x, kernel, stride, padding, pad_value=0)
        theirs = torch.nn.functional.unfold(torch.from_numpy(x).double(), kernel, padding=padding, stride=stride)
        assert np.array_equal(ours, theirs.numpy().astype(np.int64))


def test_int_matmul_matches_torch(rng):
    a = rng.integers(0, 256, (16, 300)).astype(np.uint8)
    b = rng.integers(-128, 128, (300, 12)).astype(np.int8)
    theirs = (torch.from_numpy(a).long() - 131) @ (torch.from_numpy(b).long() + 2)
    assert np.array_equal(int_matmul(a, b, 131, -2), theirs.numpy())


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_linear_is_within_one_code_of_torch(rng, engine, per_channel):
    L, s_y, z_y, _ = _linear_case(rng, per_channel)
    ours = quantized_linear(L["x_q"], L["s_x"], L["z_x"], L["w_q"], L["s_w"], 0,
                            quantize_bias(L["b"], L["s_x"], L["s_w"]), s_y, z_y, 0, 255).astype(np.int64)
    theirs = _torch_linear(engine, L, s_y, z_y)
    assert np.abs(ours - theirs).max() <= 1
    assert (ours != theirs).mean() < 0.01  # measured: about 0.2 %


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize(("stride", "padding"), [(1, 1), (2, 0)])
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_conv2d_is_within_one_code_of_torch(rng, engine, stride, padding, per_channel):
    L, s_y, z_y, _, shape = _conv_case(rng, stride, padding, per_channel)
    ours = quantized_conv2d(L["x_q"], L["s_x"], L["z_x"], L["w_q"], L["s_w"], 0,
                            quantize_bias(L["b"], L["s_x"], L["s_w"]), s_y, z_y, 0, 255,
                            stride=stride, padding=padding).astype(np.int64)
    theirs = _torch_conv(engine, L, s_y, z_y, stride, padding)
    assert ours.shape == theirs.shape == shape
    assert np.abs(ours - theirs).max() <= 1
    assert (ours != theirs).mean() < 0.01


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_torch_linear_is_the_float32_formula_and_every_difference_is_explained(rng, engine, per_channel):
    L, s_y, z_y, acc = _linear_case(rng, per_channel)
    steps = _ladder(L, s_y, z_y, acc)
    theirs = _torch_linear(engine, L, s_y, z_y)
    assert np.array_equal(steps[_torch_formula(engine)], theirs)  # the emulation is exact
    M = float(L["s_x"]) * np.asarray(L["s_w"], np.float64) / float(s_y)
    _assert_every_difference_is_near_a_tie(steps, M)
    assert np.array_equal(steps["fixed point, two roundings (qlearn)"],
                          quantized_linear(L["x_q"], L["s_x"], L["z_x"], L["w_q"], L["s_w"], 0,
                                           quantize_bias(L["b"], L["s_x"], L["s_w"]), s_y, z_y, 0, 255))


@pytest.mark.parametrize("engine", ENGINES)
@pytest.mark.parametrize("per_channel", [False, True], ids=["per-tensor", "per-channel"])
def test_torch_conv2d_is_the_float32_formula_and_every_difference_is_explained(rng, engine, per_channel):
    L, s_y, z_y, acc, shape = _conv_case(rng, 1, 1, per_channel)
    steps = _ladder(L, s_y, z_y, acc)
    theirs = _torch_conv(engine, L, s_y, z_y, 1, 1)
    assert np.array_equal(_to_nchw(steps[_torch_formula(engine)], shape), theirs)
    M = float(L["s_x"]) * np.asarray(L["s_w"], np.float64) / float(s_y)
    _assert_every_difference_is_near_a_tie(steps, M)


def test_one_rounding_in_fixed_point_is_qnnpack_up_to_float32(rng):
    # without gemmlowp's double rounding, fixed point and qnnpack's float32 agree almost everywhere
    L, s_y, z_y, acc = _linear_case(rng)
    steps = _ladder(L, s_y, z_y, acc)
    theirs = _torch_linear("qnnpack", L, s_y, z_y)
    double, single = steps["fixed point, two roundings (qlearn)"], steps["fixed point, one rounding"]
    assert (single != theirs).mean() < 1e-3
    assert (double != theirs).mean() > (single != theirs).mean()


def test_seven_bit_activations_keep_fbgemm_exact_on_extreme_codes():
    # 127 * 127 * 2 < 2**15: fbgemm's int16 pair sums cannot saturate, so the worst case is exact
    k, n = 64, 4
    x_q = np.full((2, k), 127, np.uint8)
    w_q = np.full((n, k), 127, np.int8)
    s_y = k * 127 * 127 / 200.0
    M0, shift = quantize_multiplier(1.0 / s_y)
    ours = quantized_linear(x_q, 1.0, 0, w_q, 1.0, 0, None, s_y, 0, 0, 255)
    engines = [e for e in ENGINES if e in torch.backends.quantized.supported_engines]
    assert engines  # every build has at least one of them
    for engine in engines:
        torch.backends.quantized.engine = engine
        layer = nnq.Linear(k, n)
        layer.set_weight_bias(torch.quantize_per_tensor(torch.from_numpy(w_q.astype(f32)), 1.0, 0, torch.qint8), None)
        layer.scale, layer.zero_point = float(s_y), 0
        x_t = torch.quantize_per_tensor(torch.from_numpy(x_q.astype(f32)), 1.0, 0, torch.quint8)
        assert np.array_equal(layer(x_t).int_repr().numpy(), ours), engine
    assert ours.tolist() == [[200] * n] * 2
    assert intops.requantize(np.array([k * 127 * 127]), M0, shift, 0, 0, 255).tolist() == [200]
