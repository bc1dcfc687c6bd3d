r"""A Glow-style coupling flow: the density-model baseline beside the i-ResNet flow.

:class:`GlowFlow` is the multi-scale layout of Real NVP
(:func:`~preimage.models.multiscale.multiscale`) with Glow's step of flow in every scale-block,
``ActNorm -> InvConv1x1 -> AffineCoupling`` (or an additive coupling), the same blocks the
fi-RevNet is built from, under a standard normal base distribution on the whole code. Its
log-determinant is exact, so :meth:`GlowFlow.bits_per_dim` needs no estimator: it is the
reference point for what a coupling flow reaches on the same budget as the i-ResNet flow
(thesis chapter 5 compares the two families; figure 5.2 on toy densities).

Deviations from Glow, and why: the coupling's log-scale is bounded by ``clamp * tanh(raw /
clamp)`` (:class:`~preimage.nn.AffineCoupling`) instead of Glow's sigmoid gate, and there is
no learned prior on the factored-out variables (the i-ResNet flow has none either, so the two
models differ only in their blocks).

References:
    Kingma, Dhariwal (2018), *Glow: Generative Flow with Invertible 1x1 Convolutions*,
    section 3 and figure 2. Dinh, Sohl-Dickstein, Bengio (2017), *Real NVP*, section 3.6.
    Behrmann (thesis), *Invertibility and Domain Knowledge*, chapter 5.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

import torch
from torch import Tensor

from preimage.errors import ConfigError
from preimage.models.config import config_from_kwargs
from preimage.models.density import BitsPerDim, GaussianDensity
from preimage.models.multiscale import multiscale
from preimage.nn import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Flatten,
    InvConv1x1,
    InvertibleModule,
    InvertibleSequential,
    LogitTransform,
)
from preimage.nn.base import FlatCodeModel, Shape, flat_dim

__all__ = ["GlowFlow", "GlowFlowConfig"]


@dataclass(frozen=True)
class GlowFlowConfig:
    """Hyper-parameters of :class:`GlowFlow` (all but the data shape).

    Attributes:
        stages: number of scale-blocks.
        blocks_per_stage: steps of flow (ActNorm, 1x1 convolution, coupling) per scale-block.
        hidden: channels of the couplings' hidden convolutions.
        coupling: ``"affine"`` (Glow) or ``"additive"`` (NICE, volume preserving).
        squeeze_input: squeeze the input before the first scale-block.
        split: factor out half of the channels after every scale-block but the last.
        logit_alpha: ``None``, or the :math:`\\alpha` of a logit pre-transform
            (:class:`~preimage.nn.LogitTransform`).
    """

    stages: int = 3
    blocks_per_stage: int = 4
    hidden: int = 32
    coupling: Literal["affine", "additive"] = "affine"
    squeeze_input: bool = True
    split: bool = True
    logit_alpha: float | None = None

    def __post_init__(self) -> None:
        for name in ("stages", "blocks_per_stage", "hidden"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"GlowFlow {name} must be an integer >= 1, got {value!r}")
        if self.coupling not in ("affine", "additive"):
            raise ConfigError(f"coupling must be 'affine' or 'additive', got {self.coupling!r}")
        if self.logit_alpha is not None:
            LogitTransform(self.logit_alpha)  # validates the range with its one-line error


class GlowFlow(GaussianDensity, FlatCodeModel):
    r"""Multi-scale coupling flow (Glow's step of flow) with a standard normal base.

    :math:`\log p(x) = \log \mathcal{N}(F(x); 0, I) + \log|\det J_F(x)|`, exact. Data
    convention as :class:`~preimage.models.IResNetFlow`: inputs in :math:`[0, 1]`,
    dequantised to :math:`(k + u) / \text{levels}`.

    Args:
        in_shape: shape ``(C, H, W)`` of one input.
        **kwargs: fields of :class:`GlowFlowConfig`.

    Example:
        >>> import torch
        >>> flow = GlowFlow((1, 4, 4), stages=2, blocks_per_stage=1, hidden=8).eval()
        >>> x = torch.rand(3, 1, 4, 4)
        >>> flow.log_prob(x).shape, flow.sample(2).shape
        (torch.Size([3]), torch.Size([2, 1, 4, 4]))
        >>> flow.bits_per_dim(x).standard_error
        0.0

    References:
        Kingma, Dhariwal (2018), *Glow*, section 3.
    """

    exact_inverse = True

    def __init__(self, in_shape: Shape, **kwargs: Any) -> None:
        super().__init__()
        cfg = config_from_kwargs(GlowFlowConfig, kwargs, "GlowFlow")
        self.cfg = cfg
        self.in_shape = tuple(int(s) for s in in_shape)
        self.dim = flat_dim(self.in_shape)
        self.code_dim = self.dim
        coupling = AffineCoupling if cfg.coupling == "affine" else AdditiveCoupling

        def steps(shape: Shape) -> list[InvertibleModule]:
            c = shape[0]
            layers: list[InvertibleModule] = []
            for k in range(cfg.blocks_per_stage):
                # Alternate which half changes, as the 1x1 convolution alone need not swap them.
                layers += [ActNorm(c), InvConv1x1(c), coupling(c, hidden=cfg.hidden, swap=k % 2)]
            return layers

        net: InvertibleModule = multiscale(
            self.in_shape,
            stages=cfg.stages,
            blocks=steps,
            squeeze_input=cfg.squeeze_input,
            split=cfg.split,
            readout=Flatten,
        )
        if cfg.logit_alpha is not None:
            net = InvertibleSequential(LogitTransform(cfg.logit_alpha), net)
        self.net = net

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``GlowFlow(**model.config)``."""
        return {"in_shape": list(self.in_shape), **asdict(self.cfg)}

    def output_shape(self, in_shape: Shape) -> Shape:
        return (flat_dim(in_shape),)

    @torch.no_grad()
    def bits_per_dim(self, x: Tensor, *, levels: int = 256) -> BitsPerDim:
        """Exact bits per dimension of ``x`` (already dequantised), in evaluation mode."""
        was_training = self.training
        self.eval()
        try:
            bits = self.bits_from_log_prob(self.log_prob(x), levels)
        finally:
            self.train(was_training)
        return BitsPerDim(float(bits.mean()), bits, 0.0, 0.0, (), 0, False)
