r"""Texture sources for textured shiftMNIST: photographs bundled with scikit-image, or the DTD.

A :class:`TextureBank` holds one *texture type* per class: one or more grey-scale source images
in :math:`[0, 1]`. :meth:`TextureBank.sample` cuts a random patch of the requested size out of a
random source image of each requested type, so two digits of one class get different patches of
the same texture type, as in the paper ("the same type of texture is underlayed each digit of the
same category").

Two ways to fill a bank:

- :func:`load_skimage_textures`: photographs that ship inside scikit-image (brick, grass, gravel,
  coins, ...). They are read straight from the installed package folder, never through
  ``skimage.data``'s fetchers, so nothing is ever downloaded. scikit-image is the optional extra
  ``preimage[textures]``.
- :func:`load_dtd_textures`: a local copy of the Describable Textures Dataset (DTD) in its
  release layout ``<root>/images/<category>/*.jpg``, one category per class.

Every image is converted to grey (ITU-R 601-2 luma, Pillow's ``"L"`` mode), resized so that its
shorter side has ``size`` pixels (keeping the aspect ratio; at the default 128 pixels a 28x28
patch spans about a fifth of the photograph, enough to show the texture's structure rather than
one flat region of it) and min-max normalised to :math:`[0, 1]`.

Deviation from the paper: Jacobsen et al. (2019) sample the patches from the DTD; since the DTD
is a 600 MB download, the default bank uses scikit-image's bundled photographs instead (only
brick, grass and gravel are textures proper; the others are crops of photographs with distinct
local statistics). Pass a DTD folder to follow the paper.

References:
    Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability, section 4
    ("shiftMNIST", textured variant) and figure 8b. Cimpoi et al. (2014), Describing Textures
    in the Wild (the DTD).
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import Tensor

from preimage.errors import ConfigError, DataError, ShapeError

if TYPE_CHECKING:
    from PIL.Image import Image as PILImage

__all__ = [
    "DEFAULT_TEXTURES",
    "DTD_EXTENSIONS",
    "SKIMAGE_TEXTURES",
    "TextureBank",
    "load_dtd_textures",
    "load_skimage_textures",
    "load_textures",
]

SKIMAGE_TEXTURES: Mapping[str, str] = MappingProxyType(
    {
        "brick": "brick.png",
        "grass": "grass.png",
        "gravel": "gravel.png",
        "coins": "coins.png",
        "page": "page.png",
        "hubble_deep_field": "hubble_deep_field.jpg",
        "immunohistochemistry": "ihc.png",
        "astronaut": "astronaut.png",
        "coffee": "coffee.png",
        "camera": "camera.png",
        "chelsea": "chelsea.png",
        "motorcycle": "motorcycle_left.png",
        "moon": "moon.png",
        "text": "text.png",
        "rocket": "rocket.jpg",
        "retina": "retina.jpg",
    }
)
"""Texture name (the ``skimage.data`` function it comes from) -> file bundled in scikit-image's
``skimage/data`` folder. Only files that ship with the package are listed, none that
``skimage.data`` would download."""

DEFAULT_TEXTURES: tuple[str, ...] = tuple(SKIMAGE_TEXTURES)[:10]
"""The ten sources of the default bank, in class order (class ``k`` gets ``DEFAULT_TEXTURES[k]``);
chosen for structure in most 28x28 patches (moon, text, rocket and retina are mostly flat)."""

DTD_EXTENSIONS: tuple[str, ...] = (".jpg", ".jpeg", ".png")
"""File extensions read from a DTD category folder."""

_INSTALL_HINT = (
    "scikit-image is not installed; run `pip install preimage[textures]` for the bundled "
    "textures, or pass texture_dir (a Describable Textures Dataset folder, images/<category>/)"
)


@dataclass(frozen=True, eq=False)
class TextureBank:
    r"""One texture type per class, as grey-scale source images to cut patches from.

    Attributes:
        names: Name of each texture type; ``names[k]`` belongs to class ``k``.
        sources: ``sources[k]`` holds the source images of type ``k``: float32 tensors of
            shape ``(H, W)`` with values in :math:`[0, 1]`.

    Example:
        >>> import numpy as np, torch
        >>> bank = TextureBank(("dark", "light"), ((torch.zeros(40, 40),), (torch.ones(40, 30),)))
        >>> patches = bank.sample(torch.tensor([1, 0, 1]), (28, 28), np.random.default_rng(0))
        >>> patches.shape, patches[:, 0, 0, 0].tolist()
        (torch.Size([3, 1, 28, 28]), [1.0, 0.0, 1.0])
    """

    names: tuple[str, ...]
    sources: tuple[tuple[Tensor, ...], ...]

    def __post_init__(self) -> None:
        if len(self.names) != len(self.sources) or not self.names:
            raise ConfigError(
                f"a texture bank needs one name per texture type, got {len(self.names)} names "
                f"for {len(self.sources)} types"
            )
        for name, images in zip(self.names, self.sources, strict=True):
            if not images:
                raise DataError(f"texture {name!r} has no source images")
            for image in images:
                if image.ndim != 2 or image.dtype != torch.float32:
                    raise ShapeError(
                        f"texture {name!r}: sources must be float32 (H, W) tensors, got "
                        f"{image.dtype} of shape {tuple(image.shape)}"
                    )
                if image.numel() and not 0.0 <= float(image.min()) <= float(image.max()) <= 1.0:
                    raise DataError(f"texture {name!r}: source values must lie in [0, 1]")

    @property
    def num_classes(self) -> int:
        """Number of texture types."""
        return len(self.names)

    def min_size(self) -> tuple[int, int]:
        """Smallest height and smallest width over all source images."""
        heights = [int(s.shape[0]) for images in self.sources for s in images]
        widths = [int(s.shape[1]) for images in self.sources for s in images]
        return min(heights), min(widths)

    def sample(
        self, classes: Tensor, shape: tuple[int, int], generator: np.random.Generator
    ) -> Tensor:
        r"""Cut one random patch of texture type ``classes[i]`` for every ``i``.

        For each patch a source image of the type and a top-left corner are drawn uniformly
        (every position where the patch fits entirely inside the source).

        Args:
            classes: int64 texture types of shape ``(N,)``, in :math:`[0, \text{num\_classes})`.
            shape: ``(height, width)`` of the patches.
            generator: The random stream (left advanced by the draws).

        Returns:
            float32 patches of shape ``(N, 1, height, width)`` in :math:`[0, 1]`, on the CPU.

        Raises:
            ShapeError: If ``classes`` is not 1-D or a source is smaller than ``shape``.
            ConfigError: If a class lies outside the bank.
        """
        if classes.ndim != 1:
            raise ShapeError(f"classes must be 1-D, got shape {tuple(classes.shape)}")
        height, width = (int(s) for s in shape)
        min_h, min_w = self.min_size()
        if height > min_h or width > min_w:
            raise ShapeError(
                f"texture patches of {height}x{width} do not fit the smallest source image "
                f"({min_h}x{min_w}); load the textures with a larger size"
            )
        cls = classes.detach().cpu().to(torch.int64).numpy()
        if cls.size and (cls.min() < 0 or cls.max() >= self.num_classes):
            raise ConfigError(
                f"texture classes must lie in [0, {self.num_classes}), got "
                f"[{cls.min()}, {cls.max()}]"
            )
        n = cls.shape[0]
        out = torch.empty(n, 1, height, width, dtype=torch.float32)
        counts = np.array([len(images) for images in self.sources])
        which = np.floor(generator.random(n) * counts[cls]).astype(np.int64)
        fractions = generator.random((n, 2))
        rows, cols = torch.arange(height), torch.arange(width)
        for k, images in enumerate(self.sources):
            for j, image in enumerate(images):
                picks = np.flatnonzero((cls == k) & (which == j))
                if picks.size == 0:
                    continue
                span_h = image.shape[0] - height + 1
                span_w = image.shape[1] - width + 1
                top = torch.from_numpy(np.floor(fractions[picks, 0] * span_h).astype(np.int64))
                left = torch.from_numpy(np.floor(fractions[picks, 1] * span_w).astype(np.int64))
                r = (top[:, None] + rows)[:, :, None]
                c = (left[:, None] + cols)[:, None, :]
                out[torch.from_numpy(picks), 0] = image[r, c]
        return out


def _to_gray_tensor(image: PILImage, size: int, label: str) -> Tensor:
    from PIL import Image

    gray = image.convert("L")
    w, h = gray.size
    scale = size / min(w, h)
    new = (max(size, round(w * scale)), max(size, round(h * scale)))
    resized = gray.resize(new, Image.Resampling.BILINEAR)
    array = np.asarray(resized, dtype=np.float32)
    lo, hi = float(array.min()), float(array.max())
    if hi <= lo:
        raise DataError(f"texture image {label} is constant; it cannot code a class")
    return torch.from_numpy((array - lo) / (hi - lo))


def _read_image(path: Path, size: int) -> Tensor:
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as image:
            return _to_gray_tensor(image, size, str(path))
    except DataError:
        raise
    except (OSError, UnidentifiedImageError, ValueError) as exc:
        raise DataError(f"cannot read texture image {path}: {exc}") from exc


def _check_size(size: int) -> None:
    if size < 1:
        raise ConfigError(f"size must be a positive number of pixels, got {size}")


def load_skimage_textures(
    names: Sequence[str] = DEFAULT_TEXTURES, *, size: int = 128
) -> TextureBank:
    r"""A bank of photographs bundled with scikit-image, one per texture type.

    The files are read from the installed ``skimage/data`` folder directly; ``skimage.data``'s
    fetchers (which may download) are never called.

    Args:
        names: Texture names from :data:`SKIMAGE_TEXTURES`, in class order, all distinct.
        size: Length in pixels of the shorter side after resizing.

    Returns:
        The bank; type ``k`` is ``names[k]`` with a single source image.

    Raises:
        DataError: If scikit-image is not installed or a bundled file is missing.
        ConfigError: For unknown or repeated names.

    Example:
        >>> bank = load_skimage_textures(("brick", "grass"), size=64)
        >>> bank.names, tuple(bank.sources[0][0].shape)
        (('brick', 'grass'), (64, 64))
    """
    _check_size(size)
    unknown = [n for n in names if n not in SKIMAGE_TEXTURES]
    if unknown:
        raise ConfigError(
            f"unknown scikit-image textures {unknown}; known: {', '.join(SKIMAGE_TEXTURES)}"
        )
    if len(set(names)) != len(names) or not names:
        raise ConfigError(f"texture names must be distinct and non-empty, got {list(names)}")
    try:
        import skimage
    except ImportError as exc:
        raise DataError(_INSTALL_HINT) from exc
    folder = Path(skimage.__file__).resolve().parent / "data"
    sources = []
    for name in names:
        path = folder / SKIMAGE_TEXTURES[name]
        if not path.is_file():
            raise DataError(
                f"scikit-image {skimage.__version__} does not bundle {path.name} (texture "
                f"{name!r}); choose other names or pass texture_dir"
            )
        sources.append((_read_image(path, size),))
    return TextureBank(tuple(names), tuple(sources))


def _dtd_images_folder(root: Path) -> Path:
    images = root / "images"
    folder = images if images.is_dir() else root
    if not folder.is_dir():
        raise DataError(f"texture folder {root} does not exist")
    return folder


def load_dtd_textures(
    root: str | os.PathLike[str],
    *,
    num_classes: int = 10,
    categories: Sequence[str] | None = None,
    seed: int = 0,
    size: int = 128,
    max_images_per_category: int | None = None,
) -> TextureBank:
    r"""A bank of Describable Textures Dataset categories, one category per texture type.

    Args:
        root: The DTD folder (holding ``images/<category>/``) or its ``images`` folder.
        num_classes: Number of categories to use when ``categories`` is not given.
        categories: Category folder names in class order; ``None`` draws ``num_classes``
            distinct categories from the sorted list with ``seed``.
        seed: Seed of the category draw (so every split of one seed shares the same
            class-to-texture mapping).
        size: Length in pixels of the shorter side of every image after resizing.
        max_images_per_category: Keep only the first images (sorted by file name) of each
            category, to bound memory; ``None`` keeps all.

    Returns:
        The bank; type ``k`` holds the images of the ``k``-th category.

    Raises:
        DataError: If the folder, a category or its images are missing or unreadable, or there
            are fewer categories than classes.
        ConfigError: For invalid counts, sizes or seeds, or repeated categories.

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> from PIL import Image
        >>> root = Path(tempfile.mkdtemp())
        >>> for k, cat in enumerate(("banded", "dotted")):
        ...     (root / "images" / cat).mkdir(parents=True)
        ...     pixels = np.random.default_rng(k).integers(0, 256, (40, 50), dtype=np.uint8)
        ...     Image.fromarray(pixels).save(root / "images" / cat / f"{cat}_0001.jpg")
        >>> load_dtd_textures(root, categories=("dotted", "banded"), size=32).names
        ('dotted', 'banded')
    """
    _check_size(size)
    if max_images_per_category is not None and max_images_per_category < 1:
        raise ConfigError(
            f"max_images_per_category must be >= 1 or None, got {max_images_per_category}"
        )
    folder = _dtd_images_folder(Path(root).expanduser())
    available = sorted(p.name for p in folder.iterdir() if p.is_dir())
    if categories is None:
        if num_classes < 1:
            raise ConfigError(f"num_classes must be >= 1, got {num_classes}")
        if not 0 <= seed < 2**63:
            raise ConfigError(f"seed must lie in [0, 2**63), got {seed}")
        if len(available) < num_classes:
            raise DataError(
                f"{folder} holds {len(available)} texture categories, {num_classes} are needed"
            )
        order = np.random.default_rng(seed).permutation(len(available))[:num_classes]
        categories = [available[i] for i in order]
    if len(set(categories)) != len(categories) or not categories:
        raise ConfigError(f"categories must be distinct and non-empty, got {list(categories)}")
    sources = []
    for category in categories:
        sub = folder / category
        if not sub.is_dir():
            raise DataError(f"texture category {category!r} not found in {folder}")
        files = sorted(p for p in sub.iterdir() if p.suffix.lower() in DTD_EXTENSIONS)
        if max_images_per_category is not None:
            files = files[:max_images_per_category]
        if not files:
            raise DataError(f"texture category folder {sub} holds no images ({DTD_EXTENSIONS})")
        sources.append(tuple(_read_image(p, size) for p in files))
    return TextureBank(tuple(categories), tuple(sources))


def load_textures(
    texture_dir: str | os.PathLike[str] | None = None,
    *,
    num_classes: int = 10,
    seed: int = 0,
    size: int = 128,
) -> TextureBank:
    r"""The texture bank of textured shiftMNIST: the DTD at ``texture_dir``, or scikit-image's.

    Without ``texture_dir`` the first ``num_classes`` of :data:`DEFAULT_TEXTURES` (then the
    rest of :data:`SKIMAGE_TEXTURES`) are used and ``seed`` is unused.

    Args:
        texture_dir: A DTD folder (see :func:`load_dtd_textures`), or ``None``.
        num_classes: Number of texture types.
        seed: Seed of the DTD category draw.
        size: Length in pixels of the shorter side of every source image.

    Returns:
        A bank of ``num_classes`` texture types.

    Raises:
        ConfigError: If more types are requested than scikit-image bundles.
        DataError: If scikit-image is missing (and no ``texture_dir``) or the folder is bad.

    Example:
        >>> load_textures(num_classes=3, size=32).names
        ('brick', 'grass', 'gravel')
    """
    if texture_dir is not None:
        return load_dtd_textures(texture_dir, num_classes=num_classes, seed=seed, size=size)
    names = [*DEFAULT_TEXTURES, *(n for n in SKIMAGE_TEXTURES if n not in DEFAULT_TEXTURES)]
    if not 1 <= num_classes <= len(names):
        raise ConfigError(
            f"scikit-image bundles {len(names)} textures, cannot code {num_classes} classes; "
            "pass texture_dir"
        )
    return load_skimage_textures(names[:num_classes], size=size)
