from __future__ import annotations

import gzip
import hashlib
import os
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch

from preimage.data.mnist import (
    MNIST_FILES,
    MNIST_SHA256,
    download_mnist,
    load_mnist,
    mnist_dir,
    read_idx,
)
from preimage.errors import ConfigError, DataError

ALL_NAMES = [name for pair in MNIST_FILES.values() for name in pair]

# ---------------------------------------------------------------------------------------------
# read_idx


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_round_trip(
    tmp_path: Path, idx_bytes: Callable[[np.ndarray], bytes], dtype: type, compress: bool
) -> None:
    rng = np.random.default_rng(0)
    expected = (rng.standard_normal((3, 4, 5)) * 100).astype(dtype)
    data = idx_bytes(expected)
    path = tmp_path / "a.idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    got = read_idx(path)
    assert got.dtype == np.dtype(dtype).newbyteorder("=")
    assert got.dtype.isnative
    assert got.shape == (3, 4, 5)
    np.testing.assert_array_equal(got, expected)
    got[0, 0, 0] = 1  # writable, not a view on an immutable buffer


def test_read_idx_one_dim_and_empty(tmp_path: Path, idx_bytes: Callable[..., bytes]) -> None:
    (tmp_path / "a").write_bytes(idx_bytes(np.arange(7, dtype=np.uint8)))
    np.testing.assert_array_equal(read_idx(tmp_path / "a"), np.arange(7))
    (tmp_path / "b").write_bytes(idx_bytes(np.zeros((0, 2), dtype=np.int32)))
    assert read_idx(tmp_path / "b").shape == (0, 2)


def _raw(tmp_path: Path, data: bytes, name: str = "bad.idx") -> Path:
    path = tmp_path / name
    path.write_bytes(data)
    return path


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"", "truncated IDX file"),
        (b"\x00\x00\x08", "truncated IDX file"),
        (b"\x89PNG\r\n\x1a\n" + bytes(16), "bad magic number"),
        (b"\x00\x01\x08\x01\x00\x00\x00\x01\x00", "bad magic number"),
        (b"\x00\x00\x07\x01\x00\x00\x00\x01\x00", "unknown IDX data type code 0x07"),
        (b"\x00\x00\x08\x00", "zero dimensions"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x01\x00\x00", "truncated IDX header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "needs 5 data bytes, found 2"),
        (b"\x00\x00\x0b\x01\x00\x00\x00\x02\x00\x01\x00", "needs 4 data bytes, found 3"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x01\x07\x08", "data continues past"),
        (b"\x00\x00\x08\x03\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff", "corrupted IDX"),
    ],
)
@pytest.mark.parametrize("compress", [False, True])
def test_read_idx_rejects_malformed(
    tmp_path: Path, data: bytes, message: str, compress: bool
) -> None:
    path = _raw(tmp_path, gzip.compress(data) if compress else data)
    with pytest.raises(DataError, match=message) as info:
        read_idx(path)
    assert str(path) in str(info.value)


def test_read_idx_truncated_gzip(tmp_path: Path, idx_bytes: Callable[..., bytes]) -> None:
    rng = np.random.default_rng(1)
    packed = gzip.compress(idx_bytes(rng.integers(0, 256, (50, 28, 28), dtype=np.uint8)))
    path = _raw(tmp_path, packed[: len(packed) // 2], "cut.gz")
    with pytest.raises(DataError, match=re.escape("cut.gz")):
        read_idx(path)


def test_read_idx_corrupted_gzip(tmp_path: Path, idx_bytes: Callable[..., bytes]) -> None:
    packed = bytearray(gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32))))
    packed[-6] ^= 0xFF  # inside the CRC-32 trailer: the data inflates but fails its check
    path = _raw(tmp_path, bytes(packed), "crc.gz")
    with pytest.raises(DataError, match=re.escape("crc.gz")):
        read_idx(path)
    garbled = bytearray(gzip.compress(idx_bytes(np.arange(4000, dtype=np.int32))))
    garbled[20:40] = bytes(20)
    with pytest.raises(DataError):
        read_idx(_raw(tmp_path, bytes(garbled), "garbled.gz"))


def test_read_idx_missing_file(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="no such file"):
        read_idx(tmp_path / "nope.gz")


# ---------------------------------------------------------------------------------------------
# load_mnist on fake files


def test_load_mnist_fake(tmp_path: Path, fake_mnist) -> None:
    fake_mnist.write(tmp_path / "mnist")
    for split, (images_name, labels_name) in MNIST_FILES.items():
        x, y = load_mnist(tmp_path, split=split, checksums=fake_mnist.sha256)
        expected = fake_mnist.arrays[images_name].astype(np.float64) / 255.0
        assert x.dtype == torch.float32 and y.dtype == torch.int64
        assert x.shape == (expected.shape[0], 1, 28, 28)
        np.testing.assert_allclose(x[:, 0].numpy(), expected, rtol=0, atol=1e-7)
        np.testing.assert_array_equal(y.numpy(), fake_mnist.arrays[labels_name])


def test_load_mnist_accepts_root_or_folder(tmp_path: Path, fake_mnist) -> None:
    folder = fake_mnist.write(tmp_path / "data" / "mnist")
    a = load_mnist(tmp_path / "data", split="test", checksums=fake_mnist.sha256)
    b = load_mnist(folder, split="test", checksums=fake_mnist.sha256)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    other = fake_mnist.write(tmp_path / "elsewhere")  # any folder name holding the files
    c = load_mnist(other, split="test", checksums=fake_mnist.sha256)
    assert torch.equal(a[0], c[0])


def test_load_mnist_uses_env(tmp_path: Path, fake_mnist, monkeypatch) -> None:
    fake_mnist.write(tmp_path / "mnist")
    monkeypatch.setenv("PREIMAGE_DATA", str(tmp_path))
    _, y = load_mnist(split="test", checksums=fake_mnist.sha256)
    np.testing.assert_array_equal(y.numpy(), fake_mnist.arrays["t10k-labels-idx1-ubyte.gz"])


def test_load_mnist_uncompressed_files(tmp_path: Path, fake_mnist) -> None:
    fake_mnist.write(tmp_path / "mnist", compress=False)
    assert not list((tmp_path / "mnist").glob("*.gz"))
    _, y = load_mnist(tmp_path, split="train", checksums=fake_mnist.sha256)
    np.testing.assert_array_equal(y.numpy(), fake_mnist.arrays["train-labels-idx1-ubyte.gz"])


def test_load_mnist_checksum(tmp_path: Path, fake_mnist) -> None:
    fake_mnist.write(tmp_path / "mnist")
    with pytest.raises(DataError, match=re.escape("train-images-idx3-ubyte.gz: checksum mismatch")):
        load_mnist(tmp_path)  # the official checksums do not match fake files
    x, _ = load_mnist(tmp_path, verify=False)
    assert x.shape[0] == 12
    wrong = dict(fake_mnist.sha256, **{"train-labels-idx1-ubyte.gz": "0" * 64})
    with pytest.raises(DataError, match=re.escape("train-labels-idx1-ubyte.gz: checksum mismatch")):
        load_mnist(tmp_path, checksums=wrong)
    with pytest.raises(ConfigError, match="no checksum"):
        load_mnist(tmp_path, checksums={})


def test_load_mnist_missing(tmp_path: Path, fake_mnist) -> None:
    with pytest.raises(DataError) as info:
        load_mnist(tmp_path, split="test")
    message = str(info.value)
    assert "t10k-images-idx3-ubyte.gz" in message
    assert str(tmp_path / "mnist") in message
    assert "download=True" in message and "--data-dir" in message
    fake_mnist.write(tmp_path / "mnist")
    (tmp_path / "mnist" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(DataError, match=re.escape("'t10k-labels-idx1-ubyte.gz' is missing")):
        load_mnist(tmp_path, split="test", checksums=fake_mnist.sha256)


def test_load_mnist_bad_split(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="unknown MNIST split 'val'"):
        load_mnist(tmp_path, split="val")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("images", "labels", "message"),
    [
        (np.zeros((3, 28, 28), np.uint8), np.zeros(4, np.uint8), "4 labels for 3 images"),
        (np.zeros((3, 28, 27), np.uint8), np.zeros(3, np.uint8), r"shape \(N, 28, 28\)"),
        (np.zeros((3, 28, 28), np.float32), np.zeros(3, np.uint8), "uint8 images"),
        (np.zeros((3, 28, 28), np.uint8), np.zeros((3, 1), np.uint8), "uint8 labels"),
        (np.zeros((3, 28, 28), np.uint8), np.array([0, 10, 1], np.uint8), "label 10 outside"),
    ],
)
def test_load_mnist_inconsistent(
    tmp_path: Path, idx_bytes: Callable[..., bytes], images, labels, message: str
) -> None:
    (tmp_path / "t10k-images-idx3-ubyte.gz").write_bytes(gzip.compress(idx_bytes(images)))
    (tmp_path / "t10k-labels-idx1-ubyte.gz").write_bytes(gzip.compress(idx_bytes(labels)))
    with pytest.raises(DataError, match=message):
        load_mnist(tmp_path, split="test", verify=False)


def test_mnist_dir(tmp_path: Path, fake_mnist) -> None:
    assert mnist_dir(tmp_path) == tmp_path / "mnist"
    assert mnist_dir(tmp_path / "mnist") == tmp_path / "mnist"
    fake_mnist.write(tmp_path / "x")
    assert mnist_dir(tmp_path / "x") == tmp_path / "x"


# ---------------------------------------------------------------------------------------------
# the official files


def test_real_mnist(real_mnist_dir: Path) -> None:
    decompressed = {n: gzip.decompress((real_mnist_dir / n).read_bytes()) for n in ALL_NAMES}
    for name, data in decompressed.items():
        assert hashlib.sha256(data).hexdigest() == MNIST_SHA256[name]
    # Class frequencies of the official sets (LeCun et al.).
    counts = {
        "train": [5923, 6742, 5958, 6131, 5842, 5421, 5918, 6265, 5851, 5949],
        "test": [980, 1135, 1032, 1010, 982, 892, 958, 1028, 974, 1009],
    }
    # The MNIST folder itself for train, the data root holding it for test.
    for root, split in ((real_mnist_dir, "train"), (real_mnist_dir.parent, "test")):
        x, y = load_mnist(root, split=split)
        n = sum(counts[split])
        assert x.shape == (n, 1, 28, 28) and x.dtype == torch.float32
        assert y.shape == (n,) and y.dtype == torch.int64
        assert torch.bincount(y).tolist() == counts[split]
        pixels = np.frombuffer(decompressed[MNIST_FILES[split][0]], np.uint8, offset=16)
        reference = torch.from_numpy(pixels.reshape(n, 28, 28).astype(np.float32)) / 255.0
        assert torch.equal(x[:, 0], reference)
        assert float(x.min()) == 0.0 and float(x.max()) == 1.0


# ---------------------------------------------------------------------------------------------
# download_mnist against a local HTTP server


def _folder_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_download_success(tmp_path: Path, fake_mnist, mirror_server) -> None:
    mirror_server.serve("a", fake_mnist.gz)
    folder = download_mnist(
        tmp_path,
        mirrors=[mirror_server.mirror("a")],
        progress=False,
        checksums=fake_mnist.sha256,
    )
    assert folder == tmp_path / "mnist"
    assert _folder_files(folder) == sorted(ALL_NAMES)  # no temporary files left behind
    for name in ALL_NAMES:
        assert (folder / name).read_bytes() == fake_mnist.gz[name]
    _, y = load_mnist(tmp_path, split="test", checksums=fake_mnist.sha256)
    np.testing.assert_array_equal(y.numpy(), fake_mnist.arrays["t10k-labels-idx1-ubyte.gz"])
    assert len(mirror_server.requests) == 4


def test_download_with_progress_bar(tmp_path: Path, fake_mnist, mirror_server, capsys) -> None:
    mirror_server.serve("a", fake_mnist.gz)
    download_mnist(
        tmp_path, mirrors=mirror_server.mirror("a"), progress=True, checksums=fake_mnist.sha256
    )
    assert _folder_files(tmp_path / "mnist") == sorted(ALL_NAMES)
    captured = capsys.readouterr()
    assert captured.out == ""  # the bar goes to stderr
    assert "t10k-labels-idx1-ubyte.gz" in captured.err


def test_download_via_load_mnist(
    tmp_path: Path, fake_mnist, other_fake_mnist, mirror_server
) -> None:
    mirror_server.serve("a", fake_mnist.gz)
    kwargs = {"download": True, "checksums": fake_mnist.sha256}
    mirrors = [mirror_server.mirror("a")]
    x, _ = load_mnist(tmp_path, split="train", mirrors=mirrors, **kwargs)
    assert x.shape == (12, 1, 28, 28)
    assert len(mirror_server.requests) == 4
    load_mnist(tmp_path, split="test", mirrors=mirrors, **kwargs)
    assert len(mirror_server.requests) == 4  # valid files: no second download
    bad = "t10k-images-idx3-ubyte.gz"
    (tmp_path / "mnist" / bad).write_bytes(other_fake_mnist.gz[bad])
    x, _ = load_mnist(tmp_path, split="test", mirrors=mirrors, **kwargs)
    assert mirror_server.requests[4:] == [f"/a/{bad}"]  # the damaged file is repaired
    np.testing.assert_array_equal(x[:, 0].mul(255).round().byte().numpy(), fake_mnist.arrays[bad])


def test_download_falls_back_after_404(tmp_path: Path, fake_mnist, mirror_server) -> None:
    mirror_server.serve("b", fake_mnist.gz)
    folder = download_mnist(
        tmp_path,
        mirrors=[mirror_server.mirror("a"), mirror_server.mirror("b")],
        progress=False,
        checksums=fake_mnist.sha256,
    )
    for name in ALL_NAMES:
        assert (folder / name).read_bytes() == fake_mnist.gz[name]
        assert mirror_server.requests.count(f"/a/{name}") == 1
        assert mirror_server.requests.count(f"/b/{name}") == 1


@pytest.mark.parametrize("fault", ["wrong_data", "not_gzip_idx", "truncated", "http_500"])
def test_download_rejects_bad_mirror(
    tmp_path: Path, fake_mnist, other_fake_mnist, mirror_server, fault: str
) -> None:
    if fault == "wrong_data":
        mirror_server.serve("a", other_fake_mnist.gz)
    elif fault == "not_gzip_idx":
        mirror_server.serve("a", {n: b"<html>not found</html>" for n in ALL_NAMES})
    elif fault == "truncated":
        mirror_server.serve("a", fake_mnist.gz)
        mirror_server.truncated.update(f"/a/{n}" for n in ALL_NAMES)
    else:
        mirror_server.serve("a", fake_mnist.gz)
        mirror_server.statuses.update({f"/a/{n}": 500 for n in ALL_NAMES})
    mirror_server.serve("b", fake_mnist.gz)
    folder = download_mnist(
        tmp_path,
        mirrors=[mirror_server.mirror("a"), mirror_server.mirror("b")],
        progress=False,
        checksums=fake_mnist.sha256,
    )
    assert _folder_files(folder) == sorted(ALL_NAMES)
    for name in ALL_NAMES:
        assert (folder / name).read_bytes() == fake_mnist.gz[name]
        assert f"/a/{name}" in mirror_server.requests


def test_download_timeout_falls_back(tmp_path: Path, fake_mnist, mirror_server) -> None:
    name = "t10k-labels-idx1-ubyte.gz"
    mirror_server.serve("a", fake_mnist.gz)
    mirror_server.serve("b", fake_mnist.gz)
    mirror_server.stalls.add(f"/a/{name}")
    folder = download_mnist(
        tmp_path,
        mirrors=[mirror_server.mirror("a"), mirror_server.mirror("b")],
        timeout=0.2,
        progress=False,
        checksums=fake_mnist.sha256,
    )
    assert (folder / name).read_bytes() == fake_mnist.gz[name]
    assert f"/b/{name}" in mirror_server.requests


def test_download_all_mirrors_fail(
    tmp_path: Path, fake_mnist, other_fake_mnist, mirror_server
) -> None:
    mirror_server.serve("b", other_fake_mnist.gz)
    mirrors = [mirror_server.mirror("a"), mirror_server.mirror("b")]
    with pytest.raises(DataError) as info:
        download_mnist(tmp_path, mirrors=mirrors, progress=False, checksums=fake_mnist.sha256)
    message = str(info.value)
    first = ALL_NAMES[0]
    assert f"could not download {first}" in message
    assert f"{mirrors[0]}{first}: HTTP Error 404" in message
    assert f"{mirrors[1]}{first}: " in message and "checksum mismatch" in message
    assert _folder_files(tmp_path / "mnist") == []  # no partial or wrong file kept


def test_download_keeps_valid_files(tmp_path: Path, fake_mnist, mirror_server) -> None:
    folder = fake_mnist.write(tmp_path / "mnist")
    stamp = 1_000_000_000
    for name in ALL_NAMES:
        os.utime(folder / name, (stamp, stamp))
    mirror_server.serve("a", {n: b"garbage" for n in ALL_NAMES})
    download_mnist(
        tmp_path, mirrors=[mirror_server.mirror("a")], progress=False, checksums=fake_mnist.sha256
    )
    assert mirror_server.requests == []
    for name in ALL_NAMES:
        assert (folder / name).read_bytes() == fake_mnist.gz[name]
        assert (folder / name).stat().st_mtime == stamp


def test_download_replaces_only_bad_files(
    tmp_path: Path, fake_mnist, other_fake_mnist, mirror_server
) -> None:
    folder = fake_mnist.write(tmp_path / "mnist")
    bad = "train-labels-idx1-ubyte.gz"
    (folder / bad).write_bytes(other_fake_mnist.gz[bad])
    mirror_server.serve("a", fake_mnist.gz)
    download_mnist(
        tmp_path, mirrors=[mirror_server.mirror("a")], progress=False, checksums=fake_mnist.sha256
    )
    assert mirror_server.requests == [f"/a/{bad}"]
    assert (folder / bad).read_bytes() == fake_mnist.gz[bad]


def test_download_failure_keeps_existing_file(
    tmp_path: Path, fake_mnist, other_fake_mnist, mirror_server
) -> None:
    folder = fake_mnist.write(tmp_path / "mnist")
    bad = "train-labels-idx1-ubyte.gz"
    (folder / bad).write_bytes(other_fake_mnist.gz[bad])
    with pytest.raises(DataError, match=bad):
        download_mnist(
            tmp_path,
            mirrors=[mirror_server.mirror("a")],
            progress=False,
            checksums=fake_mnist.sha256,
        )
    assert (folder / bad).read_bytes() == other_fake_mnist.gz[bad]
    assert _folder_files(folder) == sorted(ALL_NAMES)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"mirrors": []}, "no download mirror"),
        ({"mirrors": ["file:///tmp/mnist/"]}, "not an http"),
        ({"mirrors": ["http://127.0.0.1:9/"], "timeout": 0.0}, "timeout must be positive"),
        ({"mirrors": ["http://127.0.0.1:9/"], "checksums": {}}, "no checksum given"),
    ],
)
def test_download_config_errors(tmp_path: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        download_mnist(tmp_path, progress=False, **kwargs)
    assert not (tmp_path / "mnist").exists()
