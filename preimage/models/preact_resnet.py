r"""Pre-activation ResNet-32 and PlainNet-32 (the same network, shortcuts removed), section 4.

The CIFAR ResNet of He et al. with pre-activation blocks: a 3x3 stem convolution, three stages
of :math:`n` blocks (``BN-ReLU-conv3x3-BN-ReLU-conv3x3`` plus the identity) of ``width``,
``2 width`` and ``4 width`` channels, the first block of stages 2 and 3 striding by 2, then
``BN-ReLU``, global average pooling to the features :math:`F(x) \in \mathbb{R}^{4\,width}` and
the linear head :math:`w`. Depth :math:`6n + 2` (ResNet-32: :math:`n = 5`, 64 features, the
"64 x 10" :math:`w` of section 4.3). Downsampling shortcuts average-pool and zero-pad channels
(He et al.'s option A, parameter-free, as in the TensorFlow ResNet code the paper builds on).
:class:`PlainNet` drops every shortcut, :math:`y = L(x)` instead of :math:`y = x + L(x)`
(section 5), so nothing guarantees its invertibility (appendix D). Both are
:class:`~preimage.losses.info_reg.FeatureClassifier`\ s.

References:
    Anonymous (2019), *Information Regularized Neural Networks* (ICLR 2019 submission),
    section 4.1, section 5 and table 2, appendix D. He, Zhang, Ren, Sun (2016), *Identity
    Mappings in Deep Residual Networks*.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError

__all__ = ["PlainNet", "PreActBlock", "PreActResNet"]


class PreActBlock(nn.Module):
    """``BN-ReLU-conv-BN-ReLU-conv`` with (``shortcut=True``) or without the identity path.

    Example:
        >>> block = PreActBlock(4, 8, stride=2)
        >>> block(torch.zeros(2, 4, 8, 8)).shape
        torch.Size([2, 8, 4, 4])
    """

    def __init__(self, c_in: int, c_out: int, stride: int = 1, shortcut: bool = True) -> None:
        super().__init__()
        self.bn1 = nn.BatchNorm2d(c_in)
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(c_out)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, padding=1, bias=False)
        self.stride = stride
        self.pad = c_out - c_in
        self.shortcut = shortcut
        if self.pad < 0:
            raise ConfigError(f"PreActBlock cannot shrink channels ({c_in} -> {c_out})")

    def residual(self, x: Tensor) -> Tensor:
        """:math:`L(x)`."""
        h = self.conv1(F.relu(self.bn1(x)))
        return self.conv2(F.relu(self.bn2(h)))

    def forward(self, x: Tensor) -> Tensor:
        out = self.residual(x)
        if not self.shortcut:
            return out
        skip = x
        if self.stride > 1:
            skip = F.avg_pool2d(skip, self.stride, ceil_mode=True)
        if self.pad:
            skip = F.pad(skip, (0, 0, 0, 0, 0, self.pad))
        return out + skip


class PreActResNet(nn.Module):
    r"""Pre-activation ResNet of depth :math:`6n + 2` with ``features(x)`` and ``head``.

    Args:
        in_shape: ``(C, H, W)`` of one input.
        num_classes: :math:`C`.
        depth: :math:`6n + 2` (32 for ResNet-32).
        width: channels of the first stage (16).
        shortcut: keep the identity paths (``False``: PlainNet).

    Example:
        >>> net = PreActResNet((1, 8, 8), 10, depth=8, width=4)
        >>> x = torch.rand(2, 1, 8, 8)
        >>> net.features(x).shape, net.logits(x).shape
        (torch.Size([2, 16]), torch.Size([2, 10]))
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        *,
        depth: int = 32,
        width: int = 16,
        shortcut: bool = True,
    ) -> None:
        super().__init__()
        if (depth - 2) % 6 != 0 or depth < 8:
            raise ConfigError(f"depth must be 6n + 2 with n >= 1 (8, 14, 20, 32, ...), got {depth}")
        if width < 1 or num_classes < 2:
            raise ConfigError(
                f"width must be >= 1 and num_classes >= 2, got {width}, {num_classes}"
            )
        self.in_shape = tuple(int(s) for s in in_shape)
        if len(self.in_shape) != 3:
            raise ShapeError(f"PreActResNet takes (C, H, W) inputs, got {self.in_shape}")
        n = (depth - 2) // 6
        self.stem = nn.Conv2d(self.in_shape[0], width, 3, padding=1, bias=False)
        blocks: list[nn.Module] = []
        c = width
        for stage in range(3):
            c_out = width * 2**stage
            for i in range(n):
                stride = 2 if stage > 0 and i == 0 else 1
                blocks.append(PreActBlock(c, c_out, stride, shortcut))
                c = c_out
        self.blocks = nn.Sequential(*blocks)
        self.bn = nn.BatchNorm2d(c)
        self.head = nn.Linear(c, int(num_classes))
        self.num_classes = int(num_classes)
        self.depth, self.width, self.shortcut = depth, width, shortcut

    def features(self, x: Tensor) -> Tensor:
        """:math:`F(x)`: the pooled ``4 width`` features before the head."""
        h = F.relu(self.bn(self.blocks(self.stem(x))))
        return torch.flatten(F.adaptive_avg_pool2d(h, 1), 1)

    def logits(self, x: Tensor) -> Tensor:
        """``head(features(x))``."""
        return self.head(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)


class PlainNet(PreActResNet):
    """:class:`PreActResNet` without shortcuts (section 5's PlainNet-32 at ``depth=32``).

    Example:
        >>> PlainNet((3, 8, 8), 10, depth=8).shortcut
        False
    """

    def __init__(
        self, in_shape: Sequence[int], num_classes: int, *, depth: int = 32, width: int = 16
    ) -> None:
        super().__init__(in_shape, num_classes, depth=depth, width=width, shortcut=False)
