r"""CIFAR-10 from the standard binary batches (``cifar-10-binary.tar.gz``, extracted).

The binary version holds ``data_batch_1.bin`` ... ``data_batch_5.bin`` (training, 10 000 images
each) and ``test_batch.bin``. Each record is 3073 bytes: one label byte (0-9), then the
:math:`32 \times 32` red, green and blue planes (1024 bytes each, row-major). Images are returned
as float in :math:`[0, 1]` of shape ``(N, 3, 32, 32)``. Nothing is downloaded: put the files
under ``<data root>/cifar10/`` (or its ``cifar-10-batches-bin/`` folder, as the archive
extracts).

References:
    Krizhevsky (2009), *Learning Multiple Layers of Features from Tiny Images* (the data set;
    file layout from its web page). Behrmann (thesis), *Invertibility and Domain Knowledge*,
    section 3.4.2 (the inverse-stability experiment on CIFAR-10).

Example:
    >>> import tempfile, numpy as np
    >>> from pathlib import Path
    >>> root = Path(tempfile.mkdtemp())
    >>> record = np.concatenate([[3], np.full(3072, 255)]).astype(np.uint8)
    >>> (root / "test_batch.bin").write_bytes(record.tobytes() * 2)
    6146
    >>> split = load_cifar10(root, "test")
    >>> split.images.shape, split.labels.tolist(), float(split.images.max())
    (torch.Size([2, 3, 32, 32]), [3, 3], 1.0)
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Literal

import numpy as np
import torch

from preimage.data.paths import dataset_dir
from preimage.errors import ConfigError, DataError

if TYPE_CHECKING:
    from preimage.data.registry import DatasetSplit

__all__ = ["CIFAR10_CLASSES", "CIFAR10_FILES", "cifar10_dir", "load_cifar10"]

CIFAR10_FILES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {
        "train": tuple(f"data_batch_{i}.bin" for i in range(1, 6)),
        "test": ("test_batch.bin",),
    }
)
"""Split -> batch files of the binary version."""

CIFAR10_CLASSES: tuple[str, ...] = (
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck",
)  # fmt: skip
"""Class names in label order."""

_RECORD = 1 + 3 * 32 * 32


def cifar10_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the batch files: ``root`` itself, ``root/cifar10`` or either's
    ``cifar-10-batches-bin`` sub-folder (``None``: ``$PREIMAGE_DATA``)."""
    marks = CIFAR10_FILES["train"] + CIFAR10_FILES["test"]
    base = dataset_dir("cifar10", root, files=marks)
    extracted = base / "cifar-10-batches-bin"
    if not any((base / f).is_file() for f in marks) and extracted.is_dir():
        return extracted
    return base


def load_cifar10(
    root: str | os.PathLike[str] | None, split: Literal["train", "test"]
) -> DatasetSplit:
    """One split: images ``(N, 3, 32, 32)`` float32 in [0, 1] and int64 labels.

    Args:
        root: data root or the CIFAR-10 folder (see :func:`cifar10_dir`).
        split: ``"train"`` (the five data batches, in order) or ``"test"``.

    Returns:
        The split (``name="cifar10"``, 10 classes, samples of shape ``(3, 32, 32)``).

    Raises:
        ConfigError: for an unknown split.
        DataError: for missing files, a size that is not a whole number of records, or labels
            outside 0-9.
    """
    if split not in CIFAR10_FILES:
        raise ConfigError(f"unknown CIFAR-10 split {split!r}; choose train or test")
    folder = cifar10_dir(root)
    chunks = []
    for name in CIFAR10_FILES[split]:
        path = folder / name
        if not path.is_file():
            raise DataError(f"CIFAR-10 file {path} is missing (binary version, not downloaded)")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % _RECORD:
            raise DataError(f"{path} is not a whole number of {_RECORD}-byte CIFAR-10 records")
        chunks.append(raw.reshape(-1, _RECORD))
    records = np.concatenate(chunks)
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"CIFAR-10 labels must be 0-9, found {int(labels.max())} in {folder}")
    images = records[:, 1:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    # Imported here: the registry imports this module to list the loader.
    from preimage.data.registry import DatasetSplit

    return DatasetSplit(
        "cifar10", torch.from_numpy(images), torch.from_numpy(labels), 10, (3, 32, 32)
    )
