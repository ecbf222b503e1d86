"""qlearn.bridge.resnet: the quantizable Fashion-MNIST ResNet and its conv-bn-relu fusion."""

import copy

import pytest
import torch
from torch import nn
from torch.ao.nn.intrinsic import ConvReLU2d
from torch.ao.nn.quantized import FloatFunctional
from torchvision.models.quantization.resnet import QuantizableBasicBlock

from qlearn.bridge.resnet import resnet_fmnist


def _randomise_batchnorm(model, generator):
    """Give every BN layer non-trivial statistics, so that fusion has something to fold."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            n = m.num_features
            m.weight.data = torch.rand(n, generator=generator) + 0.5
            m.bias.data = torch.randn(n, generator=generator) * 0.1
            m.running_mean = torch.randn(n, generator=generator) * 0.1
            m.running_var = torch.rand(n, generator=generator) + 0.5
    return model


@pytest.mark.parametrize("depth, blocks", [(8, 1), (14, 2), (20, 3)])
def test_structure(depth, blocks):
    model = resnet_fmnist(depth)
    assert [len(s) for s in (model.layer1, model.layer2, model.layer3)] == [blocks] * 3
    blocks_ = [b for stage in (model.layer1, model.layer2, model.layer3) for b in stage]
    assert all(isinstance(b, QuantizableBasicBlock) for b in blocks_)
    assert isinstance(model.layer2[0].add_relu, FloatFunctional)
    assert model.layer1[0].downsample is None and model.layer2[0].downsample is not None
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d) and m.kernel_size == (3, 3)]
    assert len(convs) + 1 == depth  # 3x3 convolutions plus the final linear layer
    assert model.eval()(torch.zeros(3, 1, 28, 28)).shape == (3, 10)


def test_fuse_model_keeps_outputs():
    g = torch.Generator().manual_seed(0)
    model = _randomise_batchnorm(resnet_fmnist(14), g).eval()
    x = torch.randn(8, 1, 28, 28, generator=g)
    fused = copy.deepcopy(model).fuse_model()
    assert isinstance(fused.conv1, ConvReLU2d)
    assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
    with torch.no_grad():
        torch.testing.assert_close(fused(x), model(x), rtol=1e-4, atol=1e-5)


def test_fuse_model_qat_keeps_batchnorm_modules():
    model = resnet_fmnist(8).train().fuse_model(is_qat=True)
    assert isinstance(model.conv1, torch.ao.nn.intrinsic.ConvBnReLU2d)


def test_fuse_model_needs_eval_mode():
    with pytest.raises(RuntimeError, match=r"eval"):
        resnet_fmnist(8).train().fuse_model()


@pytest.mark.parametrize("depth", [0, 7, 9, 10, 12.0, "20", True])
def test_bad_depth(depth):
    with pytest.raises(ValueError, match=r"depth must be 6n \+ 2"):
        resnet_fmnist(depth)
