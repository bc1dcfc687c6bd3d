r"""Invertible residual networks: a classifier (thesis appendix A.1) and a density model (A.2).

Both stack stages of :class:`~preimage.nn.IResBlock` s with the convolutional branch of thesis
eq. 4.5 (3x3, 1x1, 3x3 spectrally normalised convolutions with ELU, Lipschitz constant at most
``coeff`` :math:`^3`), an :class:`~preimage.nn.ActNorm` after every block, and an invertible
down-sampling (:class:`~preimage.nn.Squeeze`) between stages. ``forward(x)`` always returns
``(z, logdet)`` with a flat code ``z`` of shape ``(batch, dim)``; ``inverse(z)`` runs the
fixed-point iteration of every block (thesis algorithm 1) and records per-block
:class:`~preimage.nn.iresblock.InverseDiagnostics` in ``last_inverse``.

* :class:`IResNet` - classifier. ``readout="linear"`` is appendix A.1: injective zero padding
  to ``pad_channels`` channels, then batch norm, ELU, global average pooling and a linear layer
  on the last feature map; ``z`` is that (padded) feature map flattened. ``readout="first"``
  (or ``"dct"``) is the bijective classifier with simplified read-out of thesis definition 6.7:
  the input is squeezed instead of padded, the logits are the first ``num_classes`` entries of
  ``z`` (of its low-pass DCT coefficients for ``"dct"``), and ``split``/``merge`` give the
  semantic/nuisance decomposition used by metameric sampling and the independence
  cross-entropy - the i-ResNet variant that thesis remark 6.10 names as future work.
* :class:`IResNetFlow` - density model with a standard normal base distribution on ``z``
  (multi-scale, with factor-out), ``log_prob``, a ``bits_per_dim`` evaluation following the
  protocol of appendix A.2, and ``sample``.

Deviations, and why:

- ActNorm follows each block (A.1 says "between each residual block"): after a block rather
  than before it, so that the first ActNorm never initialises on the all-zero padded channels,
  whose standard deviation is zero.
- Stages whose feature map has odd height or width skip the squeeze (28 -> 14 -> 7 on MNIST),
  as in :class:`~preimage.models.FiRevNet`; the thesis does not say what it does there.
- ``IResNetFlow`` squeezes the input before the first stage (``squeeze_input=True``, as Glow
  does) so that its first blocks and first split see more than one channel; A.2 squeezes only
  after each scale-block.
- ``IResNetFlow`` trains with the unbiased Russian-roulette estimator by default (Residual
  Flows); A.2 trains with the biased 10-term power series (``logdet="series"``, ``n_terms=10``).

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, chapter 4 (theorem 4.1,
    algorithm 1, eq. 4.5), chapter 5 (algorithm 2, theorem 5.8, section 5.4), definition 6.7,
    remark 6.10, appendix A.1 (classifier) and A.2 (density model and its evaluation).
    Behrmann, Grathwohl, Chen, Duvenaud, Jacobsen (2019), *Invertible Residual Networks*.
    Chen, Behrmann, Duvenaud, Jacobsen (2019), *Residual Flows for Invertible Generative
    Modeling*, section 3.1.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

import torch
from torch import Tensor, nn

from preimage.analysis.operator_norm import lipschitz_certificate
from preimage.errors import ConfigError, ConvergenceError, ShapeError
from preimage.nn import (
    ActNorm,
    DCTReadout,
    Flatten,
    InjectivePad,
    InvertibleModule,
    InvertibleSequential,
    IResBlock,
    Shape,
    Split,
    Squeeze,
    conv_branch,
)
from preimage.nn.base import check_shape, flat_dim
from preimage.nn.iresblock import InverseDiagnostics, LogdetMode
from preimage.nn.logdet import Probe, series_terms_needed, series_truncation_bound
from preimage.nn.spectral import SpectralConv2d, SpectralLinear

__all__ = [
    "BitsPerDim",
    "IResNet",
    "IResNetConfig",
    "IResNetFlow",
    "IResNetFlowConfig",
    "build_iresnet_flow",
    "iresnet_body",
]

Readout = Literal["linear", "first", "dct"]
_LOGDET_MODES = ("roulette", "series", "neumann", "exact", "none")


@dataclass(frozen=True)
class _BodyConfig:
    """Fields shared by the classifier and the density model (see their docstrings)."""

    stages: int = 3
    blocks_per_stage: int = 4
    hidden: int = 32
    coeff: float = 0.9
    actnorm: bool = True
    n_power_iterations: int = 1
    n_terms: int = 10
    n_probes: int = 1
    inverse_atol: float = 1e-6
    inverse_rtol: float = 1e-5
    max_iter: int = 100

    def _check(self, logdet: str) -> None:
        if self.stages < 1 or self.blocks_per_stage < 1 or self.hidden < 1:
            raise ConfigError("stages, blocks_per_stage and hidden must all be >= 1")
        if not 0.0 < self.coeff < 1.0:
            raise ConfigError(f"coeff must be in (0, 1) for invertible blocks, got {self.coeff}")
        if logdet not in _LOGDET_MODES:
            raise ConfigError(f"logdet must be one of {', '.join(_LOGDET_MODES)}, got {logdet!r}")


@dataclass(frozen=True)
class IResNetConfig(_BodyConfig):
    """Hyper-parameters of :class:`IResNet` (all but the data shape and class count).

    Attributes:
        stages: number of stages; a squeeze separates consecutive stages (A.1: 3).
        blocks_per_stage: i-ResNet blocks per stage (A.1: 13).
        hidden: channels of the hidden convolutions of each branch.
        coeff: spectral-norm bound :math:`c < 1` of every convolution (thesis: 0.9).
        actnorm: ActNorm after every block.
        n_power_iterations: power-iteration steps per training forward pass.
        n_terms: power-series terms when ``logdet="series"``.
        n_probes: Hutchinson probes per sample for the stochastic log-det estimators.
        inverse_atol: default absolute tolerance of every block's fixed-point inverse.
        inverse_rtol: default relative tolerance of every block's fixed-point inverse.
        max_iter: default maximum number of fixed-point steps per block.
        readout: ``"linear"`` (A.1: batch norm, ELU, average pooling, linear layer),
            ``"first"`` (logits = first ``num_classes`` entries of ``z``) or ``"dct"`` (first
            entries of the low-pass DCT of the last feature map).
        pad_channels: channels after injective zero padding, ``"linear"`` read-out only
            (A.1 pads the 3 CIFAR channels with 13 zero channels to 16).
        split: factor out half of the channels after every stage but the last (bijective
            read-outs only, as in :class:`~preimage.models.FiRevNet`).
        logdet: log-det estimator of the blocks; ``"none"`` (zeros) suits a classifier trained
            with cross-entropy, which never uses it; the independence cross-entropy needs a real
            estimator (e.g. ``"roulette"``).
    """

    readout: Readout = "linear"
    pad_channels: int = 16
    split: bool = False
    logdet: LogdetMode = "none"

    def __post_init__(self) -> None:
        self._check(self.logdet)
        if self.readout not in ("linear", "first", "dct"):
            raise ConfigError(f"readout must be 'linear', 'first' or 'dct', got {self.readout!r}")
        if self.pad_channels < 1:
            raise ConfigError(f"pad_channels must be >= 1, got {self.pad_channels}")
        if self.split and self.readout == "linear":
            raise ConfigError("split=True needs a bijective read-out ('first' or 'dct')")


@dataclass(frozen=True)
class IResNetFlowConfig(_BodyConfig):
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
    """

    split: bool = True
    squeeze_input: bool = True
    logdet: LogdetMode = "roulette"

    def __post_init__(self) -> None:
        self._check(self.logdet)
        if self.logdet == "none":
            raise ConfigError("a density model needs a log-det estimator, not logdet='none'")


@dataclass(frozen=True)
class _Built:
    net: InvertibleSequential
    out_shape: Shape
    block_dims: tuple[int, ...]


def iresnet_body(
    in_shape: Shape,
    *,
    config: _BodyConfig,
    logdet: LogdetMode,
    squeeze_input: bool,
    split: bool,
    readout: Callable[[Shape], InvertibleModule] | None = Flatten,
) -> tuple[InvertibleSequential, Shape, tuple[int, ...]]:
    r"""Multi-scale stack of i-ResNet blocks: ``[squeeze] blocks [split | squeeze ...] readout``.

    Every stage but the first starts with a squeeze (when height and width are even), runs
    ``config.blocks_per_stage`` blocks ``IResBlock(conv_branch) -> ActNorm`` and, with ``split``,
    hands half of its channels to the next stage while the other half goes straight to the
    output (multi-scale factor-out).

    Args:
        in_shape: ``(C, H, W)`` of one input.
        config: the shared hyper-parameters.
        logdet: log-det estimator of every block.
        squeeze_input: squeeze before the first stage too.
        split: factor out half of the channels after every stage but the last.
        readout: module applied to the last feature map, built from its shape; ``None`` keeps
            the map (only without ``split``).

    Returns:
        ``(net, out_shape, block_dims)``: the network, the shape of one output sample, and the
        input dimension of every block in module order.

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, appendix A.1-A.2.
        Dinh et al. (2017), *Real NVP*, section 3.6 (multi-scale architecture).

    Example:
        >>> from preimage.models.iresnet import IResNetFlowConfig
        >>> net, out_shape, dims = iresnet_body((1, 4, 4), config=IResNetFlowConfig(
        ...     stages=2, blocks_per_stage=1, hidden=4), logdet="exact", squeeze_input=True,
        ...     split=True)
        >>> out_shape, dims
        ((16,), (16, 8))
    """
    if len(in_shape) != 3:
        raise ShapeError(f"i-ResNets take (C, H, W) inputs, got {tuple(in_shape)}")
    if split and readout is None:
        raise ConfigError("split=True needs a flattening read-out")
    dims: list[int] = []

    def stage(shape: Shape, index: int) -> InvertibleSequential:
        c, h, w = shape
        layers: list[InvertibleModule] = []
        if (index > 0 or squeeze_input) and h % 2 == 0 and w % 2 == 0:
            layers.append(Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
        for _ in range(config.blocks_per_stage):
            branch = conv_branch(
                c,
                config.hidden,
                coeff=config.coeff,
                n_power_iterations=config.n_power_iterations,
                input_shape=(h, w),
            )
            layers.append(
                IResBlock(
                    branch,
                    logdet=logdet,
                    n_terms=config.n_terms,
                    n_probes=config.n_probes,
                    inverse_atol=config.inverse_atol,
                    inverse_rtol=config.inverse_rtol,
                    max_iter=config.max_iter,
                )
            )
            dims.append(c * h * w)
            if config.actnorm:
                layers.append(ActNorm(c))
        if index == config.stages - 1:
            if readout is not None:
                layers.append(readout((c, h, w)))
        elif split and c >= 2:
            layers.append(Split((c, h, w), stage((c - c // 2, h, w), index + 1)))
        else:
            layers.append(stage((c, h, w), index + 1))
        return InvertibleSequential(layers)

    shape = tuple(int(s) for s in in_shape)
    net = stage(shape, 0)
    return net, net.output_shape(shape), tuple(dims)


@contextmanager
def _block_settings(
    blocks: Sequence[IResBlock], settings: Sequence[dict[str, Any]]
) -> Iterator[None]:
    """Temporarily set attributes of each block (one dict per block), restoring them after."""
    saved = [{k: getattr(b, k) for k in s} for b, s in zip(blocks, settings, strict=True)]
    try:
        for block, values in zip(blocks, settings, strict=True):
            for key, value in values.items():
                setattr(block, key, value)
        yield
    finally:
        for block, values in zip(blocks, saved, strict=True):
            for key, value in values.items():
                setattr(block, key, value)


class _IResNetBase(InvertibleModule):
    """Shared machinery: the body ``net``, its blocks, the inverse with tolerances, converge."""

    net: InvertibleSequential
    in_shape: Shape
    dim: int
    code_dim: int
    block_dims: tuple[int, ...]

    def _init_body(self, built: tuple[InvertibleSequential, Shape, tuple[int, ...]]) -> None:
        self.net, out_shape, self.block_dims = built
        self.code_dim = flat_dim(out_shape)
        self.last_inverse: list[InverseDiagnostics | None] = []

    @property
    def blocks(self) -> list[IResBlock]:
        """The i-ResNet blocks in module order (the order of ``last_inverse``)."""
        return [m for m in self.net.modules() if isinstance(m, IResBlock)]

    def _check_input(self, x: Tensor) -> None:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(
                f"{type(self).__name__} expects inputs of shape "
                f"(batch, {', '.join(map(str, self.in_shape))}), got {tuple(x.shape)}"
            )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map a batch to ``(z, logdet)`` with flat ``z`` of shape ``(batch, code_dim)``."""
        self._check_input(x)
        z, logdet = self.net(x)
        return z.reshape(x.shape[0], -1), logdet

    def output_shape(self, in_shape: Shape) -> Shape:
        return (self.code_dim,)

    def inverse(
        self,
        z: Tensor,
        *,
        atol: float | None = None,
        rtol: float | None = None,
        max_iter: int | None = None,
    ) -> Tensor:
        r"""Invert every block by its fixed-point iteration (thesis algorithm 1).

        Args:
            z: flat codes ``(batch, code_dim)``.
            atol: absolute tolerance of every block (default: the blocks' ``inverse_atol``).
            rtol: relative tolerance of every block (default: the blocks' ``inverse_rtol``).
            max_iter: maximum steps per block (default: the blocks' ``max_iter``).

        Returns:
            The inputs; ``last_inverse`` then holds each block's diagnostics in module order.

        Raises:
            ConvergenceError: some block missed its tolerance within ``max_iter`` steps.
        """
        check_shape(z, (2,), f"{type(self).__name__}.inverse")
        if z.shape[1] != self.code_dim:
            raise ShapeError(
                f"{type(self).__name__}.inverse expects codes of size {self.code_dim}, "
                f"got {z.shape[1]}"
            )
        overrides: dict[str, Any] = {}
        if atol is not None:
            overrides["inverse_atol"] = float(atol)
        if rtol is not None:
            overrides["inverse_rtol"] = float(rtol)
        if max_iter is not None:
            overrides["max_iter"] = int(max_iter)
        if min(overrides.get("inverse_atol", 0.0), overrides.get("inverse_rtol", 0.0)) < 0:
            raise ConfigError("inverse tolerances must be non-negative")
        if overrides.get("max_iter", 1) < 1:
            raise ConfigError("max_iter must be >= 1")
        blocks = self.blocks
        for block in blocks:
            block.last_inverse = None
        try:
            with _block_settings(blocks, [overrides] * len(blocks)):
                return self.net.inverse(z)
        finally:
            self.last_inverse = [block.last_inverse for block in blocks]

    @torch.no_grad()
    def converge(self, max_iterations: int = 500, *, rtol: float = 1e-7) -> None:
        """Run every spectral layer's power iteration to convergence (after training or loading).

        Args:
            max_iterations: upper limit per layer.
            rtol: relative tolerance on the change of the singular-value estimate.
        """
        for module in self.net.modules():
            if isinstance(module, SpectralConv2d | SpectralLinear):
                module.converge(max_iterations, rtol=rtol)


class IResNet(_IResNetBase):
    r"""i-ResNet classifier (thesis appendix A.1), with a linear or a simplified read-out.

    ``forward(x)`` returns ``(z, logdet)`` of the invertible body and :meth:`logits` the class
    scores, for every read-out. With the default ``logdet="none"`` the blocks contribute zero to
    ``logdet`` (only the ActNorm layers' exact terms remain); with the ``"linear"`` read-out the
    sum of the layers' terms is not a volume change anyway, since the padding makes the map
    injective and the later layers act on the padded space.

    * ``"linear"``: ``x`` is padded with zero channels to ``pad_channels`` (injective, so
      ``inverse`` drops the padded channels: a projection for codes off the embedded
      subspace), ``z`` is the last feature map flattened, and the logits come from batch norm,
      ELU, global average pooling and a linear layer on it. The model then has no
      :attr:`split` and :attr:`merge` attributes, since this read-out projects instead of
      splitting.
    * ``"first"``/``"dct"``: the net is a bijection of the input (a squeeze replaces the
      padding), the logits are :math:`z_s` = the first ``num_classes`` entries of ``z`` and
      :attr:`split`/:attr:`merge` separate them from the nuisance :math:`z_n`, exactly like
      :class:`~preimage.models.FiRevNet`.

    Args:
        in_shape: shape ``(C, H, W)`` of one input.
        num_classes: number of classes ``C``.
        **kwargs: fields of :class:`IResNetConfig`.

    Example:
        >>> import torch
        >>> model = IResNet((1, 8, 8), 10, readout="first", stages=2, blocks_per_stage=1,
        ...                 hidden=8).eval()
        >>> x = torch.rand(2, 1, 8, 8)
        >>> with torch.no_grad():
        ...     z, logdet = model(x)
        ...     x_rec = model.inverse(z, atol=0.0, rtol=0.0)
        >>> z.shape, model.logits(x).shape
        (torch.Size([2, 64]), torch.Size([2, 10]))
        >>> float((x_rec - x).abs().max()) < 1e-5, len(model.last_inverse)
        (True, 2)

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3, definition 6.7,
        remark 6.10 and appendix A.1.
    """

    def __init__(self, in_shape: Shape, num_classes: int, **kwargs: Any) -> None:
        super().__init__()
        unknown = set(kwargs) - {f.name for f in fields(IResNetConfig)}
        if unknown:
            raise ConfigError(f"unknown IResNet options: {', '.join(sorted(unknown))}")
        self.cfg = IResNetConfig(**kwargs)
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.dim = flat_dim(self.in_shape)
        if len(self.in_shape) != 3:
            raise ShapeError(f"IResNet takes (C, H, W) inputs, got {self.in_shape}")
        if not 1 < self.num_classes <= self.dim:
            raise ConfigError(
                f"num_classes must be in [2, {self.dim}] for inputs of shape {self.in_shape}"
            )
        cfg = self.cfg
        if cfg.readout == "linear":
            pad = InjectivePad(max(cfg.pad_channels - self.in_shape[0], 0))
            padded = pad.output_shape(self.in_shape)
            body, feature, dims = iresnet_body(
                padded, config=cfg, logdet=cfg.logdet, squeeze_input=False, split=False
            )
            self._init_body((InvertibleSequential(pad, body), feature, dims))
            self.feature_shape = self._last_map_shape(body)
            channels = self.feature_shape[0]
            self.head: nn.Module | None = nn.Sequential(
                nn.BatchNorm2d(channels),
                nn.ELU(),
                nn.AdaptiveAvgPool2d(1),
                nn.Flatten(),
                nn.Linear(channels, self.num_classes),
            )
        else:
            readout = DCTReadout if cfg.readout == "dct" else Flatten
            self._init_body(
                iresnet_body(
                    self.in_shape,
                    config=cfg,
                    logdet=cfg.logdet,
                    squeeze_input=True,
                    split=cfg.split,
                    readout=readout,
                )
            )
            self.head = None

    @staticmethod
    def _last_map_shape(body: InvertibleSequential) -> Shape:
        layer: nn.Module = body
        while isinstance(layer, InvertibleSequential):
            layer = layer[len(layer) - 1]
        if not isinstance(layer, Flatten):
            raise ShapeError("the i-ResNet body must end with a Flatten read-out")
        return layer.in_shape

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``IResNet(**model.config)``."""
        return {
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            **asdict(self.cfg),
        }

    @property
    def bijective(self) -> bool:
        """Whether the read-out keeps the net a bijection (``"first"`` or ``"dct"``)."""
        return self.head is None

    @property
    def split(self) -> Callable[[Tensor], tuple[Tensor, Tensor]]:
        """``split(z) -> (z_s, z_n)``: the logits (first ``num_classes`` entries), the nuisance.

        Only bijective read-outs have it (``hasattr(model, "split")`` is ``False`` for
        ``"linear"``, which projects instead of splitting), so code that looks for the
        semantic/nuisance contract by ``hasattr`` treats the linear read-out as a plain
        classifier.
        """
        self._require_bijective("split")
        return self._split

    @property
    def merge(self) -> Callable[[Tensor, Tensor], Tensor]:
        """``merge(z_s, z_n) -> z``, the inverse of :attr:`split` (bijective read-outs only)."""
        self._require_bijective("merge")
        return self._merge

    def _require_bijective(self, what: str) -> None:
        if self.head is not None:
            raise AttributeError(
                f"IResNet.{what} needs a bijective read-out ('first' or 'dct'); the 'linear' "
                "read-out has no semantic/nuisance split"
            )

    def _split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        return z[:, : self.num_classes], z[:, self.num_classes :]

    def _merge(self, z_s: Tensor, z_n: Tensor) -> Tensor:
        if z_s.shape[0] != z_n.shape[0]:
            raise ShapeError(
                f"merge got batches of different sizes: {z_s.shape[0]} and {z_n.shape[0]}"
            )
        return torch.cat((z_s, z_n), dim=1)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits of shape ``(batch, num_classes)``."""
        z, _ = self.forward(x)
        if self.head is None:
            return z[:, : self.num_classes]
        return self.head(z.reshape(z.shape[0], *self.feature_shape))


@dataclass(frozen=True)
class BitsPerDim:
    """Result of :meth:`IResNetFlow.bits_per_dim`.

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


class IResNetFlow(_IResNetBase):
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
        unknown = set(kwargs) - {f.name for f in fields(IResNetFlowConfig)}
        if unknown:
            raise ConfigError(f"unknown IResNetFlow options: {', '.join(sorted(unknown))}")
        self.cfg = IResNetFlowConfig(**kwargs)
        self.in_shape = tuple(int(s) for s in in_shape)
        self.dim = flat_dim(self.in_shape)
        cfg = self.cfg
        self._init_body(
            iresnet_body(
                self.in_shape,
                config=cfg,
                logdet=cfg.logdet,
                squeeze_input=cfg.squeeze_input,
                split=cfg.split,
            )
        )

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``IResNetFlow(**model.config)``."""
        return {"in_shape": list(self.in_shape), **asdict(self.cfg)}

    @staticmethod
    def dequantize(x: Tensor, levels: int = 256) -> Tensor:
        r"""Uniform dequantisation :math:`k / (L - 1) \mapsto (k + u) / L`, :math:`u \sim U[0, 1)`.

        Here :math:`L` = ``levels``; the result lies in :math:`[0, 1)` and its density on the
        unit cube lower-bounds the discrete likelihood (Theis et al., 2016).

        Example:
            >>> import torch
            >>> x = IResNetFlow.dequantize(torch.tensor([[0.0, 1.0]]), levels=2)
            >>> bool((x[0, 0] < 0.5) & (x[0, 1] >= 0.5))
            True
        """
        if levels < 2:
            raise ConfigError(f"levels must be >= 2, got {levels}")
        k = torch.round(x * (levels - 1))
        return (k + torch.rand_like(x)) / levels

    def log_prob(self, x: Tensor, *, dequantize: bool = False, levels: int = 256) -> Tensor:
        r"""Log-density :math:`\log p(x)` in nats, shape ``(batch,)``.

        Args:
            x: inputs in :math:`[0, 1]`.
            dequantize: add uniform noise first (see :meth:`dequantize`).
            levels: number of discrete levels of the data, for ``dequantize``.
        """
        if dequantize:
            x = self.dequantize(x, levels)
        z, logdet = self.forward(x)
        base = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum(dim=1)
        return base + logdet

    def bits_from_log_prob(self, log_prob: Tensor, levels: int = 256) -> Tensor:
        r"""Bits per dimension :math:`-(\log p - D \log \text{levels}) / (D \ln 2)`."""
        return -(log_prob - self.dim * math.log(levels)) / (self.dim * math.log(2.0))

    @torch.no_grad()
    def sample(self, n: int, *, temperature: float = 1.0) -> Tensor:
        r"""Draw ``n`` samples :math:`F^{-1}(z)`, :math:`z \sim \mathcal{N}(0, T^2 I)`."""
        if n < 1 or temperature < 0:
            raise ConfigError(f"need n >= 1 and temperature >= 0, got {n} and {temperature}")
        ref = next(self.parameters())
        z = temperature * torch.randn(n, self.code_dim, device=ref.device, dtype=ref.dtype)
        return self.inverse(z)

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
                with _block_settings(blocks, [{"logdet": "exact"}] * len(blocks)):
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
                with _block_settings(blocks, settings):
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
        <class 'preimage.models.iresnet.IResNetFlow'>
    """
    return IResNetFlow(tuple(in_shape), **options)
