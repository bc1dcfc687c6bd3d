r"""Shape-changing invertible maps: squeeze, multi-scale split, injective padding, flatten.

:class:`CenterReadout` is a flatten whose first entries are whole channels at the centre
position of the map (the read-out of the authors' public fi-RevNet code).

All of them only move or (for :class:`InjectivePad`) append entries, so their log-determinant
is zero.

References:
    Jacobsen, Smeulders, Oyallon (2018), *i-RevNet*, section 3.1 (invertible down-sampling and
    injective padding).
    Dinh et al. (2017), *Real NVP*, section 3.6 (squeeze, multi-scale factor-out).
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, figure 3
    and section 2.1 ("other choices [of z_s] work as well"); authors' public code,
    jhjacobsen/fully-invertible-revnet (logits at the centre of the top map).
"""

from __future__ import annotations

import torch
from torch import Tensor

from preimage.errors import ShapeError
from preimage.nn.base import InvertibleModule, Shape, check_shape, flat_dim
from preimage.nn.memory_saving import Grads

__all__ = ["CenterReadout", "Flatten", "InjectivePad", "Split", "Squeeze"]


class Squeeze(InvertibleModule):
    r"""Space-to-depth: ``(C, H, W) -> (f^2 C, H/f, W/f)``; every ``f x f`` patch becomes channels.

    Output channel ``c f^2 + i f + j`` holds pixel ``(i, j)`` of each patch of input channel ``c``
    (the i-RevNet / Glow ordering).

    Args:
        factor: patch size ``f``; height and width must be divisible by it.

    Example:
        >>> import torch
        >>> x = torch.arange(16.0).view(1, 1, 4, 4)
        >>> y, _ = Squeeze()(x)
        >>> y.shape, y[0, :, 0, 0].tolist()
        (torch.Size([1, 4, 2, 2]), [0.0, 1.0, 4.0, 5.0])
    """

    exact_inverse = True

    def __init__(self, factor: int = 2) -> None:
        super().__init__()
        if factor < 1:
            raise ShapeError(f"squeeze factor must be >= 1, got {factor}")
        self.factor = int(factor)

    def output_shape(self, in_shape: Shape) -> Shape:
        c, h, w = in_shape
        f = self.factor
        if h % f or w % f:
            raise ShapeError(f"Squeeze({f}) needs height and width divisible by {f}, got {h}x{w}")
        return (c * f * f, h // f, w // f)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_shape(x, (4,), "Squeeze")
        b, c, h, w = x.shape
        c2, h2, w2 = self.output_shape((c, h, w))
        f = self.factor
        y = x.reshape(b, c, h2, f, w2, f).permute(0, 1, 3, 5, 2, 4).reshape(b, c2, h2, w2)
        return y, self._zero_logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        check_shape(y, (4,), "Squeeze.inverse")
        b, c2, h2, w2 = y.shape
        f = self.factor
        if c2 % (f * f):
            raise ShapeError(f"Squeeze({f}).inverse needs channels divisible by {f * f}, got {c2}")
        c = c2 // (f * f)
        x = y.reshape(b, c, f, f, h2, w2).permute(0, 1, 4, 2, 5, 3)
        return x.reshape(b, c, h2 * f, w2 * f)


class Flatten(InvertibleModule):
    """Reshape each sample of shape ``in_shape`` to a vector (and back).

    Args:
        in_shape: shape of one input sample, needed by the inverse.

    Example:
        >>> import torch
        >>> f = Flatten((2, 3, 3))
        >>> y, _ = f(torch.randn(4, 2, 3, 3))
        >>> y.shape, f.inverse(y).shape
        (torch.Size([4, 18]), torch.Size([4, 2, 3, 3]))
    """

    exact_inverse = True

    def __init__(self, in_shape: Shape) -> None:
        super().__init__()
        self.in_shape = tuple(int(s) for s in in_shape)

    def output_shape(self, in_shape: Shape) -> Shape:
        return (flat_dim(in_shape),)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.in_shape:
            who = type(self).__name__
            raise ShapeError(f"{who}{self.in_shape} got samples of shape {tuple(x.shape[1:])}")
        return x.reshape(x.shape[0], -1), self._zero_logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        return y.reshape(y.shape[0], *self.in_shape)


class CenterReadout(Flatten):
    r"""Flatten with ``k`` whole channels at the centre position first, the rest in flat order.

    For a ``(C, H, W)`` map the first ``k`` outputs are :math:`x_{c,\,\lfloor H/2 \rfloor,\,
    \lfloor W/2 \rfloor}` for :math:`c = 0, \dots, k - 1`; the remaining :math:`CHW - k` entries
    follow in the order of :class:`Flatten`. As a read-out of a fi-RevNet this makes the logits
    ``k`` full channels at one position (each computed by its own filters over the whole
    receptive field), instead of one channel at ``k`` positions whose neighbours, computed by the
    same filters, would sit in the nuisance. A fixed permutation: log-det 0, exact inverse.

    Args:
        in_shape: ``(C, H, W)`` of one input sample.
        k: number of centre entries put first; needs ``1 <= k <= C``.

    Raises:
        ShapeError: ``in_shape`` is not ``(C, H, W)`` or ``k`` is not in ``[1, C]``.

    References:
        Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*,
        section 2.1; authors' public code, jhjacobsen/fully-invertible-revnet (10 logits at the
        centre of the 48x4x4 top map).

    Example:
        >>> import torch
        >>> r = CenterReadout((3, 4, 5), 2)
        >>> x = torch.randn(2, 3, 4, 5)
        >>> z, logdet = r(x)
        >>> bool(torch.equal(z[:, :2], x[:, :2, 2, 2])), z.shape, logdet.tolist()
        (True, torch.Size([2, 60]), [0.0, 0.0])
        >>> bool(torch.equal(r.inverse(z), x))
        True
    """

    exact_inverse = True

    def __init__(self, in_shape: Shape, k: int) -> None:
        if len(in_shape) != 3:
            raise ShapeError(f"CenterReadout takes (C, H, W) samples, got {tuple(in_shape)}")
        c, h, w = (int(s) for s in in_shape)
        if not 1 <= int(k) <= c:
            raise ShapeError(
                f"CenterReadout needs 1 <= k <= channels, got k={k} for a {c}x{h}x{w} map"
            )
        super().__init__((c, h, w))
        self.k = int(k)
        centre = torch.arange(self.k) * h * w + (h // 2) * w + w // 2
        rest = torch.ones(c * h * w, dtype=torch.bool)
        rest[centre] = False
        order = torch.cat((centre, torch.arange(c * h * w)[rest]))
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse_order", torch.argsort(order), persistent=False)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        y, logdet = super().forward(x)
        return y[:, self.order], logdet

    def inverse(self, y: Tensor) -> Tensor:
        check_shape(y, (2,), "CenterReadout.inverse")
        return super().inverse(y[:, self.inverse_order])


class Split(InvertibleModule):
    r"""Multi-scale factor-out: keep the first channels for ``inner``, pass the rest through.

    ``forward`` returns the flat vector ``[flatten(inner(x_keep)), flatten(x_out)]``, so the
    factored-out variables are part of the output ``z`` (the network stays bijective), while
    ``inner`` works on half of the channels.

    Args:
        in_shape: ``(C, H, W)`` of one input sample.
        inner: the invertible network applied to the kept channels.
        keep: number of kept channels (default ``C - C // 2``).

    Example:
        >>> import torch
        >>> from preimage.nn import Squeeze
        >>> s = Split((4, 4, 4), Squeeze())
        >>> x = torch.randn(2, 4, 4, 4)
        >>> z, _ = s(x)
        >>> z.shape, bool(torch.equal(s.inverse(z), x))
        (torch.Size([2, 64]), True)
    """

    def __init__(
        self, in_shape: Shape, inner: InvertibleModule, *, keep: int | None = None
    ) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ShapeError(f"Split takes (C, H, W) samples, got in_shape {tuple(in_shape)}")
        c, h, w = (int(s) for s in in_shape)
        keep = c - c // 2 if keep is None else int(keep)
        if not 0 < keep < c:
            raise ShapeError(f"Split needs 0 < keep < channels, got keep={keep} of {c}")
        self.in_shape = (c, h, w)
        self.keep = keep
        self.inner = inner
        self.inner_out = inner.output_shape((keep, h, w))
        self.n_inner = flat_dim(self.inner_out)

    def output_shape(self, in_shape: Shape) -> Shape:
        return (flat_dim(in_shape),)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_shape(x, (4,), "Split")
        x_keep, x_out = x[:, : self.keep], x[:, self.keep :]
        y, logdet = self.inner(x_keep)
        return torch.cat((y.reshape(x.shape[0], -1), x_out.reshape(x.shape[0], -1)), 1), logdet

    def inverse(self, z: Tensor) -> Tensor:
        check_shape(z, (2,), "Split.inverse")
        b = z.shape[0]
        c, h, w = self.in_shape
        y = z[:, : self.n_inner].reshape(b, *self.inner_out)
        x_out = z[:, self.n_inner :].reshape(b, c - self.keep, h, w)
        return torch.cat((self.inner.inverse(y), x_out), dim=1)

    def recompute_blocker(self) -> str | None:
        return self.inner.recompute_blocker()

    def backward_from_output(
        self, y: Tensor, grad_y: Tensor, grad_logdet: Tensor, grads: Grads
    ) -> tuple[Tensor, Tensor]:
        # Walk into ``inner`` rather than recompute it as a whole: each of its blocks is then
        # reconstructed once, not once per nesting level.
        b = y.shape[0]
        c, h, w = self.in_shape
        rest = (b, c - self.keep, h, w)
        x_keep, g_keep = self.inner.backward_from_output(
            y[:, : self.n_inner].reshape(b, *self.inner_out),
            grad_y[:, : self.n_inner].reshape(b, *self.inner_out),
            grad_logdet,
            grads,
        )
        x = torch.cat((x_keep, y[:, self.n_inner :].reshape(rest)), dim=1)
        return x, torch.cat((g_keep, grad_y[:, self.n_inner :].reshape(rest)), dim=1)


class InjectivePad(InvertibleModule):
    r"""Append ``pad_channels`` zero channels (i-RevNet's injective padding).

    This map is *injective, not bijective*: it embeds the input into a larger space. Its Jacobian
    :math:`J = [I; 0]` has :math:`\sqrt{\det J^\top J} = 1`, so the reported log-det (the log of
    the volume change on the embedded manifold) is 0. ``inverse`` drops the padded channels; for a
    ``y`` off the embedded subspace it is the orthogonal projection, not a true inverse.

    Args:
        pad_channels: number of zero channels appended along dimension 1.

    Example:
        >>> import torch
        >>> pad = InjectivePad(3)
        >>> y, _ = pad(torch.ones(1, 1, 2, 2))
        >>> y.shape, float(y[:, 1:].abs().sum())
        (torch.Size([1, 4, 2, 2]), 0.0)
    """

    exact_inverse = True

    def __init__(self, pad_channels: int) -> None:
        super().__init__()
        if pad_channels < 0:
            raise ShapeError(f"pad_channels must be >= 0, got {pad_channels}")
        self.pad_channels = int(pad_channels)

    def output_shape(self, in_shape: Shape) -> Shape:
        return (in_shape[0] + self.pad_channels, *in_shape[1:])

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_shape(x, (2, 3, 4), "InjectivePad")
        zeros = x.new_zeros(x.shape[0], self.pad_channels, *x.shape[2:])
        return torch.cat((x, zeros), dim=1), self._zero_logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        return y[:, : y.shape[1] - self.pad_channels]
