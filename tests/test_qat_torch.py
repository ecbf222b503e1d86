"""qlearn.bridge.qat against PyTorch (the oracle): the STE and LSQ Functions equal torch's
fake-quantize kernels in values and gradients; the low-bit STEs equal qlearn.lowbit; the
fake-quantized model, its calibration, training loop and compact checkpoints behave."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import torch
from torch import nn

from qlearn.bridge.qat import (
    QAT_RUNS,
    QuantSpec,
    binarize_ste,
    calibrate_scales,
    fake_quant_layers,
    fake_quantize_ste,
    load_qat_checkpoint,
    lsq_fake_quantize,
    lsq_grad_factor,
    prepare_fake_quant,
    quantize_weights_only,
    save_qat_checkpoint,
    ternarize_ste,
    train_qat,
)
from qlearn.bridge.resnet import resnet_fmnist
from qlearn.datasets import data_root
from qlearn.lowbit import binarize, ternarize


@pytest.mark.parametrize(("scale", "zp", "lo", "hi"), [(0.1, 0, -128, 127), (0.37, 5, 0, 15), (0.05, -3, -8, 7)])
def test_fake_quantize_ste_equals_torch_bit_for_bit(scale, zp, lo, hi):
    gen = torch.Generator().manual_seed(1)
    x = torch.randn(20_000, generator=gen) * 2
    grad = torch.randn(20_000, generator=gen)
    a, b = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    ya = fake_quantize_ste(a, scale, zp, lo, hi)
    yb = torch.fake_quantize_per_tensor_affine(b, scale, zp, lo, hi)
    ya.backward(grad)
    yb.backward(grad)
    assert torch.equal(ya, yb) and torch.equal(a.grad, b.grad)


def test_lsq_per_tensor_equals_torch_learnable_kernel():
    gen = torch.Generator().manual_seed(2)
    x = torch.randn(3000, generator=gen)
    grad = torch.randn(3000, generator=gen)
    for zp, lo, hi in ((0, -8, 7), (3, 0, 15), (0, 0, 255)):
        xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
        sa, sb = torch.tensor([0.2], requires_grad=True), torch.tensor([0.2], requires_grad=True)
        g = lsq_grad_factor(x.numel(), hi)
        ya = lsq_fake_quantize(xa, sa, zp, lo, hi, g)
        yb = torch._fake_quantize_learnable_per_tensor_affine(xb, sb, torch.tensor([float(zp)]), lo, hi, g)
        ya.backward(grad)
        yb.backward(grad)
        assert torch.equal(ya, yb) and torch.equal(xa.grad, xb.grad)
        torch.testing.assert_close(sa.grad, sb.grad, rtol=1e-5, atol=1e-7)


def test_lsq_per_channel_equals_torch_learnable_kernel():
    gen = torch.Generator().manual_seed(3)
    w = torch.randn(8, 4, 3, 3, generator=gen)
    grad = torch.randn(8, 4, 3, 3, generator=gen)
    scale = w.abs().amax((1, 2, 3)) / 7
    sa = scale.reshape(-1, 1, 1, 1).clone().requires_grad_(True)
    sb = scale.clone().requires_grad_(True)
    g = lsq_grad_factor(36, 7)
    ya = lsq_fake_quantize(w, sa, 0, -8, 7, g)
    yb = torch._fake_quantize_learnable_per_channel_affine(w, sb, torch.zeros(8), 0, -8, 7, g)
    ya.backward(grad)
    yb.backward(grad)
    assert torch.equal(ya, yb)
    torch.testing.assert_close(sa.grad.reshape(-1), sb.grad, rtol=1e-5, atol=1e-7)


def test_lowbit_ste_values_equal_the_numpy_core_and_pass_gradients():
    w = torch.randn(6, 3, 3, 3, generator=torch.Generator().manual_seed(4), requires_grad=True)
    for fn, core in ((binarize_ste, binarize), (ternarize_ste, ternarize)):
        codes, alpha = core(w.detach().numpy(), axis=0)
        np.testing.assert_allclose(fn(w).detach().numpy(), alpha * codes, rtol=1e-6, atol=1e-7)
        w.grad = None
        fn(w).sum().backward()
        assert torch.equal(w.grad, torch.ones_like(w))


def test_prepare_keeps_first_and_last_at_8_bits_and_leaves_the_model():
    model = resnet_fmnist(8).eval()
    fq = prepare_fake_quant(model, 2, 4, per_layer={"layer2.0.conv1": 3})
    specs = {n: m.spec for n, m in fake_quant_layers(fq).items()}
    assert specs["conv1"].weight_bits == 8 and specs["conv1"].act_signed
    assert specs["fc"].weight_bits == 8 and specs["fc"].act_bits == 8
    assert specs["layer1.0.conv1"].weight_range == (-2, 1) and specs["layer1.0.conv1"].act_range == (0, 15)
    assert specs["layer2.0.conv1"].weight_bits == 3
    assert not any(isinstance(m, type(fq.conv1)) for m in model.modules())
    with pytest.raises(ValueError, match="per_layer"):
        prepare_fake_quant(model, 4, 4, per_layer={"nope": 2})
    with pytest.raises(ValueError, match="weight_bits"):
        QuantSpec(1, 4)


def test_calibrated_8bit_model_is_close_to_float_and_training_runs():
    torch.manual_seed(0)
    model = resnet_fmnist(8).eval()
    x = torch.randn(32, 1, 28, 28)
    y = torch.randint(0, 10, (32,))
    fq = calibrate_scales(prepare_fake_quant(model, 8, 8), [(x, y)], 1)
    with torch.no_grad():
        ref, out = model(x), fq(x)
    assert (ref - out).abs().max() < 0.1 * ref.abs().max()
    info = train_qat(fq, [(x, y)] * 3, epochs=1, lr=0.01, progress=False)
    assert info["steps"] == 3 and not fq.training
    assert all(m.weight_scale.min() > 0 for m in fake_quant_layers(fq).values())


def test_checkpoint_round_trip(tmp_path):
    torch.manual_seed(0)
    model = resnet_fmnist(14).eval()
    x = torch.randn(16, 1, 28, 28)
    fq = calibrate_scales(prepare_fake_quant(model, 4, 4), [(x, None)], 1)
    path = save_qat_checkpoint(fq, tmp_path / "checkpoints" / "qat_w4a4.pt")
    digest = __import__("hashlib").sha256(path.read_bytes()).hexdigest()
    (tmp_path / "checkpoints" / "qat_results.json").write_text(json.dumps({"runs": {"w4a4": {"sha256": digest}}}))
    back = load_qat_checkpoint("w4a4", tmp_path)
    with torch.no_grad():
        assert torch.equal(back(x), fq(x))
    assert path.stat().st_size < 0.4 * 4 * sum(p.numel() for p in model.parameters())


def test_shipped_checkpoints_load_and_match_their_results():
    results = json.loads((data_root() / "checkpoints" / "qat_results.json").read_text())
    assert set(results["runs"]) <= set(QAT_RUNS) and "w4a4" in results["runs"]
    for name in results["runs"]:
        model = load_qat_checkpoint(name)
        assert fake_quant_layers(model)["layer1.0.conv1"].spec.weight_bits == QAT_RUNS[name]["weight_bits"]


def test_quantize_weights_only_levels():
    layer = nn.Linear(16, 4)
    q = quantize_weights_only(layer, {"": 3})
    codes = torch.round(q.weight / (layer.weight.abs().amax(1, keepdim=True) / 3))
    assert set(codes.unique().tolist()) <= {-3.0, -2.0, -1.0, 0.0, 1.0, 2.0, 3.0}
    assert math.isclose(float(q.weight.detach().abs().max()), float(layer.weight.detach().abs().max()), rel_tol=1e-6)
