"""Tests of preimage.data.cifar on tiny batch files written here in the binary layout."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from preimage.data import load_dataset
from preimage.data.cifar import CIFAR10_FILES, load_cifar10, load_cifar100
from preimage.errors import ConfigError, DataError


def _write(
    folder: Path, name: str, labels: list[int] | list[tuple[int, int]], seed: int
) -> np.ndarray:
    """Records of label byte(s) + R, G, B planes; returns the images as (N, 32, 32, 3) uint8.

    A CIFAR-100 record's labels are a (coarse, fine) pair."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (len(labels), 32, 32, 3), dtype=np.uint8)
    planes = images.transpose(0, 3, 1, 2).reshape(len(labels), -1)
    head = np.array(labels, np.uint8).reshape(len(labels), -1)
    records = np.concatenate([head, planes], axis=1)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(records.tobytes())
    return images


def test_reads_channels_rows_and_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar10" / "cifar-10-batches-bin"
    images = _write(folder, "test_batch.bin", [0, 9, 4], seed=0)
    split = load_dataset("cifar10", "test", data_dir=tmp_path)
    assert split.sample_shape == (3, 32, 32) and split.num_classes == 10
    assert split.labels.tolist() == [0, 9, 4]
    # Pixel (row 5, column 7) of the green plane of the second image.
    assert split.images[1, 1, 5, 7].item() == pytest.approx(images[1, 5, 7, 1] / 255.0)
    assert np.allclose(split.images.permute(0, 2, 3, 1).numpy() * 255.0, images)


def test_train_concatenates_the_five_batches(tmp_path: Path) -> None:
    for i, name in enumerate(CIFAR10_FILES["train"]):
        _write(tmp_path, name, [i, i], seed=i)
    assert load_cifar10(tmp_path, "train").labels.tolist() == [0, 0, 1, 1, 2, 2, 3, 3, 4, 4]


def test_missing_truncated_or_bad_labels_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        load_cifar10(tmp_path, "test")
    (tmp_path / "test_batch.bin").write_bytes(b"\x00" * 100)
    with pytest.raises(DataError, match="whole number"):
        load_cifar10(tmp_path, "test")
    _write(tmp_path, "test_batch.bin", [12], seed=1)
    with pytest.raises(DataError, match="0-9"):
        load_cifar10(tmp_path, "test")


def test_cifar100_reads_fine_and_coarse_labels(tmp_path: Path) -> None:
    folder = tmp_path / "cifar100" / "cifar-100-binary"
    images = _write(folder, "test.bin", [(3, 99), (19, 0), (7, 42)], seed=2)
    split = load_dataset("cifar100", "test", data_dir=tmp_path)
    assert split.name == "cifar100" and split.num_classes == 100
    assert split.sample_shape == (3, 32, 32)
    assert split.labels.tolist() == [99, 0, 42]
    # The pixels start after the two label bytes.
    assert np.allclose(split.images.permute(0, 2, 3, 1).numpy() * 255.0, images)
    coarse = load_cifar100(tmp_path, "test", labels="coarse")
    assert coarse.labels.tolist() == [3, 19, 7] and coarse.num_classes == 20
    _write(folder, "train.bin", [(0, 1), (1, 2)], seed=3)
    assert load_cifar100(folder, "train").labels.tolist() == [1, 2]


def test_cifar100_bad_files_raise(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        load_cifar100(tmp_path, "test")
    # A CIFAR-10 sized record is not a CIFAR-100 record.
    _write(tmp_path, "test.bin", [1], seed=4)
    with pytest.raises(DataError, match="3074-byte"):
        load_cifar100(tmp_path, "test")
    _write(tmp_path, "test.bin", [(25, 1)], seed=5)
    with pytest.raises(DataError, match="below 20"):
        load_cifar100(tmp_path, "test", labels="coarse")
    with pytest.raises(ConfigError, match="fine"):
        load_cifar100(tmp_path, "test", labels="medium")  # type: ignore[arg-type]
