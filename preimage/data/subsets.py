r"""Train/test subsets of a dataset, drawn reproducibly: what every study loads first.

Studies train on a random subset of a dataset's training split and evaluate on a subset of its
test split. For the ``smoke`` budgets on MNIST, both subsets can come from disjoint parts of the
10k test split (``train_split="test"``), which skips reading the 60k training file.

Derived datasets live here too: a two-class subset (MNIST 3 versus 7) and uniformly random
labels.

References:
    Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*, sections 4.1-4.2
    (MNIST "3 versus 7") and 4.2-4.3, table 2 (random labels "sampled uniformly"). Zhang et al.
    (2017), *Understanding Deep Learning Requires Rethinking Generalization* (random labels).

Example:
    >>> (x, y), (xt, yt) = load_train_test("digits", n_train=6, n_test=4, seed=0)
    >>> tuple(x.shape), tuple(xt.shape)
    ((6, 1, 8, 8), (4, 1, 8, 8))
"""

from __future__ import annotations

import os
from collections.abc import Sequence

import torch
from torch import Tensor

from preimage.data.registry import DatasetSplit, Split, load_dataset
from preimage.errors import ConfigError, DataError

__all__ = ["Pair", "class_subset", "load_train_test", "mnist_3v7", "random_labels", "subset"]

Pair = tuple[Tensor, Tensor]
"""``(inputs, labels)``."""


def subset(data: Pair, n: int | None, seed: int) -> Pair:
    """``n`` samples drawn without replacement with ``seed`` (all of them for ``None``).

    Example:
        >>> x, y = subset((torch.arange(10.0).reshape(10, 1), torch.arange(10)), 4, seed=0)
        >>> x.shape, bool(torch.equal(x[:, 0].long(), y))
        (torch.Size([4, 1]), True)
    """
    x, y = data
    if n is None or n >= x.shape[0]:
        return x, y
    if n < 1:
        raise ConfigError(f"subset size must be >= 1, got {n}")
    gen = torch.Generator().manual_seed(seed)
    idx = torch.randperm(x.shape[0], generator=gen)[:n]
    return x[idx], y[idx]


def load_train_test(
    dataset: str,
    *,
    n_train: int | None,
    n_test: int | None,
    seed: int,
    data_dir: str | os.PathLike[str] | None = None,
    train_split: str = "train",
    device: torch.device | str | None = None,
) -> tuple[Pair, Pair]:
    """Random train and test subsets of ``dataset`` (``None``: the whole split).

    Args:
        dataset: a name :func:`~preimage.data.load_dataset` knows.
        n_train: training samples.
        n_test: test samples.
        seed: drives the draws (the test draw uses ``seed + 1``).
        data_dir: data root.
        train_split: ``"train"``, or ``"test"`` for disjoint train and test subsets of the test
            split (then ``n_train`` and ``n_test`` must be given and fit in it).
        device: where the tensors go (default: where the loader made them, the CPU).

    Raises:
        ConfigError: an unknown ``train_split`` or subsets that do not fit.
    """
    if train_split == "test":
        split = load_dataset(dataset, "test", data_dir=data_dir)  # type: ignore[arg-type]
        if n_train is None or n_test is None or n_train + n_test > len(split):
            raise ConfigError(
                f"train_split='test' needs n_train + n_test <= {len(split)} (the test split)"
            )
        gen = torch.Generator().manual_seed(seed)
        idx = torch.randperm(len(split), generator=gen)
        tr, te = idx[:n_train], idx[n_train : n_train + n_test]
        train: Pair = (split.images[tr], split.labels[tr])
        test: Pair = (split.images[te], split.labels[te])
    elif train_split == "train":
        full_train = load_dataset(dataset, "train", data_dir=data_dir)  # type: ignore[arg-type]
        full_test = load_dataset(dataset, "test", data_dir=data_dir)  # type: ignore[arg-type]
        train = subset((full_train.images, full_train.labels), n_train, seed)
        test = subset((full_test.images, full_test.labels), n_test, seed + 1)
    else:
        raise ConfigError(f"train_split must be 'train' or 'test', got {train_split!r}")
    if device is not None:
        train = (train[0].to(device), train[1].to(device))
        test = (test[0].to(device), test[1].to(device))
    return train, test


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
