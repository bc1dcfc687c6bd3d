r"""shiftMNIST: MNIST with a planted, perfectly predictive feature that an adversarial
distribution shift removes or randomises.

Jacobsen et al. (2019) build shiftMNIST to test Theorem 6: a classifier trained on
:math:`\mathcal{D}_{Train}` may become excessively invariant to the digit, because a simpler
feature already predicts the label; under :math:`\mathcal{D}_{Adv}` that feature carries no
information about the label, and only what the classifier learned about the digit is left.

**Binary shiftMNIST** (paper, section 4 (a) and figure 8a).

- :math:`\mathcal{D}_{Train}`: "vanilla MNIST augmented by coding the category for each digit
  into a single binary pixel scheme. The location of the binary pixel reveals the category of
  each image unambiguously": one pixel on the left border, at a row that depends on the class,
  is set to 1.
- :math:`\mathcal{D}_{Adv}`: "the binary code is not present": the vanilla MNIST image.

The paper leaves the exact pixel positions open (figure 8a circles pixels on the left border).
Here class :math:`k` of :math:`C` sets column 0, row :math:`r_0 + 2k` with
:math:`r_0 = \lfloor (H - 2C + 1) / 2 \rfloor` (rows 4, 6, ..., 22 for MNIST): every other row,
so that neighbouring codes never touch, centred vertically. The code is written one-hot: the
class's pixel is set to 1 and the other nine code pixels to 0. MNIST digits are centred in a
20x20 box, so column 0 is blank anyway in all but 14 of the 60 000 training images (and 2 of the
10 000 test images); clearing the other code pixels keeps the code unambiguous for those too.

**Textured shiftMNIST** (paper, section 4 (b) and figure 8b).

- :math:`\mathcal{D}_{Train}`: "the same type of texture is underlayed each digit of the same
  category, while texture types across categories differ": image :math:`i` of class
  :math:`y_i` gets a random patch of texture type :math:`y_i`
  (:meth:`preimage.data.textures.TextureBank.sample`).
- :math:`\mathcal{D}_{Adv}`: "the relationship is broken and texture backgrounds are paired
  with digits randomly": image :math:`i` gets a patch of texture type :math:`t_i` drawn
  uniformly from all :math:`C` types, independently of :math:`y_i` (its own type included, so
  that the background carries no information about the label at all, :math:`I(y; t) = 0`;
  excluding the own type would leave "not class :math:`t_i`" as information).

The paper does not say how digit and texture are combined. Here the digit is composited over the
background with its own intensity as opacity, and the background is dimmed so that the digit
stays the brightest structure:

.. math::

    x = d + (1 - d)\, c\, t,

with digit :math:`d \in [0, 1]`, texture patch :math:`t \in [0, 1]` and contrast :math:`c`
(default :data:`DEFAULT_CONTRAST`). Stroke pixels (:math:`d = 1`) stay 1, and :math:`x` stays
in :math:`[0, 1]`.

Splits: ``"train"`` builds :math:`\mathcal{D}_{Train}` from the given images (MNIST's training
set in :func:`load_shiftmnist`); ``"test"`` builds :math:`\mathcal{D}_{Train}` again, a held-out
set from the same distribution (MNIST's test set); ``"adv"`` builds :math:`\mathcal{D}_{Adv}`
(MNIST's test set). Random draws use a private NumPy stream seeded by ``(seed, split)``; the
binary variant draws nothing. The paper's MNIST recipe augments with random shifts of 3 pixels
(appendix D.2); applied to binary shiftMNIST those would move the code pixel onto the rows of
other classes or off the image, so train on these images without shift augmentation.

References:
    Jacobsen, Behrmann, Zemel, Bethge (2019), Excessive Invariance Causes Adversarial
    Vulnerability, section 3 (Theorem 6, adversarial distribution shift), section 4
    ("shiftMNIST: Benchmarking adversarial distribution shift") and figure 8.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch
from torch import Tensor

from preimage.data.mnist import load_mnist
from preimage.data.textures import TextureBank, load_textures
from preimage.errors import ConfigError, DataError, ShapeError

if TYPE_CHECKING:
    # Imported lazily at run time, so that the dataset registry can import this module.
    from preimage.data.registry import DatasetSplit

__all__ = [
    "DEFAULT_CONTRAST",
    "SHIFTMNIST_SPLITS",
    "SHIFTMNIST_VARIANTS",
    "binary_code_rows",
    "composite_texture",
    "load_shiftmnist",
    "make_shiftmnist",
]

Variant = Literal["binary", "texture"]
ShiftSplit = Literal["train", "test", "adv"]

SHIFTMNIST_VARIANTS: tuple[str, ...] = ("binary", "texture")
"""Names of the two shiftMNIST variants."""

SHIFTMNIST_SPLITS: Mapping[str, str] = MappingProxyType(
    {"train": "train", "test": "test", "adv": "test"}
)
"""shiftMNIST split -> the MNIST split it is built from."""

DEFAULT_CONTRAST = 0.5
"""Brightest value of the texture background under a blank pixel (:math:`c` above)."""

_STREAMS: Mapping[str, int] = MappingProxyType({"train": 0, "test": 1, "adv": 2})


def binary_code_rows(height: int, num_classes: int = 10) -> tuple[int, ...]:
    r"""Rows (in column 0) of the binary code pixel of each class.

    Args:
        height: Image height :math:`H`.
        num_classes: Number of classes :math:`C`; needs :math:`H \ge 2C - 1`.

    Returns:
        :math:`(r_0, r_0 + 2, \dots, r_0 + 2(C - 1))` with
        :math:`r_0 = \lfloor (H - 2C + 1) / 2 \rfloor`.

    Raises:
        ShapeError: If the image is too short for ``num_classes`` separated codes.

    Example:
        >>> binary_code_rows(28)
        (4, 6, 8, 10, 12, 14, 16, 18, 20, 22)
    """
    if num_classes < 1:
        raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
    span = 2 * num_classes - 1
    if height < span:
        raise ShapeError(
            f"binary shiftMNIST needs images of height >= {span} for {num_classes} classes, "
            f"got {height}"
        )
    start = (height - span) // 2
    return tuple(start + 2 * k for k in range(num_classes))


def _check_variant_split(variant: str, split: str) -> None:
    if variant not in SHIFTMNIST_VARIANTS:
        raise ConfigError(
            f"unknown shiftMNIST variant {variant!r}; choose one of "
            f"{', '.join(SHIFTMNIST_VARIANTS)}"
        )
    if split not in SHIFTMNIST_SPLITS:
        raise ConfigError(f"unknown shiftMNIST split {split!r}; choose one of train, test, adv")


def composite_texture(
    digits: Tensor, textures: Tensor, contrast: float = DEFAULT_CONTRAST
) -> Tensor:
    r"""Composite digits over texture backgrounds: :math:`x = d + (1 - d)\, c\, t`.

    Args:
        digits: Digit images :math:`d` in :math:`[0, 1]`.
        textures: Backgrounds :math:`t` in :math:`[0, 1]`, broadcastable to ``digits``.
        contrast: :math:`c \in [0, 1]`.

    Returns:
        Images in :math:`[0, 1]` of the shape, dtype and device of ``digits``.

    Example:
        >>> import torch
        >>> composite_texture(torch.tensor([0.0, 0.5, 1.0]), torch.ones(3), 0.5).tolist()
        [0.5, 0.75, 1.0]
    """
    if not 0.0 <= contrast <= 1.0:
        raise ConfigError(f"contrast must lie in [0, 1], got {contrast}")
    t = textures.to(device=digits.device, dtype=digits.dtype)
    return digits + (1.0 - digits) * (contrast * t)


def _check_inputs(images: Tensor, labels: Tensor, num_classes: int) -> None:
    if images.ndim != 4 or images.shape[1] != 1:
        raise ShapeError(
            f"shiftMNIST takes grey-scale images of shape (N, 1, H, W), got {tuple(images.shape)}"
        )
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise ShapeError(
            f"labels of shape {tuple(labels.shape)} do not match {images.shape[0]} images"
        )
    if labels.dtype.is_floating_point or labels.dtype == torch.bool:
        raise DataError(f"labels must be integers, got {labels.dtype}")
    if not images.dtype.is_floating_point:
        raise DataError(f"images must be floating point in [0, 1], got {images.dtype}")
    if images.numel() and not 0.0 <= float(images.min()) <= float(images.max()) <= 1.0:
        raise DataError("images must lie in [0, 1] (MNIST pixel / 255)")
    if labels.numel() and not 0 <= int(labels.min()) <= int(labels.max()) < num_classes:
        raise DataError(f"labels must lie in [0, {num_classes}), got values outside")


def make_shiftmnist(
    images: Tensor,
    labels: Tensor,
    *,
    variant: Variant = "binary",
    split: ShiftSplit = "train",
    seed: int = 0,
    textures: TextureBank | None = None,
    num_classes: int = 10,
    contrast: float = DEFAULT_CONTRAST,
) -> tuple[Tensor, Tensor]:
    r"""Turn MNIST-like images into shiftMNIST :math:`\mathcal{D}_{Train}` or
    :math:`\mathcal{D}_{Adv}` (see the module docstring for both definitions).

    Args:
        images: Images of shape ``(N, 1, H, W)`` with values in :math:`[0, 1]`; not modified.
        labels: Integer labels of shape ``(N,)`` in :math:`[0, C)`.
        variant: ``"binary"`` or ``"texture"``.
        split: ``"train"`` or ``"test"`` (:math:`\mathcal{D}_{Train}`), ``"adv"``
            (:math:`\mathcal{D}_{Adv}`).
        seed: Seed of the texture draws (patches; the texture types under ``"adv"``).
        textures: Texture bank of the texture variant, with at least ``num_classes`` types;
            ``None`` loads :func:`preimage.data.textures.load_textures`'s default bank.
        num_classes: Number of classes :math:`C`.
        contrast: Texture contrast :math:`c` of the texture variant.

    Returns:
        ``(images, labels)``: new images of the input's dtype and device, and a copy of the
        labels (shiftMNIST never changes a label).

    Raises:
        ConfigError: For an unknown variant or split, a negative seed, or a bank with too few
            texture types.
        ShapeError: For inputs of the wrong shape.
        DataError: For values outside :math:`[0, 1]` or labels outside :math:`[0, C)`.

    Example:
        >>> import torch
        >>> x, y = torch.zeros(2, 1, 28, 28), torch.tensor([0, 3])
        >>> train, _ = make_shiftmnist(x, y, variant="binary", split="train")
        >>> train[:, 0, :, 0].nonzero().tolist()
        [[0, 4], [1, 10]]
        >>> adv, _ = make_shiftmnist(x, y, variant="binary", split="adv")
        >>> bool(torch.equal(adv, x))
        True
    """
    _check_variant_split(variant, split)
    if not 0 <= seed < 2**63:
        raise ConfigError(f"seed must lie in [0, 2**63), got {seed}")
    _check_inputs(images, labels, num_classes)
    labels_out = labels.detach().to(torch.int64).clone()
    if variant == "binary":
        return _binary(images, labels_out, split, num_classes), labels_out
    bank = load_textures(num_classes=num_classes) if textures is None else textures
    if bank.num_classes < num_classes:
        raise ConfigError(
            f"the texture bank has {bank.num_classes} texture types, {num_classes} are needed"
        )
    rng = np.random.default_rng([seed, _STREAMS[split]])
    n, height, width = images.shape[0], images.shape[2], images.shape[3]
    if split == "adv":
        types = torch.from_numpy(rng.integers(0, num_classes, size=n, dtype=np.int64))
    else:
        types = labels_out.cpu()
    background = bank.sample(types, (height, width), rng)
    return composite_texture(images.detach(), background, contrast), labels_out


def _binary(images: Tensor, labels: Tensor, split: str, num_classes: int) -> Tensor:
    out = images.detach().clone()
    if split == "adv":
        return out
    rows = torch.tensor(binary_code_rows(images.shape[2], num_classes), device=images.device)
    index = torch.arange(images.shape[0], device=images.device)
    out[:, 0, rows, 0] = 0.0
    out[index, 0, rows[labels.to(images.device)], 0] = 1.0
    return out


def load_shiftmnist(
    variant: Variant,
    split: ShiftSplit,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    texture_dir: str | os.PathLike[str] | None = None,
    textures: TextureBank | None = None,
    download: bool = False,
) -> DatasetSplit:
    r"""Load one split of shiftMNIST built from the official MNIST files.

    ``"train"`` is built from MNIST's 60 000 training images, ``"test"`` and ``"adv"`` from its
    10 000 test images (:data:`SHIFTMNIST_SPLITS`). The class-to-texture mapping depends only on
    the bank (and, for a DTD folder, on ``seed``), so all splits of one seed share it.

    Args:
        variant: ``"binary"`` or ``"texture"``.
        split: ``"train"``, ``"test"`` or ``"adv"``.
        data_dir: Where MNIST lives (see :func:`preimage.data.load_mnist`).
        seed: Seed of the texture draws and of the DTD category draw.
        texture_dir: A Describable Textures Dataset folder for the texture variant; ``None``
            uses scikit-image's bundled photographs.
        textures: A ready texture bank; overrides ``texture_dir``.
        download: Download missing MNIST files.

    Returns:
        A :class:`preimage.data.DatasetSplit` named ``"shiftmnist-<variant>"``.

    Raises:
        ConfigError: For an unknown variant or split.
        DataError: For missing MNIST files or textures.

    Example:
        >>> load_shiftmnist("binary", "validation")
        Traceback (most recent call last):
        ...
        preimage.errors.ConfigError: unknown shiftMNIST split 'validation'; choose one of ...
    """
    _check_variant_split(variant, split)
    from preimage.data.registry import DatasetSplit

    mnist_split: Literal["train", "test"] = "train" if split == "train" else "test"
    x, y = load_mnist(data_dir, split=mnist_split, download=download)
    bank = None
    if variant == "texture":
        bank = textures if textures is not None else load_textures(texture_dir, seed=seed)
    images, labels = make_shiftmnist(x, y, variant=variant, split=split, seed=seed, textures=bank)
    return DatasetSplit(f"shiftmnist-{variant}", images, labels, 10, (1, 28, 28))
