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

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, section 2.1, figure 3, appendix D.1-D.3.
    Jacobsen, Smeulders, Oyallon (2018), *i-RevNet*. Kingma & Dhariwal (2018), *Glow*.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Literal

from torch import Tensor

from preimage.errors import ConfigError, ShapeError
from preimage.models.config import check_field_types
from preimage.nn import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    DCTReadout,
    Flatten,
    InvConv1x1,
    InvertibleModule,
    InvertibleSequential,
    Shape,
    Split,
    Squeeze,
)
from preimage.nn.base import check_batch, flat_dim
from preimage.nn.classifier import check_code, merge_codes
from preimage.nn.memory_saving import Grads

__all__ = ["FiRevNet", "FiRevNetConfig"]


@dataclass(frozen=True)
class FiRevNetConfig:
    """Hyper-parameters of :class:`FiRevNet` (all but the data shape and class count).

    Attributes:
        stages: number of multi-scale stages (image inputs).
        blocks_per_stage: RevNet blocks per stage (paper: 16 on MNIST).
        hidden: filters (or units) of every coupling sub-network (paper: 128).
        coupling: ``"affine"`` or ``"additive"``.
        subnet_depth: hidden layers of each coupling sub-network.
        batch_norm: batch norm inside the sub-networks (paper: yes on MNIST, no on spheres).
        split: factor out half of the channels after every stage but the last.
        readout: ``"first"`` (the first ``C`` entries of ``z``) or ``"dct"`` (low-pass DCT).
        actnorm: use ActNorm in every block.
        conv1x1: use the invertible 1x1 convolution in every block.
        clamp: log-scale clamp of affine couplings.
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
    readout: Literal["first", "dct"] = "first"
    actnorm: bool = True
    conv1x1: bool = True
    clamp: float = 2.0
    memory_saving: bool = False

    def __post_init__(self) -> None:
        check_field_types(self)
        if self.stages < 1 or self.blocks_per_stage < 1 or self.hidden < 1:
            raise ConfigError("stages, blocks_per_stage and hidden must all be >= 1")
        if self.coupling not in ("affine", "additive"):
            raise ConfigError(f"coupling must be 'affine' or 'additive', got {self.coupling!r}")
        if self.readout not in ("first", "dct"):
            raise ConfigError(f"readout must be 'first' or 'dct', got {self.readout!r}")


class FiRevNet(InvertibleModule):
    r"""Fully invertible RevNet classifier; ``z_s`` = the first ``num_classes`` entries of ``z``.

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

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        section 2.1 ("Bijective classifiers with simplified readout"), figure 3, appendix D.
    """

    def __init__(self, in_shape: Shape, num_classes: int, **kwargs: Any) -> None:
        super().__init__()
        unknown = set(kwargs) - set(FiRevNetConfig.__dataclass_fields__)
        if unknown:
            raise ConfigError(f"unknown FiRevNet options: {', '.join(sorted(unknown))}")
        self.cfg = FiRevNetConfig(**kwargs)
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        self.dim = flat_dim(self.in_shape)
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

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``FiRevNet(**model.config)``."""
        return {
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            **asdict(self.cfg),
        }

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
        for i in range(self.cfg.stages * self.cfg.blocks_per_stage):
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
        for i in range(self.cfg.blocks_per_stage):
            layers += self._block(c, i, "conv")
        last = stage == self.cfg.stages - 1
        if last:
            readout = DCTReadout if self.cfg.readout == "dct" else Flatten
            layers.append(readout((c, h, w)))
        elif self.cfg.split and (c - c // 2 >= 2 or (h % 2 == 0 and w % 2 == 0)):
            keep = c - c // 2
            layers.append(Split((c, h, w), self._stage((keep, h, w), stage + 1)))
        else:
            layers.append(self._stage((c, h, w), stage + 1))
        return InvertibleSequential(layers)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Map a batch to ``(z, logdet)`` with flat ``z`` of shape ``(batch, prod(in_shape))``."""
        check_batch(self, x, self.in_shape, "FiRevNet")
        z, logdet = self.net(x)
        return z.reshape(x.shape[0], -1), logdet

    def inverse(self, z: Tensor) -> Tensor:
        """Map flat codes ``z`` of shape ``(batch, prod(in_shape))`` back to inputs."""
        check_batch(self, z, (self.dim,), "FiRevNet.inverse")
        return self.net.inverse(z)

    def output_shape(self, in_shape: Shape) -> Shape:
        return (flat_dim(in_shape),)

    def recompute_blocker(self) -> str | None:
        return self.net.recompute_blocker()

    def backward_from_output(
        self, y: Tensor, grad_y: Tensor, grad_logdet: Tensor, grads: Grads
    ) -> tuple[Tensor, Tensor]:
        # ``forward`` only reshapes the chain's output, which is already flat.
        return self.net.backward_from_output(y, grad_y, grad_logdet, grads)

    def split(self, z: Tensor) -> tuple[Tensor, Tensor]:
        """``(z_s, z_n)``: the logits (first ``num_classes`` entries) and the nuisance."""
        check_code(z, self.dim, "FiRevNet.split")
        return z[:, : self.num_classes], z[:, self.num_classes :]

    def merge(self, z_s: Tensor, z_n: Tensor) -> Tensor:
        """Inverse of :meth:`split`."""
        return merge_codes(z_s, z_n, self.num_classes, self.dim)

    def logits(self, x: Tensor) -> Tensor:
        """Class logits ``z_s(x)`` of shape ``(batch, num_classes)``."""
        return self.forward(x)[0][:, : self.num_classes]
