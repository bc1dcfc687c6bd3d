"""Suite-wide fixtures (tests and doctests): one intra-op thread, a fixed seed, the data root."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parent


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
