from __future__ import annotations

from collections import Counter

import numpy as np
import pytest
import torch
from sklearn import datasets

from preimage.data.digits import load_digits
from preimage.errors import ConfigError


def _rows(x: torch.Tensor, y: torch.Tensor) -> Counter[tuple[bytes, int]]:
    return Counter((img.numpy().tobytes(), int(label)) for img, label in zip(x, y, strict=True))


@pytest.fixture(scope="module")
def reference() -> tuple[np.ndarray, np.ndarray]:
    bunch = datasets.load_digits()
    return bunch.images, bunch.target


def test_types_and_range() -> None:
    x, y = load_digits("train")
    assert x.dtype == torch.float32 and y.dtype == torch.int64
    assert x.shape[1:] == (1, 8, 8) and y.shape == (x.shape[0],)
    assert float(x.min()) == 0.0 and float(x.max()) == 1.0
    assert set(y.tolist()) == set(range(10))


@pytest.mark.parametrize(("fraction", "seed"), [(0.25, 0), (0.1, 3), (0.5, 7)])
def test_splits_partition_the_data(fraction: float, seed: int, reference) -> None:
    images, target = reference
    train = load_digits("train", test_fraction=fraction, seed=seed)
    test = load_digits("test", test_fraction=fraction, seed=seed)
    assert len(train[1]) + len(test[1]) == len(target)
    assert len(test[1]) == int(np.ceil(fraction * len(target)))
    expected = Counter(
        ((img / 16).astype(np.float32)[None].tobytes(), int(t))
        for img, t in zip(images, target, strict=True)
    )
    assert _rows(*train) + _rows(*test) == expected
    # stratified: every class is split in (almost) the requested proportion
    class_sizes = np.bincount(target, minlength=10)
    test_sizes = np.bincount(test[1].numpy(), minlength=10)
    assert np.all(np.abs(test_sizes - fraction * class_sizes) <= 1.0)


def test_deterministic_and_seeded() -> None:
    a = load_digits("test", seed=5)
    b = load_digits("test", seed=5)
    c = load_digits("test", seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])


def test_independent_of_global_rng() -> None:
    np.random.seed(1)
    torch.manual_seed(1)
    a = load_digits("train")
    np.random.seed(2)
    torch.manual_seed(2)
    assert torch.equal(a[0], load_digits("train")[0])


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"split": "val"}, "unknown digits split"),
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"seed": -1}, "seed"),
    ],
)
def test_errors(kwargs: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        load_digits(**kwargs)
