"""Fixtures for the data tests: an independent IDX encoder, fake MNIST folders, and a local
HTTP server that plays download mirrors (tests never touch the internet)."""

from __future__ import annotations

import gzip
import hashlib
import http.server
import struct
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

__all__ = ["FakeMnist", "MirrorServer"]

_TYPE_CODES = {
    np.dtype(np.uint8): 0x08,
    np.dtype(np.int8): 0x09,
    np.dtype(np.int16): 0x0B,
    np.dtype(np.int32): 0x0C,
    np.dtype(np.float32): 0x0D,
    np.dtype(np.float64): 0x0E,
}

MNIST_NAMES = {
    "train": ("train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz"),
    "test": ("t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"),
}


def encode_idx(array: np.ndarray) -> bytes:
    """IDX bytes of ``array``, written with struct independently of the parser under test."""
    code = _TYPE_CODES[array.dtype]
    header = struct.pack(">BBBB", 0, 0, code, array.ndim)
    header += struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(array.dtype.newbyteorder(">")).tobytes()


@pytest.fixture
def idx_bytes() -> Callable[[np.ndarray], bytes]:
    return encode_idx


@dataclass
class FakeMnist:
    """A tiny MNIST look-alike: arrays, the gzip bytes of each file, and their checksums."""

    arrays: dict[str, np.ndarray]
    gz: dict[str, bytes]
    sha256: dict[str, str]

    def write(self, folder: Path, *, compress: bool = True) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in self.gz.items():
            if compress:
                (folder / name).write_bytes(data)
            else:
                (folder / name.removesuffix(".gz")).write_bytes(gzip.decompress(data))
        return folder


def make_fake_mnist(seed: int = 0, n_train: int = 12, n_test: int = 5) -> FakeMnist:
    rng = np.random.default_rng(seed)
    arrays: dict[str, np.ndarray] = {}
    for split, n in (("train", n_train), ("test", n_test)):
        images_name, labels_name = MNIST_NAMES[split]
        arrays[images_name] = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
        arrays[labels_name] = rng.integers(0, 10, size=(n,), dtype=np.uint8)
    raw = {name: encode_idx(a) for name, a in arrays.items()}
    return FakeMnist(
        arrays=arrays,
        gz={name: gzip.compress(b, mtime=0) for name, b in raw.items()},
        sha256={name: hashlib.sha256(b).hexdigest() for name, b in raw.items()},
    )


@pytest.fixture
def fake_mnist() -> FakeMnist:
    return make_fake_mnist(0)


@pytest.fixture
def other_fake_mnist() -> FakeMnist:
    """Valid IDX files with different content: what a mirror serving wrong data looks like."""
    return make_fake_mnist(1)


@dataclass
class MirrorServer:
    """Routes ``/<mirror>/<file>`` to a body, a status code, a stall or a cut-off transfer."""

    base: str
    bodies: dict[str, bytes] = field(default_factory=dict)
    statuses: dict[str, int] = field(default_factory=dict)
    stalls: set[str] = field(default_factory=set)
    truncated: set[str] = field(default_factory=set)
    requests: list[str] = field(default_factory=list)

    def mirror(self, name: str) -> str:
        return f"{self.base}/{name}/"

    def serve(self, mirror: str, files: dict[str, bytes]) -> None:
        for name, body in files.items():
            self.bodies[f"/{mirror}/{name}"] = body


def _handler(state: MirrorServer) -> type[http.server.BaseHTTPRequestHandler]:
    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            state.requests.append(self.path)
            if self.path in state.stalls:
                time.sleep(1.0)
            status = state.statuses.get(self.path)
            body = state.bodies.get(self.path)
            if status is not None or body is None:
                self.send_error(status or 404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            if self.path in state.truncated:
                self.wfile.write(body[: len(body) // 2])
                self.close_connection = True
                return
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


class _QuietServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    block_on_close = False

    def handle_error(self, request: object, client_address: object) -> None:
        # A client that gave up on a stalled route leaves a broken pipe behind; that is expected.
        pass


@pytest.fixture
def mirror_server() -> Iterator[MirrorServer]:
    state = MirrorServer(base="")
    server = _QuietServer(("127.0.0.1", 0), _handler(state))
    host, port = server.server_address[:2]
    state.base = f"http://{host}:{port}"
    thread = threading.Thread(target=server.serve_forever, args=(0.02,), daemon=True)
    thread.start()
    try:
        yield state
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


@pytest.fixture
def real_mnist_dir(mnist_root: Path) -> Path:
    """The official files: ``$PREIMAGE_DATA/mnist`` or the shared copy next to the repo."""
    return mnist_root / "mnist"
