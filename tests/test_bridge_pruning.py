"""qlearn.bridge.pruning, surgery and macs, with torch as the oracle."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch import nn
from torch.nn.utils import prune
from torch.utils.flop_counter import FlopCounterMode

from qlearn.bridge.macs import count_macs, count_nonzero_params, count_params, float_size_bytes
from qlearn.bridge.pruning import (
    apply_masks,
    current_masks,
    global_masks,
    layer_masks,
    load_sparse,
    prunable_layers,
    remove_pruning,
    save_sparse,
    sensitivity_scan,
    sparsity_report,
    update_masks,
)
from qlearn.bridge.resnet import resnet_fmnist
from qlearn.bridge.surgery import block_keep_indices, prune_block_channels, residual_blocks, slice_conv_bn_conv


@pytest.fixture
def net():
    torch.manual_seed(0)
    model = resnet_fmnist(8).eval()
    with torch.no_grad():  # non-trivial BN statistics and affine parameters
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0, 0.1)
                m.running_mean.normal_(0, 0.1)
                m.running_var.uniform_(0.5, 2.0)
    return model


@pytest.mark.parametrize("amount", [0.3, 0.8, 0.95, 1000])
def test_global_masks_equal_torch_global_unstructured(net, amount):
    ours = global_masks(net, amount)
    ref = copy.deepcopy(net)
    params = [(m, "weight") for m in prunable_layers(ref).values()]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=amount)
    theirs = current_masks(ref)
    assert list(ours) == list(theirs)
    for name in ours:
        np.testing.assert_array_equal(ours[name], theirs[name], err_msg=name)


def test_custom_from_mask_then_remove_equals_torch_pruning(net):
    masks = layer_masks(net, {"layer1.0.conv1": 0.5, "fc": 0.7})
    ours = apply_masks(copy.deepcopy(net), masks)
    ref = copy.deepcopy(net)
    prune.l1_unstructured(ref.layer1[0].conv1, "weight", 0.5)
    prune.l1_unstructured(ref.fc, "weight", 0.7)
    x = torch.randn(4, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)
    remove_pruning(ours)
    assert not hasattr(ours.fc, "weight_orig") and not hasattr(ours.fc, "weight_mask")
    assert sparsity_report(ours)["fc"] == (448, 640)
    with torch.no_grad():
        torch.testing.assert_close(ours(x), ref(x), rtol=0, atol=0)


def test_apply_masks_rejects_wrong_shapes_and_names(net):
    with pytest.raises(ValueError, match="unknown layer"):
        apply_masks(net, {"nope": np.ones(3, bool)})
    with pytest.raises(ValueError, match="shape"):
        apply_masks(net, {"fc": np.ones((3, 3), bool)})


def test_update_masks_changes_the_effective_weight(net):
    apply_masks(net, {n: np.ones(m.weight.shape, bool) for n, m in prunable_layers(net).items()})
    update_masks(net, global_masks(net, 0.5))
    zeros, size = sparsity_report(net)["total"]
    assert zeros == round(0.5 * size)
    with pytest.raises(ValueError, match="not pruned"):
        update_masks(resnet_fmnist(8), {"fc": np.ones((10, 64), bool)})


def test_save_and_load_sparse_round_trip(net, tmp_path):
    apply_masks(net, global_masks(net, 0.8))
    with pytest.raises(ValueError, match="remove_pruning"):
        save_sparse(net, tmp_path / "x.pt")
    remove_pruning(net)
    meta = save_sparse(net, tmp_path / "x.pt", {"note": "test"})
    dense_bytes = 4 * sum(m.weight.numel() for m in prunable_layers(net).values())
    assert (tmp_path / "x.pt").stat().st_size < 0.5 * dense_bytes
    loaded = load_sparse(resnet_fmnist(8), tmp_path / "x.pt", sha256=meta["sha256"])
    expected, got = net.state_dict(), loaded.state_dict()
    assert set(expected) == set(got)
    for k in expected:  # (prune.remove re-registers weight after bias: compare by key)
        torch.testing.assert_close(got[k], expected[k], rtol=0, atol=0, msg=k)
    with pytest.raises(ValueError, match="sha256"):
        load_sparse(resnet_fmnist(8), tmp_path / "x.pt", sha256="0" * 64)


def test_sensitivity_scan_restores_the_model(net):
    before = {k: v.clone() for k, v in net.state_dict().items()}
    data = [(torch.randn(8, 1, 28, 28), torch.randint(0, 10, (8,)))]
    seen = []

    def fake_eval(model, batches):
        seen.append(float(model.fc.weight.eq(0).float().mean()))
        return 0.5

    result = sensitivity_scan(net, data, [0.0, 0.5], names=["fc"], evaluate=fake_eval)
    assert result == {"fc": [0.5, 0.5]} and seen == [0.0, 0.5]
    for k, v in net.state_dict().items():
        torch.testing.assert_close(v, before[k], rtol=0, atol=0)


# --- surgery -----------------------------------------------------------------------------------

def test_slice_equals_zeroing_the_inputs_of_conv2(net):
    block = net.layer2[0]
    keep = block_keep_indices(block, 0.5)
    removed = np.setdiff1d(np.arange(block.conv1.out_channels), keep)
    c1, bn, c2 = slice_conv_bn_conv(block.conv1, block.bn1, block.conv2, keep)
    x = torch.randn(3, block.conv1.in_channels, 14, 14)
    with torch.no_grad():
        reference_conv2 = copy.deepcopy(block.conv2)
        reference_conv2.weight[:, torch.as_tensor(removed)] = 0
        expected = reference_conv2(torch.relu(block.bn1(block.conv1(x))))
        got = c2(torch.relu(bn(c1(x))))
    torch.testing.assert_close(got, expected, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(bn.running_var, block.bn1.running_var[torch.as_tensor(keep)], rtol=0, atol=0)


def test_keep_indices_follow_ln_structured(net):
    block = net.layer1[0]
    ref = copy.deepcopy(block.conv1)
    prune.ln_structured(ref, "weight", amount=0.5, n=2, dim=0)
    kept_by_torch = np.flatnonzero(ref.weight_mask.reshape(ref.out_channels, -1)[:, 0].numpy())
    np.testing.assert_array_equal(block_keep_indices(block, 0.5), kept_by_torch)


def test_slice_rejects_bad_indices(net):
    b = net.layer1[0]
    for keep in ([], [3, 1], [0, 99]):
        with pytest.raises(ValueError, match="keep"):
            slice_conv_bn_conv(b.conv1, b.bn1, b.conv2, keep)


def test_prune_block_channels_halves_the_inner_channels(net):
    small = prune_block_channels(net, 0.5)
    for name, block in residual_blocks(small).items():
        full = dict(net.named_modules())[name]
        assert block.conv1.out_channels == full.conv1.out_channels // 2
        assert block.conv2.out_channels == full.conv2.out_channels  # the skip path is untouched
    assert small(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    assert count_params(small) < count_params(net)


# --- macs --------------------------------------------------------------------------------------

@pytest.mark.parametrize("batch", [1, 3])
def test_macs_are_half_the_flops_of_torch_flop_counter(net, batch):
    x = torch.zeros(batch, 1, 28, 28)
    with FlopCounterMode(display=False) as counter, torch.no_grad():
        net(x)
    flops = sum(v for op, v in counter.get_flop_counts()["Global"].items() if "convolution" in str(op) or "addmm" in str(op) or "mm" in str(op))
    assert count_macs(net, tuple(x.shape))["total"] * 2 == flops


def test_channel_pruning_halves_the_block_macs(net):
    small = prune_block_channels(net, 0.5)
    full, half = count_macs(net), count_macs(small)
    for name in residual_blocks(net):
        for conv in ("conv1", "conv2"):
            assert half[f"{name}.{conv}"] * 2 == full[f"{name}.{conv}"]


def test_sparsity_does_not_change_macs_but_changes_nonzeros(net):
    pruned = apply_masks(copy.deepcopy(net), global_masks(net, 0.9))
    assert count_macs(pruned) == count_macs(net)
    assert count_nonzero_params(pruned) < count_nonzero_params(net)
    remove_pruning(pruned)
    assert float_size_bytes(pruned) == float_size_bytes(net)
