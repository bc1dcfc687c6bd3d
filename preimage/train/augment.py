r"""On-the-fly data augmentation: random translations and uniform dequantisation.

Both transforms draw their randomness from an explicit :class:`torch.Generator`, on the
generator's device, so that a run (or a resumed run) is reproducible; the result lives on the
device of the input.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), *Excessive Invariance Causes Adversarial
    Vulnerability*, appendix D.2 ("random shifts of 3 pixels"; "we also dequantize the inputs as
    is typically done in flow-based generative models").
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

from preimage.errors import ConfigError, DataError, ShapeError

__all__ = ["dequantize", "random_shift", "translate"]


def translate(x: Tensor, shifts: Tensor) -> Tensor:
    r"""Translate each image of a batch by its own integer offset, filling with zeros.

    The output is :math:`y_b[c, i, j] = x_b[c, i - \delta^{(0)}_b, j - \delta^{(1)}_b]` where
    the index is inside the image and :math:`0` elsewhere, so a positive offset moves the
    content down (rows) and right (columns).

    Args:
        x: image batch of shape ``(B, C, H, W)``.
        shifts: integer offsets of shape ``(B, 2)``, columns ``(rows, columns)``.

    Returns:
        The translated batch, same shape, dtype and device as ``x``.

    Raises:
        ShapeError: ``x`` is not 4-D or ``shifts`` is not ``(B, 2)``.

    Example:
        >>> x = torch.arange(9.0).reshape(1, 1, 3, 3)
        >>> translate(x, torch.tensor([[1, -1]]))[0, 0]
        tensor([[0., 0., 0.],
                [1., 2., 0.],
                [4., 5., 0.]])
    """
    if x.dim() != 4:
        raise ShapeError(f"translate expects a (B, C, H, W) batch, got shape {tuple(x.shape)}")
    b, _, h, w = x.shape
    if shifts.shape != (b, 2):
        raise ShapeError(f"translate expects shifts of shape ({b}, 2), got {tuple(shifts.shape)}")
    shifts = shifts.to(device=x.device, dtype=torch.long)
    largest = int(shifts.abs().max()) if b > 0 else 0
    return _translate(x, shifts, pad=min(largest, max(h, w)))


def _translate(x: Tensor, shifts: Tensor, pad: int) -> Tensor:
    # Requires |shift| <= pad or pad >= image size. Offsets beyond the image size are clamped
    # to it (the image is empty either way), which keeps the gather indices in range.
    b, c, h, w = x.shape
    dy = shifts[:, 0].clamp(-h, h)
    dx = shifts[:, 1].clamp(-w, w)
    padded = F.pad(x, (pad, pad, pad, pad))
    rows = torch.arange(h, device=x.device) + pad - dy[:, None]
    cols = torch.arange(w, device=x.device) + pad - dx[:, None]
    out = padded.gather(2, rows[:, None, :, None].expand(b, c, h, w + 2 * pad))
    return out.gather(3, cols[:, None, None, :].expand(b, c, h, w))


def random_shift(x: Tensor, max_shift: int, generator: torch.Generator) -> Tensor:
    r"""Translate every image by independent uniform integer offsets in both axes.

    Offsets :math:`\delta_b \sim \mathcal{U}\{-m, \dots, m\}^2` with :math:`m` = ``max_shift``
    are drawn on ``generator``'s device; vacated pixels are zero (the MNIST background).
    Flat batches ``(B, D)`` carry no spatial layout and are returned unchanged.

    Args:
        x: batch of shape ``(B, C, H, W)`` or ``(B, D)``.
        max_shift: largest offset in pixels, per axis; ``0`` returns ``x`` unchanged.
        generator: source of the offsets.

    Returns:
        The translated batch (``x`` itself when nothing is to be done).

    Raises:
        ConfigError: ``max_shift`` is negative.
        ShapeError: ``x`` is neither 2-D nor 4-D.

    References:
        Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability,
        appendix D.2.

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.rand(8, 1, 28, 28)
        >>> y = random_shift(x, 3, g)
        >>> y.shape, bool((y.sum() <= x.sum()))
        (torch.Size([8, 1, 28, 28]), True)
    """
    if max_shift < 0:
        raise ConfigError(f"max_shift must be >= 0, got {max_shift}")
    if x.dim() == 2:
        return x
    if x.dim() != 4:
        raise ShapeError(
            f"random_shift expects a (B, C, H, W) or (B, D) batch, got shape {tuple(x.shape)}"
        )
    if max_shift == 0:
        return x
    shifts = torch.randint(
        -max_shift,
        max_shift + 1,
        (x.shape[0], 2),
        generator=generator,
        device=generator.device,
    )
    return _translate(x, shifts.to(x.device), pad=min(max_shift, max(x.shape[2:])))


def dequantize(x: Tensor, generator: torch.Generator | None = None, levels: int = 256) -> Tensor:
    r"""Uniform dequantisation of quantised inputs in :math:`[0, 1]`.

    An input on the grid :math:`x = k / (L - 1)`, :math:`k \in \{0, \dots, L-1\}`, becomes
    :math:`\tilde x = (k + u) / L` with :math:`u \sim \mathcal{U}[0, 1)` drawn per entry, a
    sample from the uniform density on the bin :math:`[k/L, (k+1)/L)`; the density of
    :math:`\tilde x` on the unit cube lower-bounds the discrete likelihood (Theis et al., 2016).
    :math:`k = \operatorname{round}(x (L - 1))` is rounded first, so inputs that sit on the grid
    only up to floating-point error (e.g. ``k / 255`` stored in float32) land in their own bin;
    without the rounding, :math:`(x(L-1) + u)/L` could spill into the neighbouring bin. This is
    the one dequantisation of preimage: training (:class:`~preimage.train.Trainer`) and
    :meth:`~preimage.models.IResNetFlow.log_prob` use it.

    Args:
        x: floating-point tensor of any shape with entries in :math:`[0, 1]`.
        generator: source of the noise (drawn on its device, in ``x``'s dtype); ``None`` uses
            torch's global generator on ``x``'s device.
        levels: number of quantisation levels :math:`L` (256 for 8-bit images).

    Returns:
        The dequantised tensor on ``x``'s device, in :math:`[0, 1)` up to floating-point
        rounding (in float32 the top bin can round up to exactly 1).

    Raises:
        ConfigError: ``levels < 2``.
        DataError: ``x`` is not floating point.

    References:
        Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability,
        appendix D.2; Behrmann (thesis), Invertibility and Domain Knowledge, section 5.3
        (uniform dequantisation and the likelihood bound it gives).

    Example:
        >>> g = torch.Generator().manual_seed(0)
        >>> x = torch.tensor([0.0, 1.0])
        >>> y = dequantize(x, g)
        >>> bool((y[0] < 1 / 256) and (y[1] >= 255 / 256) and (y[1] < 1))
        True
    """
    if levels < 2:
        raise ConfigError(f"dequantize needs at least 2 levels, got {levels}")
    if not x.is_floating_point():
        raise DataError(f"dequantize expects floating-point inputs in [0, 1], got dtype {x.dtype}")
    device = x.device if generator is None else generator.device
    u = torch.rand(x.shape, generator=generator, device=device, dtype=x.dtype)
    # In place on the fresh noise tensor: one allocation per batch instead of three.
    return u.to(x.device).add_(torch.round(x * (levels - 1))).div_(levels)
