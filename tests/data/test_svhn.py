from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import scipy.io

from preimage.data.svhn import load_svhn
from preimage.errors import ConfigError, DataError


def _write(folder: Path, name: str, x: np.ndarray, y: np.ndarray) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    scipy.io.savemat(folder / name, {"X": x, "y": y})


def test_reads_layout_and_maps_label_10_to_0(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    x = rng.integers(0, 256, (32, 32, 3, 5), dtype=np.uint8)
    y = np.array([[10], [1], [9], [10], [5]], dtype=np.uint8)
    _write(tmp_path / "svhn", "train_32x32.mat", x, y)
    images, labels = load_svhn(tmp_path, "train")  # the data root holding svhn/
    assert images.shape == (5, 3, 32, 32)
    assert labels.tolist() == [0, 1, 9, 0, 5]
    # Pixel (row 4, column 7) of channel 2 of sample 3, scaled to [0, 1].
    assert float(images[3, 2, 4, 7]) == pytest.approx(x[4, 7, 2, 3] / 255.0)
    assert float(images.min()) >= 0.0 and float(images.max()) <= 1.0
    # The folder itself works too.
    assert load_svhn(tmp_path / "svhn", "train")[1].tolist() == labels.tolist()


def test_errors(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="not found"):
        load_svhn(tmp_path, "test")
    with pytest.raises(ConfigError):
        load_svhn(tmp_path, "valid")  # type: ignore[arg-type]
    _write(tmp_path, "test_32x32.mat", np.zeros((32, 32, 3, 2), np.uint8), np.array([[0], [3]]))
    with pytest.raises(DataError, match=r"1\.\.10"):
        load_svhn(tmp_path, "test")
    _write(tmp_path, "extra_32x32.mat", np.zeros((28, 28, 3, 2), np.uint8), np.array([[1], [3]]))
    with pytest.raises(DataError, match="do not match"):
        load_svhn(tmp_path, "extra")
    (tmp_path / "train_32x32.mat").write_bytes(b"not a mat file")
    with pytest.raises(DataError):
        load_svhn(tmp_path, "train")
