r"""An invertible network as the feature map :math:`F` of a linear classifier.

The theory of information-regularised networks assumes an invertible :math:`F`, so that
:math:`I(X;\hat Y) = I(F(X);\hat Y)` (section 1, "Invertibility of :math:`F`"). The library's
bijective networks (:class:`~preimage.models.FiRevNet`, ...) provide one exactly:
:class:`FlowFeatureClassifier` takes the whole code :math:`z = F(x)` as features and puts a
linear head :math:`w` on top (instead of reading the logits off the first :math:`C` entries
of :math:`z`), which makes it a :class:`~preimage.losses.info_reg.FeatureClassifier`.

References:
    Anonymous (2019), *Information Regularized Neural Networks* (ICLR 2019 submission),
    sections 1 and 5, appendix G (Reg-i-RevNet). Jacobsen, Smeulders, Oyallon (2018), i-RevNet.
"""

from __future__ import annotations

from torch import Tensor, nn

from preimage.errors import ConfigError
from preimage.nn.base import InvertibleModule

__all__ = ["FlowFeatureClassifier"]


class FlowFeatureClassifier(nn.Module):
    """Linear head on the flattened output of an invertible module.

    Args:
        flow: an :class:`~preimage.nn.base.InvertibleModule` (``flow(x) -> (z, logdet)``).
        feature_dim: size of the flattened ``z``.
        num_classes: :math:`C`.

    Example:
        >>> import torch
        >>> from preimage.models import FiRevNet
        >>> flow = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
        >>> model = FlowFeatureClassifier(flow, 64, 10)
        >>> x = torch.rand(3, 1, 8, 8)
        >>> model.features(x).shape, model.logits(x).shape
        (torch.Size([3, 64]), torch.Size([3, 10]))
        >>> bool((flow.inverse(model.features(x)) - x).abs().max() < 1e-4)
        True
    """

    def __init__(self, flow: InvertibleModule, feature_dim: int, num_classes: int) -> None:
        super().__init__()
        if not isinstance(flow, InvertibleModule):
            raise ConfigError(f"flow must be an InvertibleModule, got {type(flow).__name__}")
        if feature_dim < 1 or num_classes < 2:
            raise ConfigError(
                f"feature_dim >= 1 and num_classes >= 2 expected, got {feature_dim}, {num_classes}"
            )
        self.flow = flow
        self.head = nn.Linear(int(feature_dim), int(num_classes))
        self.num_classes = int(num_classes)

    def features(self, x: Tensor) -> Tensor:
        """The flattened code :math:`z = F(x)`."""
        z, _ = self.flow(x)
        return z.reshape(z.shape[0], -1)

    def logits(self, x: Tensor) -> Tensor:
        """``head(features(x))``."""
        return self.head(self.features(x))

    def forward(self, x: Tensor) -> Tensor:
        return self.logits(x)
