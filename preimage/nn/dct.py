r"""Orthonormal 2-D DCT-II per feature map, and the low-pass read-out built on it.

The DCT-II matrix :math:`D_{k n} = \alpha_k \cos\bigl(\pi (2n + 1) k / 2N\bigr)`, with
:math:`\alpha_0 = \sqrt{1/N}` and :math:`\alpha_k = \sqrt{2/N}` otherwise, is orthogonal, so
:math:`Y = D_H X D_W^\top` is a rotation of every feature map: log-det 0, inverse
:math:`X = D_H^\top Y D_W`. Its :math:`(0, 0)` coefficient is :math:`\sqrt{HW}` times the mean,
an invertible global average pooling.

References:
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, appendix D.3
    ("an orthogonal 2D DCT type-II ... read out the classes in the low-pass components").
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

from preimage.errors import ShapeError
from preimage.nn.base import InvertibleModule, Shape, check_shape, flat_dim

__all__ = ["DCT2d", "DCTReadout", "dct_matrix"]


def dct_matrix(n: int, *, dtype: torch.dtype = torch.float64, device=None) -> Tensor:
    r"""The orthonormal ``(n, n)`` DCT-II matrix.

    Example:
        >>> import torch
        >>> d = dct_matrix(5)
        >>> bool(torch.allclose(d @ d.T, torch.eye(5, dtype=torch.float64)))
        True
    """
    k = torch.arange(n, dtype=torch.float64).unsqueeze(1)
    i = torch.arange(n, dtype=torch.float64).unsqueeze(0)
    m = torch.cos(math.pi * (2 * i + 1) * k / (2 * n)) * math.sqrt(2.0 / n)
    m[0] /= math.sqrt(2.0)
    return m.to(dtype=dtype, device=device)


class DCT2d(InvertibleModule):
    r"""Orthonormal 2-D DCT-II of each ``(H, W)`` feature map of a ``(B, C, H, W)`` batch.

    Example:
        >>> import torch
        >>> x = torch.randn(2, 3, 4, 5, dtype=torch.float64)
        >>> y, logdet = DCT2d()(x)
        >>> bool(torch.allclose(y[:, :, 0, 0], x.mean((2, 3)) * 20 ** 0.5))
        True
        >>> bool(torch.allclose(DCT2d().inverse(y), x)), logdet.tolist()
        (True, [0.0, 0.0])
    """

    exact_inverse = True

    def _matrices(self, x: Tensor) -> tuple[Tensor, Tensor]:
        h, w = x.shape[-2:]
        return (
            dct_matrix(h, dtype=x.dtype, device=x.device),
            dct_matrix(w, dtype=x.dtype, device=x.device),
        )

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        check_shape(x, (4,), "DCT2d")
        dh, dw = self._matrices(x)
        return dh @ x @ dw.T, self._zero_logdet(x)

    def inverse(self, y: Tensor) -> Tensor:
        check_shape(y, (4,), "DCT2d.inverse")
        dh, dw = self._matrices(y)
        return dh.T @ y @ dw


class DCTReadout(InvertibleModule):
    r"""DCT-II of every feature map, flattened with the lowest frequencies first.

    Coefficients are ordered by total frequency :math:`u + v`, then :math:`u`, then channel, so
    the first ``C`` outputs are the DC (average-pooling) components of the first ``C`` channels
    when there are at least ``C`` channels, and the next-lowest frequencies otherwise. A fixed
    permutation after an orthogonal map: bijective with log-det 0.

    Args:
        in_shape: ``(C, H, W)`` of one input sample.

    Example:
        >>> import torch
        >>> r = DCTReadout((16, 7, 7))
        >>> x = torch.randn(2, 16, 7, 7, dtype=torch.float64)
        >>> z, _ = r(x)
        >>> bool(torch.allclose(z[:, :16], 7 * x.mean((2, 3))))
        True
    """

    exact_inverse = True

    def __init__(self, in_shape: Shape) -> None:
        super().__init__()
        if len(in_shape) != 3:
            raise ShapeError(f"DCTReadout takes (C, H, W) samples, got {tuple(in_shape)}")
        c, h, w = (int(s) for s in in_shape)
        self.in_shape = (c, h, w)
        self.dct = DCT2d()
        ch, u, v = torch.meshgrid(torch.arange(c), torch.arange(h), torch.arange(w), indexing="ij")
        flat_index = (ch * h * w + u * w + v).flatten()
        key = ((u + v) * h * c + u * c + ch).flatten()
        order = flat_index[torch.argsort(key)]
        self.register_buffer("order", order, persistent=False)
        self.register_buffer("inverse_order", torch.argsort(order), persistent=False)

    def output_shape(self, in_shape: Shape) -> Shape:
        return (flat_dim(in_shape),)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        if tuple(x.shape[1:]) != self.in_shape:
            raise ShapeError(f"DCTReadout{self.in_shape} got samples of shape {tuple(x.shape[1:])}")
        y, logdet = self.dct(x)
        return y.reshape(x.shape[0], -1)[:, self.order], logdet

    def inverse(self, z: Tensor) -> Tensor:
        y = z[:, self.inverse_order].reshape(z.shape[0], *self.in_shape)
        return self.dct.inverse(y)
