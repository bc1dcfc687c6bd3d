from __future__ import annotations

import pytest
import torch

from preimage.data.registry import DatasetSplit
from preimage.data.subsets import class_subset, random_labels
from preimage.errors import ConfigError, DataError


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
