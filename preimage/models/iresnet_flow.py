r"""The i-ResNet density model (thesis appendix A.2) and its bits/dim evaluation protocol.

:class:`IResNetFlow` stacks the i-ResNet body of :func:`~preimage.models.iresnet.iresnet_body`
(multi-scale, with factor-out) under a standard normal base distribution on the whole code
``z``; :meth:`IResNetFlow.bits_per_dim` is the evaluation protocol of appendix A.2 (truncated
power series with the theorem-5.8 number of terms for a bias target, probes added until a
standard-error target) and returns a :class:`BitsPerDim`.

Deviations, and why:

- ``IResNetFlow`` squeezes the input before the first stage (``squeeze_input=True``, as Glow
  does) so that its first blocks and first split see more than one channel; A.2 squeezes only
  after each scale-block.
- ``IResNetFlow`` trains with the unbiased Russian-roulette estimator by default (Residual
  Flows); A.2 trains with the biased 10-term power series (``logdet="series"``, ``n_terms=10``).
- A.2 does not pre-process the data; ``logit_alpha`` puts the logit pre-transform of Real NVP
  and MAF (:class:`~preimage.nn.LogitTransform`) in front of the blocks, as the MNIST and
  CIFAR-10 models of Residual Flows do. Its log-det is exact, so :meth:`IResNetFlow.log_prob`
  and bits/dim stay densities of the data in :math:`[0, 1]`. Off by default (the thesis'
  model).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, chapter 5 (algorithm 2,
    theorem 5.8, section 5.4) and appendix A.2 (density model and its evaluation).
    Chen, Behrmann, Duvenaud, Jacobsen (2019), *Residual Flows for Invertible Generative
    Modeling*, section 3.1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import Tensor

from preimage.analysis.operator_norm import lipschitz_certificate
from preimage.errors import ConfigError, ConvergenceError
from preimage.models.density import BitsPerDim, GaussianDensity
from preimage.models.iresnet import IResNetBase, IResNetBodyConfig, block_settings, iresnet_body
from preimage.nn.base import InvertibleSequential, Shape
from preimage.nn.iresblock import LogdetMode
from preimage.nn.logdet import Probe, series_terms_needed, series_truncation_bound
from preimage.nn.logit import LogitTransform

__all__ = ["BitsPerDim", "IResNetFlow", "IResNetFlowConfig", "build_iresnet_flow"]


@dataclass(frozen=True)
class IResNetFlowConfig(IResNetBodyConfig):
    """Hyper-parameters of :class:`IResNetFlow` (all but the data shape).

    Attributes:
        stages: number of scale-blocks (A.2: 3).
        blocks_per_stage: i-ResNet blocks per scale-block (A.2: 32).
        hidden: channels of the hidden convolutions (A.2: 32 on MNIST, 512 on CIFAR10).
        coeff: spectral-norm bound :math:`c < 1` of every convolution.
        actnorm: ActNorm after every block.
        n_power_iterations: power-iteration steps per training forward pass.
        n_terms: power-series terms when ``logdet="series"`` (A.2 training: 10 on MNIST).
        n_probes: Hutchinson probes per sample in training (A.2: 1).
        inverse_atol: default absolute tolerance of every block's fixed-point inverse.
        inverse_rtol: default relative tolerance of every block's fixed-point inverse.
        max_iter: default maximum number of fixed-point steps per block.
        split: factor out half of the channels after every scale-block but the last.
        squeeze_input: squeeze the input before the first scale-block.
        logdet: training estimator: ``"roulette"`` (unbiased), ``"neumann"``, ``"series"``,
            or ``"exact"`` (small inputs).
        logit_alpha: ``None`` (thesis A.2: the blocks see the data), or the :math:`\alpha` of
            a logit pre-transform in front of the blocks (MAF and Residual Flows on MNIST:
            :math:`10^{-6}`; Real NVP on CIFAR-10: 0.05).
    """

    split: bool = True
    squeeze_input: bool = True
    logdet: LogdetMode = "roulette"
    logit_alpha: float | None = None

    def __post_init__(self) -> None:
        self._check(self.logdet)
        if self.logdet == "none":
            raise ConfigError("a density model needs a log-det estimator, not logdet='none'")
        if self.logit_alpha is not None:
            LogitTransform(self.logit_alpha)  # validates the range with its one-line error


class IResNetFlow(GaussianDensity, IResNetBase):
    r"""i-ResNet density model (thesis appendix A.2) with a standard normal base distribution.

    :math:`\log p(x) = \log \mathcal{N}(F(x); 0, I) + \log\det J_F(x)`, where the log-det of
    each block comes from its estimator (``logdet``; stochastic unless ``"exact"``). Data
    convention: inputs lie in :math:`[0, 1]`; discrete data with ``levels`` values
    :math:`k / (\text{levels} - 1)` is dequantised by the caller or by
    ``log_prob(x, dequantize=True)`` to :math:`(k + u) / \text{levels}`,
    :math:`u \sim U[0, 1)^D`, and

    .. math::

        \text{bits/dim} = -\frac{\log p(x) - D \log(\text{levels})}{D \ln 2}

    (thesis section 5.4: the :math:`\log_2 256` accounts for the scaling to :math:`[0, 1]`).
    The whole code ``z``, factored-out parts included, is scored by the standard normal.

    Args:
        in_shape: shape ``(C, H, W)`` of one input.
        **kwargs: fields of :class:`IResNetFlowConfig`.

    Example:
        >>> import torch
        >>> flow = IResNetFlow((1, 4, 4), stages=2, blocks_per_stage=1, hidden=8,
        ...                    logdet="exact").eval()
        >>> x = torch.rand(3, 1, 4, 4)
        >>> flow.log_prob(x).shape, flow.sample(2).shape
        (torch.Size([3]), torch.Size([2, 1, 4, 4]))
        >>> result = flow.bits_per_dim(x, exact=True)
        >>> result.standard_error, math.isfinite(result.value)
        (0.0, True)

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, sections 5.2-5.4 and
        appendix A.2. Chen et al. (2019), *Residual Flows*, section 3.1.
    """

    def __init__(self, in_shape: Shape, **kwargs: Any) -> None:
        super().__init__()
        cfg = self._configure(IResNetFlowConfig, in_shape, kwargs)
        net, out_shape, dims = iresnet_body(
            self.in_shape,
            config=cfg,
            logdet=cfg.logdet,
            squeeze_input=cfg.squeeze_input,
            split=cfg.split,
        )
        if cfg.logit_alpha is not None:
            net = InvertibleSequential(LogitTransform(cfg.logit_alpha), net)
        self._init_body((net, out_shape, dims))

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``IResNetFlow(**model.config)``."""
        return {"in_shape": list(self.in_shape), **asdict(self.cfg)}

    def _lipschitz_bounds(self, x: Tensor) -> list[float]:
        bounds = [cert.bound for cert in lipschitz_certificate(self, x[:1])]
        bad = [i for i, b in enumerate(bounds) if not b < 1.0]
        if bad:
            raise ConvergenceError(
                f"blocks {bad} are not certified contractive (bounds {[bounds[i] for i in bad]}); "
                "the log-det power series may diverge: call converge() or lower coeff"
            )
        return bounds

    @torch.no_grad()
    def bits_per_dim(
        self,
        x: Tensor,
        *,
        levels: int = 256,
        n_terms: int | None = None,
        n_probes: int | None = None,
        bias_tol: float = 1e-4,
        se_tol: float = 1e-4,
        probes_per_round: int = 8,
        max_probes: int = 256,
        probe: Probe = "rademacher",
        exact: bool = False,
    ) -> BitsPerDim:
        r"""Bits per dimension of ``x`` (already dequantised) with the protocol of appendix A.2.

        Each block's log-det is the truncated power series (thesis algorithm 2) with the fewest
        terms whose theorem-5.8 bound, with each block's certified Lipschitz bound
        (:func:`~preimage.analysis.operator_norm.lipschitz_certificate`), keeps the total bias
        below ``bias_tol`` bits/dim (split evenly over the blocks). Hutchinson probes are then
        added ``probes_per_round`` at a time until the standard error of the batch mean is
        below ``se_tol`` bits/dim; when ``max_probes`` is reached first, ``capped`` is set and
        a :class:`RuntimeWarning` is issued. Each sample gets its own probes, so with :math:`K`
        rounds and per-sample spreads :math:`s_i^2` over the rounds the standard error of the
        mean of :math:`B` samples is :math:`\sqrt{\sum_i s_i^2 / K} / B`, pooled over the batch
        (reliable from :math:`K = 2` on; it is infinite after a single round). The probes are
        Rademacher by default, which lowers the variance of Hutchinson's estimator. Runs in
        evaluation mode and restores the training flag and the blocks' estimator settings.

        Args:
            x: batch of dequantised inputs in :math:`[0, 1]`.
            levels: discrete levels of the data (256 for 8-bit images).
            n_terms: fixed number of series terms for every block instead of theorem 5.8.
            n_probes: fixed total number of probes instead of the standard-error target.
            bias_tol: admissible truncation bias, bits/dim.
            se_tol: target standard error, bits/dim.
            probes_per_round: probes per sample and block in each round (with ``n_probes``,
                rounds of ``gcd(n_probes, probes_per_round)`` probes).
            max_probes: cap on the total probes per sample and block.
            probe: ``"rademacher"`` or ``"gaussian"`` probes.
            exact: use the dense-Jacobian log-det instead (small inputs only).

        Returns:
            A :class:`BitsPerDim` with the estimate and what it cost.
        """
        self._check_input(x)
        if min(probes_per_round, max_probes) < 1 or bias_tol <= 0 or se_tol <= 0:
            raise ConfigError("need positive probes_per_round, max_probes, bias_tol and se_tol")
        blocks = self.blocks
        nats_per_bit = self.dim * math.log(2.0)
        was_training = self.training
        self.eval()
        try:
            if exact:
                with block_settings(blocks, [{"logdet": "exact"}] * len(blocks)):
                    bits = self.bits_from_log_prob(self.log_prob(x), levels)
                return BitsPerDim(float(bits.mean()), bits, 0.0, 0.0, (), 0, False)
            lips = self._lipschitz_bounds(x)
            if n_terms is None:
                tol = bias_tol * nats_per_bit / len(blocks)
                terms = [
                    series_terms_needed(lip, d, tol)
                    for lip, d in zip(lips, self.block_dims, strict=True)
                ]
            else:
                if n_terms < 1:
                    raise ConfigError(f"n_terms must be >= 1, got {n_terms}")
                terms = [int(n_terms)] * len(blocks)
            bias = sum(
                series_truncation_bound(lip, d, n)
                for lip, d, n in zip(lips, self.block_dims, terms, strict=True)
            )
            budget = max_probes if n_probes is None else int(n_probes)
            if budget < 1:
                raise ConfigError(f"n_probes must be >= 1, got {n_probes}")
            # Equal rounds make the per-sample spread over rounds a variance estimate.
            per_round = math.gcd(budget, probes_per_round)
            settings = [
                {"logdet": "series", "n_terms": n, "n_probes": per_round, "probe": probe}
                for n in terms
            ]
            rounds: list[Tensor] = []
            standard_error = math.inf
            while len(rounds) * per_round < budget:
                with block_settings(blocks, settings):
                    rounds.append(self.bits_from_log_prob(self.log_prob(x), levels))
                if len(rounds) >= 2:
                    standard_error = _standard_error(torch.stack(rounds))
                    if n_probes is None and standard_error <= se_tol:
                        break
            used = len(rounds) * per_round
            capped = n_probes is None and not standard_error <= se_tol
            if capped:
                warnings.warn(
                    f"bits_per_dim: standard error {standard_error:.3g} bits/dim still above "
                    f"{se_tol:g} after max_probes={max_probes} probes",
                    RuntimeWarning,
                    stacklevel=2,
                )
            per_sample = torch.stack(rounds).mean(dim=0)
            return BitsPerDim(
                float(per_sample.mean()),
                per_sample,
                standard_error,
                bias / nats_per_bit,
                tuple(terms),
                used,
                capped,
            )
        finally:
            self.train(was_training)


def _standard_error(rounds: Tensor) -> float:
    """Standard error of the batch mean of ``rounds.mean(0)`` from ``(K, B)`` iid rounds."""
    k, b = rounds.shape
    return math.sqrt(float(rounds.double().var(dim=0, unbiased=True).sum()) / k) / b


def build_iresnet_flow(
    in_shape: Sequence[int], num_classes: int | None = None, **options: Any
) -> IResNetFlow:
    """Registry factory for :class:`IResNetFlow`: ``num_classes`` is accepted and ignored.

    :func:`preimage.models.build_model` passes a class count to every model; a density model
    has none.

    Example:
        >>> type(build_iresnet_flow((1, 4, 4), 10, stages=1, blocks_per_stage=1, hidden=4))
        <class 'preimage.models.iresnet_flow.IResNetFlow'>
    """
    return IResNetFlow(tuple(in_shape), **options)
