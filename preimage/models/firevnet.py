r"""The fully invertible RevNet (fi-RevNet): a bijective classifier with a simplified read-out.

:math:`z = F_\theta(x)` has as many entries as :math:`x`; the logits are
:math:`z_s = (z_1, \dots, z_C)` and the nuisance :math:`z_n = (z_{C+1}, \dots, z_d)` is ignored by
the decision :math:`D_\theta(x) = \arg\max_k \operatorname{softmax}(z_s)_k`. Every
:math:`x^* = F^{-1}(z_s(a), z_n(b))` therefore has exactly the logits of :math:`a` (a metamer).

Architecture (figure 3, appendix D.2): stages of RevNet blocks, each block
``ActNorm -> InvConv1x1 -> coupling`` (Glow components); every stage begins with an invertible
down-sampling (squeeze) when height and width are even, and all but the last stage end with a
split that factors out half of the channels. Flat inputs (e.g. Adversarial Spheres, appendix D.1)
get the fully-connected variant: the same blocks with MLP sub-networks.

Deviations, and why:

- The paper does not say what happens when a stage's feature map has odd height or width
  (28 -> 14 -> 7 on MNIST); we skip the squeeze there instead of padding, which keeps the
  network bijective.
- A split that would leave the next stage a single channel it cannot squeeze is skipped (the
  stage keeps all channels), so odd channel counts and odd sizes work.
- The first squeeze is applied to the input itself, because a coupling layer needs at least two
  channels and MNIST has one.
- Couplings alternate which half they change (``swap``), as RevNets alternate their streams.

Options that follow the authors' public code (jhjacobsen/fully-invertible-revnet) where the paper
is silent:

- ``readout="center"``: the logits are ``num_classes`` whole channels at the centre position of
  the top map (:class:`~preimage.nn.CenterReadout`); on a 3x32x32 input with 3 stages, 10
  channels at position (2, 2) of the 48x4x4 top map, as in that code.
- ``logit_norm=True``: a ``BatchNorm1d(num_classes)`` between ``z_s`` and the logits, see
  :meth:`FiRevNet.classify`.
- ``stage_blocks``: a block count per stage (e.g. a deeper first stage, whose factored-out half
  otherwise leaves after only a few local blocks).

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1, figure 3, appendix D.1-D.3.
    Jacobsen, Smeulders, Oyallon (2018), *i-RevNet*. Kingma & Dhariwal (2018), *Glow*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError
from preimage.models.config import check_field_types, config_from_kwargs
from preimage.nn import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    CenterReadout,
    DCTReadout,
    Flatten,
    InvConv1x1,
    InvertibleModule,
    InvertibleSequential,
    Shape,
    Split,
    Squeeze,
)
from preimage.nn.base import FlatCodeModel, flat_dim
from preimage.nn.classifier import SimplifiedReadout, check_code
from preimage.nn.memory_saving import Grads

__all__ = ["FiRevNet", "FiRevNetConfig"]


@dataclass(frozen=True)
class FiRevNetConfig:
    """Hyper-parameters of :class:`FiRevNet` (all but the data shape and class count).

    Attributes:
        stages: number of multi-scale stages (image inputs).
        blocks_per_stage: RevNet blocks per stage (paper: 16 on MNIST).
        stage_blocks: RevNet blocks of each stage, first stage first; when set, its length must
            equal ``stages`` and it overrides ``blocks_per_stage`` (e.g. ``(4, 2, 2)`` for a
            deeper first stage). A list (as JSON stores it) is accepted and kept as a tuple. The
            dense variant for flat inputs stacks ``sum(stage_blocks)`` blocks.
        hidden: filters (or units) of every coupling sub-network (paper: 128).
        coupling: ``"affine"`` or ``"additive"``.
        subnet_depth: hidden layers of each coupling sub-network.
        batch_norm: batch norm inside the sub-networks (paper: yes on MNIST, no on spheres).
        split: factor out half of the channels after every stage but the last.
        readout: ``"first"`` (the first ``C`` entries of ``z``: flat order of the top map),
            ``"dct"`` (low-pass DCT, appendix D.3) or ``"center"`` (``C`` whole channels at the
            centre position of the top map, as the authors' public code; needs a top map of at
            least ``C`` channels). Flat inputs always read out the first ``C`` features.
        actnorm: use ActNorm in every block.
        conv1x1: use the invertible 1x1 convolution in every block.
        clamp: log-scale clamp of affine couplings.
        logit_norm: batch-normalise the logits: ``logits = BatchNorm1d(C)(z_s)`` (affine), as
            the authors' public code does; see :meth:`FiRevNet.classify`.
        memory_saving: backpropagate without storing activations: the backward pass recomputes
            every block's input from its output (:mod:`preimage.nn.memory_saving`); same
            gradients, memory independent of depth, about one extra forward and one inverse pass
            per step. It changes no parameter, so checkpoints load either way.
    """

    stages: int = 3
    blocks_per_stage: int = 4
    hidden: int = 64
    coupling: Literal["affine", "additive"] = "affine"
    subnet_depth: int = 2
    batch_norm: bool = True
    split: bool = True
    readout: Literal["first", "dct", "center"] = "first"
    actnorm: bool = True
    conv1x1: bool = True
    clamp: float = 2.0
    memory_saving: bool = False
    stage_blocks: tuple[int, ...] | None = None
    logit_norm: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.stages < 1 or self.blocks_per_stage < 1 or self.hidden < 1:
            raise ConfigError("stages, blocks_per_stage and hidden must all be >= 1")
        if self.stage_blocks is not None:
            # JSON (checkpoints, run records) stores the tuple as a list; keep the config hashable.
            object.__setattr__(self, "stage_blocks", tuple(self.stage_blocks))
            if len(self.stage_blocks) != self.stages:
                raise ConfigError(
                    f"stage_blocks needs one count per stage ({self.stages}), got "
                    f"{list(self.stage_blocks)}"
                )
            if min(self.stage_blocks) < 1:
                raise ConfigError(f"stage_blocks must all be >= 1, got {list(self.stage_blocks)}")
        if self.coupling not in ("affine", "additive"):
            raise ConfigError(f"coupling must be 'affine' or 'additive', got {self.coupling!r}")
        if self.readout not in ("first", "dct", "center"):
            raise ConfigError(f"readout must be 'first', 'dct' or 'center', got {self.readout!r}")

    def blocks(self, stage: int) -> int:
        """RevNet blocks of stage ``stage`` (0-based): ``stage_blocks[stage]`` or the default.

        Example:
            >>> cfg = FiRevNetConfig(stages=3, stage_blocks=[4, 2, 2])
            >>> cfg.stage_blocks, [cfg.blocks(i) for i in range(3)]
            ((4, 2, 2), [4, 2, 2])
        """
        if self.stage_blocks is None:
            return self.blocks_per_stage
        return self.stage_blocks[stage]


class FiRevNet(SimplifiedReadout, FlatCodeModel):
    r"""Fully invertible RevNet classifier; ``z_s`` = the first ``num_classes`` entries of ``z``.

    The bijection :math:`x \mapsto z`, :meth:`split`, :meth:`merge` and :meth:`inverse` never
    depend on ``logit_norm``; only the map from ``z_s`` to the logits does (:meth:`classify`).

    **Why a batch norm on the logits** (``logit_norm=True``). The paper (section 2.1) takes the
    logits to be :math:`z_s` itself and says nothing about normalising them; the authors' public
    code (jhjacobsen/fully-invertible-revnet) passes the 10 logit entries through a
    ``BatchNorm1d(10)`` before the cross-entropy. With it the cross-entropy sees
    :math:`\gamma \odot (z_s - \mu) / \sigma + \beta`, so confident logits come from the
    learned scale :math:`\gamma` rather than from large :math:`z_s`: a density on :math:`z_s`
    (e.g. :math:`\mathcal{N}(0, I)` on the whole top code, as in that code) can then coexist
    with a low cross-entropy instead of fighting it. ``z_s`` stays the raw code, so a metamer
    :math:`F^{-1}(z_s(a), z_n(b))` still has exactly the logits of :math:`a` in eval mode (in
    train mode the batch statistics make every logit depend on the whole batch).

    Args:
        in_shape: shape of one input, ``(C, H, W)`` for images or ``(d,)`` for vectors.
        num_classes: number of classes ``C`` (at most the input dimension).
        **kwargs: fields of :class:`FiRevNetConfig`.

    Example:
        >>> import torch
        >>> model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8).eval()
        >>> x = torch.rand(4, 1, 8, 8)
        >>> with torch.no_grad():
        ...     z, logdet = model(x)
        ...     x_rec = model.inverse(z)
        >>> z.shape, model.logits(x).shape
        (torch.Size([4, 64]), torch.Size([4, 10]))
        >>> float((x_rec - x).abs().max()) < 1e-5
        True
        >>> z_s, z_n = model.split(z)
        >>> bool(torch.equal(model.merge(z_s, z_n), z))
        True

        The authors' 3x32x32 layout: 10 whole channels at the centre of the 48x4x4 top map,
        a deeper first stage and batch-normalised logits:

        >>> net = FiRevNet((3, 32, 32), 10, stages=3, stage_blocks=(2, 1, 1), hidden=8,
        ...                readout="center", logit_norm=True).eval()
        >>> with torch.no_grad():
        ...     z_s = net.split(net(torch.rand(2, 3, 32, 32))[0])[0]
        >>> net.classify(z_s).shape, net.config["stage_blocks"]
        (torch.Size([2, 10]), [2, 1, 1])

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        section 2.1 ("Bijective classifiers with simplified readout"), figure 3, appendix D.
    """

    def __init__(self, in_shape: Shape, num_classes: int, **kwargs: Any) -> None:
        super().__init__()
        self.cfg = config_from_kwargs(FiRevNetConfig, kwargs, "FiRevNet")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.dim = flat_dim(self.in_shape)
        self.code_dim = self.dim  # a bijection of the flattened input
        if len(self.in_shape) not in (1, 3):
            raise ShapeError(f"FiRevNet takes (C, H, W) or (d,) inputs, got {self.in_shape}")
        if not 1 < self.num_classes <= self.dim:
            raise ConfigError(
                f"num_classes must be in [2, {self.dim}] for inputs of shape {self.in_shape}"
            )
        if len(self.in_shape) == 1:
            self.net = self._dense()
        else:
            self.net = self._stage(self.in_shape, 0)
        # One memory-saving chain at the top suffices: its backward pass walks into the nested
        # stages (Split.backward_from_output) instead of recomputing them as a whole.
        self.net.memory_saving = self.cfg.memory_saving
        if self.cfg.logit_norm:
            self.logit_bn = nn.BatchNorm1d(self.num_classes)

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``FiRevNet(**model.config)``."""
        config: dict[str, Any] = {
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            **asdict(self.cfg),
        }
        if self.cfg.stage_blocks is not None:
            config["stage_blocks"] = list(self.cfg.stage_blocks)  # JSON-native, like in_shape
        return config

    def _block(self, channels: int, index: int, subnet: str) -> list[InvertibleModule]:
        cfg = self.cfg
        layers: list[InvertibleModule] = []
        if cfg.actnorm:
            layers.append(ActNorm(channels))
        if cfg.conv1x1:
            layers.append(InvConv1x1(channels))
        common = {
            "subnet": subnet,
            "hidden": cfg.hidden,
            "depth": cfg.subnet_depth,
            "batch_norm": cfg.batch_norm,
            "swap": index % 2 == 1,
        }
        if cfg.coupling == "affine":
            layers.append(AffineCoupling(channels, clamp=cfg.clamp, **common))
        else:
            layers.append(AdditiveCoupling(channels, **common))
        return layers

    def _dense(self) -> InvertibleSequential:
        (d,) = self.in_shape
        if d < 2:
            raise ShapeError(f"FiRevNet needs at least 2 input features, got {d}")
        layers: list[InvertibleModule] = []
        for i in range(sum(self.cfg.blocks(s) for s in range(self.cfg.stages))):
            layers += self._block(d, i, "mlp")
        return InvertibleSequential(layers)

    def _stage(self, shape: Shape, stage: int) -> InvertibleSequential:
        c, h, w = shape
        layers: list[InvertibleModule] = []
        if h % 2 == 0 and w % 2 == 0:
            layers.append(Squeeze())
            c, h, w = 4 * c, h // 2, w // 2
        if c < 2:
            raise ShapeError(
                f"stage {stage + 1} of FiRevNet would see a {c}x{h}x{w} feature map; coupling "
                "layers need >= 2 channels (use fewer stages, split=False, or even input sizes)"
            )
        for i in range(self.cfg.blocks(stage)):
            layers += self._block(c, i, "conv")
        last = stage == self.cfg.stages - 1
        if last:
            layers.append(self._readout((c, h, w)))
        elif self.cfg.split and (c - c // 2 >= 2 or (h % 2 == 0 and w % 2 == 0)):
            keep = c - c // 2
            layers.append(Split((c, h, w), self._stage((keep, h, w), stage + 1)))
        else:
            layers.append(self._stage((c, h, w), stage + 1))
        return InvertibleSequential(layers)

    def _readout(self, shape: tuple[int, int, int]) -> InvertibleModule:
        if self.cfg.readout == "dct":
            return DCTReadout(shape)
        if self.cfg.readout == "first":
            return Flatten(shape)
        if shape[0] < self.num_classes:
            raise ShapeError(
                f"readout='center' needs a top map of >= {self.num_classes} channels, got "
                f"{shape[0]}x{shape[1]}x{shape[2]} (embed the input larger, e.g. "
                "preimage.data.embed_image, or use more stages)"
            )
        return CenterReadout(shape, self.num_classes)

    def output_shape(self, in_shape: Shape) -> Shape:
        return (flat_dim(in_shape),)

    def recompute_blocker(self) -> str | None:
        return self.net.recompute_blocker()

    def backward_from_output(
        self, y: Tensor, grad_y: Tensor, grad_logdet: Tensor, grads: Grads
    ) -> tuple[Tensor, Tensor]:
        # ``forward`` only reshapes the chain's output, which is already flat.
        return self.net.backward_from_output(y, grad_y, grad_logdet, grads)

    def classify(self, z_s: Tensor) -> Tensor:
        """Logits from the semantic code: ``logit_bn(z_s)`` with ``logit_norm``, else ``z_s``.

        Losses that compute the cross-entropy from a code they already have (``z`` from
        :meth:`forward`, split by :meth:`split`) must call this, so that training and
        :meth:`logits` agree.
        """
        check_code(z_s, self.num_classes, "FiRevNet.classify")
        if self.cfg.logit_norm:
            return self.logit_bn(z_s)
        return z_s

    def logits(self, x: Tensor) -> Tensor:
        """Class logits ``classify(z_s(x))`` of shape ``(batch, num_classes)``."""
        return self.classify(self.forward(x)[0][:, : self.num_classes])
