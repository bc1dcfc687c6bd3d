"""Tests of preimage.analysis.feature_entries against hand cases and direct scikit-learn calls."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from sklearn.metrics import auc, roc_auc_score

from preimage.analysis.feature_entries import (
    entry_roc,
    entry_statistics,
    representative_entries,
    zero_fraction,
)
from preimage.errors import ShapeError


def _features(n: int = 300, c: int = 4, d: int = 12, signal: float = 2.0, seed: int = 0):
    """Class k lights up entry 2k + 1, plus non-negative noise."""
    rng = np.random.default_rng(seed)
    y = rng.integers(0, c, n)
    f = np.abs(rng.normal(size=(n, d)))
    f[np.arange(n), 2 * y + 1] += signal
    return f, y


def test_representative_entries_find_the_class_entries() -> None:
    f, y = _features()
    assert representative_entries(f, y, 4).tolist() == [1, 3, 5, 7]


def test_entry_roc_matches_sklearn_and_orders_signal_strengths() -> None:
    f, y = _features(signal=1.0)
    roc = entry_roc(f, y, [1, 3, 5, 7])
    onehot = np.eye(4)[y]
    scores = f[:, [1, 3, 5, 7]]
    assert roc.auc_micro == pytest.approx(roc_auc_score(onehot.ravel(), scores.ravel()))
    per_class = [roc_auc_score(onehot[:, k], scores[:, k]) for k in range(4)]
    assert roc.auc_macro == pytest.approx(np.mean(per_class))
    assert auc(*roc.micro_curve) == pytest.approx(roc.auc_micro)
    assert auc(*roc.macro_curve) == pytest.approx(roc.auc_macro, abs=0.02)
    strong = entry_roc(*_features(signal=4.0), [1, 3, 5, 7])
    noise = entry_roc(*_features(signal=0.0), [1, 3, 5, 7])
    assert strong.auc_macro > roc.auc_macro > noise.auc_macro
    assert abs(noise.auc_micro - 0.5) < 0.1


def test_entry_statistics_of_one_class() -> None:
    f, y = _features()
    w = torch.randn(4, 12)
    s = entry_statistics(torch.from_numpy(f), torch.from_numpy(y), w, 2)
    np.testing.assert_allclose(s.mean, f[y == 2].mean(axis=0))
    np.testing.assert_allclose(s.std, f[y == 2].std(axis=0))
    np.testing.assert_allclose(s.product, w[2].double().numpy() * s.mean)
    with pytest.raises(ShapeError):
        entry_statistics(f[y != 2], y[y != 2], w, 2)


def test_zero_fraction_counts_exact_zeros_only() -> None:
    assert zero_fraction(np.array([0.0, 1e-30, -0.0, 2.0])) == 0.5
    with pytest.raises(ShapeError):
        entry_roc(np.ones((3, 2)), [0, 0, 0], [0, 1])
