"""Suite-wide fixtures (tests and doctests): one intra-op thread, a fixed seed, the data root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from preimage.allocator import tune_allocator

REPO = Path(__file__).resolve().parent

# As the command line does for its process (preimage.allocator): each pytest worker trains many
# small networks, whose megabyte-sized activations glibc would otherwise map and unmap per step.
tune_allocator()


@pytest.fixture(autouse=True)
def single_thread_and_seed() -> Iterator[None]:
    # The tensors in tests are tiny: on a shared two-core machine intra-op threads cost far more
    # in synchronisation than they save, and pytest-xdist already runs one worker per core.
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def data_root() -> Path:
    """``$PREIMAGE_DATA`` or the ``shared/data`` folder beside the repository."""
    return Path(os.environ.get("PREIMAGE_DATA", REPO.parent / "shared" / "data"))


def require_mnist(root: Path) -> Path:
    """``root`` when it holds the official MNIST files; otherwise fail or skip.

    The tests that need MNIST must not turn green by skipping: when the data are expected
    (``$PREIMAGE_DATA`` is set, as ``make test`` and CI set it, or ``CI`` is set) a missing file
    fails the run with a message saying where it looked. Only a bare ``pytest`` on a machine
    without the data skips them.
    """
    folder = root / "mnist"
    names = ("train-images-idx3-ubyte.gz", "t10k-images-idx3-ubyte.gz")
    if all((folder / n).is_file() or (folder / n.removesuffix(".gz")).is_file() for n in names):
        return root
    message = f"the MNIST IDX files are missing in {folder}"
    if os.environ.get("PREIMAGE_DATA") or os.environ.get("CI"):
        pytest.fail(
            f"{message}; $PREIMAGE_DATA or CI is set, so they are expected (run "
            "`preimage data mnist --data-dir DIR` or point PREIMAGE_DATA at a copy)",
            pytrace=False,
        )
    pytest.skip(f"{message} (set PREIMAGE_DATA to run these tests)")


@pytest.fixture(scope="session")
def mnist_root(data_root: Path) -> Path:
    """The data root holding ``mnist/``; see :func:`require_mnist` for a missing copy."""
    return require_mnist(data_root)
