r"""The 8x8 handwritten digits bundled with scikit-learn: a tiny, offline stand-in for MNIST.

1797 grey-scale images with 17 intensity levels (0..16), ten classes. They ship inside
scikit-learn, so tests, smoke runs and CPU budgets can train real image classifiers without any
download. There is no official train/test split; :func:`load_digits` makes a stratified one that
depends only on ``seed`` and ``test_fraction``.

References:
    Alpaydin, Kaynak (1998), *Optical Recognition of Handwritten Digits*, UCI Machine Learning
    Repository (the data set); not used in the papers, which train on MNIST (Jacobsen et al.
    (2019), Excessive Invariance Causes Adversarial Vulnerability, appendix D.2). It replaces
    MNIST where a budget of seconds forbids the real data set.
"""

from __future__ import annotations

from typing import Literal

import numpy as np
import torch
from sklearn.datasets import load_digits as _sklearn_load_digits
from sklearn.model_selection import train_test_split

from preimage.errors import ConfigError

__all__ = ["DIGITS_MAX_INTENSITY", "load_digits"]

DIGITS_MAX_INTENSITY = 16
"""Largest pixel value of the raw data; images are divided by it to land in :math:`[0, 1]`."""


def load_digits(
    split: Literal["train", "test"] = "train",
    *,
    test_fraction: float = 0.25,
    seed: int = 0,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Load one split of scikit-learn's 8x8 digits.

    The split is stratified by class and deterministic given ``seed`` and ``test_fraction``;
    the train and test splits of one ``(seed, test_fraction)`` partition the 1797 images.

    Args:
        split: ``"train"`` or ``"test"``.
        test_fraction: Share of the images in the test split, in :math:`(0, 1)`.
        seed: Seed of the split permutation.

    Returns:
        ``(images, labels)``: images float32 in :math:`[0, 1]` (pixel / 16) of shape
        ``(N, 1, 8, 8)``, labels int64 in :math:`\{0, \dots, 9\}` of shape ``(N,)``.

    Raises:
        ConfigError: For an unknown split, a ``test_fraction`` outside :math:`(0, 1)` or a seed
            outside :math:`[0, 2^{32})`.

    Example:
        >>> x, y = load_digits("test")
        >>> x.shape, x.dtype, y.dtype
        (torch.Size([450, 1, 8, 8]), torch.float32, torch.int64)
        >>> 0.0 <= float(x.min()) and float(x.max()) <= 1.0
        True
    """
    if split not in ("train", "test"):
        raise ConfigError(f"unknown digits split {split!r}; choose one of train, test")
    if not 0.0 < test_fraction < 1.0:
        raise ConfigError(f"test_fraction must lie in (0, 1), got {test_fraction}")
    if not 0 <= seed < 2**32:
        raise ConfigError(f"seed must lie in [0, 2**32), got {seed}")
    bunch = _sklearn_load_digits()
    images = np.asarray(bunch.images, dtype=np.float32) / DIGITS_MAX_INTENSITY
    labels = np.asarray(bunch.target, dtype=np.int64)
    train_idx, test_idx = train_test_split(
        np.arange(labels.shape[0]),
        test_size=test_fraction,
        random_state=seed,
        stratify=labels,
    )
    idx = np.sort(train_idx if split == "train" else test_idx)
    x = torch.from_numpy(np.ascontiguousarray(images[idx, None]))
    y = torch.from_numpy(labels[idx])
    return x, y
