"""qlearn.bridge.export: weights out to numpy, activations recorded and fake-quantized with hooks.

torch is the oracle: folded weights are checked against the BatchNorm formula, the activation
sites against the modules that ``torch.ao.quantization.prepare`` observes, and the fake-quantized
activations against ``torch.fake_quantize_per_tensor_affine``.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn
from torch.ao import quantization as tq

from qlearn.affine import fake_quantize
from qlearn.bridge.export import (
    activation_sites,
    export_weights,
    fake_quantize_activations,
    fused_copy,
    load_weights,
    observe_activations,
    record_activations,
)
from qlearn.bridge.ptq import make_qconfig, quiet_quantization_warnings
from qlearn.bridge.resnet import resnet_fmnist
from qlearn.observers import MinMaxObserver, MovingAverageMinMaxObserver
from qlearn.qparams import calc_qparams


@pytest.fixture(scope="module")
def model() -> nn.Module:
    """A resnet_fmnist(8) whose BatchNorms hold random statistics, so that folding changes the weights."""
    torch.manual_seed(0)
    m = resnet_fmnist(8)
    for bn in m.modules():
        if isinstance(bn, nn.BatchNorm2d):
            bn.weight.data.uniform_(0.2, 2.0)
            bn.bias.data.normal_(0.0, 0.3)
            bn.running_mean.normal_(0.0, 0.2)
            bn.running_var.uniform_(0.1, 3.0)
    return m.eval()


@pytest.fixture(scope="module")
def batches() -> list[torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    return [torch.randn(3, 1, 28, 28, generator=g) for _ in range(3)]


SITES_R8 = ["quant", "conv1", "layer1.0.conv1", "layer1.0.conv2", "layer1.0.add_relu",
            "layer2.0.conv1", "layer2.0.conv2", "layer2.0.downsample.0", "layer2.0.add_relu",
            "layer3.0.conv1", "layer3.0.conv2", "layer3.0.downsample.0", "layer3.0.add_relu", "fc"]


# --- export_weights ---------------------------------------------------------------------------

def test_unfused_weights_are_float32_copies_of_the_parameters(model):
    weights = export_weights(model)
    convs = [n for n, m in model.named_modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    assert list(weights) == convs
    for name, w in weights.items():
        param = model.get_submodule(name).weight
        assert w.dtype == np.float32 and w.shape == tuple(param.shape)
        assert np.array_equal(w, param.detach().numpy())
    weights["fc"][:] = 0  # a copy: the model is untouched
    assert model.fc.weight.abs().sum() > 0


def test_fused_weights_fold_batchnorm_per_output_channel(model):
    fused = export_weights(model, fuse=True)
    assert list(fused) == [s for s in SITES_R8 if s not in ("quant",) and "add_relu" not in s]
    pairs = {"conv1": ("conv1", "bn1"), "layer1.0.conv2": ("layer1.0.conv2", "layer1.0.bn2"),
             "layer2.0.downsample.0": ("layer2.0.downsample.0", "layer2.0.downsample.1")}
    for name, (conv, bn) in pairs.items():
        w = model.get_submodule(conv).weight.detach().double()
        b = model.get_submodule(bn)
        factor = (b.weight / torch.sqrt(b.running_var + b.eps)).detach().double()
        expected = (w * factor.view(-1, 1, 1, 1)).numpy()
        np.testing.assert_allclose(fused[name], expected, rtol=1e-5, atol=1e-7)
    assert np.array_equal(fused["fc"], model.fc.weight.detach().numpy())  # no BatchNorm before fc


def test_fuse_must_be_a_bool(model):
    with pytest.raises(TypeError, match="fuse must be True or False"):
        export_weights(model, fuse="yes")


def test_fused_copy_leaves_the_model_unchanged_and_computes_the_same(model, batches):
    fused = fused_copy(model)
    assert isinstance(model.bn1, nn.BatchNorm2d) and isinstance(fused.bn1, nn.Identity)
    with torch.no_grad():
        torch.testing.assert_close(fused(batches[0]), model(batches[0]), rtol=1e-4, atol=1e-5)
    with pytest.raises(TypeError, match="fuse_model"):
        fused_copy(nn.Linear(2, 2))


# --- activation sites -------------------------------------------------------------------------

def test_sites_are_where_torch_prepare_puts_activation_observers(model):
    fused = fused_copy(model)
    assert list(activation_sites(fused)) == SITES_R8
    prepared = fused_copy(model)
    prepared.qconfig = make_qconfig("x86")
    with quiet_quantization_warnings():
        tq.prepare(prepared, inplace=True)
    observed = [n for n, m in prepared.named_modules() if hasattr(m, "activation_post_process")]
    assert observed == SITES_R8


def test_an_unfused_model_is_refused(model):
    with pytest.raises(ValueError, match="fused_copy"):
        activation_sites(model)


def test_a_model_without_sites_is_refused():
    with pytest.raises(ValueError, match="no activation site"):
        activation_sites(nn.Sequential(nn.ReLU()))


# --- record_activations -----------------------------------------------------------------------

def test_recorded_activations_are_the_tensors_of_the_forward_pass(model, batches):
    fused = fused_copy(model)
    acts = record_activations(fused, batches)
    assert list(acts) == SITES_R8
    x = torch.cat(batches)
    assert np.array_equal(acts["quant"], x.numpy())
    with torch.no_grad():
        assert np.array_equal(acts["fc"], torch.cat([fused(b) for b in batches]).numpy())
        assert np.array_equal(acts["conv1"], fused.conv1(x).numpy())
    assert acts["layer2.0.add_relu"].shape == (9, 32, 14, 14)
    assert acts["layer2.0.add_relu"].min() >= 0  # add_relu: after the ReLU
    assert all(a.dtype == np.float32 for a in acts.values())


def test_record_subset_of_sites_and_batches(model, batches):
    fused = fused_copy(model)
    acts = record_activations(fused, [(b, torch.zeros(3)) for b in batches], sites=["fc", "conv1"], num_batches=2)
    assert list(acts) == ["fc", "conv1"]
    assert acts["fc"].shape == (6, 10)
    with pytest.raises(ValueError, match="'conv9' is not an activation site"):
        record_activations(fused, batches, sites=["conv9"])
    with pytest.raises(TypeError, match="list of site names"):
        record_activations(fused, batches, sites="fc")
    with pytest.raises(ValueError, match="num_batches"):
        record_activations(fused, batches, num_batches=0)
    with pytest.raises(ValueError, match="no batch"):
        record_activations(fused, [])


def _hook_count(model):
    return sum(len(m._forward_hooks) for m in model.modules())


def test_hooks_are_removed_even_after_an_error(model, batches):
    fused = fused_copy(model)
    record_activations(fused, batches)
    assert _hook_count(fused) == 0
    with pytest.raises(RuntimeError):
        record_activations(fused, [torch.zeros(1, 3, 28, 28)])  # wrong channel count
    assert _hook_count(fused) == 0
    assert not fused.training


# --- observe_activations ----------------------------------------------------------------------

def test_observers_see_every_batch_in_order(model, batches):
    fused = fused_copy(model)
    acts = record_activations(fused, batches)
    minmax = observe_activations(fused, batches, lambda: MinMaxObserver(qmin=0, qmax=255))
    for name, obs in minmax.items():
        assert (obs.min_val, obs.max_val) == (acts[name].min(), acts[name].max())
    ema = observe_activations(fused, batches, lambda: MovingAverageMinMaxObserver(0.5, qmin=0, qmax=255),
                              sites=["conv1"])
    per_batch = [(a.min(), a.max()) for a in np.split(acts["conv1"], 3)]
    lo, hi = per_batch[0]
    for b_lo, b_hi in per_batch[1:]:
        lo, hi = lo + np.float32(0.5) * (b_lo - lo), hi + np.float32(0.5) * (b_hi - hi)
    assert (ema["conv1"].min_val, ema["conv1"].max_val) == (lo, hi)
    with pytest.raises(TypeError, match="make_observer"):
        observe_activations(fused, batches, "minmax")


# --- fake_quantize_activations ----------------------------------------------------------------

def test_static_fake_quantization_matches_torch(model, batches):
    fused = fused_copy(model)
    acts = record_activations(fused, batches[:1])
    qparams = {n: calc_qparams(a.min(), a.max(), 0, 255) for n, a in acts.items()}
    with fake_quantize_activations(fused, qparams, 0, 255) as m:
        assert m is fused
        inside = record_activations(fused, batches[:1], sites=["fc", "conv1"])
    scale, zero_point = qparams["fc"]
    # the recorded fc output is fc applied to fake-quantized inputs, then itself fake-quantized
    assert np.array_equal(inside["fc"], fake_quantize(inside["fc"], scale, zero_point, 0, 255))
    # the conv1 site: its fake-quantized output equals torch's kernel applied to the float conv1 output
    x = torch.from_numpy(fake_quantize(acts["quant"], *qparams["quant"], 0, 255))
    with torch.no_grad():
        conv1 = fused.conv1(x)
    s, z = qparams["conv1"]
    expected = torch.fake_quantize_per_tensor_affine(conv1, float(s), int(z), 0, 255)
    assert np.array_equal(inside["conv1"], expected.numpy())
    assert _hook_count(fused) == 0


def test_dynamic_fake_quantization_uses_each_batch_range(model, batches):
    fused = fused_copy(model)
    with torch.no_grad():
        plain = fused(batches[0]).numpy()
    with fake_quantize_activations(fused, None, -128, 127, sites=["fc"]):
        with torch.no_grad():
            out = fused(batches[0]).numpy()
    scale, zero_point = calc_qparams(plain.min(), plain.max(), -128, 127)
    assert np.array_equal(out, fake_quantize(plain, scale, zero_point, -128, 127))
    assert len(np.unique(out)) <= 256


def test_fake_quantization_arguments_are_checked(model):
    fused = fused_copy(model)
    with pytest.raises(ValueError, match=r"no \(scale, zero_point\) for the site\(s\) \['conv1'\]"):
        with fake_quantize_activations(fused, {"fc": (1.0, 0)}, 0, 255, sites=["fc", "conv1"]):
            pass
    with pytest.raises(ValueError, match="must be a pair"):
        with fake_quantize_activations(fused, {"fc": 1.0}, 0, 255):
            pass
    with pytest.raises(TypeError, match="qparams must map"):
        with fake_quantize_activations(fused, [1.0, 0], 0, 255):
            pass
    with pytest.raises(ValueError):
        with fake_quantize_activations(fused, {"fc": (1.0, 0)}, 5, 1):
            pass
    assert _hook_count(fused) == 0


def test_hooks_are_removed_when_the_block_raises(model):
    fused = fused_copy(model)
    with pytest.raises(KeyError):
        with fake_quantize_activations(fused, None, 0, 255):
            assert _hook_count(fused) == len(SITES_R8)
            raise KeyError("boom")
    assert _hook_count(fused) == 0


# --- load_weights -----------------------------------------------------------------------------

def test_load_weights_round_trips_export_weights(model, batches):
    fused = fused_copy(model)
    weights = export_weights(model, fuse=True)
    target = fused_copy(resnet_fmnist(8))          # other weights, same architecture
    assert load_weights(target, weights) is target
    assert all(np.array_equal(a, export_weights(target)[n]) for n, a in weights.items())
    halved = {"fc": weights["fc"] / 2}
    load_weights(fused, halved)
    assert np.array_equal(fused.fc.weight.detach().numpy(), weights["fc"] / 2)
    assert np.array_equal(fused.conv1[0].weight.detach().numpy(), weights["conv1"])  # untouched


def test_load_weights_checks_names_and_shapes_before_copying(model):
    fused = fused_copy(model)
    before = fused.conv1[0].weight.detach().clone()
    with pytest.raises(ValueError, match=r"weights\['fc'\] has shape \(3,\)"):
        load_weights(fused, {"conv1": np.zeros((16, 1, 3, 3), np.float32), "fc": np.zeros(3)})
    assert torch.equal(fused.conv1[0].weight, before)  # nothing copied
    with pytest.raises(ValueError, match="'nope' is not a module"):
        load_weights(fused, {"nope": np.zeros(1)})
    with pytest.raises(ValueError, match="not a Conv2d or Linear"):
        load_weights(fused, {"layer1": np.zeros(1)})
    with pytest.raises(TypeError, match="must map module names"):
        load_weights(fused, [np.zeros(1)])


def test_channels_last_models_give_the_same_fake_quantized_outputs(model, batches):
    fused = fused_copy(model)
    fast = fused_copy(model).to(memory_format=torch.channels_last)
    acts = record_activations(fused, batches[:1])
    qparams = {n: calc_qparams(a.min(), a.max(), 0, 255) for n, a in acts.items()}
    outputs = []
    for m in (fused, fast):
        with fake_quantize_activations(m, qparams, 0, 255):
            outputs.append(record_activations(m, batches[:1], sites=["conv1", "layer2.0.add_relu", "fc"]))
        with fake_quantize_activations(m, None, 0, 255), torch.no_grad():
            outputs.append({"dynamic": m(batches[0]).numpy()})
    # the convolutions sum in another order, so a value sitting on a rounding boundary may move
    # by one step; nearly all values must agree exactly
    for ours, theirs in ((outputs[2][n], outputs[0][n]) for n in ("conv1", "layer2.0.add_relu", "fc")):
        assert ours.shape == theirs.shape and np.mean(np.abs(ours - theirs) > 1e-5) < 1e-3
    assert np.mean(np.abs(outputs[3]["dynamic"] - outputs[1]["dynamic"]) > 1e-5) < 1e-3
