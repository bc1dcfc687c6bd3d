r"""The logit pre-transform of density models on :math:`[0, 1]` data (Real NVP, MAF).

Dequantised images lie in :math:`[0, 1]`, where a flow with a Gaussian base must squeeze the
narrow dequantisation interval of a black background pixel (width :math:`1/256`) into a unit
Gaussian. The logit pre-transform

.. math::

    y = \operatorname{logit}(s), \qquad s = \alpha + (1 - 2\alpha)\,x,

maps :math:`[0, 1]` onto a bounded interval of :math:`\mathbb{R}` whose ends are stretched (the
``alpha`` keeps them finite), so that the flow behind it models an unbounded variable. Its
log-determinant is exact and elementwise,

.. math::

    \log\left|\frac{\partial y}{\partial x}\right| = \log(1 - 2\alpha) - \log s - \log(1 - s)
    = \log(1 - 2\alpha) + \operatorname{softplus}(y) + \operatorname{softplus}(-y),

so :math:`\log p(x)` (and bits/dim in the data space) stays exact. Real NVP uses
:math:`\alpha = 0.05` on CIFAR-10; MAF and Residual Flows use :math:`10^{-6}` on MNIST.

References:
    Dinh, Sohl-Dickstein, Bengio (2017), *Density Estimation using Real NVP*, section 4.1.
    Papamakarios, Pavlakou, Murray (2017), *Masked Autoregressive Flow*, appendix E.2.
    Chen, Behrmann, Duvenaud, Jacobsen (2019), *Residual Flows*, appendix (pre-processing).
"""

from __future__ import annotations

import math

import torch
import torch.nn.functional as F
from torch import Tensor

from preimage.errors import ConfigError
from preimage.nn.base import InvertibleModule, Shape

__all__ = ["LogitTransform"]


class LogitTransform(InvertibleModule):
    r""":math:`x \mapsto \operatorname{logit}(\alpha + (1 - 2\alpha) x)` on :math:`[0, 1]`.

    Args:
        alpha: the margin :math:`0 < \alpha < 1/2` that keeps :math:`x = 0` and :math:`x = 1`
            finite.

    Example:
        >>> import torch
        >>> t = LogitTransform(0.05).double()
        >>> x = torch.tensor([[0.0, 0.5, 1.0]], dtype=torch.float64)
        >>> y, logdet = t(x)
        >>> [round(v, 4) for v in y[0].tolist()], bool(torch.allclose(t.inverse(y), x))
        ([-2.9444, 0.0, 2.9444], True)
    """

    exact_inverse = True

    def __init__(self, alpha: float = 1e-6) -> None:
        super().__init__()
        if isinstance(alpha, bool) or not 0.0 < float(alpha) < 0.5:
            raise ConfigError(f"logit alpha must lie in (0, 0.5), got {alpha!r}")
        self.alpha = float(alpha)

    def extra_repr(self) -> str:
        return f"alpha={self.alpha:g}"

    def output_shape(self, in_shape: Shape) -> Shape:
        return tuple(in_shape)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        s = self.alpha + (1.0 - 2.0 * self.alpha) * x
        y = torch.log(s) - torch.log1p(-s)
        # softplus(y) + softplus(-y) = -log s - log(1 - s), without cancellation near 0 and 1.
        per_entry = F.softplus(y) + F.softplus(-y) + math.log1p(-2.0 * self.alpha)
        return y, per_entry.reshape(x.shape[0], -1).sum(dim=1)

    def inverse(self, y: Tensor) -> Tensor:
        return (torch.sigmoid(y) - self.alpha) / (1.0 - 2.0 * self.alpha)
