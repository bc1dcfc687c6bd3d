r"""Additive and affine coupling layers with configurable sub-networks.

The input is split along channels into :math:`(x_a, x_b)`; only :math:`x_b` changes:

- additive (NICE / RevNet): :math:`y_b = x_b + t(x_a)`, :math:`\log|\det J| = 0`;
- affine (Real NVP): :math:`y_b = x_b \odot \sigma(x_a) + t(x_a)` with
  :math:`\log|\det J| = \sum \log \sigma(x_a)`.

The affine scale is :math:`\sigma = \exp(c \tanh(r / c))` with clamp :math:`c` (default 2): a
smooth clamp of the log-scale to :math:`(-c, c)`, so neither the forward nor the inverse pass can
overflow, unlike a raw ``exp`` (deviation from Real NVP, which uses an unbounded ``exp``).

References:
    Dinh, Sohl-Dickstein, Bengio (2017), *Density estimation using Real NVP*, section 3.3.
    Gomez et al. (2017), *The Reversible Residual Network* (additive RevNet blocks).
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, figure 3 and
    appendix D ("RevNet blocks with batch norm ... 128 filters per layer").
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError
from preimage.nn.base import InvertibleModule, check_shape, sum_except_batch
from preimage.nn.fast_layers import ChannelsLastConv2d, OneDNNLinear, TapSumConv2d

__all__ = ["AdditiveCoupling", "AffineCoupling", "SubnetFactory", "conv_subnet", "mlp_subnet"]

SubnetFactory = Callable[[int, int], nn.Module]
"""``factory(in_channels, out_channels) -> nn.Module`` building a coupling's sub-network."""


def conv_subnet(
    in_channels: int,
    out_channels: int,
    *,
    hidden: int = 64,
    depth: int = 2,
    batch_norm: bool = False,
    kernel_size: int = 3,
) -> nn.Sequential:
    """A RevNet-style bottleneck: ``depth`` hidden conv layers, ReLU, optional batch norm.

    The first and last convolutions use ``kernel_size`` (same padding), the middle ones are 1x1.
    The last layer starts at zero so that every coupling starts as the identity (Glow, section 3.3).
    The convolutions are :class:`~preimage.nn.fast_layers.ChannelsLastConv2d`: the same function
    as ``nn.Conv2d``, computed in channels-last layout, which is faster on CPUs; the last one is a
    :class:`~preimage.nn.fast_layers.TapSumConv2d`, which computes few output channels faster
    still.

    Example:
        >>> import torch
        >>> net = conv_subnet(2, 4, hidden=8)
        >>> net(torch.randn(1, 2, 5, 5)).shape
        torch.Size([1, 4, 5, 5])
    """
    if depth < 1:
        raise ConfigError(f"subnet depth must be >= 1, got {depth}")
    pad = kernel_size // 2
    layers: list[nn.Module] = []
    c = in_channels
    for i in range(depth):
        k = kernel_size if i == 0 else 1
        layers.append(ChannelsLastConv2d(c, hidden, k, padding=k // 2, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm2d(hidden))
        layers.append(nn.ReLU(inplace=True))  # safe: no layer before it saves its output
        c = hidden
    last = TapSumConv2d(c, out_channels, kernel_size, padding=pad)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


def mlp_subnet(
    in_features: int,
    out_features: int,
    *,
    hidden: int = 64,
    depth: int = 2,
    batch_norm: bool = False,
) -> nn.Sequential:
    """A fully-connected ReLU bottleneck with a zero-initialised output layer.

    The layers are :class:`~preimage.nn.fast_layers.OneDNNLinear`: ``nn.Linear`` with its matrix
    products in oneDNN on CPUs (same function and parameters).

    Example:
        >>> import torch
        >>> mlp_subnet(3, 4, hidden=8)(torch.randn(2, 3)).shape
        torch.Size([2, 4])
    """
    if depth < 1:
        raise ConfigError(f"subnet depth must be >= 1, got {depth}")
    layers: list[nn.Module] = []
    c = in_features
    for _ in range(depth):
        layers.append(OneDNNLinear(c, hidden, bias=not batch_norm))
        if batch_norm:
            layers.append(nn.BatchNorm1d(hidden))
        layers.append(nn.ReLU(inplace=True))  # safe: no layer before it saves its output
        c = hidden
    last = OneDNNLinear(c, out_features)
    nn.init.zeros_(last.weight)
    nn.init.zeros_(last.bias)
    layers.append(last)
    return nn.Sequential(*layers)


class _Coupling(InvertibleModule):
    """Shared split / merge logic; subclasses define how ``x_b`` is transformed."""

    out_factor = 1
    exact_inverse = True

    def __init__(
        self,
        channels: int,
        *,
        subnet: str | SubnetFactory = "conv",
        hidden: int = 64,
        depth: int = 2,
        batch_norm: bool = False,
        kernel_size: int = 3,
        swap: bool = False,
    ) -> None:
        super().__init__()
        if channels < 2:
            raise ShapeError(f"a coupling layer needs at least 2 channels, got {channels}")
        self.channels = int(channels)
        self.swap = bool(swap)
        # With an odd channel count the halves differ by one; ``swap`` decides which half changes.
        first = channels // 2
        self.sizes = (first, channels - first)
        cond, changed = (self.sizes[1], self.sizes[0]) if swap else self.sizes
        out = changed * self.out_factor
        if callable(subnet):
            self.subnet = subnet(cond, out)
        elif subnet == "conv":
            self.subnet = conv_subnet(
                cond,
                out,
                hidden=hidden,
                depth=depth,
                batch_norm=batch_norm,
                kernel_size=kernel_size,
            )
        elif subnet == "mlp":
            self.subnet = mlp_subnet(cond, out, hidden=hidden, depth=depth, batch_norm=batch_norm)
        else:
            raise ConfigError(f"unknown subnet {subnet!r}; use 'conv', 'mlp' or a callable")

    def _halves(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_shape(x, (2, 3, 4), type(self).__name__)
        if x.shape[1] != self.channels:
            raise ShapeError(f"{type(self).__name__}({self.channels}) got {x.shape[1]} channels")
        first, second = torch.split(x, self.sizes, dim=1)
        return first, second

    def _transform(self, cond: Tensor, changed: Tensor) -> tuple[Tensor, Tensor | None]:
        """The changed half's new value and the log-det (``None``: zero)."""
        raise NotImplementedError  # pragma: no cover - abstract

    def _untransform(self, cond: Tensor, changed: Tensor) -> Tensor:
        raise NotImplementedError  # pragma: no cover - abstract

    def forward_halves(self, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor, Tensor | None]:
        """The coupling on the two halves kept apart: ``(first', second', logdet or None)``."""
        if self.swap:
            first, logdet = self._transform(second, first)
        else:
            second, logdet = self._transform(first, second)
        return first, second, logdet

    def inverse_halves(self, first: Tensor, second: Tensor) -> tuple[Tensor, Tensor]:
        """Inverse of :meth:`forward_halves`."""
        if self.swap:
            return self._untransform(second, first), second
        return first, self._untransform(first, second)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        first, second, logdet = self.forward_halves(*self._halves(x))
        y = torch.cat((first, second), dim=1)
        return y, self._zero_logdet(x) if logdet is None else logdet

    def inverse(self, y: Tensor) -> Tensor:
        return torch.cat(self.inverse_halves(*self._halves(y)), dim=1)

    def fusion_key(self) -> object:
        return (_Coupling, self.sizes)

    def forward_fused(
        self, run: Sequence[InvertibleModule], x: Tensor
    ) -> tuple[Tensor, Tensor | None]:
        # Consecutive couplings pass the two halves on; one split and one concatenation per run
        # instead of one per layer (in the backward pass too: no split-gradient copies).
        first, second = self._halves(x)
        logdet = None
        for layer in run:
            first, second, ld = layer.forward_halves(first, second)  # type: ignore[operator]
            if ld is not None:
                logdet = ld if logdet is None else logdet + ld
        return torch.cat((first, second), dim=1), logdet

    def inverse_fused(self, run: Sequence[InvertibleModule], y: Tensor) -> Tensor:
        first, second = self._halves(y)
        for layer in reversed(run):
            first, second = layer.inverse_halves(first, second)  # type: ignore[operator]
        return torch.cat((first, second), dim=1)


class AdditiveCoupling(_Coupling):
    r"""Volume-preserving coupling :math:`y_b = x_b + t(x_a)`.

    Args:
        channels: channels (or features for flat inputs) of the input.
        subnet: ``"conv"`` (images), ``"mlp"`` (flat vectors) or a factory
            ``(in_channels, out_channels) -> nn.Module``.
        hidden: width of the sub-network.
        depth: hidden layers of the sub-network.
        batch_norm: batch normalisation inside the sub-network.
        kernel_size: kernel of the first and last convolution.
        swap: change the first half (conditioned on the second) instead of the second.

    Example:
        >>> import torch
        >>> layer = AdditiveCoupling(4, hidden=8)
        >>> x = torch.randn(2, 4, 3, 3)
        >>> y, logdet = layer(x)
        >>> bool(torch.allclose(layer.inverse(y), x)), logdet.tolist()
        (True, [0.0, 0.0])

    References:
        Gomez et al. (2017), *The Reversible Residual Network*; Jacobsen et al. (2019), figure 3.
    """

    def _transform(self, cond: Tensor, changed: Tensor) -> tuple[Tensor, Tensor | None]:
        return changed + self.subnet(cond), None

    def _untransform(self, cond: Tensor, changed: Tensor) -> Tensor:
        return changed - self.subnet(cond)


class AffineCoupling(_Coupling):
    r"""Affine coupling :math:`y_b = x_b \odot \exp(c\tanh(r/c)) + t` with :math:`(r, t) = s(x_a)`.

    Args:
        channels: channels (or features for flat inputs) of the input.
        clamp: bound :math:`c` of the log-scale; smaller is more stable, larger more expressive.
        **kwargs: as for :class:`AdditiveCoupling`.

    Example:
        >>> import torch
        >>> layer = AffineCoupling(3, subnet="mlp", hidden=8)
        >>> x = torch.randn(5, 3)
        >>> y, logdet = layer(x)
        >>> bool(torch.allclose(layer.inverse(y), x, atol=1e-6)), logdet.shape
        (True, torch.Size([5]))

    References:
        Dinh et al. (2017), *Real NVP*, section 3.3; Jacobsen et al. (2019), figure 3 and
        appendix D ("affine block structure").
    """

    out_factor = 2

    def __init__(self, channels: int, *, clamp: float = 2.0, **kwargs: object) -> None:
        super().__init__(channels, **kwargs)  # type: ignore[arg-type]
        if clamp <= 0:
            raise ConfigError(f"clamp must be positive, got {clamp}")
        self.clamp = float(clamp)

    def _scale_shift(self, cond: Tensor) -> tuple[Tensor, Tensor]:
        raw, shift = self.subnet(cond).chunk(2, dim=1)
        log_scale = self.clamp * torch.tanh(raw / self.clamp)
        return log_scale, shift

    def _transform(self, cond: Tensor, changed: Tensor) -> tuple[Tensor, Tensor | None]:
        log_scale, shift = self._scale_shift(cond)
        return changed * torch.exp(log_scale) + shift, sum_except_batch(log_scale)

    def _untransform(self, cond: Tensor, changed: Tensor) -> Tensor:
        log_scale, shift = self._scale_shift(cond)
        return (changed - shift) * torch.exp(-log_scale)
