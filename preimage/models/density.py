r"""What the density models share: the Gaussian base, bits/dim, and the evaluation's record.

Both :class:`~preimage.models.IResNetFlow` and :class:`~preimage.models.GlowFlow` score their
whole flat code :math:`z` by a standard normal and report bits per dimension of data in
:math:`[0, 1]` with ``levels`` discrete values,

.. math::

    \text{bits/dim} = -\frac{\log p(x) - D \log(\text{levels})}{D \ln 2}

(thesis section 5.4: the :math:`\log_2 256` accounts for the scaling of 8-bit data to
:math:`[0, 1]`).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, sections 5.3-5.4.
    Dinh, Sohl-Dickstein, Bengio (2017), *Real NVP*, section 4.1.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import torch
from torch import Tensor

from preimage.errors import ConfigError
from preimage.nn.base import InvertibleModule
from preimage.train.augment import dequantize

__all__ = ["BitsPerDim", "GaussianDensity", "bits_from_log_prob", "standard_normal_log_prob"]


def standard_normal_log_prob(z: Tensor) -> Tensor:
    r""":math:`\log \mathcal{N}(z; 0, I)` per row of a flat ``(batch, D)`` code, in nats.

    Example:
        >>> round(float(standard_normal_log_prob(torch.zeros(1, 2))[0]), 4)  # -log(2 pi)
        -1.8379
    """
    return -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(dim=1)


def bits_from_log_prob(log_prob: Tensor, dim: int, levels: int = 256) -> Tensor:
    """Bits per dimension :math:`-(\\log p - D \\log \text{levels}) / (D \\ln 2)`.

    Example:
        >>> float(bits_from_log_prob(torch.tensor([0.0]), dim=1, levels=256))  # uniform: 8 bits
        8.0
    """
    return -(log_prob - dim * math.log(levels)) / (dim * math.log(2.0))


@dataclass(frozen=True)
class BitsPerDim:
    """Bits/dim of a batch: :meth:`IResNetFlow.bits_per_dim` or :meth:`GlowFlow.bits_per_dim`.

    Attributes:
        value: mean bits per dimension over the batch.
        per_sample: bits per dimension of every sample, shape ``(batch,)``.
        standard_error: standard error of ``value`` due to the Hutchinson probes (0 if exact,
            infinite after a single round of probes).
        bias_bound: theorem-5.8 bound on the truncation bias of ``value`` (0 if exact).
        n_terms: power-series terms used in each block (empty if exact).
        n_probes: Hutchinson probes per sample and block used in total.
        capped: ``True`` when ``max_probes`` ran out before the standard error met its target.
    """

    value: float
    per_sample: Tensor
    standard_error: float
    bias_bound: float
    n_terms: tuple[int, ...]
    n_probes: int
    capped: bool


class GaussianDensity:
    r"""What a flow with a standard normal base adds to its bijection ``forward``/``inverse``.

    A mixin for :class:`~preimage.nn.InvertibleModule` subclasses whose ``forward(x)``
    returns a flat code ``(batch, code_dim)`` and its log-det: the log-density, bits/dim,
    uniform dequantisation and sampling. The class sets ``dim`` (entries of one input) and
    ``code_dim`` (entries of one code).
    """

    dim: int
    code_dim: int

    @staticmethod
    def dequantize(
        x: Tensor, levels: int = 256, *, generator: torch.Generator | None = None
    ) -> Tensor:
        r"""Uniform dequantisation :math:`k / (L - 1) \mapsto (k + u) / L`; see
        :func:`preimage.train.augment.dequantize` (the one implementation).

        Example:
            >>> import torch
            >>> x = GaussianDensity.dequantize(torch.tensor([[0.0, 1.0]]), levels=2)
            >>> bool((x[0, 0] < 0.5) & (x[0, 1] >= 0.5))
            True
        """
        return dequantize(x, generator, levels)

    def log_prob(self, x: Tensor, *, dequantize: bool = False, levels: int = 256) -> Tensor:
        r"""Log-density :math:`\log p(x)` in nats, shape ``(batch,)``.

        Args:
            x: inputs in :math:`[0, 1]`.
            dequantize: add uniform noise first (see :meth:`dequantize`).
            levels: number of discrete levels of the data, for ``dequantize``.
        """
        if dequantize:
            x = self.dequantize(x, levels)
        z, logdet = self._flow()(x)
        return standard_normal_log_prob(z) + logdet

    def bits_from_log_prob(self, log_prob: Tensor, levels: int = 256) -> Tensor:
        r"""Bits per dimension :math:`-(\log p - D \log \text{levels}) / (D \ln 2)`."""
        return bits_from_log_prob(log_prob, self.dim, levels)

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0) -> Tensor:
        r"""Draw ``n`` samples :math:`F^{-1}(z)`, :math:`z \sim \mathcal{N}(0, T^2 I)`."""
        if n < 1 or temperature < 0:
            raise ConfigError(f"need n >= 1 and temperature >= 0, got {n} and {temperature}")
        flow = self._flow()
        ref = next(flow.parameters())
        z = temperature * torch.randn(n, self.code_dim, device=ref.device, dtype=ref.dtype)
        return flow.inverse(z)

    def _flow(self) -> InvertibleModule:
        """``self`` as the invertible module the mixin is combined with."""
        return cast(InvertibleModule, self)
