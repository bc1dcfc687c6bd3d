r"""InvNet: the LeNet-300-100 feature map with a decoder and a linear head (section 4.2).

:math:`F`: flatten, ``Linear(d, 300)``, ReLU, ``Linear(300, 100)``, ReLU, so the features
:math:`F(x) \in \mathbb{R}^{100}_{\ge 0}` ("vectors of dimension 100", figure 2); the decoder
:math:`D` mirrors it (``100 -> 300 -> d``, a sigmoid output for images in :math:`[0, 1]`); the
head :math:`w` is ``Linear(100, C)``. Trained with
:class:`~preimage.losses.autoencoder.AlternatingAutoencoderLoss` around the cross-entropy it is
the paper's InvNet; around :class:`~preimage.losses.info_reg.InformationRegularizedLoss` it is
RegInvNet. It is a :class:`~preimage.losses.info_reg.FeatureClassifier`.

Deviation, and why: the paper does not say whether the 100 features pass through a ReLU; we
keep LeNet-300-100's ReLU on every hidden layer, which matches figure 8's one-sided, decaying
histogram of feature values.

References:
    Anonymous (2019), *Information Regularized Neural Networks* (ICLR 2019 submission),
    section 4.2, figures 2-3 and 8. LeCun et al. (1998), LeNet-300-100.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence

from torch import Tensor, nn

from preimage.errors import ConfigError

__all__ = ["InvNet"]


class InvNet(nn.Module):
    """LeNet-300-100 encoder, mirrored decoder and linear head.

    Args:
        in_shape: shape of one input, e.g. ``(1, 28, 28)``.
        num_classes: :math:`C`.
        hidden: widths of the encoder's layers; the last is the feature dimension.

    Example:
        >>> import torch
        >>> model = InvNet((1, 8, 8), 10)
        >>> x = torch.rand(2, 1, 8, 8)
        >>> model.features(x).shape, model.logits(x).shape, model.decode(model.features(x)).shape
        (torch.Size([2, 100]), torch.Size([2, 10]), torch.Size([2, 1, 8, 8]))
    """

    def __init__(
        self, in_shape: Sequence[int], num_classes: int, hidden: Sequence[int] = (300, 100)
    ) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)
        if not hidden or any(h < 1 for h in hidden) or num_classes < 2:
            raise ConfigError(f"InvNet needs hidden widths >= 1 and >= 2 classes, got {hidden}")
        d = math.prod(self.in_shape)
        widths = [d, *hidden]
        enc: list[nn.Module] = [nn.Flatten()]
        for a, b in itertools.pairwise(widths):
            enc += [nn.Linear(a, b), nn.ReLU()]
        dec: list[nn.Module] = []
        back = widths[::-1]
        for i, (a, b) in enumerate(itertools.pairwise(back)):
            dec += [nn.Linear(a, b), nn.Sigmoid() if i == len(back) - 2 else nn.ReLU()]
        self.encoder = nn.Sequential(*enc)
        self.decoder = nn.Sequential(*dec)
        self.head = nn.Linear(widths[-1], int(num_classes))
        self.num_classes = int(num_classes)

    def features(self, x: Tensor) -> Tensor:
        """:math:`F(x)`, shape ``(B, hidden[-1])``."""
        return self.encoder(x)

    def decode(self, features: Tensor) -> Tensor:
        """:math:`D(F)`, shaped like the inputs."""
        return self.decoder(features).reshape(features.shape[0], *self.in_shape)

    def logits(self, x: Tensor) -> Tensor:
        """:math:`w^\\top F(x)` (plus bias), shape ``(B, C)``."""
        return self.head(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)
