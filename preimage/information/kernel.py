r"""Pairwise-distance bounds on :math:`I(X;T)` for a noisy layer :math:`T = h(X) + Z`.

With :math:`X` uniform over ``n`` training inputs and :math:`Z \sim N(0, \sigma^2 I)`, :math:`T`
is an equal-weight mixture of ``n`` Gaussians centred at :math:`h_i = h(x_i)`, and
:math:`I(X;T) = H(T) - H(T|X)` where :math:`H(T|X)` is the entropy of one Gaussian. Kolchinsky &
Tracey bound a mixture's entropy by pairwise divergences between its components; for
:math:`I(X;T)` this gives

.. math::

    -\frac1n \sum_i \log \frac1n \sum_j e^{-\|h_i - h_j\|^2 / (8\sigma^2)}
    \;\le\; I(X;T) \;\le\;
    -\frac1n \sum_i \log \frac1n \sum_j e^{-\|h_i - h_j\|^2 / (2\sigma^2)},

the lower bound from the Bhattacharyya distance, the upper one from the Kullback-Leibler
divergence between two components. Both lie in :math:`[0, \log n]` and are differentiable in
:math:`h`, which is how the nonlinear information bottleneck trains through them.

References:
    Kolchinsky & Tracey (2017), *Estimating Mixture Entropy with Pairwise Distances*, Entropy
    19(7), 361, section 4 (theorem 2, corollaries for Gaussians). Kolchinsky, Tracey & Wolpert
    (2019), *Nonlinear Information Bottleneck*, section 3. Galloway et al. (2018), appendix A
    (the sphere-packing experiment uses that source release).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

from preimage.errors import ConfigError, ShapeError
from preimage.information.units import Unit, unit_divisor

__all__ = ["kernel_mi_bounds"]


def _pairwise_bound(sq_dist: Tensor, scale: float) -> Tensor:
    n = sq_dist.shape[0]
    lse = torch.logsumexp(-sq_dist / scale, dim=1) - math.log(n)
    return -lse.mean()


def kernel_mi_bounds(h: Any, noise_std: float, *, unit: Unit = "nats") -> tuple[Tensor, Tensor]:
    r"""Lower and upper bounds on :math:`I(X;T)` for :math:`T = h(X) + N(0, \sigma^2 I)`.

    Args:
        h: ``(n, ...)`` noiseless codes of ``n`` equally likely inputs (a tensor keeps the
            autograd graph; arrays are converted).
        noise_std: :math:`\sigma > 0`.
        unit: ``"nats"`` or ``"bits"``.

    Returns:
        ``(lower, upper)`` as 0-dimensional tensors in ``h``'s dtype and device.

    Raises:
        ConfigError: ``noise_std`` is not positive.
        ShapeError: fewer than one sample.

    References:
        Kolchinsky & Tracey (2017), section 4; Kolchinsky, Tracey & Wolpert (2019), section 3.

    Example:
        >>> lo, up = kernel_mi_bounds(torch.tensor([[0.0], [100.0]]), 1.0, unit="bits")
        >>> round(float(lo), 6), round(float(up), 6)  # far apart: one bit
        (1.0, 1.0)
    """
    if not noise_std > 0:
        raise ConfigError(f"noise_std must be > 0, got {noise_std}")
    codes = h if isinstance(h, Tensor) else torch.as_tensor(h, dtype=torch.float64)
    if codes.dim() < 1 or codes.shape[0] < 1:
        raise ShapeError(f"h must be (n, ...) with n >= 1, got shape {tuple(codes.shape)}")
    codes = codes.reshape(codes.shape[0], -1)
    sq = torch.cdist(codes, codes).square()
    var = noise_std**2
    lower = _pairwise_bound(sq, 8.0 * var)
    upper = _pairwise_bound(sq, 2.0 * var)
    div = unit_divisor(unit)
    return lower / div, upper / div
