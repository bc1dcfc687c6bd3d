r"""The nuisance classifier: an MLP that reads class information out of :math:`z_n`.

It models the variational posterior :math:`q_{\theta_{nc}}(y \mid z_n)` whose log-likelihood
lower-bounds :math:`I(y; z_n)` (lemma 10); as an adversary inside the independence
cross-entropy it tightens that bound, and trained post hoc on a frozen network it measures how
much label information the nuisance still holds (table 2, "Nuisance" read-out).

Reading of "a fully-connected 3 layer ReLU network with 512 units": three linear layers
(``depth=3``) with ReLU between them, i.e. two hidden layers of ``hidden`` units; the spheres
experiment uses 1000 units (appendix D.1).

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, definition 5, lemma 10, appendix D.1 and D.2.
    Behrmann (thesis), *Invertibility and Domain Knowledge*, definition 6.14.
"""

from __future__ import annotations

from itertools import pairwise

from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError

__all__ = ["NuisanceClassifier"]


class NuisanceClassifier(nn.Module):
    r"""Fully-connected ReLU network :math:`D_{\theta_{nc}}: \mathbb{R}^{d-C} \to \mathbb{R}^C`.

    Returns logits; the softmax of definition 5 is applied by the cross-entropy.

    Args:
        in_features: nuisance dimension :math:`d - C` (inputs ``(B, ...)`` are flattened).
        num_classes: number of classes :math:`C`.
        hidden: units of every hidden layer (paper: 512 on MNIST, 1000 on spheres).
        depth: number of linear layers, at least 1 (paper: 3); ``depth=1`` is a linear read-out.

    Example:
        >>> import torch
        >>> clf = NuisanceClassifier(54, 10, hidden=32)
        >>> clf(torch.randn(4, 54)).shape
        torch.Size([4, 10])
        >>> sum(isinstance(m, torch.nn.Linear) for m in clf.modules())
        3

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        appendix D.1 and D.2.
    """

    def __init__(
        self, in_features: int, num_classes: int, *, hidden: int = 512, depth: int = 3
    ) -> None:
        super().__init__()
        for name, value, low in (
            ("in_features", in_features, 1),
            ("num_classes", num_classes, 2),
            ("hidden", hidden, 1),
            ("depth", depth, 1),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
        self.in_features = in_features
        self.num_classes = num_classes
        widths = [in_features] + [hidden] * (depth - 1) + [num_classes]
        layers: list[nn.Module] = []
        for i, (a, b) in enumerate(pairwise(widths)):
            if i > 0:
                layers.append(nn.ReLU())
            layers.append(nn.Linear(a, b))
        self.net = nn.Sequential(*layers)

    def forward(self, z_n: Tensor) -> Tensor:
        """Logits ``(B, num_classes)`` for nuisance variables ``(B, in_features)``."""
        flat = z_n.reshape(z_n.shape[0], -1) if z_n.dim() >= 2 else z_n
        if flat.dim() != 2 or flat.shape[1] != self.in_features:
            raise ShapeError(
                f"NuisanceClassifier expects (batch, {self.in_features}) inputs, "
                f"got {tuple(z_n.shape)}"
            )
        return self.net(flat)
