r"""A residual classifier with an invertible body and a linear head (thesis section 4.3).

:class:`ResidualClassifier` is the network of the thesis' reconstruction and singular-value
experiments: squeeze, injective zero padding, residual blocks :math:`x + g(x)` and one linear
layer on the flattened code. With ``coeff`` the branches are spectrally normalised
(an i-ResNet body, invertible by the fixed-point iteration); with ``coeff=None`` they are plain
convolutions (:func:`plain_conv_branch`), the "vanilla ResNet" baseline of the same shape.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3.1 and appendix A.1.
"""

from __future__ import annotations

from collections.abc import Sequence

from torch import Tensor, nn

from preimage.errors import ConfigError
from preimage.nn.base import InvertibleModule, InvertibleSequential
from preimage.nn.iresblock import IResBlock, conv_branch, make_activation
from preimage.nn.reshape import InjectivePad, Squeeze

__all__ = ["ResidualClassifier", "plain_conv_branch"]


def plain_conv_branch(
    channels: int, hidden: int, *, kernel_sizes: Sequence[int] = (3, 1, 3)
) -> nn.Sequential:
    r"""The :func:`~preimage.nn.iresblock.conv_branch` architecture without normalisation.

    Same pre-activation ELU / convolution chain and ``"same"`` padding, but ordinary
    ``nn.Conv2d`` layers: the "vanilla ResNet" baseline of thesis section 4.3.

    Example:
        >>> import torch
        >>> g = plain_conv_branch(2, 4)
        >>> g(torch.zeros(1, 2, 5, 5)).shape
        torch.Size([1, 2, 5, 5])
    """
    sizes = [channels, *([hidden] * (len(kernel_sizes) - 1)), channels]
    layers: list[nn.Module] = []
    for k, c_in, c_out in zip(kernel_sizes, sizes[:-1], sizes[1:], strict=True):
        layers.append(make_activation("elu"))
        layers.append(nn.Conv2d(c_in, c_out, int(k), padding="same"))
    return nn.Sequential(*layers)


class ResidualClassifier(nn.Module):
    r"""Invertible body (squeeze, injective padding, residual blocks) and a linear head.

    ``coeff=None`` builds the unconstrained ResNet of the same shape (plain convolutions).
    The head is one linear layer on the flattened output of the body.

    Args:
        in_shape: ``(C, H, W)`` of one input (``H``, ``W`` even).
        n_blocks: residual blocks.
        hidden: hidden channels of each branch.
        coeff: spectral coefficient :math:`c`, or ``None`` for no constraint.
        pad_channels: zero channels appended after the squeeze (thesis appendix A.1).
        num_classes: number of classes.
        krylov: Lanczos steps that re-align the spectral layers' power-iteration vectors in
            every training forward pass (:func:`~preimage.nn.iresblock.conv_branch`; 0: off).

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3.1 and
        appendix A.1.

    Example:
        >>> import torch
        >>> net = ResidualClassifier((1, 8, 8), n_blocks=2, hidden=8, coeff=0.9)
        >>> net.logits(torch.zeros(3, 1, 8, 8)).shape
        torch.Size([3, 10])
    """

    def __init__(
        self,
        in_shape: tuple[int, int, int],
        *,
        n_blocks: int,
        hidden: int,
        coeff: float | None,
        pad_channels: int = 4,
        num_classes: int = 10,
        krylov: int = 0,
    ) -> None:
        super().__init__()
        c, h, w = in_shape
        if h % 2 or w % 2:
            raise ConfigError(f"ResidualClassifier needs even height and width, got {h}x{w}")
        channels = 4 * c + pad_channels
        spatial = (h // 2, w // 2)
        blocks: list[InvertibleModule] = [Squeeze(2), InjectivePad(pad_channels)]
        for _ in range(n_blocks):
            if coeff is None:
                g = plain_conv_branch(channels, hidden)
            else:
                g = conv_branch(channels, hidden, coeff=coeff, input_shape=spatial, krylov=krylov)
            blocks.append(IResBlock(g, logdet="none"))
        self.body = InvertibleSequential(*blocks)
        self.head = nn.Linear(channels * spatial[0] * spatial[1], num_classes)
        self.coeff = coeff

    def logits(self, x: Tensor) -> Tensor:
        z, _ = self.body(x)
        return self.head(z.flatten(1))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)
