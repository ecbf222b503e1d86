"""qlearn.bridge.torchao_flow: torchao's quantize_ on Linear layers and the PT2E X86 flow.

Skipped without torchao. Oracle: the quantized models stay close to the float ones, and PT2E's graph
holds the quantize/dequantize ops it should (per-channel weights for each conv and the linear layer).
"""

from __future__ import annotations

import pytest
import torch
from torch import nn

pytest.importorskip("torchao", reason="torchao is not installed (lab 12's dependency, see requirements.txt)")

from qlearn.bridge.resnet import resnet_fmnist
from qlearn.bridge.torchao_flow import (QUANTIZE_CONFIGS, pt2e_op_counts, pt2e_supported, quantize_linears,
                                        quantize_pt2e_x86)


@pytest.mark.parametrize("config", QUANTIZE_CONFIGS)
def test_quantize_linears_is_close_and_leaves_the_model_alone(config):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(64, 128), nn.ReLU(), nn.Linear(128, 32)).eval()
    x = torch.randn(8, 64)
    quantized = quantize_linears(model, config)
    assert type(model[0].weight) is nn.Parameter  # the original is untouched
    assert type(quantized[0].weight.data) is not torch.Tensor or type(quantized[0].weight) is not nn.Parameter
    with torch.no_grad():
        want, got = model(x), quantized(x)
    # int8 weights (and int8 activations for the dynamic config): a few percent of the output's spread
    assert (got - want).abs().max() <= 0.05 * (want.max() - want.min())


def test_quantize_linears_rejects_unknown_configs():
    with pytest.raises(ValueError, match="config must be one of"):
        quantize_linears(nn.Linear(2, 2), "QuantizedModel")


def test_pt2e_x86_flow():
    ok, why = pt2e_supported()
    if not ok:
        pytest.skip(why)
    torch.manual_seed(0)
    model = resnet_fmnist(8).eval()
    gen = torch.Generator().manual_seed(0)
    calib = [torch.rand(4, 1, 28, 28, generator=gen) for _ in range(2)]
    converted = quantize_pt2e_x86(model, calib)
    ops = pt2e_op_counts(converted)
    assert ops["conv2d"] == 9 and ops["dequantize_per_channel"] == 10  # 9 convs + 1 linear, per-channel weights
    x = torch.rand(3, 1, 28, 28, generator=gen)
    with torch.no_grad():
        want, got = model(x), converted(x)
    assert (got - want).abs().max() <= 0.25 * (want.max() - want.min())
    with pytest.raises(ValueError, match="no batch"):
        quantize_pt2e_x86(model, [])
