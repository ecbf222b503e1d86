"""Channel pruning that really shrinks the network: slice a conv -> BN -> conv group.

Inside a residual ``BasicBlock`` the *inner* channels (the outputs of ``conv1``, which pass through
``bn1`` and the ReLU into ``conv2``) touch nothing else, so they can be removed without breaking
the skip connection. Keeping the channels ``keep`` (sorted indices) means:

    conv1.weight[keep, :, :, :]        (and conv1.bias[keep], if any)
    bn1.{weight, bias, running_mean, running_var}[keep]
    conv2.weight[:, keep, :, :]

The sliced network computes exactly what the original computes after those channels' outputs
are set to zero... except for the BN shift: a removed channel also loses ``relu(beta - ...)``,
its constant output. So removing channels changes the function, and a short fine-tuning recovers.
Channels are ranked by the L2 norm of their ``conv1`` filter (``ln_structured`` with ``n=2``,
``dim=0``), the criterion of Li et al. (2017) up to the norm. Used in lab 07, section 5.
"""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn

from qlearn.pruning import ln_structured_mask

__all__ = ["block_keep_indices", "prune_block_channels", "residual_blocks", "slice_conv_bn_conv"]


def residual_blocks(model: nn.Module) -> dict[str, nn.Module]:
    """Modules that have a ``conv1 -> bn1 -> conv2`` inner path (torchvision ``BasicBlock`` style)."""
    return {
        name: m
        for name, m in model.named_modules()
        if all(isinstance(getattr(m, a, None), t) for a, t in (("conv1", nn.Conv2d), ("bn1", nn.BatchNorm2d), ("conv2", nn.Conv2d)))
        and name  # not the model itself (FashionResNet has conv1/bn1 but no conv2)
    }


def slice_conv_bn_conv(
    conv1: nn.Conv2d, bn: nn.BatchNorm2d, conv2: nn.Conv2d, keep: object
) -> tuple[nn.Conv2d, nn.BatchNorm2d, nn.Conv2d]:
    """New ``(conv1, bn, conv2)`` that keep only the inner channels ``keep`` (increasing int indices).

    ``conv1`` loses output channels, ``bn`` the matching entries (affine parameters and running
    statistics), ``conv2`` the matching input channels. Strides, padding, dilation, bias and the BN's
    ``eps``/``momentum`` are kept; the inputs are not modified. Groups other than 1 are refused.

    >>> c1, b, c2 = nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.Conv2d(8, 4, 3, padding=1)
    >>> s1, sb, s2 = slice_conv_bn_conv(c1, b, c2, [0, 2, 5])
    >>> tuple(s1.weight.shape), sb.num_features, tuple(s2.weight.shape)
    ((3, 3, 3, 3), 3, (4, 3, 3, 3))
    """
    if conv1.groups != 1 or conv2.groups != 1:
        raise ValueError(f"grouped convolutions are not supported (groups={conv1.groups}, {conv2.groups})")
    channels = conv1.out_channels
    if bn.num_features != channels or conv2.in_channels != channels:
        raise ValueError(
            f"shapes do not chain: conv1 has {channels} outputs, bn {bn.num_features} features, "
            f"conv2 {conv2.in_channels} inputs"
        )
    keep = np.asarray(keep)
    if keep.ndim != 1 or keep.size == 0 or not np.issubdtype(keep.dtype, np.integer):
        raise ValueError(f"keep must be a non-empty 1-D array of channel indices, got {keep!r}")
    if np.any(np.diff(keep) <= 0) or keep[0] < 0 or keep[-1] >= channels:
        raise ValueError(f"keep must be strictly increasing indices in [0, {channels - 1}], got {keep.tolist()}")
    idx = torch.as_tensor(keep, dtype=torch.long)
    k = len(keep)

    new1 = nn.Conv2d(conv1.in_channels, k, conv1.kernel_size, conv1.stride, conv1.padding, conv1.dilation,
                     bias=conv1.bias is not None, padding_mode=conv1.padding_mode)
    new_bn = nn.BatchNorm2d(k, eps=bn.eps, momentum=bn.momentum, affine=bn.affine,
                            track_running_stats=bn.track_running_stats)
    new2 = nn.Conv2d(k, conv2.out_channels, conv2.kernel_size, conv2.stride, conv2.padding, conv2.dilation,
                     bias=conv2.bias is not None, padding_mode=conv2.padding_mode)
    with torch.no_grad():
        new1.weight.copy_(conv1.weight[idx])
        if conv1.bias is not None:
            new1.bias.copy_(conv1.bias[idx])
        if bn.affine:
            new_bn.weight.copy_(bn.weight[idx])
            new_bn.bias.copy_(bn.bias[idx])
        if bn.track_running_stats:
            new_bn.running_mean.copy_(bn.running_mean[idx])
            new_bn.running_var.copy_(bn.running_var[idx])
            new_bn.num_batches_tracked.copy_(bn.num_batches_tracked)
        new2.weight.copy_(conv2.weight[:, idx])
        if conv2.bias is not None:
            new2.bias.copy_(conv2.bias)
    for new, old in ((new1, conv1), (new_bn, bn), (new2, conv2)):
        new.train(old.training)
    return new1, new_bn, new2


def block_keep_indices(block: nn.Module, amount: float | int) -> np.ndarray:
    """Inner channels of ``block`` to keep: all but the ``amount`` with the smallest L2 filter norm.

    ``amount`` follows ``prune.ln_structured`` (a fraction, rounded half-to-even, or a count).
    """
    mask = ln_structured_mask(block.conv1.weight.detach().cpu().numpy(), amount, n=2, dim=0)
    return np.flatnonzero(mask.reshape(mask.shape[0], -1)[:, 0])


def prune_block_channels(model: nn.Module, amount: float | int) -> nn.Module:
    """A copy of ``model`` with ``amount`` of the inner channels of every residual block removed.

    >>> from qlearn.bridge.resnet import resnet_fmnist
    >>> small = prune_block_channels(resnet_fmnist(8), 0.5)
    >>> [tuple(b.conv1.weight.shape) for b in residual_blocks(small).values()]
    [(8, 16, 3, 3), (16, 16, 3, 3), (32, 32, 3, 3)]
    """
    model = copy.deepcopy(model)
    for block in residual_blocks(model).values():
        keep = block_keep_indices(block, amount)
        block.conv1, block.bn1, block.conv2 = slice_conv_bn_conv(block.conv1, block.bn1, block.conv2, keep)
    return model
