r"""The Street View House Numbers (SVHN) dataset, cropped digits, from local ``.mat`` files.

The files are the official ``train_32x32.mat``, ``test_32x32.mat`` and ``extra_32x32.mat``
(MATLAB v5, read with :func:`scipy.io.loadmat`): ``X`` of shape ``(32, 32, 3, N)`` (uint8) and
``y`` of shape ``(N, 1)`` with labels 1-10, where **10 stands for the digit 0**. Nothing is
downloaded: put the files in ``<data root>/svhn/`` (or pass that folder).

References:
    Netzer et al. (2011), *Reading Digits in Natural Images with Unsupervised Feature
    Learning*. Galloway et al. (2018), *A Rate-Distortion Theory of Adversarial Examples*,
    sections 4.3-4.4 (the SVHN experiments; "extra" gives model B+ its additional data).
"""

from __future__ import annotations

import os
from typing import Literal

import numpy as np
import scipy.io
import torch
from torch import Tensor

from preimage.data.paths import dataset_dir
from preimage.errors import ConfigError, DataError

__all__ = ["SVHN_FILES", "load_svhn"]

SVHN_FILES: dict[str, str] = {
    "train": "train_32x32.mat",
    "test": "test_32x32.mat",
    "extra": "extra_32x32.mat",
}
"""Split -> official file name."""


def load_svhn(
    data_dir: str | os.PathLike[str] | None = None,
    split: Literal["train", "test", "extra"] = "train",
) -> tuple[Tensor, Tensor]:
    """One SVHN split as ``(images, labels)``.

    Args:
        data_dir: data root holding ``svhn/`` or the SVHN folder itself (``None``:
            ``$PREIMAGE_DATA``, then ``~/.cache/preimage``).
        split: ``"train"``, ``"test"`` or ``"extra"``.

    Returns:
        float32 images ``(N, 3, 32, 32)`` in ``[0, 1]`` and int64 labels ``(N,)`` in ``0..9``.

    Raises:
        ConfigError: unknown split.
        DataError: the file is missing, unreadable or malformed.

    Example:
        >>> import tempfile, pathlib
        >>> folder = pathlib.Path(tempfile.mkdtemp())
        >>> scipy.io.savemat(folder / "test_32x32.mat", {
        ...     "X": np.zeros((32, 32, 3, 2), np.uint8), "y": np.array([[10], [3]], np.uint8)})
        >>> x, y = load_svhn(folder, "test")
        >>> tuple(x.shape), y.tolist()
        ((2, 3, 32, 32), [0, 3])
    """
    if split not in SVHN_FILES:
        raise ConfigError(f"unknown SVHN split {split!r}; use one of {', '.join(SVHN_FILES)}")
    folder = dataset_dir("svhn", data_dir, files=SVHN_FILES.values())
    path = folder / SVHN_FILES[split]
    if not path.is_file():
        raise DataError(f"SVHN file {path} not found; put the official .mat files in {folder}")
    try:
        mat = scipy.io.loadmat(path)
    except (scipy.io.matlab.MatReadError, ValueError, OSError, NotImplementedError) as exc:
        raise DataError(f"cannot read {path}: {exc}") from None
    if "X" not in mat or "y" not in mat:
        raise DataError(f"{path} holds no 'X' and 'y' arrays")
    x, y = np.asarray(mat["X"]), np.asarray(mat["y"]).reshape(-1)
    if x.ndim != 4 or x.shape[:3] != (32, 32, 3) or x.shape[3] != y.shape[0]:
        raise DataError(f"{path}: X of shape {x.shape} and y of {y.shape[0]} labels do not match")
    if y.size and (y.min() < 1 or y.max() > 10):
        raise DataError(f"{path}: labels must lie in 1..10, got {y.min()}..{y.max()}")
    images = torch.from_numpy(np.ascontiguousarray(x.transpose(3, 2, 0, 1))).float() / 255.0
    labels = torch.from_numpy(y.astype(np.int64) % 10)
    return images, labels
