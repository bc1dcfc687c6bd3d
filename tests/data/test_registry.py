from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
import torch

from preimage.data.digits import load_digits
from preimage.data.registry import DATASETS, SPHERES_DEFAULT_N, DatasetSplit, load_dataset
from preimage.data.spheres import sphere_label
from preimage.errors import ConfigError, DataError, ShapeError


def test_names() -> None:
    assert DATASETS == ("mnist", "digits", "spheres", "cifar10", "cifar100")


def test_unknown_name_lists_known() -> None:
    with pytest.raises(ConfigError) as info:
        load_dataset("imagenet", "train")
    assert "'imagenet'" in str(info.value)
    assert all(name in str(info.value) for name in DATASETS)


def test_unknown_split() -> None:
    with pytest.raises(ConfigError, match="unknown split 'valid'"):
        load_dataset("digits", "valid")  # type: ignore[arg-type]


def test_digits() -> None:
    ds = load_dataset("digits", "test", seed=4)
    x, y = load_digits("test", seed=4)
    assert ds.name == "digits" and ds.num_classes == 10 and ds.sample_shape == (1, 8, 8)
    assert len(ds) == len(y)
    assert torch.equal(ds.images, x) and torch.equal(ds.labels, y)


def test_spheres_defaults() -> None:
    train = load_dataset("spheres", "train")
    test = load_dataset("spheres", "test")
    assert len(train) == SPHERES_DEFAULT_N["train"] == 50_000
    assert len(test) == SPHERES_DEFAULT_N["test"] == 10_000
    assert train.num_classes == 2 and train.sample_shape == (100,)
    assert torch.equal(sphere_label(test.images, r1=1.0, r2=10.0), test.labels)


def test_spheres_splits_and_seeds_differ() -> None:
    def points(split: str, seed: int) -> torch.Tensor:
        return load_dataset("spheres", split, seed=seed, spheres_n=50, spheres_d=3).images

    assert torch.equal(points("train", 0), points("train", 0))
    seen = [points("train", 0), points("test", 0), points("train", 1), points("test", 1)]
    for i in range(len(seen)):
        for j in range(i + 1, len(seen)):
            assert not torch.isclose(seen[i][:, None], seen[j][None]).all(-1).any()


def test_spheres_options_validated() -> None:
    with pytest.raises(ConfigError, match="d must be"):
        load_dataset("spheres", "train", spheres_d=1, spheres_n=4)
    with pytest.raises(ConfigError, match="n must be"):
        load_dataset("spheres", "train", spheres_n=0)
    with pytest.raises(ConfigError, match="seed"):
        load_dataset("spheres", "train", spheres_n=4, seed=-1)


def test_mnist_missing(tmp_path: Path) -> None:
    with pytest.raises(DataError, match="missing"):
        load_dataset("mnist", "test", data_dir=tmp_path)


def test_mnist_real(real_mnist_dir: Path) -> None:
    ds = load_dataset("mnist", "test", data_dir=real_mnist_dir.parent)
    assert len(ds) == 10_000 and ds.num_classes == 10 and ds.sample_shape == (1, 28, 28)
    assert ds.images.shape == (10_000, 1, 28, 28) and ds.labels.dtype == torch.int64


def test_dataset_split_validates_and_is_frozen() -> None:
    ok = DatasetSplit("toy", torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), 2, (2,))
    assert len(ok) == 3
    with pytest.raises(dataclasses.FrozenInstanceError):
        ok.num_classes = 3  # type: ignore[misc]
    with pytest.raises(ShapeError, match="do not hold samples"):
        DatasetSplit("toy", torch.zeros(3, 2), torch.zeros(3, dtype=torch.int64), 2, (3,))
    with pytest.raises(ShapeError, match="do not match"):
        DatasetSplit("toy", torch.zeros(3, 2), torch.zeros(4, dtype=torch.int64), 2, (2,))
