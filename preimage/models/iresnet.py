r"""Invertible residual networks: a classifier (thesis appendix A.1) and a density model (A.2).

Both stack stages of :class:`~preimage.nn.IResBlock` s with the convolutional branch of thesis
eq. 4.5 (3x3, 1x1, 3x3 spectrally normalised convolutions with ELU, Lipschitz constant at most
``coeff`` :math:`^3`), an :class:`~preimage.nn.ActNorm` after every block, and an invertible
down-sampling (:class:`~preimage.nn.Squeeze`) between stages. ``forward(x)`` always returns
``(z, logdet)`` with a flat code ``z`` of shape ``(batch, dim)``; ``inverse(z)`` runs the
fixed-point iteration of every block (thesis algorithm 1) and records per-block
:class:`~preimage.nn.iresblock.InverseDiagnostics` in ``last_inverse``.

* :class:`IResNetLinear` - the classifier of appendix A.1: injective zero padding to
  ``pad_channels`` channels, then batch norm, ELU, global average pooling and a linear layer on
  the last feature map; ``z`` is that (padded) feature map flattened.
* :class:`IResNet` - the bijective classifier with simplified read-out of thesis definition
  6.7 (``readout="first"`` or ``"dct"``): the input is squeezed instead of padded, the logits
  are the first ``num_classes`` entries of ``z`` (of its low-pass DCT coefficients for
  ``"dct"``), and ``split``/``merge`` give the semantic/nuisance decomposition used by metameric
  sampling and the independence cross-entropy - the i-ResNet variant that thesis remark 6.10
  names as future work.
* The density model :class:`~preimage.models.iresnet_flow.IResNetFlow` (appendix A.2) lives in
  :mod:`preimage.models.iresnet_flow` and shares :func:`iresnet_body` and
  :class:`IResNetBase`.

Deviations, and why:

- ActNorm follows each block (A.1 says "between each residual block"): after a block rather
  than before it, so that the first ActNorm never initialises on the all-zero padded channels,
  whose standard deviation is zero.
- Stages whose feature map has odd height or width skip the squeeze (28 -> 14 -> 7 on MNIST),
  as in :class:`~preimage.models.FiRevNet`; the thesis does not say what it does there.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, chapter 4 (theorem 4.1,
    algorithm 1, eq. 4.5), chapter 5 (algorithm 2, theorem 5.8, section 5.4), definition 6.7,
    remark 6.10, appendix A.1 (classifier) and A.2 (density model and its evaluation).
    Behrmann, Grathwohl, Chen, Duvenaud, Jacobsen (2019), *Invertible Residual Networks*.
    Chen, Behrmann, Duvenaud, Jacobsen (2019), *Residual Flows for Invertible Generative
    Modeling*, section 3.1.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any, Literal, TypeVar

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError
from preimage.models.config import check_field_types, config_from_kwargs
from preimage.models.multiscale import multiscale
from preimage.nn import (
    ActNorm,
    DCTReadout,
    Flatten,
    InjectivePad,
    InvertibleModule,
    InvertibleSequential,
    IResBlock,
    Shape,
    conv_branch,
)
from preimage.nn.base import FlatCodeModel, check_batch, flat_dim
from preimage.nn.classifier import SimplifiedReadout
from preimage.nn.iresblock import InverseDiagnostics, LogdetMode
from preimage.nn.spectral import converge_spectral, track_spectral

__all__ = [
    "IResNet",
    "IResNetBase",
    "IResNetBodyConfig",
    "IResNetConfig",
    "IResNetLinear",
    "block_settings",
    "build_iresnet",
    "iresnet_body",
]

Readout = Literal["linear", "first", "dct"]
_LOGDET_MODES = ("roulette", "series", "neumann", "exact", "none")
_C = TypeVar("_C", bound="IResNetBodyConfig")


@dataclass(frozen=True)
class IResNetBodyConfig:
    """Fields shared by the classifier and the density model (see their docstrings)."""

    stages: int = 3
    blocks_per_stage: int = 4
    hidden: int = 32
    coeff: float = 0.9
    actnorm: bool = True
    n_power_iterations: int = 1
    krylov: int = 0
    n_terms: int = 10
    n_probes: int = 1
    inverse_atol: float | None = None
    inverse_rtol: float | None = None
    max_iter: int = 100

    def _check(self, logdet: str) -> None:
        check_field_types(self)
        if self.stages < 1 or self.blocks_per_stage < 1 or self.hidden < 1:
            raise ConfigError("stages, blocks_per_stage and hidden must all be >= 1")
        if self.n_power_iterations < 1 or self.krylov < 0:
            raise ConfigError(
                f"need n_power_iterations >= 1 and krylov >= 0, got {self.n_power_iterations} "
                f"and {self.krylov}"
            )
        if not 0.0 < self.coeff < 1.0:
            raise ConfigError(f"coeff must be in (0, 1) for invertible blocks, got {self.coeff}")
        if logdet not in _LOGDET_MODES:
            raise ConfigError(f"logdet must be one of {', '.join(_LOGDET_MODES)}, got {logdet!r}")


@dataclass(frozen=True)
class IResNetConfig(IResNetBodyConfig):
    """Hyper-parameters of :class:`IResNet` and :class:`IResNetLinear` (all but the data shape
    and class count).

    Attributes:
        stages: number of stages; a squeeze separates consecutive stages (A.1: 3).
        blocks_per_stage: i-ResNet blocks per stage (A.1: 13).
        hidden: channels of the hidden convolutions of each branch.
        coeff: spectral-norm bound :math:`c < 1` of every convolution (thesis: 0.9).
        actnorm: ActNorm after every block.
        n_power_iterations: power-iteration steps per training forward pass.
        krylov: Lanczos steps that re-align every spectral layer's power-iteration vectors
            with the moving weights before its power iteration in each training forward pass
            (:meth:`~preimage.nn.spectral.SpectralConv2d.track`; 0: off, the thesis' plain
            power iteration). With one power step and Adam the as-trained operator norms lag
            above ``coeff`` by percents; see BENCHMARKS.md.
        n_terms: power-series terms when ``logdet="series"``.
        n_probes: Hutchinson probes per sample for the stochastic log-det estimators.
        inverse_atol: default absolute tolerance of every block's fixed-point inverse (``None``:
            from the dtype, :func:`~preimage.nn.iresblock.default_tolerances`).
        inverse_rtol: default relative tolerance of every block's fixed-point inverse.
        max_iter: default maximum number of fixed-point steps per block.
        readout: ``"linear"`` (A.1: batch norm, ELU, average pooling, linear layer; the class
            :class:`IResNetLinear`), ``"first"`` (logits = first ``num_classes`` entries of
            ``z``) or ``"dct"`` (first entries of the low-pass DCT of the last feature map), the
            bijective :class:`IResNet`. The default ``"linear"`` is what
            ``build_model("i-resnet", ...)`` builds; each class defaults to its own read-out.
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


def iresnet_body(
    in_shape: Shape,
    *,
    config: IResNetBodyConfig,
    logdet: LogdetMode,
    squeeze_input: bool,
    split: bool,
    readout: Callable[[Shape], InvertibleModule] | None = Flatten,
) -> tuple[InvertibleSequential, Shape, tuple[int, ...]]:
    r"""Multi-scale stack of i-ResNet blocks: ``[squeeze] blocks [split | squeeze ...] readout``.

    The layout of :func:`~preimage.models.multiscale.multiscale`; each stage runs
    ``config.blocks_per_stage`` blocks ``IResBlock(conv_branch) -> ActNorm``.

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
        >>> from preimage.models.iresnet_flow import IResNetFlowConfig
        >>> net, out_shape, dims = iresnet_body((1, 4, 4), config=IResNetFlowConfig(
        ...     stages=2, blocks_per_stage=1, hidden=4), logdet="exact", squeeze_input=True,
        ...     split=True)
        >>> out_shape, dims
        ((16,), (16, 8))
    """
    dims: list[int] = []

    def blocks(shape: Shape) -> list[InvertibleModule]:
        c, h, w = shape
        layers: list[InvertibleModule] = []
        for _ in range(config.blocks_per_stage):
            branch = conv_branch(
                c,
                config.hidden,
                coeff=config.coeff,
                n_power_iterations=config.n_power_iterations,
                input_shape=(h, w),
                krylov=config.krylov,
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
        return layers

    shape = tuple(int(s) for s in in_shape)
    net = multiscale(
        shape,
        stages=config.stages,
        blocks=blocks,
        squeeze_input=squeeze_input,
        split=split,
        readout=readout,
    )
    return net, net.output_shape(shape), tuple(dims)


@contextmanager
def block_settings(
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


def _track_before_training_pass(body: nn.Module, _args: tuple[Any, ...]) -> None:
    # Re-align all spectral layers with ``krylov > 0`` together (grouped convolutions); each
    # layer then finds itself current and skips its own re-alignment in this pass.
    if body.training:
        track_spectral(body, stale_only=True)


class IResNetBase(FlatCodeModel):
    """Shared machinery: the body ``net``, its blocks, the inverse with tolerances, converge."""

    net: InvertibleSequential
    in_shape: Shape
    dim: int
    code_dim: int
    block_dims: tuple[int, ...]

    def _configure(self, config_type: type[_C], in_shape: Shape, kwargs: dict[str, Any]) -> _C:
        """Set ``cfg`` (``config_type(**kwargs)``), ``in_shape`` and ``dim``; returns ``cfg``.

        Raises:
            ConfigError: a key of ``kwargs`` that is no field of ``config_type``.
        """
        cfg = config_from_kwargs(config_type, kwargs, type(self).__name__)
        self.cfg = cfg
        self.in_shape = tuple(int(s) for s in in_shape)
        self.dim = flat_dim(self.in_shape)
        return cfg

    def _init_body(self, built: tuple[InvertibleSequential, Shape, tuple[int, ...]]) -> None:
        self.net, out_shape, self.block_dims = built
        self.net.register_forward_pre_hook(_track_before_training_pass)
        self.code_dim = flat_dim(out_shape)
        self.last_inverse: list[InverseDiagnostics | None] = []

    @property
    def blocks(self) -> list[IResBlock]:
        """The i-ResNet blocks in module order (the order of ``last_inverse``)."""
        return [m for m in self.net.modules() if isinstance(m, IResBlock)]

    def _check_input(self, x: Tensor) -> None:
        check_batch(self, x, self.in_shape, type(self).__name__)

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
        check_batch(self, z, (self.code_dim,), f"{type(self).__name__}.inverse")
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
            with block_settings(blocks, [overrides] * len(blocks)):
                return self.net.inverse(z)
        finally:
            self.last_inverse = [block.last_inverse for block in blocks]

    @torch.no_grad()
    def converge(self, max_iterations: int = 2000, *, rtol: float = 1e-10) -> int:
        """Converge every spectral layer's power iteration (after training or loading).

        See :func:`~preimage.nn.spectral.converge_spectral`; returns the number of layers.
        """
        return converge_spectral(self, max_iterations, rtol=rtol)


class _IResNetClassifier(IResNetBase):
    """What both i-ResNet classifiers share: the validated config and the class count."""

    bijective: bool
    cfg: IResNetConfig
    num_classes: int

    def _setup(self, in_shape: Shape, num_classes: int, kwargs: dict[str, Any]) -> None:
        name = type(self).__name__
        self._configure(IResNetConfig, in_shape, kwargs)
        self.num_classes = int(num_classes)
        if len(self.in_shape) != 3:
            raise ShapeError(f"{name} takes (C, H, W) inputs, got {self.in_shape}")
        if not 1 < self.num_classes <= self.dim:
            raise ConfigError(
                f"num_classes must be in [2, {self.dim}] for inputs of shape {self.in_shape}"
            )
        if (self.cfg.readout == "linear") == self.bijective:
            other = "IResNetLinear" if self.bijective else "IResNet"
            raise ConfigError(
                f"{name} does not take readout={self.cfg.readout!r}; use {other}, or "
                "build_model('i-resnet', ..., readout=...) which picks the class"
            )

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``type(model)(**model.config)``."""
        return {
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            **asdict(self.cfg),
        }


class IResNet(SimplifiedReadout, _IResNetClassifier):
    r"""Bijective i-ResNet classifier with the simplified read-out (thesis definition 6.7).

    The net is a bijection of the input (a squeeze before the first stage), ``forward(x)``
    returns ``(z, logdet)``, the logits are :math:`z_s` = the first ``num_classes`` entries of
    ``z`` (``readout="first"``) or of its low-pass DCT coefficients (``"dct"``), and
    :meth:`split`/:meth:`merge` separate them from the nuisance :math:`z_n`, exactly like
    :class:`~preimage.models.FiRevNet`: a :class:`~preimage.nn.BijectiveClassifier`. With the
    default ``logdet="none"`` the blocks contribute zero to ``logdet`` (only the ActNorm layers'
    exact terms remain). The thesis' classifier with a linear head (appendix A.1) is
    :class:`IResNetLinear`.

    Args:
        in_shape: shape ``(C, H, W)`` of one input.
        num_classes: number of classes ``C``.
        **kwargs: fields of :class:`IResNetConfig`; ``readout`` defaults to ``"first"``.

    Example:
        >>> import torch
        >>> model = IResNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8).eval()
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
        remark 6.10 (the i-ResNet variant named there as future work).
    """

    bijective = True

    def __init__(self, in_shape: Shape, num_classes: int, **kwargs: Any) -> None:
        super().__init__()
        self._setup(in_shape, num_classes, {"readout": "first", **kwargs})
        cfg = self.cfg
        self._init_body(
            iresnet_body(
                self.in_shape,
                config=cfg,
                logdet=cfg.logdet,
                squeeze_input=True,
                split=cfg.split,
                readout=DCTReadout if cfg.readout == "dct" else Flatten,
            )
        )

    def classify(self, z_s: Tensor) -> Tensor:
        """The class scores of a logit code: :math:`z_s` itself (no head on the logits)."""
        return z_s

    def logits(self, x: Tensor) -> Tensor:
        """Class logits :math:`z_s(x)` of shape ``(batch, num_classes)``."""
        return self.forward(x)[0][:, : self.num_classes]


class IResNetLinear(_IResNetClassifier):
    r"""i-ResNet classifier of thesis appendix A.1: injective padding, blocks, a linear head.

    ``x`` is padded with zero channels to ``pad_channels`` (injective, so ``inverse`` drops the
    padded channels: a projection for codes off the embedded subspace), ``forward(x)`` returns
    ``(z, logdet)`` of that invertible body with ``z`` the last feature map flattened, and the
    logits come from batch norm, ELU, global average pooling and a linear layer on it. The head
    projects instead of splitting, so this is a :class:`~preimage.nn.Classifier` but no
    :class:`~preimage.nn.BijectiveClassifier` (no ``split``/``merge``). The sum of the layers'
    log-det terms is no volume change of the whole map, since the padding makes it injective.

    Args:
        in_shape: shape ``(C, H, W)`` of one input.
        num_classes: number of classes ``C``.
        **kwargs: fields of :class:`IResNetConfig` (``readout`` can only be ``"linear"``).

    Example:
        >>> import torch
        >>> model = IResNetLinear((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
        >>> model.logits(torch.rand(2, 1, 8, 8)).shape
        torch.Size([2, 10])

    References:
        Behrmann (thesis), *Invertibility and Domain Knowledge*, section 4.3 and appendix A.1.
    """

    bijective = False

    def __init__(self, in_shape: Shape, num_classes: int, **kwargs: Any) -> None:
        super().__init__()
        self._setup(in_shape, num_classes, {"readout": "linear", **kwargs})
        cfg = self.cfg
        pad = InjectivePad(max(cfg.pad_channels - self.in_shape[0], 0))
        padded = pad.output_shape(self.in_shape)
        body, feature, dims = iresnet_body(
            padded, config=cfg, logdet=cfg.logdet, squeeze_input=False, split=False
        )
        self._init_body((InvertibleSequential(pad, body), feature, dims))
        self.feature_shape = self._last_map_shape(body)
        channels = self.feature_shape[0]
        self.head = nn.Sequential(
            nn.BatchNorm2d(channels),
            nn.ELU(),
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Linear(channels, self.num_classes),
        )

    @staticmethod
    def _last_map_shape(body: InvertibleSequential) -> Shape:
        layer: nn.Module = body
        while isinstance(layer, InvertibleSequential):
            layer = layer[len(layer) - 1]
        if not isinstance(layer, Flatten):
            raise ShapeError("the i-ResNet body must end with a Flatten read-out")
        return layer.in_shape

    def logits(self, x: Tensor) -> Tensor:
        """Class logits of shape ``(batch, num_classes)`` from the linear head."""
        z, _ = self.forward(x)
        return self.head(z.reshape(z.shape[0], *self.feature_shape))


def build_iresnet(
    in_shape: Sequence[int], num_classes: int, **options: Any
) -> IResNet | IResNetLinear:
    """Registry factory for ``"i-resnet"``: :class:`IResNetLinear` for ``readout="linear"`` (the
    default, thesis appendix A.1), :class:`IResNet` for the bijective read-outs.

    Example:
        >>> shape = (1, 4, 4)
        >>> [type(build_iresnet(shape, 2, readout=r, stages=1, blocks_per_stage=1,
        ...  hidden=4)).__name__ for r in ("linear", "first")]
        ['IResNetLinear', 'IResNet']
    """
    readout = options.get("readout", IResNetConfig.readout)
    factory = IResNetLinear if readout == "linear" else IResNet
    return factory(tuple(in_shape), num_classes, **options)
