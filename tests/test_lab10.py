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
import subprocess
import sys
import warnings
import zipfile

import numpy as np
import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from qlearn.grading import EXERCISES, check
from qlearn.grading.checker import evaluate
from qlearn.grading.labs import lab10
from qlearn.grading.labs.lab10 import (
    DTYPE_BITS,
    FakeLoader,
    TinyObservedModel,
    calibrate,
    fold_batchnorm,
    model_size,
    weight_code,
)

IDS = ("10.1", "10.2", "10.3", "10.4")
f32 = np.float32


def _passes(exercise_id, fn):
    result = check(exercise_id, fn, verbose=False)
    return result.passed, result.message


@pytest.fixture
def quiet():
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.ao.quantization's deprecation notices
        yield


def test_lab10_registers_four_exercises_for_its_notebook():
    exercises = [EXERCISES[i] for i in IDS]
    assert [ex.function for ex in exercises] == ["fold_batchnorm", "calibrate", "weight_code", "model_size"]
    assert {ex.notebook for ex in exercises} == {"10_resnet_ptq"}
    assert sum(ex.points for ex in exercises) == 9
    assert all(len(ex.wrong_answers) >= 5 for ex in exercises)


def test_importing_the_lab_module_does_not_import_torch():
    code = "import sys; import qlearn.grading.labs.lab10; print('torch' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


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

    result = check("10.3", division, verbose=False)
    assert not result.passed and "the kernel's reciprocal decides" in result.message
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


# --- 10.4: model_size -------------------------------------------------------------------------

def test_model_size_solution_with_math_ceil_passes():
    import math

    def with_ceil(tensors):
        return sum(math.ceil(n * DTYPE_BITS[d] / 8) for d, n in tensors)

    passed, message = _passes("10.4", with_ceil)
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
            found.append((str(value.dtype).removeprefix("torch."), value.numel()))
            if value.is_quantized and value.qscheme() == torch.per_channel_affine:
                for t in (value.q_per_channel_scales(), value.q_per_channel_zero_points()):
                    found.append((str(t.dtype).removeprefix("torch."), t.numel()))

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
    assert model_size([("int4", 3), ("int4", 3)]) == 4
    assert model_size([("int1", 9)]) == 2
    assert model_size([]) == 0 and isinstance(model_size([("float32", 1)]), int)


def test_lab_module_exports_what_it_documents():
    assert set(lab10.__all__) == {"DTYPE_BITS", "FakeLoader", "RecordingObserver", "TinyObservedModel",
                                  "calibrate", "fold_batchnorm", "model_size", "weight_code"}
