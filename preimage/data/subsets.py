r"""Derived datasets: a two-class subset (MNIST 3 versus 7) and uniformly random labels.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, sections 4.1-4.2
    (MNIST "3 versus 7") and 4.2-4.3, table 2 (random labels "sampled uniformly"). Zhang et al.
    (2017), *Understanding Deep Learning Requires Rethinking Generalization* (random labels).
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch

from preimage.data.registry import DatasetSplit, Split, load_dataset
from preimage.errors import ConfigError, DataError

__all__ = ["class_subset", "mnist_3v7", "random_labels"]


def class_subset(split: DatasetSplit, classes: Sequence[int]) -> DatasetSplit:
    """The samples of ``classes``, relabelled ``0..len(classes)-1`` in the given order.

    Example:
        >>> ds = DatasetSplit("toy", torch.zeros(4, 1), torch.tensor([3, 7, 1, 3]), 10, (1,))
        >>> class_subset(ds, (3, 7)).labels.tolist()
        [0, 1, 0]
    """
    if len(set(classes)) != len(classes) or len(classes) < 2:
        raise ConfigError(f"need two or more distinct classes, got {tuple(classes)}")
    keep = torch.zeros_like(split.labels, dtype=torch.bool)
    new = torch.full_like(split.labels, -1)
    for i, c in enumerate(classes):
        hit = split.labels == c
        keep |= hit
        new[hit] = i
    if not bool(keep.any()):
        raise DataError(f"{split.name} holds none of the classes {tuple(classes)}")
    name = f"{split.name}-" + "v".join(str(c) for c in classes)
    return DatasetSplit(name, split.images[keep], new[keep], len(classes), split.sample_shape)


def mnist_3v7(split: Split, data_dir: str | os.PathLike[str] | None = None) -> DatasetSplit:
    """MNIST restricted to the digits 3 (label 0) and 7 (label 1), the paper's section 4.1 task."""
    return class_subset(load_dataset("mnist", split, data_dir=data_dir), (3, 7))


def random_labels(split: DatasetSplit, seed: int) -> DatasetSplit:
    """The same inputs with labels drawn uniformly from ``0..num_classes-1`` (with ``seed``).

    Example:
        >>> ds = DatasetSplit("toy", torch.zeros(1000, 1), torch.zeros(1000, dtype=torch.long),
        ...                   2, (1,))
        >>> r = random_labels(ds, seed=0)
        >>> r.name, 400 < int(r.labels.sum()) < 600, torch.equal(r.labels,
        ...     random_labels(ds, seed=0).labels)
        ('toy-random', True, True)
    """
    gen = torch.Generator().manual_seed(seed)
    labels = torch.randint(0, split.num_classes, (len(split),), generator=gen)
    return DatasetSplit(
        f"{split.name}-random", split.images, labels, split.num_classes, split.sample_shape
    )
