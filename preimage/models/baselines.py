r"""A non-invertible convolutional baseline: a small ResNet-style classifier.

The shiftMNIST comparison of Jacobsen et al. (2019) pits the fully invertible RevNet against a
cross-entropy-trained ResNet ("CE ResNet", figure 8): a network that may *discard* information
along the way, so its excessive invariance cannot be made visible by inversion, only measured
(e.g. by the error on :math:`\mathcal{D}_{Adv}`).

Architecture: a 3x3 stem ``conv -> BN -> ReLU`` to ``width`` channels, then ``depth`` stages of
``blocks`` basic blocks (He et al., 2016: ``conv3x3 -> BN -> ReLU -> conv3x3 -> BN``, plus the
identity, or a strided 1x1 ``conv -> BN`` projection where the shape changes, then ReLU). Stage
:math:`i` has :math:`\text{width} \cdot 2^i` channels and, for :math:`i > 0`, halves the
resolution with a stride-2 first convolution. Global average pooling, dropout and a linear layer
give the logits. ``residual=False`` drops the skip connections (a plain VGG-style
``conv-BN-ReLU`` stack).

Deviation from the paper: the paper does not describe its ResNet (neither depth nor width, and
appendix D only details the RevNets). The defaults here (3 stages of one block, 32 to 128
channels, about 0.3 M parameters) are sized for CPU budgets; ``depth``, ``blocks`` and
``width`` scale it up to the usual ResNet-18 layout (``depth=4, blocks=2, width=64``).

References:
    Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability, section 4
    (shiftMNIST, "CE ResNet") and figure 8. He, Zhang, Ren, Sun (2016), Deep Residual Learning
    for Image Recognition, section 3.3 (basic blocks, projection shortcuts).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError
from preimage.models.config import config_from_kwargs

__all__ = ["CNN", "CNNConfig"]


@dataclass(frozen=True)
class CNNConfig:
    """Hyper-parameters of :class:`CNN` (all but the data shape and class count).

    Attributes:
        width: Channels of the stem and the first stage; stage ``i`` has ``width * 2**i``.
        depth: Number of stages; every stage after the first halves the resolution.
        blocks: Basic blocks per stage.
        dropout: Dropout probability before the linear read-out, in ``[0, 1)``.
        residual: Use skip connections (ResNet); ``False`` gives a plain conv-BN-ReLU stack.
    """

    width: int = 32
    depth: int = 3
    blocks: int = 1
    dropout: float = 0.0
    residual: bool = True

    def __post_init__(self) -> None:
        if self.width < 1 or self.depth < 1 or self.blocks < 1:
            raise ConfigError(
                f"width, depth and blocks must all be >= 1, got {self.width}, {self.depth}, "
                f"{self.blocks}"
            )
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must lie in [0, 1), got {self.dropout}")


class _BasicBlock(nn.Module):
    def __init__(self, c_in: int, c_out: int, stride: int, residual: bool) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
            nn.ReLU(inplace=True),
            nn.Conv2d(c_out, c_out, 3, padding=1, bias=False),
            nn.BatchNorm2d(c_out),
        )
        self.shortcut: nn.Module | None = None
        if residual:
            self.shortcut = (
                nn.Identity()
                if stride == 1 and c_in == c_out
                else nn.Sequential(
                    nn.Conv2d(c_in, c_out, 1, stride=stride, bias=False), nn.BatchNorm2d(c_out)
                )
            )
        self.act = nn.ReLU(inplace=True)

    def forward(self, x: Tensor) -> Tensor:
        out = self.body(x)
        if self.shortcut is not None:
            out = out + self.shortcut(x)
        return self.act(out)


class CNN(nn.Module):
    r"""Small ResNet-style convolutional classifier (non-invertible baseline).

    Args:
        in_shape: Shape of one input, ``(C, H, W)``.
        num_classes: Number of classes (>= 2).
        **kwargs: Fields of :class:`CNNConfig` (``width``, ``depth``, ``blocks``, ``dropout``,
            ``residual``).

    Example:
        >>> import torch
        >>> model = CNN((1, 8, 8), 10, width=4, depth=2).eval()
        >>> model(torch.rand(3, 1, 8, 8)).shape
        torch.Size([3, 10])
        >>> rebuilt = CNN(**model.config)
        >>> rebuilt.config == model.config
        True

    References:
        Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability,
        section 4 and figure 8 (the "CE ResNet" baseline). He et al. (2016), Deep Residual
        Learning for Image Recognition, section 3.3.
    """

    def __init__(self, in_shape: tuple[int, ...], num_classes: int, **kwargs: Any) -> None:
        super().__init__()
        self.cfg = config_from_kwargs(CNNConfig, kwargs, "CNN")
        self.in_shape = tuple(int(s) for s in in_shape)
        self.num_classes = int(num_classes)
        if len(self.in_shape) != 3 or min(self.in_shape) < 1:
            raise ShapeError(f"CNN takes image inputs of shape (C, H, W), got {self.in_shape}")
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}")
        cfg = self.cfg
        layers: list[nn.Module] = [
            nn.Conv2d(self.in_shape[0], cfg.width, 3, padding=1, bias=False),
            nn.BatchNorm2d(cfg.width),
            nn.ReLU(inplace=True),
        ]
        channels = cfg.width
        for stage in range(cfg.depth):
            out = cfg.width * 2**stage
            for block in range(cfg.blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                layers.append(_BasicBlock(channels, out, stride, cfg.residual))
                channels = out
        self.features = nn.Sequential(*layers)
        self.head = nn.Sequential(
            nn.AdaptiveAvgPool2d(1),
            nn.Flatten(),
            nn.Dropout(cfg.dropout),
            nn.Linear(channels, self.num_classes),
        )

    @property
    def config(self) -> dict[str, Any]:
        """Everything needed to rebuild this model: ``CNN(**model.config)``."""
        return {
            "in_shape": list(self.in_shape),
            "num_classes": self.num_classes,
            **asdict(self.cfg),
        }

    def forward(self, x: Tensor) -> Tensor:
        """Logits of shape ``(batch, num_classes)`` for inputs ``(batch, C, H, W)``."""
        if tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(
                f"CNN expects inputs of shape (batch, {', '.join(map(str, self.in_shape))}), "
                f"got {tuple(x.shape)}"
            )
        return self.head(self.features(x))

    def logits(self, x: Tensor) -> Tensor:
        """Same as :meth:`forward`; the name every classifier of :mod:`preimage.models` shares."""
        return self.forward(x)
