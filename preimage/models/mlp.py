r"""Fully connected networks of configurable widths, activation and batch normalisation.

The gradient-SNR and information-plane experiments of the paper use "an over-parameterized
six-layer fully-connected MLP" on MNIST 3 versus 7, with ReLU or tanh, and with or without
batch normalisation "on all but the last layer"; appendix A uses 784-392-196-2-49-10 with an
optional batch norm before the 2-D layer. :class:`MLP` builds any of them. Each hidden
*block* is ``Linear -> [BatchNorm1d] -> activation``; :meth:`MLP.layers` names the blocks and the
read-out, the :math:`T_j` whose information the callbacks measure.

Deviation: the paper does not give the six layers' widths; :data:`PAPER_WIDTHS` (1024, 512,
256, 128, 64 hidden units and the read-out) is our choice of an over-parameterised stack.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, sections 4.1,
    4.2 and appendix A (figure 6).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from torch import Tensor, nn

from preimage.errors import ConfigError

__all__ = ["ACTIVATIONS", "MLP", "PAPER_WIDTHS"]

ACTIVATIONS: dict[str, type[nn.Module]] = {"relu": nn.ReLU, "tanh": nn.Tanh}
"""Activation name -> module class."""

PAPER_WIDTHS: tuple[int, ...] = (1024, 512, 256, 128, 64)
"""Hidden widths of the six-layer MLP (five hidden layers and the read-out)."""


class MLP(nn.Module):
    """``Flatten -> [Linear -> (BatchNorm1d) -> activation] * len(widths) -> Linear``.

    Args:
        in_shape: shape of one input, e.g. ``(1, 28, 28)``.
        num_classes: outputs of the read-out.
        widths: hidden widths.
        activation: ``"relu"`` or ``"tanh"``.
        batch_norm: a batch norm after every hidden linear layer (not after the read-out).
        batch_norm_affine: learn the batch norms' scale and shift (appendix A, figure 6(c),
            disables the scale).
        norm_layers: the (0-based) hidden layers that get a batch norm when ``batch_norm``
            (default: all; appendix A, figure 6(b): the two before the 2-D layer).
        linear_layers: hidden layers without activation (a linear bottleneck, as in the
            nonlinear information bottleneck of appendix A).

    Example:
        >>> import torch
        >>> net = MLP((1, 28, 28), 2, widths=(16, 8), batch_norm=True)
        >>> net(torch.zeros(3, 1, 28, 28)).shape, list(net.layers())
        (torch.Size([3, 2]), ['layer1', 'layer2', 'output'])
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int,
        *,
        widths: Sequence[int] = PAPER_WIDTHS,
        activation: str = "relu",
        batch_norm: bool = False,
        batch_norm_affine: bool = True,
        norm_layers: Sequence[int] | None = None,
        linear_layers: Sequence[int] = (),
    ) -> None:
        super().__init__()
        if activation not in ACTIVATIONS:
            raise ConfigError(
                f"unknown activation {activation!r}; use one of {sorted(ACTIVATIONS)}"
            )
        if num_classes < 1 or any(w < 1 for w in widths):
            raise ConfigError(f"widths and num_classes must be >= 1, got {tuple(widths)}")
        self.in_features = math.prod(in_shape)
        normed = set(range(len(widths)) if norm_layers is None else norm_layers)
        blocks = []
        prev = self.in_features
        for i, width in enumerate(widths):
            parts: list[nn.Module] = [nn.Linear(prev, width)]
            if batch_norm and i in normed:
                parts.append(nn.BatchNorm1d(width, affine=batch_norm_affine))
            if i not in linear_layers:
                parts.append(ACTIVATIONS[activation]())
            blocks.append(nn.Sequential(*parts))
            prev = width
        self.blocks = nn.ModuleList(blocks)
        self.head = nn.Linear(prev, num_classes)

    def layers(self) -> dict[str, nn.Module]:
        """``{"layer1": block 1, ..., "output": read-out}``: the layers :math:`T_j`, in order."""
        named = {f"layer{i + 1}": block for i, block in enumerate(self.blocks)}
        named["output"] = self.head
        return named

    def forward(self, x: Tensor) -> Tensor:
        h = x.reshape(x.shape[0], -1)
        for block in self.blocks:
            h = block(h)
        return self.head(h)
