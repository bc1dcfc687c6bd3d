"""Tests of preimage.data.subsets: reproducible train/test subsets (moved from the studies)."""

from __future__ import annotations

import pytest
import torch

from preimage.data import load_dataset, load_train_test, subset
from preimage.data.registry import DatasetSplit
from preimage.data.subsets import class_subset, random_labels
from preimage.errors import ConfigError, DataError


def test_subset_draws_distinct_samples_reproducibly() -> None:
    x, y = torch.arange(20.0).reshape(20, 1), torch.arange(20)
    a, b = subset((x, y), 7, seed=3), subset((x, y), 7, seed=3)
    assert torch.equal(a[1], b[1]) and len(set(a[1].tolist())) == 7
    assert torch.equal(a[0][:, 0].long(), a[1])
    assert not torch.equal(subset((x, y), 7, seed=4)[1], a[1])
    assert subset((x, y), None, seed=0)[0] is x
    with pytest.raises(ConfigError):
        subset((x, y), 0, seed=0)


def test_test_split_subsets_are_disjoint(data_root) -> None:
    (xa, _), (xb, _) = load_train_test(
        "mnist", n_train=50, n_test=40, seed=0, data_dir=data_root, train_split="test"
    )
    assert xa.shape == (50, 1, 28, 28) and xb.shape == (40, 1, 28, 28)
    flat_a, flat_b = xa.reshape(50, -1), xb.reshape(40, -1)
    assert float(torch.cdist(flat_a, flat_b).min()) > 0
    with pytest.raises(ConfigError):
        load_train_test("mnist", n_train=None, n_test=40, seed=0, data_dir=data_root,
                        train_split="test")  # fmt: skip


def test_train_and_test_draws_use_seed_and_seed_plus_one() -> None:
    (x, _), (xt, _) = load_train_test("digits", n_train=5, n_test=5, seed=2)
    full_train, full_test = load_dataset("digits", "train"), load_dataset("digits", "test")
    assert torch.equal(x, subset((full_train.images, full_train.labels), 5, 2)[0])
    assert torch.equal(xt, subset((full_test.images, full_test.labels), 5, 3)[0])


def _toy(n: int = 1000, classes: int = 10) -> DatasetSplit:
    x = torch.arange(n, dtype=torch.float32)[:, None]
    return DatasetSplit("toy", x, torch.arange(n) % classes, classes, (1,))


def test_class_subset_keeps_inputs_and_relabels() -> None:
    sub = class_subset(_toy(), (7, 3))
    assert sub.num_classes == 2 and len(sub) == 200
    assert torch.equal(sub.labels, (sub.images[:, 0].long() % 10 == 3).long())
    with pytest.raises(ConfigError):
        class_subset(_toy(), (3, 3))
    with pytest.raises(DataError):
        class_subset(_toy(classes=2), (5, 6))


def test_random_labels_are_uniform_seeded_and_unrelated() -> None:
    ds = _toy(10_000)
    r = random_labels(ds, seed=1)
    assert torch.equal(r.images, ds.images)
    counts = torch.bincount(r.labels, minlength=10)
    assert counts.min() > 900 and counts.max() < 1100
    assert (r.labels == ds.labels).float().mean() < 0.12  # chance agreement, 0.1
    assert not torch.equal(r.labels, random_labels(ds, seed=2).labels)
