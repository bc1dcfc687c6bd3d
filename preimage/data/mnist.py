r"""MNIST from the official IDX files: parsing, checksums and a mirror-aware downloader.

The four files (``train-images-idx3-ubyte.gz`` ...) are read with :mod:`numpy` straight from
the (optionally gzip-compressed) IDX stream. Integrity is checked on the *decompressed* bytes,
so a re-compressed or already-extracted copy of the official files verifies as well as the
original archives.

IDX layout (LeCun et al.): two zero bytes, one type code byte (``0x08`` uint8, ``0x09`` int8,
``0x0B`` int16, ``0x0C`` int32, ``0x0D`` float32, ``0x0E`` float64), one byte :math:`k` with the
number of dimensions, :math:`k` big-endian uint32 sizes, then :math:`\prod_i n_i` big-endian
values in C order.

References:
    Jacobsen et al. (2019), Excessive Invariance Causes Adversarial Vulnerability, section 4 and
    appendix D.2 (MNIST experiments); LeCun, Cortes, Burges, *The MNIST database of handwritten
    digits* (file format description).
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import http.client
import io
import math
import os
import secrets
import urllib.parse
import urllib.request
import zlib
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from types import MappingProxyType
from typing import Literal, Protocol

import numpy as np
import torch
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)

from preimage.data.paths import dataset_dir
from preimage.errors import ConfigError, DataError

__all__ = [
    "MNIST_FILES",
    "MNIST_MIRRORS",
    "MNIST_SHA256",
    "download_mnist",
    "load_mnist",
    "mnist_dir",
    "read_idx",
]

MNIST_FILES: Mapping[str, tuple[str, str]] = MappingProxyType(
    {
        "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
        "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
    }
)
"""Split name -> (images file, labels file)."""

MNIST_SHA256: Mapping[str, str] = MappingProxyType(
    {
        "train-images-idx3-ubyte.gz": (
            "ba891046e6505d7aadcbbe25680a0738ad16aec93bde7f9b65e87a2fc25776db"
        ),
        "train-labels-idx1-ubyte.gz": (
            "65a50cbbf4e906d70832878ad85ccda5333a97f0f4c3dd2ef09a8a9eef7101c5"
        ),
        "t10k-images-idx3-ubyte.gz": (
            "0fa7898d509279e482958e8ce81c8e77db3f2f8254e26661ceb7762c4d494ce7"
        ),
        "t10k-labels-idx1-ubyte.gz": (
            "ff7bcfd416de33731a308c3f266cc351222c34898ecbeaf847f06e48f7ec33f2"
        ),
    }
)
"""File name -> SHA-256 of the decompressed IDX bytes (header included) of the official files."""

MNIST_MIRRORS: tuple[str, ...] = (
    "https://ossci-datasets.s3.amazonaws.com/mnist/",
    "https://storage.googleapis.com/cvdf-datasets/mnist/",
    "http://yann.lecun.com/exdb/mnist/",
)
"""Default download mirrors, tried in order."""

_IDX_DTYPES: Mapping[int, np.dtype] = MappingProxyType(
    {
        0x08: np.dtype(np.uint8),
        0x09: np.dtype(np.int8),
        0x0B: np.dtype(">i2"),
        0x0C: np.dtype(">i4"),
        0x0D: np.dtype(">f4"),
        0x0E: np.dtype(">f8"),
    }
)
_GZIP_MAGIC = b"\x1f\x8b"
# Deflate cannot compress better than about 1032:1; a header that declares more data than the
# compressed file could ever expand to is corrupted, and must be rejected before allocating.
_MAX_DEFLATE_RATIO = 1100
_CHUNK = 1 << 16
# Everything a flaky mirror can cause; each moves on to the next mirror instead of aborting.
_TRANSFER_ERRORS = (OSError, ValueError, EOFError, zlib.error, http.client.HTTPException)
_USER_AGENT = "preimage-mnist-downloader (python-urllib)"
_IMAGE_SIZE = 28
_NUM_CLASSES = 10

Split = Literal["train", "test"]


class _Hasher(Protocol):
    def update(self, data: bytes | memoryview, /) -> None: ...


def _open_idx(path: Path) -> io.BufferedIOBase:
    with path.open("rb") as probe:
        compressed = probe.read(2) == _GZIP_MAGIC
    return gzip.open(path, "rb") if compressed else path.open("rb")


def _read_exact(stream: io.BufferedIOBase, buffer: memoryview) -> int:
    filled = 0
    while filled < len(buffer):
        got = stream.readinto(buffer[filled:])
        if not got:
            break
        filled += got
    return filled


def _parse_idx_stream(
    stream: io.BufferedIOBase, path: Path, max_bytes: int, hasher: _Hasher | None
) -> np.ndarray:
    magic = stream.read(4)
    if len(magic) < 4:
        raise DataError(f"{path}: truncated IDX file ({len(magic)} bytes, no complete header)")
    if magic[0] != 0 or magic[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number 0x{magic.hex()})")
    dtype = _IDX_DTYPES.get(magic[2])
    if dtype is None:
        raise DataError(f"{path}: unknown IDX data type code 0x{magic[2]:02x}")
    ndim = magic[3]
    if ndim == 0:
        raise DataError(f"{path}: IDX header declares zero dimensions")
    dims_raw = stream.read(4 * ndim)
    if len(dims_raw) < 4 * ndim:
        raise DataError(f"{path}: truncated IDX header (expected {ndim} dimension sizes)")
    dims = tuple(int(n) for n in np.frombuffer(dims_raw, dtype=">u4"))
    count = math.prod(dims)
    nbytes = count * dtype.itemsize
    if nbytes > max_bytes:
        raise DataError(
            f"{path}: corrupted IDX header (shape {dims} needs {nbytes} bytes, "
            f"the file can hold at most {max_bytes})"
        )
    data = np.empty(count, dtype=dtype)
    got = _read_exact(stream, memoryview(data.view(np.uint8)))
    if got < nbytes:
        raise DataError(
            f"{path}: truncated IDX file (shape {dims} needs {nbytes} data bytes, found {got})"
        )
    if stream.read(1):
        raise DataError(f"{path}: corrupted IDX file (data continues past shape {dims})")
    if hasher is not None:
        hasher.update(magic)
        hasher.update(dims_raw)
        hasher.update(memoryview(data.view(np.uint8)))
    if dtype.byteorder == ">":
        data = data.astype(dtype.newbyteorder("="))
    return data.reshape(dims)


def _load_idx(path: Path, hasher: _Hasher | None) -> np.ndarray:
    try:
        size = path.stat().st_size
        with _open_idx(path) as stream:
            compressed = isinstance(stream, gzip.GzipFile)
            header_slack = 4 + 4 * 255
            max_bytes = size * (_MAX_DEFLATE_RATIO if compressed else 1) + header_slack
            return _parse_idx_stream(stream, path, max_bytes, hasher)
    except DataError:
        raise
    except FileNotFoundError as exc:
        raise DataError(f"{path}: no such file") from exc
    except (OSError, EOFError, zlib.error) as exc:
        raise DataError(f"{path}: unreadable or corrupted ({exc})") from exc


def read_idx(path: str | os.PathLike[str]) -> np.ndarray:
    r"""Parse one IDX file, gzip-compressed or raw (detected from its first bytes).

    Args:
        path: The ``.idx``/``-ubyte`` file, or its ``.gz`` archive.

    Returns:
        A writable array in native byte order with the shape and dtype declared in the header.

    Raises:
        DataError: If the file is missing, is not IDX, has an unknown type code, or is truncated,
            has trailing data, or fails the gzip CRC.

    Example:
        >>> import tempfile
        >>> from pathlib import Path
        >>> with tempfile.TemporaryDirectory() as tmp:
        ...     path = Path(tmp) / "tiny-idx2-ubyte"
        ...     header = bytes([0, 0, 0x08, 2, 0, 0, 0, 2, 0, 0, 0, 3])
        ...     _ = path.write_bytes(header + bytes(range(6)))
        ...     read_idx(path)
        array([[0, 1, 2],
               [3, 4, 5]], dtype=uint8)
    """
    return _load_idx(Path(path), None)


def _read_verified(path: Path, expected: str | None) -> np.ndarray:
    hasher = hashlib.sha256() if expected is not None else None
    array = _load_idx(path, hasher)
    if hasher is not None and hasher.hexdigest() != expected:
        raise DataError(
            f"{path}: checksum mismatch (sha256 of the decompressed data is "
            f"{hasher.hexdigest()}, expected {expected}); fetch it again with "
            "`preimage data mnist` (download=True in the API)"
        )
    return array


def _all_files() -> tuple[str, ...]:
    return tuple(name for pair in MNIST_FILES.values() for name in pair)


def _locate(folder: Path, name: str) -> Path | None:
    """The file itself, or its extracted twin without ``.gz`` (users often gunzip them)."""
    for candidate in (folder / name, folder / name.removesuffix(".gz")):
        if candidate.is_file():
            return candidate
    return None


def mnist_dir(root: str | os.PathLike[str] | None = None) -> Path:
    """Resolve the MNIST folder from a data root or from the MNIST folder itself.

    Args:
        root: A data root holding ``mnist/``, the MNIST folder itself, or ``None`` for
            :func:`preimage.data.paths.data_root`.

    Returns:
        The folder that holds (or would hold, after a download) the four IDX files.

    Example:
        >>> from pathlib import Path
        >>> mnist_dir("/nonexistent") == Path("/nonexistent/mnist")
        True
    """
    names = _all_files()
    return dataset_dir("mnist", root, files=(*names, *(n.removesuffix(".gz") for n in names)))


def _checksums_for(names: Sequence[str], checksums: Mapping[str, str] | None) -> dict[str, str]:
    table = MNIST_SHA256 if checksums is None else checksums
    missing = [n for n in names if n not in table]
    if missing:
        raise ConfigError(f"no checksum given for {', '.join(missing)}")
    return {n: table[n].lower() for n in names}


def load_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    split: Split = "train",
    download: bool = False,
    verify: bool = True,
    checksums: Mapping[str, str] | None = None,
    mirrors: Sequence[str] | None = None,
) -> tuple[torch.Tensor, torch.Tensor]:
    r"""Load one MNIST split as tensors.

    Args:
        root: A data root holding ``mnist/`` or the MNIST folder itself; ``None`` resolves via
            ``$PREIMAGE_DATA`` then ``~/.cache/preimage`` (see :func:`mnist_dir`).
        split: ``"train"`` (60 000 images) or ``"test"`` (10 000 images).
        download: If the split's files are missing or fail to load, fetch them with
            :func:`download_mnist` and load again.
        verify: Check the SHA-256 of the decompressed files against ``checksums``.
        checksums: File name -> SHA-256 of the decompressed file; defaults to
            :data:`MNIST_SHA256` (the official files).
        mirrors: Download mirrors for ``download=True``; defaults to :data:`MNIST_MIRRORS`.

    Returns:
        ``(images, labels)``: images float32 in :math:`[0, 1]` (pixel / 255) of shape
        ``(N, 1, 28, 28)``, labels int64 in :math:`\{0, \dots, 9\}` of shape ``(N,)``.

    Raises:
        ConfigError: For an unknown split.
        DataError: If a file is missing, corrupted, fails its checksum, or the images and
            labels do not match.

    Example:
        >>> load_mnist("/nonexistent", split="test")
        Traceback (most recent call last):
        ...
        preimage.errors.DataError: MNIST file 't10k-images-idx3-ubyte.gz' is missing in ...
    """
    if split not in MNIST_FILES:
        raise ConfigError(f"unknown MNIST split {split!r}; choose one of {', '.join(MNIST_FILES)}")
    folder = mnist_dir(root)
    names = MNIST_FILES[split]
    expected = _checksums_for(names, checksums) if verify else {}
    try:
        return _load_split(folder, names, expected)
    except DataError:
        if not download:
            raise
    # Only a missing or damaged split pays for the download_mnist pass over all four files.
    download_mnist(folder, mirrors=mirrors, checksums=checksums)
    return _load_split(folder, names, expected)


def _load_split(
    folder: Path, names: tuple[str, str], expected: Mapping[str, str]
) -> tuple[torch.Tensor, torch.Tensor]:
    paths = []
    for name in names:
        path = _locate(folder, name)
        if path is None:
            raise DataError(
                f"MNIST file {name!r} is missing in {folder}; pass --download (download=True in "
                f"the API) to fetch it, or point --data-dir or $PREIMAGE_DATA at a folder holding "
                f"the official IDX files"
            )
        paths.append(path)
    images = _read_verified(paths[0], expected.get(names[0]))
    labels = _read_verified(paths[1], expected.get(names[1]))
    _check_mnist_arrays(images, labels, paths[0], paths[1])
    x = torch.from_numpy(images).to(torch.float32).div_(255.0).unsqueeze(1)
    y = torch.from_numpy(labels.astype(np.int64))
    return x, y


def _check_mnist_arrays(
    images: np.ndarray, labels: np.ndarray, images_path: Path, labels_path: Path
) -> None:
    side = _IMAGE_SIZE
    if images.dtype != np.uint8 or images.ndim != 3 or images.shape[1:] != (side, side):
        raise DataError(
            f"{images_path}: expected uint8 images of shape (N, {side}, {side}), "
            f"found {images.dtype} {images.shape}"
        )
    if labels.dtype != np.uint8 or labels.ndim != 1:
        raise DataError(
            f"{labels_path}: expected uint8 labels of shape (N,), found {labels.dtype} "
            f"{labels.shape}"
        )
    if labels.shape[0] != images.shape[0]:
        raise DataError(
            f"{labels_path}: {labels.shape[0]} labels for {images.shape[0]} images in {images_path}"
        )
    if labels.size and int(labels.max()) >= _NUM_CLASSES:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..9")


def _is_valid(folder: Path, name: str, expected: str) -> bool:
    path = _locate(folder, name)
    if path is None:
        return False
    try:
        _read_verified(path, expected)
    except DataError:
        return False
    return True


def _fetch(url: str, dest: Path, expected: str, timeout: float, bar: Progress | None) -> None:
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(8)}.part")
    # Exclusive creation honours the umask (mkstemp would leave a 0600 file in a shared folder).
    out = tmp.open("xb")
    try:
        with out:
            request = urllib.request.Request(url, headers={"User-Agent": _USER_AGENT})
            with urllib.request.urlopen(request, timeout=timeout) as response:
                length = response.headers.get("Content-Length")
                total = int(length) if length and length.isdigit() else None
                task = bar.add_task(dest.name, total=total) if bar is not None else None
                received = 0
                while chunk := response.read(_CHUNK):
                    out.write(chunk)
                    received += len(chunk)
                    if bar is not None and task is not None:
                        bar.advance(task, len(chunk))
                if total is not None and received != total:
                    raise DataError(f"incomplete transfer ({received} of {total} bytes)")
        _read_verified(tmp, expected)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


@contextlib.contextmanager
def _progress_bar(enabled: bool) -> Iterator[Progress | None]:
    if not enabled:
        yield None
        return
    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    # stderr keeps the CLI's stdout clean for machine-readable output.
    with Progress(*columns, console=Console(stderr=True)) as bar:
        yield bar


def _validated_mirrors(mirrors: Sequence[str] | None) -> tuple[str, ...]:
    if mirrors is None:
        chosen = MNIST_MIRRORS
    elif isinstance(mirrors, str):
        # A lone URL is a Sequence[str] of characters; take the caller's evident meaning.
        chosen = (mirrors,)
    else:
        chosen = tuple(mirrors)
    if not chosen:
        raise ConfigError("no download mirror given")
    for mirror in chosen:
        if urllib.parse.urlsplit(mirror).scheme not in ("http", "https"):
            raise ConfigError(f"mirror {mirror!r} is not an http(s) URL")
    return chosen


def download_mnist(
    root: str | os.PathLike[str] | None = None,
    *,
    mirrors: Sequence[str] | None = None,
    timeout: float = 30.0,
    progress: bool = True,
    checksums: Mapping[str, str] | None = None,
) -> Path:
    """Download the four MNIST files that are missing or corrupted, trying mirrors in order.

    Each file goes to a temporary file in the target folder, is decompressed and checked against
    its SHA-256, and only then atomically renamed into place, so an interrupted or bad transfer
    never leaves a partial file and never replaces a good one. Any failure of a mirror (HTTP
    error, timeout, incomplete transfer, corrupted data, checksum mismatch) moves on to the next.

    Args:
        root: A data root holding ``mnist/`` or the MNIST folder itself (see :func:`mnist_dir`).
        mirrors: Base URLs (http or https) the file names are appended to; defaults to
            :data:`MNIST_MIRRORS`.
        timeout: Socket timeout in seconds for each connection and read.
        progress: Show a rich progress bar on stderr.
        checksums: File name -> SHA-256 of the decompressed file; defaults to
            :data:`MNIST_SHA256`.

    Returns:
        The MNIST folder, now holding all four verified files.

    Raises:
        ConfigError: For no mirror, a non-http(s) mirror, a non-positive timeout or a file
            without checksum.
        DataError: If every mirror failed for some file (the message lists each failure) or
            the folder cannot be created.

    Example:
        >>> download_mnist("/nonexistent", mirrors=["ftp://example.org/mnist/"])
        Traceback (most recent call last):
        ...
        preimage.errors.ConfigError: mirror 'ftp://example.org/mnist/' is not an http(s) URL
    """
    urls = _validated_mirrors(mirrors)
    if not timeout > 0:
        raise ConfigError(f"timeout must be positive, got {timeout}")
    names = _all_files()
    expected = _checksums_for(names, checksums)
    folder = mnist_dir(root)
    pending = [name for name in names if not _is_valid(folder, name, expected[name])]
    if not pending:
        return folder
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DataError(f"cannot create the MNIST folder {folder}: {exc}") from exc
    with _progress_bar(progress) as bar:
        for name in pending:
            failures = []
            for mirror in urls:
                url = f"{mirror.rstrip('/')}/{name}"
                try:
                    _fetch(url, folder / name, expected[name], timeout, bar)
                except _TRANSFER_ERRORS as exc:
                    failures.append(f"{url}: {exc}")
                else:
                    break
            else:
                raise DataError(f"could not download {name} into {folder}; " + "; ".join(failures))
    return folder
