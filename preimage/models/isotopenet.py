r"""1-D convolutional networks for mass spectra: IsotopeNet (table 7.2) and ResidualNet (table A.1).

Both take spectra of shape ``(batch, 1, n_bins)`` and return class logits (the softmax of the
tables lives in the cross-entropy loss).

**Block conventions** (the thesis fixes depth, kernel size, stride and number of maps per
residual layer, but not the inside of a layer). We use the pre-activation residual layer of
He et al. (2016), :math:`x \mapsto s(x) + W_2 * \mathrm{ReLU}(\mathrm{BN}(W_1 *
\mathrm{ReLU}(\mathrm{BN}(x))))`: batch norm before each of the two convolutions, "same"
zero padding, the first convolution changes the number of maps, the **second** carries the
stride (``stride_position="second"``; ``"first"`` is the other common choice), and the shortcut
:math:`s` is the identity when shape is kept and a strided 1x1 convolution otherwise.
Pre-activation layers end without a non-linearity, which is why table 7.2 lists a separate
"ReLU nonlinearity" after the last one. IsotopeNet's locally connected layer uses each position
and its two neighbours (kernel 3, zero padding 1, one weight triple and one bias per position);
the dropout of 30% (table A.2) acts on its output, before the dense layer.

**Receptive field.** With these conventions the convolutional part of IsotopeNet sees 49 bins
(:func:`receptive_field`, :meth:`IsotopeNet.receptive_field`); striding the first convolution
instead gives 77. The thesis states 43 (figure 7.3), which neither convention reproduces: no
choice of which of the eight kernel-3 convolutions carry the strides 5 and 3 after the first
two layers yields :math:`1 + 2\sum_i j_i = 43`. 49 is the closest the table allows and still
exceeds every averagine pattern of the synthetic presets (figure 7.3 of the ``ims-classify``
study).

**Parameter counts.** IsotopeNet's depend on the input length through the locally connected
and dense layers: 1 258 in the residual layers plus :math:`6 L_4 + 2` for :math:`L_4` positions
after them (:math:`L_4 = \lceil n_{bins} / 15 \rceil`), so the thesis' 13 935 corresponds to
:math:`L_4 \approx 2 112`, an input of about 31 700 bins (its inputs' lengths are not given).
ResidualNet's count is independent of the input length (global pooling): 1 626 036 with our
reading of table A.1, against the thesis' 2 132 130; the gap (506 094) suggests the
"(5x)" row or the shortcut convolutions mean something else, which the thesis does not say.

References:
    Behrmann (thesis), *Invertibility and Domain Knowledge*, section 7.3.2, tables 7.2, A.1,
    A.2 and figure 7.3. He, Zhang, Ren, Sun (2016), *Identity mappings in deep residual
    networks* (pre-activation residual layers). Luo et al. (2016), *Understanding the effective
    receptive field in deep convolutional neural networks* (receptive-field arithmetic).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError

__all__ = [
    "ISOTOPENET_LAYERS",
    "RESIDUALNET_LAYERS",
    "ConvSpec",
    "IsotopeNet",
    "LocallyConnected1d",
    "ResidualLayer1d",
    "ResidualNet1D",
    "count_parameters",
    "receptive_field",
]

StridePosition = Literal["first", "second"]

ISOTOPENET_LAYERS: tuple[tuple[int, int], ...] = ((1, 8), (5, 8), (1, 8), (3, 1))
"""(stride, maps) of IsotopeNet's residual layers (table 7.2; depth 2, kernel 3)."""

RESIDUALNET_LAYERS: tuple[tuple[int, int], ...] = (
    (1, 16),
    (3, 32),
    (1, 32),
    (3, 64),
    (1, 64),
    (3, 128),
    (1, 128),
    (3, 128),
    (1, 128),
    (3, 128),
    (3, 128),
    (3, 256),
)
"""(stride, maps) of ResidualNet's residual layers (table A.1; depth 2, kernel 5); the row
"Residual layer (5x), stride 3/1, 128 maps" is read as five layers with strides alternating
3, 1, 3, 1, 3."""


class ConvSpec(NamedTuple):
    """Kernel size, stride and dilation of one convolution on a network's main path."""

    kernel: int
    stride: int = 1
    dilation: int = 1


def receptive_field(specs: Sequence[ConvSpec | tuple[int, ...]]) -> tuple[int, int]:
    r"""Receptive field and jump (input bins between neighbouring outputs) of stacked convolutions.

    :math:`r_l = r_{l-1} + d_l (k_l - 1) j_{l-1}`, :math:`j_l = j_{l-1} s_l`, from
    :math:`r_0 = j_0 = 1` (Luo et al. 2016).

    Example:
        >>> receptive_field([(3, 1), (3, 1)]), receptive_field([ConvSpec(3, 5), (3, 1)])
        ((5, 1), (13, 5))
    """
    rf, jump = 1, 1
    for spec in specs:
        k, s, d = (*tuple(spec), 1, 1)[:3]
        if k < 1 or s < 1 or d < 1:
            raise ConfigError(f"kernel, stride and dilation must be >= 1, got {spec}")
        rf += d * (k - 1) * jump
        jump *= s
    return rf, jump


def count_parameters(model: nn.Module) -> int:
    """Trainable parameters of ``model``.

    Example:
        >>> count_parameters(nn.Linear(3, 2))
        8
    """
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


class ResidualLayer1d(nn.Module):
    r"""Pre-activation residual layer of depth 2 (see the module notes for the conventions).

    Args:
        in_maps: input channels.
        out_maps: output channels.
        kernel: kernel size of both convolutions (odd).
        stride: stride of the layer.
        stride_position: which convolution carries the stride, ``"second"`` or ``"first"``.

    Example:
        >>> layer = ResidualLayer1d(1, 8, 3, stride=5)
        >>> layer(torch.zeros(2, 1, 23)).shape, [spec.stride for spec in layer.conv_specs()]
        (torch.Size([2, 8, 5]), [1, 5])
    """

    def __init__(
        self,
        in_maps: int,
        out_maps: int,
        kernel: int,
        stride: int = 1,
        stride_position: StridePosition = "second",
    ) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0:
            raise ConfigError(f"kernel must be odd and positive, got {kernel}")
        if stride_position not in ("first", "second"):
            raise ConfigError(
                f"stride_position must be 'first' or 'second', got {stride_position!r}"
            )
        s1, s2 = (stride, 1) if stride_position == "first" else (1, stride)
        pad = kernel // 2
        self.strides = (s1, s2)
        self.kernel = kernel
        self.bn1 = nn.BatchNorm1d(in_maps)
        self.conv1 = nn.Conv1d(in_maps, out_maps, kernel, stride=s1, padding=pad)
        self.bn2 = nn.BatchNorm1d(out_maps)
        self.conv2 = nn.Conv1d(out_maps, out_maps, kernel, stride=s2, padding=pad)
        self.shortcut: nn.Module = (
            nn.Identity()
            if in_maps == out_maps and stride == 1
            else nn.Conv1d(in_maps, out_maps, 1, stride=stride)
        )

    def forward(self, x: Tensor) -> Tensor:
        h = self.conv1(torch.relu(self.bn1(x)))
        h = self.conv2(torch.relu(self.bn2(h)))
        return self.shortcut(x) + h

    def conv_specs(self) -> list[ConvSpec]:
        """The two convolutions of the main path, for :func:`receptive_field`."""
        return [ConvSpec(self.kernel, self.strides[0]), ConvSpec(self.kernel, self.strides[1])]


class LocallyConnected1d(nn.Module):
    r"""Like a convolution of kernel ``kernel`` (zero padding, stride 1) but with unshared weights.

    :math:`y_{o,i} = b_{o,i} + \sum_{c, t} w_{o,i,c,t}\, x_{c, i + t - \lfloor k/2 \rfloor}`, one
    weight set per output position :math:`i`.

    Args:
        length: input (and output) length.
        in_maps: input channels.
        out_maps: output channels.
        kernel: odd window size.

    Example:
        >>> lc = LocallyConnected1d(5, 1, 1, 3)
        >>> lc(torch.ones(2, 1, 5)).shape, count_parameters(lc)
        (torch.Size([2, 1, 5]), 20)
    """

    def __init__(self, length: int, in_maps: int, out_maps: int, kernel: int = 3) -> None:
        super().__init__()
        if kernel < 1 or kernel % 2 == 0 or length < 1:
            raise ConfigError(f"need an odd kernel and a positive length, got {kernel}, {length}")
        self.length, self.kernel = length, kernel
        bound = 1.0 / (in_maps * kernel) ** 0.5
        self.weight = nn.Parameter(
            torch.empty(length, out_maps, in_maps * kernel).uniform_(-bound, bound)
        )
        self.bias = nn.Parameter(torch.empty(out_maps, length).uniform_(-bound, bound))

    def forward(self, x: Tensor) -> Tensor:
        if x.shape[-1] != self.length:
            raise ShapeError(f"LocallyConnected1d expects length {self.length}, got {x.shape[-1]}")
        pad = self.kernel // 2
        # (B, C, L, k) -> (L, B, C*k): every position its own small dense layer.
        patches = nn.functional.pad(x, (pad, pad)).unfold(-1, self.kernel, 1)
        patches = patches.permute(2, 0, 1, 3).reshape(self.length, x.shape[0], -1)
        out = torch.bmm(patches, self.weight.transpose(1, 2))  # (L, B, out)
        return out.permute(1, 2, 0) + self.bias


def _check_in_shape(in_shape: Sequence[int], name: str) -> int:
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != 2 or shape[0] != 1 or shape[1] < 1:
        raise ShapeError(f"{name} takes spectra of shape (1, n_bins), got in_shape {shape}")
    return shape[1]


def _out_length(length: int, layer: ResidualLayer1d) -> int:
    for s in layer.strides:
        length = (length + 2 * (layer.kernel // 2) - layer.kernel) // s + 1
    return length


class _SpectrumNet(nn.Module):
    """Shared shape check and receptive field of the two networks."""

    layers: nn.Sequential
    n_bins: int

    def _check(self, x: Tensor) -> None:
        if x.dim() != 3 or x.shape[1] != 1 or x.shape[2] != self.n_bins:
            raise ShapeError(
                f"{type(self).__name__} expects (batch, 1, {self.n_bins}), got {tuple(x.shape)}"
            )

    def conv_specs(self) -> list[ConvSpec]:
        """The convolutions of the main path, input to output."""
        return [spec for layer in self.layers for spec in layer.conv_specs()]

    def receptive_field(self) -> int:
        """Input bins that one position after the residual layers depends on."""
        return receptive_field(self.conv_specs())[0]


class IsotopeNet(_SpectrumNet):
    r"""IsotopeNet (thesis table 7.2): residual layers, a locally connected layer, a dense layer.

    Residual layers of depth 2 and kernel 3 with strides 1/5/1/3 and 8/8/8/1 maps, ReLU, a
    locally connected layer of kernel 3 (unshared weights), dropout and a dense layer to the
    class logits. Conventions: module notes.

    Args:
        in_shape: ``(1, n_bins)``.
        num_classes: number of classes.
        dropout: dropout probability before the dense layer (table A.2: 30%).
        stride_position: which convolution of a residual layer carries its stride.
        maps: feature maps of the first three residual layers (table 7.2: 8); the last one
            keeps its single map, so the locally connected and dense layers do not change.

    References:
        Behrmann (thesis), section 7.3.2 and tables 7.2, A.2.

    Example:
        >>> net = IsotopeNet((1, 300), 2)
        >>> net(torch.zeros(4, 1, 300)).shape, net.receptive_field(), count_parameters(net)
        (torch.Size([4, 2]), 49, 1380)
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int = 2,
        *,
        dropout: float = 0.3,
        stride_position: StridePosition = "second",
        maps: int = 8,
    ) -> None:
        super().__init__()
        self.n_bins = _check_in_shape(in_shape, "IsotopeNet")
        if num_classes < 2 or not 0.0 <= dropout < 1.0 or maps < 1:
            raise ConfigError(
                "need num_classes >= 2, dropout in [0, 1) and maps >= 1, got "
                f"{num_classes}, {dropout}, {maps}"
            )
        layers, width, length = [], 1, self.n_bins
        for i, (stride, out_maps) in enumerate(ISOTOPENET_LAYERS):
            out = maps if i < len(ISOTOPENET_LAYERS) - 1 else out_maps
            layer = ResidualLayer1d(width, out, 3, stride, stride_position)
            layers.append(layer)
            width, length = out, _out_length(length, layer)
        self.layers = nn.Sequential(*layers)
        self.feature_length = length
        self.local = LocallyConnected1d(length, width, 1, 3)
        self.dropout = nn.Dropout(dropout)
        self.dense = nn.Linear(length, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        h = self.local(torch.relu(self.layers(x)))
        return self.dense(self.dropout(h.flatten(1)))


class ResidualNet1D(_SpectrumNet):
    r"""ResidualNet (thesis table A.1): twelve residual layers of kernel 5, global pooling, dense.

    Strides and maps: :data:`RESIDUALNET_LAYERS`; after the last layer batch norm and ReLU
    (closing the pre-activation stack), global average pooling and a dense layer to the logits.
    The thesis uses no dropout here (table A.2).

    Args:
        in_shape: ``(1, n_bins)``.
        num_classes: number of classes.
        stride_position: which convolution of a residual layer carries its stride.
        width: factor on every layer's number of maps (1 is table A.1; smaller for tests).

    References:
        Behrmann (thesis), section 7.4.2 and tables A.1, A.2.

    Example:
        >>> net = ResidualNet1D((1, 500), 2)
        >>> net(torch.zeros(2, 1, 500)).shape, count_parameters(net)
        (torch.Size([2, 2]), 1626036)
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        num_classes: int = 2,
        *,
        stride_position: StridePosition = "second",
        width: float = 1.0,
    ) -> None:
        super().__init__()
        self.n_bins = _check_in_shape(in_shape, "ResidualNet1D")
        if num_classes < 2 or width <= 0:
            raise ConfigError(f"need num_classes >= 2 and width > 0, got {num_classes}, {width}")
        layers, maps = [], 1
        for stride, out_maps in RESIDUALNET_LAYERS:
            out = max(1, round(out_maps * width))
            layers.append(ResidualLayer1d(maps, out, 5, stride, stride_position))
            maps = out
        self.layers = nn.Sequential(*layers)
        self.bn = nn.BatchNorm1d(maps)
        self.dense = nn.Linear(maps, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        self._check(x)
        h = torch.relu(self.bn(self.layers(x)))
        return self.dense(h.mean(dim=2))
