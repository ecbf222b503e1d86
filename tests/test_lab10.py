"""Lab 10's exercises: correct solutions written the usual ways pass, the typical bugs fail, and the
references agree with PyTorch (the oracle): its BatchNorm folding, its calibration, the int8 codes
it stores, and the bytes ``torch.save`` writes.

The generic grading tests (``tests/test_grading.py``) already check that every reference passes
and every declared wrong answer fails; these tests add what is particular to lab 10.
"""

from __future__ import annotations

import copy
import io
import itertools
import zipfile

import labkit
import numpy as np
import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from qlearn.grading import EXERCISES
from qlearn.grading.checker import evaluate
from qlearn.grading.labs import lab10
from qlearn.grading.labs.lab10 import (
    DTYPE_BITS,
    FakeLoader,
    TinyObservedModel,
    calibrate,
    convert_conv_bn,
    fold_batchnorm,
    model_size,
    weight_code,
)

EXERCISE_IDS = ("10.1", "10.2", "10.3", "10.4", "10.5")
QUESTION_IDS = ("10.Q1", "10.Q2", "10.Q3")
f32 = np.float32


def _passes(exercise_id, fn):
    return labkit.passes(exercise_id, fn)


@pytest.fixture
def quiet():
    with labkit.quiet():  # torch.ao.quantization's deprecation notices
        yield


def test_lab10_registers_its_exercises_and_questions():
    labkit.assert_lab_registers(lab10, EXERCISE_IDS + QUESTION_IDS, "10_resnet_ptq", points=16)
    exercises = [EXERCISES[i] for i in EXERCISE_IDS]
    assert [ex.function for ex in exercises] == ["fold_batchnorm", "calibrate", "weight_code", "convert_conv_bn",
                                                 "model_size"]
    assert all(len(ex.wrong_answers) >= 5 for ex in exercises)


def test_importing_the_lab_module_does_not_import_torch():
    labkit.assert_no_torch_import("qlearn.grading.labs.lab10")


@pytest.mark.parametrize("exercise_id", ["10.1", "10.3", "10.4", "10.5"])
def test_cases_are_the_same_every_time(exercise_id):
    labkit.assert_cases_deterministic(exercise_id)


QUESTION_ANSWERS = {"10.Q1": ("b", ["a", "c", "d"]), "10.Q2": ("b", ["a", "c", "d"]), "10.Q3": ("a", ["b", "c", "d"])}


@pytest.mark.parametrize("question_id", QUESTION_IDS)
def test_questions_accept_the_answer_and_reject_the_others(question_id):
    right, wrongs = QUESTION_ANSWERS[question_id]
    assert labkit.passes(question_id, right)[0]
    for wrong in wrongs:
        assert not labkit.passes(question_id, wrong)[0], wrong


# --- 10.1: fold_batchnorm ---------------------------------------------------------------------

FOLD_SOLUTIONS = {
    "gamma / sqrt(var + eps) first": lambda w, b, g, be, m, v, eps=1e-5: (
        w * (g / np.sqrt(v + eps)).reshape((-1,) + (1,) * (w.ndim - 1)),
        ((np.zeros_like(m) if b is None else b) - m) * (g / np.sqrt(v + eps)) + be),
    "multiply by gamma, then divide by the std": lambda w, b, g, be, m, v, eps=1e-5: (
        w * g.reshape((-1,) + (1,) * (w.ndim - 1)) / np.sqrt(v + eps).reshape((-1,) + (1,) * (w.ndim - 1)),
        ((0 if b is None else b) - m) * g / np.sqrt(v + eps) + be),
    "everything in float64": lambda w, b, g, be, m, v, eps=1e-5: (
        np.float64(w) * (np.float64(g) / np.sqrt(np.float64(v) + eps)).reshape((-1,) + (1,) * (w.ndim - 1)),
        (np.float64(0 if b is None else b) - m) * g / np.sqrt(np.float64(v) + eps) + be),
    "moveaxis instead of reshape": lambda w, b, g, be, m, v, eps=1e-5: (
        np.moveaxis(np.moveaxis(w, 0, -1) * (g / np.sqrt(v + eps)), -1, 0),
        ((0 if b is None else b) - m) * g / np.sqrt(v + eps) + be),
}


@pytest.mark.parametrize("name", FOLD_SOLUTIONS)
def test_fold_solutions_written_differently_pass(name):
    passed, message = _passes("10.1", FOLD_SOLUTIONS[name])
    assert passed, message


@pytest.mark.parametrize("shape, bias", [((8, 3, 3, 3), False), ((4, 4, 1, 1), True), ((6, 5), True)])
def test_fold_batchnorm_matches_torch_fuse(rng, shape, bias):
    from torch.nn.utils.fusion import fuse_conv_bn_weights, fuse_linear_bn_weights

    c = shape[0]
    w = rng.normal(0, 0.3, shape).astype(f32)
    b = rng.normal(0, 0.1, c).astype(f32) if bias else None
    g, be = rng.normal(1, 0.3, c).astype(f32), rng.normal(0, 0.5, c).astype(f32)
    m = rng.normal(0, 1, c).astype(f32)
    v = rng.uniform(1e-3, 2, c).astype(f32)
    ours = fold_batchnorm(w, b, g, be, m, v, 1e-5)
    t = torch.from_numpy
    args = (t(w), None if b is None else t(b), t(m), t(v), 1e-5, t(g), t(be))
    if len(shape) == 4:
        theirs = fuse_conv_bn_weights(*args)
    else:
        theirs = fuse_linear_bn_weights(t(w), t(b), t(m), t(v), 1e-5, t(g), t(be))
    for mine, their in zip(ours, theirs):
        np.testing.assert_allclose(mine, their.detach().numpy(), rtol=2e-6, atol=1e-7)


def test_fold_batchnorm_matches_a_fused_conv_bn_module(rng):
    conv, bn = nn.Conv2d(3, 5, 3, bias=False), nn.BatchNorm2d(5)
    with torch.no_grad():
        bn.running_mean.copy_(torch.from_numpy(rng.normal(0, 1, 5).astype(f32)))
        bn.running_var.copy_(torch.from_numpy(rng.uniform(0.1, 2, 5).astype(f32)))
        bn.weight.copy_(torch.from_numpy(rng.normal(1, 0.2, 5).astype(f32)))
        bn.bias.copy_(torch.from_numpy(rng.normal(0, 0.2, 5).astype(f32)))
    fused = tq.fuse_modules(nn.Sequential(conv, bn).eval(), [["0", "1"]])[0]
    w, b = fold_batchnorm(conv.weight.detach().numpy(), None, bn.weight.detach().numpy(),
                          bn.bias.detach().numpy(), bn.running_mean.numpy(), bn.running_var.numpy(), bn.eps)
    np.testing.assert_allclose(w, fused.weight.detach().numpy(), rtol=2e-6, atol=1e-7)
    np.testing.assert_allclose(b, fused.bias.detach().numpy(), rtol=2e-6, atol=1e-7)


def test_fold_cases_include_the_promised_edge_cases():
    names = " | ".join(case.name for case in EXERCISES["10.1"].make_cases())
    for needle in ("bias=None", "with a bias", "C_out == C_in", "linear layer", "eps decides",
                   "identity BatchNorm"):
        assert needle in names


# --- 10.2: calibrate --------------------------------------------------------------------------

def _islice_solution(model, loader, num_batches):
    model.eval()
    with torch.no_grad():
        for images, _ in itertools.islice(loader, num_batches):
            model(images)
    return model


@torch.no_grad()
def _decorated_solution(model, loader, num_batches):
    model.train(False)
    count = 0
    for images, labels in loader:
        if count == num_batches:
            break
        model(images)
        count += 1
    return model


def _inference_mode_solution(model, loader, num_batches):
    model = model.eval()
    iterator = iter(loader)
    with torch.inference_mode():
        for _ in range(num_batches):
            try:
                images, _ = next(iterator)
            except StopIteration:
                break
            model.forward(images)
    return model


@pytest.mark.parametrize("fn", [_islice_solution, _decorated_solution, _inference_mode_solution,
                                lambda model, loader, n: _islice_solution(model, loader, n)])
def test_calibrate_solutions_written_differently_pass(fn):
    passed, message = _passes("10.2", fn)
    assert passed, message


def test_the_bridge_calibrate_is_right_but_delegated():
    from qlearn.bridge import calibrate as bridge_calibrate

    assert evaluate(EXERCISES["10.2"], bridge_calibrate, watch=False)[0] == "passed"
    status, message = evaluate(EXERCISES["10.2"], bridge_calibrate)
    assert status == "delegated" and "qlearn.bridge.ptq.calibrate" in message


def test_calibrate_feedback_names_the_bug():
    wrong = EXERCISES["10.2"].wrong_answers
    messages = {name: evaluate(EXERCISES["10.2"], fn, watch=False)[1] for name, fn in wrong.items()}
    assert "call model.eval() first" in messages["forgets model.eval()"]
    assert "torch.no_grad()" in messages["records gradients (no torch.no_grad())"]
    assert "saw 4 batches, expected 3" in messages["off by one: runs num_batches + 1 batches"]
    assert "saw 5 batches, expected 3" in messages["runs every batch of the loader"]
    assert "calibrated a copy" in messages["calibrates a copy of the model"]
    assert "returned None" in messages["returns None"]


def test_calibrate_reference_on_a_real_prepared_model_matches_the_bridge(quiet):
    from qlearn.bridge import calibrate as bridge_calibrate
    from qlearn.bridge import make_qconfig, prepare_ptq, resnet_fmnist

    model = resnet_fmnist(8).eval()
    generator = torch.Generator().manual_seed(0)
    loader = [(torch.randn(4, 1, 28, 28, generator=generator), torch.zeros(4)) for _ in range(5)]
    ours, theirs = (prepare_ptq(model, make_qconfig()).train() for _ in range(2))
    assert calibrate(ours, loader, 3) is ours and not ours.training
    bridge_calibrate(theirs, loader, 3)
    def ranges(net):
        return [(o.min_val.item(), o.max_val.item()) for o in net.modules() if isinstance(o, tq.ObserverBase)]

    observed, expected = ranges(ours), ranges(theirs)
    assert observed == expected and len(observed) > 5


def test_tiny_model_and_loader_behave_like_torch_objects():
    model = TinyObservedModel(np.ones((2, 3), f32), np.zeros(2, f32))
    loader = FakeLoader([np.ones((4, 3), f32)] * 3, [np.zeros(4)] * 3)
    assert model.training and model.eval() is model and not model.training
    assert model.train() is model and model.training
    assert len(loader) == 3 and len(list(loader)) == 3 and len(list(loader)) == 3  # iterable again
    images, labels = next(iter(loader))
    assert images.dtype == torch.float32 and labels.dtype == torch.int64
    assert model(images).shape == (4, 2)
    copied = copy.deepcopy(model)
    assert copied.generation.value == model.generation.value + 1
    assert "FakeLoader(3 batches" in repr(loader) and "0x" not in repr(model)


# --- 10.3: weight_code ------------------------------------------------------------------------

CODE_SOLUTIONS = {
    "np.round and int32": lambda w, s, z: np.clip(np.round(np.asarray(w, f32) * (f32(1) / s)) + z, -128,
                                                   127).astype(np.int32),
    "np.rint, clip, int8 in steps": lambda w, s, z: np.clip(np.rint(w * (1 / s)) + z, -128,
                                                             127).astype(np.int8),
    "int64 cast, then an integer clamp": lambda w, s, z: np.clip(
        np.rint(np.float32(w) * (np.float32(1.0) / np.float32(s))).astype(np.int64) + z, -128, 127),
}


@pytest.mark.parametrize("name", CODE_SOLUTIONS)
def test_weight_code_solutions_written_differently_pass(name):
    passed, message = _passes("10.3", CODE_SOLUTIONS[name])
    assert passed, message


def test_weight_code_with_division_fails_only_on_the_documented_case():
    def division(w, scale, zero_point):
        return np.clip(np.rint(np.asarray(w, f32) / scale) + zero_point, -128, 127).astype(np.int8)

    passed, message = labkit.passes("10.3", division)
    assert not passed and "the kernel's reciprocal decides" in message
    ex = EXERCISES["10.3"]
    for case in ex.make_cases():
        same = ex.compare_output(division(*case.args), weight_code(*case.args)) is None
        assert same == ("reciprocal decides" not in case.name), case.name


def test_weight_code_matches_torch_per_channel(rng):
    w = rng.normal(0, 0.05, (32, 16, 3, 3)).astype(f32)
    observer = tq.PerChannelMinMaxObserver(dtype=torch.qint8, qscheme=torch.per_channel_symmetric)
    observer(torch.from_numpy(w))
    scale, zero_point = observer.calculate_qparams()
    stored = torch.quantize_per_channel(torch.from_numpy(w), scale.double(), zero_point, 0, torch.qint8)
    shape = (-1, 1, 1, 1)
    codes = weight_code(w, scale.numpy().reshape(shape), zero_point.numpy().reshape(shape))
    np.testing.assert_array_equal(codes, stored.int_repr().numpy())


def test_weight_code_matches_torch_per_tensor_with_ties_and_saturation():
    w = np.concatenate([np.arange(-300, 300, dtype=f32) * f32(0.5), np.array([0.0137, -0.2], f32)])
    for scale, zero_point in ((f32(0.5), 0), (f32(0.003), 0), (f32(0.07), 5)):
        stored = torch.quantize_per_tensor(torch.from_numpy(w), float(scale), zero_point, torch.qint8)
        np.testing.assert_array_equal(weight_code(w, scale, zero_point), stored.int_repr().numpy())


# --- 10.4: convert_conv_bn ---------------------------------------------------------------------

def _convert_float64(weight, bias, gamma, beta, running_mean, running_var, eps, outputs, act_qmax):
    # folding in another order, the observer's arithmetic in float64, weight codes by broadcasting by hand
    inv_std = 1.0 / np.sqrt(running_var.astype(np.float64) + eps)
    factor = (gamma * inv_std).astype(f32)
    w = (weight * factor.reshape((-1,) + (1,) * (weight.ndim - 1))).astype(f32)
    b = ((0 if bias is None else bias) - running_mean) * inv_std * gamma + beta
    largest = np.abs(w.reshape(len(w), -1)).max(axis=1)
    w_scale = np.maximum(largest.astype(np.float64) / 127.5, np.finfo(f32).eps).astype(f32)
    codes = np.clip(np.rint(w * (f32(1) / w_scale).reshape((-1,) + (1,) * (w.ndim - 1))), -128, 127)
    values = np.concatenate([o.ravel() for o in outputs]).astype(np.float64)
    lo, hi = min(values.min(), 0.0), max(values.max(), 0.0)
    scale = max((hi - lo) / act_qmax, float(np.finfo(f32).eps))
    return {"folded_weight": w, "weight": codes.astype(np.int8), "weight_scale": w_scale, "bias": b.astype(np.float32),
            "scale": scale, "zero_point": int(np.clip(round(-lo / scale), 0, act_qmax))}


def test_convert_solution_written_differently_passes():
    passed, message = _passes("10.4", _convert_float64)
    assert passed, message


def test_convert_accepts_a_fold_whose_last_bits_differ_and_judges_codes_on_it():
    # gamma / sqrt(var + eps) first (not torch's order): some folded weights move by an ulp, and the
    # largest weight of a channel sits on a tie, so its code may flip; the check must accept that
    ex = EXERCISES["10.4"]
    flipped = 0
    for seed in (1004, 1, 2, 3):
        for case in ex.make_cases(seed):
            got = _convert_float64(*case.args)
            assert ex.compare_output(got, ex.reference(*case.args)) is None, case.name
            flipped += int(np.sum(got["weight"] != ex.reference(*case.args)["weight"]))
    assert flipped >= 1  # the situation this rule exists for does occur on the check's cases


def test_convert_wrong_answers_are_declared_and_rejected():
    labkit.assert_wrong_answers_declared("10.4", "no BatchNorm folding", "narrow range", "whole tensor",
                                         "w / scale", "last batch", "widen", "act_qmax + 1", "eps floor")


class _ConvBN(nn.Module):
    def __init__(self, relu):
        super().__init__()
        self.quant, self.dequant = tq.QuantStub(), tq.DeQuantStub()
        self.conv, self.bn = nn.Conv2d(3, 6, 3, padding=1, bias=False), nn.BatchNorm2d(6)
        self.relu = nn.ReLU() if relu else nn.Identity()

    def forward(self, x):
        return self.dequant(self.relu(self.bn(self.conv(self.quant(x)))))


@pytest.mark.parametrize("relu", [True, False])
def test_convert_reference_equals_torch_s_converted_module_number_for_number(rng, quiet, relu):
    from qlearn.bridge import make_qconfig, set_engine, supported_engines

    for engine in [e for e in ("x86", "qnnpack") if e in supported_engines()]:
        set_engine(engine)
        torch.manual_seed(0)
        net = _ConvBN(relu).eval()
        with torch.no_grad():
            net.bn.running_mean.copy_(torch.from_numpy(rng.normal(0, 0.5, 6).astype(f32)))
            net.bn.running_var.copy_(torch.from_numpy(rng.uniform(0.2, 2, 6).astype(f32)))
            net.bn.weight.copy_(torch.from_numpy(rng.normal(1, 0.3, 6).astype(f32)))
            net.bn.bias.copy_(torch.from_numpy(rng.normal(0, 0.3, 6).astype(f32)))
        prepared = copy.deepcopy(net)
        tq.fuse_modules(prepared, [["conv", "bn", "relu"] if relu else ["conv", "bn"]], inplace=True)
        prepared.qconfig = make_qconfig(engine)
        tq.prepare(prepared, inplace=True)
        outputs = []
        prepared.conv.register_forward_hook(lambda m, i, o: outputs.append(o.detach().numpy().copy()))
        with torch.no_grad():
            for _ in range(3):
                prepared(torch.randn(4, 3, 8, 8))
        theirs = tq.convert(copy.deepcopy(prepared)).conv
        t = lambda a: a.detach().numpy()  # noqa: E731
        ours = convert_conv_bn(t(net.conv.weight), None, t(net.bn.weight), t(net.bn.bias), t(net.bn.running_mean),
                               t(net.bn.running_var), net.bn.eps, outputs, 127 if engine == "x86" else 255)
        np.testing.assert_array_equal(ours["folded_weight"], prepared.conv[0].weight.detach().numpy()
                                      if isinstance(prepared.conv, nn.Sequential) else prepared.conv.weight.detach().numpy())
        np.testing.assert_array_equal(ours["weight"], theirs.weight().int_repr().numpy())
        np.testing.assert_array_equal(ours["weight_scale"], theirs.weight().q_per_channel_scales().numpy())
        np.testing.assert_array_equal(ours["bias"], theirs.bias().detach().numpy())
        assert (ours["scale"], ours["zero_point"]) == (theirs.scale, theirs.zero_point), engine


def test_convert_cases_hold_the_promised_edge_cases():
    ex = EXERCISES["10.4"]
    cases = ex.make_cases()
    names = " | ".join(c.name for c in cases)
    for needle in ("ReLU", "both signs", "another", "never reach 0", "negative outputs only", "8-bit", "own bias",
                   "linear layer", "pruned", "tie"):
        assert needle in names, needle
    tie = next(c for c in cases if "tie" in c.name)
    division = EXERCISES["10.4"].wrong_answers["divides the weights by the scale (w / scale), unlike the kernel"]
    assert ex.compare_output(division(*tie.args), ex.reference(*tie.args)) is not None


# --- 10.5: model_size -------------------------------------------------------------------------

def test_model_size_solution_with_math_ceil_passes():
    import math

    def with_ceil(tensors):
        total = 0
        for dtype, shape, qscheme in tensors:
            total += math.ceil(int(np.prod(shape)) * DTYPE_BITS[dtype] / 8)
            if qscheme == "per_channel":
                total += 16 * shape[0]
        return total

    passed, message = _passes("10.5", with_ceil)
    assert passed, message


def test_dtype_bits_agree_with_torch():
    for name, bits in DTYPE_BITS.items():
        dtype = getattr(torch, name, None)
        if dtype is not None and bits >= 8:
            assert torch.empty(0, dtype=dtype).element_size() * 8 == bits, name


def _stored(state_dict):
    found = []

    def visit(value):
        if isinstance(value, (tuple, list)):
            for v in value:
                visit(v)
        elif isinstance(value, torch.Tensor):
            qscheme = None
            if value.is_quantized:
                qscheme = "per_channel" if value.qscheme() == torch.per_channel_affine else "per_tensor"
            found.append((str(value.dtype).removeprefix("torch."), tuple(value.shape), qscheme))

    for value in state_dict.values():
        visit(value)
    return found


def _storage_bytes(module):
    buffer = io.BytesIO()
    torch.save(module.state_dict(), buffer)
    return sum(i.file_size for i in zipfile.ZipFile(buffer).infolist() if "/data/" in i.filename)


def test_model_size_predicts_the_storages_torch_save_writes(quiet):
    from qlearn.bridge import quantize_ptq, resnet_fmnist

    model = resnet_fmnist(8).eval()
    with torch.no_grad():  # non-zero last BN weights, so that every layer has a real range
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.fill_(0.5)
    generator = torch.Generator().manual_seed(0)
    calib = [torch.randn(8, 1, 28, 28, generator=generator)]
    quantized = quantize_ptq(model, calib, calib_batches=1)
    for module in (nn.Linear(7, 3), model, quantized):
        assert model_size(_stored(module.state_dict())) == _storage_bytes(module)


def test_model_size_rounds_each_tensor_up():
    assert model_size([("int4", (3,), None), ("int4", (3,), None)]) == 4
    assert model_size([("int1", (9,), None)]) == 2
    assert model_size([("float32", (), None)]) == 4
    assert model_size([("qint8", (2, 3), "per_channel")]) == 6 + 2 * 16
    assert model_size([("qint8", (2, 3), "per_tensor")]) == 6
    assert model_size([]) == 0 and isinstance(model_size([("float32", (1,), None)]), int)


def test_lab_module_exports_what_it_documents():
    labkit.assert_module_exports(lab10, {"DTYPE_BITS", "FakeLoader", "RecordingObserver", "TinyObservedModel",
                                         "calibrate", "convert_conv_bn", "fold_batchnorm", "model_size",
                                         "weight_code"})


# --- the library helpers of section 12 (qlearn.bridge.layer_error, qlearn.viz.layer_error) ---------

@pytest.fixture(scope="module")
def small_int8():
    from qlearn.bridge import quantize_ptq, resnet_fmnist
    from qlearn.bridge.export import fused_copy

    with labkit.quiet():
        torch.manual_seed(0)
        model = resnet_fmnist(8).eval()
        calib = [torch.randn(8, 1, 28, 28, generator=torch.Generator().manual_seed(1))]
        return fused_copy(model), quantize_ptq(model, calib, calib_batches=1)


def test_layer_error_helpers_find_every_layer_and_bound_the_weight_error(small_int8):
    from qlearn.bridge.layer_error import fused_float_weight, layer_outputs, quantized_layers, weight_error

    fused, quantized = small_int8
    layers = quantized_layers(quantized)
    assert list(layers)[0] == "conv1" and list(layers)[-1] == "fc" and quantized_layers(fused) == {}
    for name, qmodule in layers.items():
        w = fused_float_weight(fused, name)
        w_hat, steps = weight_error(qmodule, w)
        assert w_hat.shape == w.shape and np.abs(steps).max() <= 0.5 + 1e-4, name  # rounding, never more
    x = torch.randn(4, 1, 28, 28, generator=torch.Generator().manual_seed(2))
    with labkit.quiet():
        outputs, logits = layer_outputs(quantized, list(layers), x)
    assert set(outputs) == set(layers) and logits.shape == (4, 10)
    assert all(o.dtype == np.float32 for o in outputs.values())
    assert all(not m._forward_hooks for m in quantized.modules())  # the hooks are gone


def test_layer_error_explorer_draws_the_chosen_layer(small_int8):
    from qlearn.bridge.layer_error import layer_outputs, quantized_layers
    from qlearn.viz.layer_error import LayerErrorExplorer

    fused, quantized = small_int8
    names = list(quantized_layers(quantized))
    x = torch.randn(2, 1, 28, 28, generator=torch.Generator().manual_seed(3))
    with labkit.quiet():
        float_acts, _ = layer_outputs(fused, names, x)
        int8_acts, _ = layer_outputs(quantized, names, x)
    explorer = LayerErrorExplorer(quantized, fused, float_acts, int8_acts, {"fc": {"weights": 40.0}}, layer="fc")
    assert repr(explorer) == "LayerErrorExplorer(layer='fc')" and "40.0 dB" in explorer.readout.value
    explorer.update(layer="conv1")
    assert "conv1" in explorer.readout.value and len(explorer.figure.axes) == 2
    with pytest.raises(ValueError, match="one of the quantized layers"):
        LayerErrorExplorer(quantized, fused, float_acts, int8_acts, layer="nope")
