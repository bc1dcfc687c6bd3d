r"""Datasets by name, for the CLI and the training loop.

One function, :func:`load_dataset`, turns ``(name, split)`` into a :class:`DatasetSplit`: the
tensors plus the two facts a model builder needs (number of classes, shape of one sample). New
datasets add one loader to the table here instead of an ``if``/``elif`` chain in every caller.

References:
    Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability, section 4 and
    appendices D.1, D.2 (spheres and MNIST, the data sets of the experiments).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Literal

from torch import Tensor

from preimage.data.cifar import load_cifar10, load_cifar100
from preimage.data.digits import load_digits
from preimage.data.mnist import load_mnist
from preimage.data.spheres import sample_spheres
from preimage.errors import ConfigError, ShapeError

__all__ = ["DATASETS", "SPHERES_DEFAULT_N", "DatasetSplit", "load_dataset"]

Split = Literal["train", "test"]

SPHERES_DEFAULT_N: Mapping[str, int] = MappingProxyType({"train": 50_000, "test": 10_000})
"""Default number of sphere points per split (the paper uses 500k / 100k, see
:func:`load_dataset`)."""


@dataclass(frozen=True, eq=False)
class DatasetSplit:
    """One split of one dataset, held in memory.

    Attributes:
        name: Dataset name, one of :data:`DATASETS`.
        images: Inputs of shape ``(N, *sample_shape)`` (points for ``spheres``).
        labels: int64 class labels of shape ``(N,)``.
        num_classes: Number of classes.
        sample_shape: Shape of one input, e.g. ``(1, 28, 28)``.

    Example:
        >>> import torch
        >>> s = DatasetSplit("toy", torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), 2, (2,))
        >>> len(s)
        3
    """

    name: str
    images: Tensor
    labels: Tensor
    num_classes: int
    sample_shape: tuple[int, ...]

    def __post_init__(self) -> None:
        if tuple(self.images.shape[1:]) != tuple(self.sample_shape):
            raise ShapeError(
                f"{self.name}: images of shape {tuple(self.images.shape)} do not hold samples "
                f"of shape {tuple(self.sample_shape)}"
            )
        if self.labels.ndim != 1 or self.labels.shape[0] != self.images.shape[0]:
            raise ShapeError(
                f"{self.name}: labels of shape {tuple(self.labels.shape)} do not match "
                f"{self.images.shape[0]} inputs"
            )

    def __len__(self) -> int:
        return int(self.labels.shape[0])


@dataclass(frozen=True)
class _Request:
    split: Split
    data_dir: str | os.PathLike[str] | None
    seed: int
    download: bool
    spheres_n: int | None
    spheres_d: int


def _mnist(req: _Request) -> DatasetSplit:
    x, y = load_mnist(req.data_dir, split=req.split, download=req.download)
    return DatasetSplit("mnist", x, y, 10, (1, 28, 28))


def _digits(req: _Request) -> DatasetSplit:
    x, y = load_digits(req.split, seed=req.seed)
    return DatasetSplit("digits", x, y, 10, (1, 8, 8))


def _cifar10(req: _Request) -> DatasetSplit:
    return load_cifar10(req.data_dir, req.split)


def _cifar100(req: _Request) -> DatasetSplit:
    return load_cifar100(req.data_dir, req.split)


def _spheres(req: _Request) -> DatasetSplit:
    if not 0 <= req.seed < 2**63:
        raise ConfigError(f"seed must lie in [0, 2**63), got {req.seed}")
    n = SPHERES_DEFAULT_N[req.split] if req.spheres_n is None else req.spheres_n
    # Disjoint seed streams: the test split of one seed never repeats the train split of another.
    split_seed = 2 * req.seed + (0 if req.split == "train" else 1)
    x, y = sample_spheres(n, d=req.spheres_d, seed=split_seed)
    return DatasetSplit("spheres", x, y, 2, (req.spheres_d,))


_LOADERS: Mapping[str, Callable[[_Request], DatasetSplit]] = MappingProxyType(
    {
        "mnist": _mnist,
        "digits": _digits,
        "spheres": _spheres,
        "cifar10": _cifar10,
        "cifar100": _cifar100,
    }
)

DATASETS: tuple[str, ...] = tuple(_LOADERS)
"""Names :func:`load_dataset` knows."""


def load_dataset(
    name: str,
    split: Split,
    *,
    data_dir: str | os.PathLike[str] | None = None,
    seed: int = 0,
    download: bool = False,
    spheres_n: int | None = None,
    spheres_d: int = 100,
) -> DatasetSplit:
    r"""Load one split of a named dataset.

    - ``mnist``: the official split, from ``data_dir`` (a data root holding ``mnist/`` or the
      MNIST folder itself; ``None`` uses ``$PREIMAGE_DATA`` then ``~/.cache/preimage``);
      ``seed`` is unused.
    - ``cifar10``: the standard binary batches from ``data_dir`` (never downloaded, see
      :func:`~preimage.data.cifar.load_cifar10`).
    - ``cifar100``: the binary version's fine labels (100 classes) from ``data_dir`` (never
      downloaded, see :func:`~preimage.data.cifar.load_cifar100`).
    - ``digits``: scikit-learn's 8x8 digits, a stratified 75/25 split drawn with ``seed``.
    - ``spheres``: :math:`r_1 = 1`, :math:`r_2 = 10`; train and test are sampled with the
      distinct seeds :math:`2s` and :math:`2s + 1`.

    Deviation from the paper: Jacobsen et al. (2019), appendix D.1 train on 500k sphere points
    and validate on 100k; the defaults here are 50k / 10k (:data:`SPHERES_DEFAULT_N`) to fit CPU
    budgets. Pass ``spheres_n`` for the paper's sizes.

    Args:
        name: One of :data:`DATASETS`.
        split: ``"train"`` or ``"test"``.
        data_dir: Where MNIST and CIFAR-10/100 live (ignored by the other datasets).
        seed: Split seed (digits) or sampling seed (spheres), non-negative.
        download: Download missing MNIST files.
        spheres_n: Number of sphere points; ``None`` for the split's default.
        spheres_d: Sphere dimension.

    Returns:
        The split with its number of classes and sample shape.

    Raises:
        ConfigError: For an unknown name or split, or invalid sizes or seed.
        DataError: For missing or corrupted MNIST files.

    Example:
        >>> ds = load_dataset("spheres", "test", spheres_n=8, spheres_d=5)
        >>> len(ds), ds.num_classes, ds.sample_shape
        (8, 2, (5,))
    """
    loader = _LOADERS.get(name)
    if loader is None:
        raise ConfigError(f"unknown dataset {name!r}; known datasets: {', '.join(DATASETS)}")
    if split not in ("train", "test"):
        raise ConfigError(f"unknown split {split!r}; choose one of train, test")
    return loader(_Request(split, data_dir, seed, download, spheres_n, spheres_d))
