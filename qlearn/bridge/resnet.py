"""A small, quantizable, CIFAR-style ResNet for Fashion-MNIST (1x28x28 in, 10 classes out).

The layout is the CIFAR ResNet of He et al. (2016, section 4.2), depth = 6n + 2:

    QuantStub -> conv3x3(1->16) + BN + ReLU                                       28x28
              -> n BasicBlocks, 16 channels                                       28x28
              -> n BasicBlocks, 32 channels (the first one has stride 2)          14x14
              -> n BasicBlocks, 64 channels (the first one has stride 2)           7x7
              -> global average pool -> Linear(64 -> 10) -> DeQuantStub

Each block is torchvision's ``QuantizableBasicBlock``: two conv3x3+BN, a 1x1 conv+BN shortcut
when the shape changes, and the skip connection ``relu(out + identity)`` done by a
``FloatFunctional`` so that eager-mode quantization can swap it for a quantized add. The
``QuantStub``/``DeQuantStub`` pair marks where tensors enter and leave the int8 world.

``fuse_model()`` folds every BatchNorm into the preceding convolution (and the ReLU after it,
where there is one), which leaves the function unchanged in eval mode:

    W' = W * gamma / sqrt(var + eps),    b' = (b - mean) * gamma / sqrt(var + eps) + beta
"""

from __future__ import annotations

import torch
from torch import Tensor, nn
from torch.ao.quantization import DeQuantStub, QuantStub, fuse_modules, fuse_modules_qat
from torchvision.models.quantization.resnet import QuantizableBasicBlock

__all__ = ["DEPTHS", "FashionResNet", "resnet_fmnist"]

#: The depths the family allows (6n + 2 for n = 1..9); any 6n + 2 works.
DEPTHS: tuple[int, ...] = tuple(6 * n + 2 for n in range(1, 10))


class FashionResNet(nn.Module):
    """CIFAR-style ResNet with ``blocks_per_stage`` BasicBlocks in each of its 3 stages.

    >>> model = resnet_fmnist(8).eval()
    >>> model(torch.zeros(2, 1, 28, 28)).shape
    torch.Size([2, 10])
    """

    def __init__(self, blocks_per_stage: int, num_classes: int = 10, width: int = 16) -> None:
        super().__init__()
        self.quant = QuantStub()
        self.conv1 = nn.Conv2d(1, width, kernel_size=3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(width)
        self.relu = nn.ReLU(inplace=True)
        self.in_planes = width
        self.layer1 = self._make_stage(width, blocks_per_stage, stride=1)
        self.layer2 = self._make_stage(2 * width, blocks_per_stage, stride=2)
        self.layer3 = self._make_stage(4 * width, blocks_per_stage, stride=2)
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(4 * width, num_classes)
        self.dequant = DeQuantStub()
        for m in self.modules():
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(m, nn.BatchNorm2d):
                nn.init.ones_(m.weight)
                nn.init.zeros_(m.bias)
        # Zero-init the last BN of each block: every block starts as the identity (Goyal et al. 2017).
        for m in self.modules():
            if isinstance(m, QuantizableBasicBlock):
                nn.init.zeros_(m.bn2.weight)

    def _make_stage(self, planes: int, blocks: int, stride: int) -> nn.Sequential:
        layers = []
        for i in range(blocks):
            s = stride if i == 0 else 1
            downsample = None
            if s != 1 or self.in_planes != planes:
                downsample = nn.Sequential(
                    nn.Conv2d(self.in_planes, planes, kernel_size=1, stride=s, bias=False),
                    nn.BatchNorm2d(planes),
                )
            layers.append(QuantizableBasicBlock(self.in_planes, planes, s, downsample))
            self.in_planes = planes
        return nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        x = self.quant(x)
        x = self.relu(self.bn1(self.conv1(x)))
        x = self.layer3(self.layer2(self.layer1(x)))
        x = torch.flatten(self.avgpool(x), 1)
        x = self.fc(x)
        return self.dequant(x)

    def fuse_model(self, is_qat: bool = False) -> "FashionResNet":
        """Fuse conv+bn+relu / conv+bn in place (call ``.eval()`` first unless ``is_qat``).

        Returns ``self`` so that ``copy.deepcopy(model).eval().fuse_model()`` reads in one line.
        """
        if not is_qat and self.training:
            raise RuntimeError("fuse_model(is_qat=False) needs the model in eval mode: call .eval() first")
        fuse = fuse_modules_qat if is_qat else fuse_modules
        fuse(self, [["conv1", "bn1", "relu"]], inplace=True)
        for m in self.modules():
            if isinstance(m, QuantizableBasicBlock):
                m.fuse_model(is_qat)
        return self


def resnet_fmnist(depth: int = 20, num_classes: int = 10, width: int = 16) -> FashionResNet:
    """The Fashion-MNIST ResNet of the given ``depth`` (6n + 2: 8, 14, 20, ...), base width 16.

    >>> [sum(p.numel() for p in resnet_fmnist(d).parameters()) for d in (8, 14, 20)]
    [77754, 174970, 272186]
    """
    if isinstance(depth, bool) or not isinstance(depth, int) or depth < 8 or (depth - 2) % 6:
        raise ValueError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, ...), got {depth!r}")
    return FashionResNet((depth - 2) // 6, num_classes=num_classes, width=width)
