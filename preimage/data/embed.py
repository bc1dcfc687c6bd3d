r"""Embed small images into a larger canvas with extra empty channels, and crop them back.

:func:`embed_image` maps a batch :math:`x \in [0, 1]^{N \times C \times H \times W}` to
:math:`(N, C', S, S)`: the image is zero-padded, centred, to :math:`S \times S` and followed by
:math:`C' - C` all-zero channels. This is how the authors' public fi-RevNet code feeds MNIST
(1x28x28) to a network built for 3x32x32 inputs ("two empty channels"): with three squeezes the
top map is then 48x4x4, wide enough for a read-out of 10 whole channels at one position
(:class:`~preimage.nn.CenterReadout`). :func:`unembed_image` is its exact left inverse (crop,
keep the first :math:`C` channels).

When :math:`S - H` is odd the extra row goes to the bottom (and the extra column to the right):
the top and left margins are :math:`\lfloor (S - H)/2 \rfloor` and
:math:`\lfloor (S - W)/2 \rfloor`. Values are not rescaled: the authors' code also maps inputs to
:math:`[-1, 1]`, a separate choice left to the caller.

References:
    Jacobsen et al. (2019), *Excessive Invariance Causes Adversarial Vulnerability*, appendix D.2
    (MNIST experiments; the paper does not state the input size); authors' public code,
    jhjacobsen/fully-invertible-revnet (MNIST padded to 32x32 with two empty channels).
"""

from __future__ import annotations

import torch.nn.functional as F
from torch import Tensor

from preimage.errors import ShapeError

__all__ = ["embed_image", "unembed_image"]


def _margins(inner: int, outer: int) -> tuple[int, int]:
    before = (outer - inner) // 2
    return before, outer - inner - before


def _check_batch(x: Tensor, who: str) -> None:
    if not isinstance(x, Tensor) or x.dim() != 4:
        shape = tuple(x.shape) if isinstance(x, Tensor) else type(x).__name__
        raise ShapeError(f"{who} takes an (N, C, H, W) batch of images, got {shape}")


def embed_image(x: Tensor, size: int = 32, channels: int = 3) -> Tensor:
    r"""``(N, C, H, W)`` images as ``(N, channels, size, size)``: centred zero pad, empty channels.

    Args:
        x: batch of images (any float dtype, any device; values are not changed).
        size: height and width of the canvas; at least ``H`` and ``W``.
        channels: channels of the result; at least ``C``. Channels ``C, ..., channels - 1``
            are all zero.

    Returns:
        A new tensor of the dtype and device of ``x``.

    Raises:
        ShapeError: ``x`` is not a 4-D batch, ``size`` is smaller than its height or width, or
            ``channels`` is smaller than its channel count.

    References:
        Authors' public code, jhjacobsen/fully-invertible-revnet (MNIST as 3x32x32).

    Example:
        >>> import torch
        >>> x = torch.rand(2, 1, 28, 28)
        >>> e = embed_image(x)
        >>> e.shape, bool(torch.equal(e[:, 0, 2:30, 2:30], x[:, 0])), float(e[:, 1:].abs().sum())
        (torch.Size([2, 3, 32, 32]), True, 0.0)
        >>> bool(torch.equal(unembed_image(e, (1, 28, 28)), x))
        True
    """
    _check_batch(x, "embed_image")
    _, c, h, w = x.shape
    if size < max(h, w):
        raise ShapeError(f"embed_image: size {size} is smaller than the {h}x{w} images")
    if channels < c:
        raise ShapeError(f"embed_image: channels {channels} is fewer than the images' {c}")
    top, bottom = _margins(h, size)
    left, right = _margins(w, size)
    # F.pad lists the last dimension first: (W: left, right), (H: top, bottom), (C: 0, extra).
    return F.pad(x, (left, right, top, bottom, 0, channels - c))


def unembed_image(x: Tensor, shape: tuple[int, int, int]) -> Tensor:
    r"""The exact left inverse of :func:`embed_image`: crop to ``shape = (C, H, W)``.

    ``unembed_image(embed_image(x, size, channels), x.shape[1:]) == x`` for every ``size`` and
    ``channels`` that :func:`embed_image` accepts; the padding and the extra channels are
    dropped (for a canvas that is no embedding this is a crop, not an inverse).

    Args:
        x: ``(N, C', S_h, S_w)`` canvases.
        shape: ``(C, H, W)`` of the original images.

    Returns:
        A view of ``x`` (no copy).

    Raises:
        ShapeError: ``x`` is not a 4-D batch, or ``shape`` is not ``(C, H, W)`` or larger than the
            canvas.

    Example:
        >>> import torch
        >>> x = torch.rand(3, 2, 5, 6)
        >>> bool(torch.equal(unembed_image(embed_image(x, 9, 4), (2, 5, 6)), x))
        True
    """
    _check_batch(x, "unembed_image")
    if len(shape) != 3:
        raise ShapeError(f"unembed_image takes shape (C, H, W), got {tuple(shape)}")
    c, h, w = (int(s) for s in shape)
    _, c_out, h_out, w_out = x.shape
    if c > c_out or h > h_out or w > w_out or min(c, h, w) < 1:
        raise ShapeError(
            f"unembed_image: cannot crop {c}x{h}x{w} images out of {c_out}x{h_out}x{w_out}"
        )
    top, left = _margins(h, h_out)[0], _margins(w, w_out)[0]
    return x[:, :c, top : top + h, left : left + w]
