r"""The WideCIFAR and ThinCIFAR networks of thesis table 3.1: strided convolutions, no pooling.

Six 3x3 convolutions with ReLU (strides 1, 2, 1, 1, 1, 2), a dense layer of 512 units with ReLU
and a dense softmax layer of 10 (the softmax is left to the loss: the network returns logits).
Without pooling, residual connections or normalisation, every layer is a matrix followed by
ReLU, so the network fits the analysis of section 3.4 exactly. Children are named
``conv1``, ``relu1``, ..., ``conv6``, ``relu6``, ``flatten``, ``dense``, ``relu7``, ``output``,
for :func:`~preimage.analysis.stability.stability_profile`.

Deviation: the thesis does not state the padding; here ``padding=1`` (Keras' ``"same"``), so a
32x32 input gives 32x32, 16x16, 16x16, 16x16, 16x16 and 8x8 maps.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 3.4.2, table 3.1.

Example:
    >>> import torch
    >>> net = strided_cnn("thin", in_channels=1)
    >>> net(torch.zeros(2, 1, 32, 32)).shape, net[:12](torch.zeros(1, 1, 32, 32)).shape
    (torch.Size([2, 10]), torch.Size([1, 32, 8, 8]))
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Mapping
from types import MappingProxyType
from typing import Literal

from torch import nn

from preimage.errors import ConfigError

__all__ = ["STRIDED_CNN_MAPS", "STRIDES", "strided_cnn"]

STRIDED_CNN_MAPS: Mapping[str, tuple[int, ...]] = MappingProxyType(
    {"wide": (32, 64, 64, 32, 32, 64), "thin": (32, 32, 16, 16, 16, 32)}
)
"""Feature maps of the six convolutions of WideCIFAR and ThinCIFAR (table 3.1)."""

STRIDES: tuple[int, ...] = (1, 2, 1, 1, 1, 2)
"""Strides of the six convolutions (table 3.1)."""


def strided_cnn(
    variant: Literal["wide", "thin"],
    *,
    in_channels: int = 3,
    image_size: int = 32,
    num_classes: int = 10,
    dense: int = 512,
) -> nn.Sequential:
    """WideCIFAR (``"wide"``) or ThinCIFAR (``"thin"``) of table 3.1 as a named ``Sequential``.

    Args:
        variant: ``"wide"`` or ``"thin"``.
        in_channels: input channels (3 for CIFAR-10, 1 for padded MNIST).
        image_size: input height and width.
        num_classes: logits of the last layer.
        dense: units of the dense ReLU layer.

    Raises:
        ConfigError: for an unknown variant or an image too small for the two strides.
    """
    if variant not in STRIDED_CNN_MAPS:
        raise ConfigError(f"unknown variant {variant!r}; choose one of wide, thin")
    if image_size < 4:
        raise ConfigError(f"image_size must be at least 4, got {image_size}")
    layers: OrderedDict[str, nn.Module] = OrderedDict()
    channels, size = in_channels, image_size
    for index, (maps, stride) in enumerate(zip(STRIDED_CNN_MAPS[variant], STRIDES, strict=True)):
        layers[f"conv{index + 1}"] = nn.Conv2d(channels, maps, 3, stride=stride, padding=1)
        layers[f"relu{index + 1}"] = nn.ReLU()
        channels, size = maps, (size - 1) // stride + 1
    layers["flatten"] = nn.Flatten()
    layers["dense"] = nn.Linear(channels * size * size, dense)
    layers["relu7"] = nn.ReLU()
    # Not "logits": the trainer would take a child of that name for the logits method.
    layers["output"] = nn.Linear(dense, num_classes)
    return nn.Sequential(layers)
