r"""CIFAR-10 and CIFAR-100 from the standard binary versions (``cifar-10-binary.tar.gz``,
``cifar-100-binary.tar.gz``, extracted).

CIFAR-10's binary version holds ``data_batch_1.bin`` ... ``data_batch_5.bin`` (training, 10 000
images each) and ``test_batch.bin``. Each record is 3073 bytes: one label byte (0-9), then the
:math:`32 \times 32` red, green and blue planes (1024 bytes each, row-major). CIFAR-100's holds
``train.bin`` (50 000 images) and ``test.bin`` (10 000); each record is 3074 bytes: the coarse
label (0-19, the 20 superclasses), the fine label (0-99), then the same three planes. Images are
returned as float in :math:`[0, 1]` of shape ``(N, 3, 32, 32)``. Nothing is downloaded: put the
files under ``<data root>/cifar10/`` or ``<data root>/cifar100/`` (or the folder the archive
extracts there: ``cifar-10-batches-bin/``, ``cifar-100-binary/``).

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

__all__ = [
    "CIFAR10_CLASSES",
    "CIFAR10_FILES",
    "CIFAR100_FILES",
    "cifar10_dir",
    "cifar100_dir",
    "load_cifar10",
    "load_cifar100",
]

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

CIFAR100_FILES: Mapping[str, tuple[str, ...]] = MappingProxyType(
    {"train": ("train.bin",), "test": ("test.bin",)}
)
"""Split -> files of CIFAR-100's binary version."""

_PIXELS = 3 * 32 * 32


def _folder(
    name: str,
    files: Mapping[str, tuple[str, ...]],
    extracted: str,
    root: str | os.PathLike[str] | None,
) -> Path:
    marks = files["train"] + files["test"]
    base = dataset_dir(name, root, files=marks)
    inner = base / extracted
    if not any((base / f).is_file() for f in marks) and inner.is_dir():
        return inner
    return base


def cifar10_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding the batch files: ``root`` itself, ``root/cifar10`` or either's
    ``cifar-10-batches-bin`` sub-folder (``None``: ``$PREIMAGE_DATA``)."""
    return _folder("cifar10", CIFAR10_FILES, "cifar-10-batches-bin", root)


def cifar100_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """The folder holding ``train.bin`` and ``test.bin``: ``root`` itself, ``root/cifar100``
    or either's ``cifar-100-binary`` sub-folder (``None``: ``$PREIMAGE_DATA``)."""
    return _folder("cifar100", CIFAR100_FILES, "cifar-100-binary", root)


def _records(folder: Path, names: tuple[str, ...], labels: int, title: str) -> np.ndarray:
    """The records of ``names`` in ``folder`` as ``(N, labels + 3072)`` uint8, in file order."""
    size = labels + _PIXELS
    chunks = []
    for name in names:
        path = folder / name
        if not path.is_file():
            raise DataError(f"{title} file {path} is missing (binary version, not downloaded)")
        raw = np.fromfile(path, dtype=np.uint8)
        if raw.size == 0 or raw.size % size:
            raise DataError(f"{path} is not a whole number of {size}-byte {title} records")
        chunks.append(raw.reshape(-1, size))
    return np.concatenate(chunks)


def _images(records: np.ndarray) -> torch.Tensor:
    pixels = records[:, -_PIXELS:].reshape(-1, 3, 32, 32).astype(np.float32) / 255.0
    return torch.from_numpy(pixels)


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
    records = _records(folder, CIFAR10_FILES[split], 1, "CIFAR-10")
    labels = records[:, 0].astype(np.int64)
    if labels.max() > 9:
        raise DataError(f"CIFAR-10 labels must be 0-9, found {int(labels.max())} in {folder}")
    # Imported here: the registry imports this module to list the loader.
    from preimage.data.registry import DatasetSplit

    return DatasetSplit("cifar10", _images(records), torch.from_numpy(labels), 10, (3, 32, 32))


def load_cifar100(
    root: str | os.PathLike[str] | None,
    split: Literal["train", "test"],
    *,
    labels: Literal["fine", "coarse"] = "fine",
) -> DatasetSplit:
    """One split of CIFAR-100: images ``(N, 3, 32, 32)`` float32 in [0, 1] and int64 labels.

    Args:
        root: data root or the CIFAR-100 folder (see :func:`cifar100_dir`).
        split: ``"train"`` or ``"test"``.
        labels: ``"fine"`` (100 classes, the usual benchmark and the information-regularisation
            paper's table 1) or ``"coarse"`` (20 superclasses).

    Returns:
        The split (``name="cifar100"``, 100 or 20 classes, samples of shape ``(3, 32, 32)``).

    Raises:
        ConfigError: for an unknown split or label kind.
        DataError: for missing files, a size that is not a whole number of records, or labels
            out of range.

    Example:
        >>> import tempfile, numpy as np
        >>> from pathlib import Path
        >>> root = Path(tempfile.mkdtemp())
        >>> record = np.concatenate([[4, 97], np.zeros(3072)]).astype(np.uint8)
        >>> (root / "test.bin").write_bytes(record.tobytes())
        3074
        >>> split = load_cifar100(root, "test")
        >>> coarse = load_cifar100(root, "test", labels="coarse")
        >>> split.labels.tolist(), split.num_classes, coarse.labels.tolist(), coarse.num_classes
        ([97], 100, [4], 20)
    """
    if split not in CIFAR100_FILES:
        raise ConfigError(f"unknown CIFAR-100 split {split!r}; choose train or test")
    if labels not in ("fine", "coarse"):
        raise ConfigError(f"CIFAR-100 labels must be 'fine' or 'coarse', got {labels!r}")
    folder = cifar100_dir(root)
    records = _records(folder, CIFAR100_FILES[split], 2, "CIFAR-100")
    num_classes = 100 if labels == "fine" else 20
    y = records[:, 1 if labels == "fine" else 0].astype(np.int64)
    if y.max() >= num_classes:
        raise DataError(
            f"CIFAR-100 {labels} labels must be below {num_classes}, found {int(y.max())} in "
            f"{folder}"
        )
    from preimage.data.registry import DatasetSplit

    return DatasetSplit("cifar100", _images(records), torch.from_numpy(y), num_classes, (3, 32, 32))
