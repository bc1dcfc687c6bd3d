"""Tests of the invariance analysis helpers: nuisance read-out and decision planes."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preimage.analysis.invariance import (
    Standardize,
    classification_error,
    decision_plane_grid,
    nuisance_features,
    plane_basis,
    train_nuisance_classifier,
)
from preimage.errors import ConfigError
from preimage.models import FiRevNet


def _flat_model(d: int = 8) -> FiRevNet:
    return FiRevNet((d,), 2, stages=1, blocks_per_stage=2, hidden=16, batch_norm=False)


def test_nuisance_features_are_the_split_of_the_code() -> None:
    model = _flat_model()
    x = torch.randn(10, 8)
    with torch.no_grad():
        z, _ = model.eval()(x)
    assert torch.allclose(nuisance_features(model, x, batch_size=3), z[:, 2:], atol=1e-6)


def test_nuisance_features_need_an_invertible_classifier() -> None:
    with pytest.raises(ConfigError, match="split"):
        nuisance_features(torch.nn.Linear(3, 2), torch.zeros(2, 3))


def test_standardize_matches_numpy() -> None:
    z = torch.randn(50, 4, dtype=torch.float64) * torch.tensor([1.0, 10.0, 0.1, 3.0]) + 5
    out = Standardize.fit(z)(z).numpy()
    ref = (z.numpy() - z.numpy().mean(0)) / z.numpy().std(0)
    np.testing.assert_allclose(out, ref, rtol=1e-10)


def test_classification_error_counts_mistakes() -> None:
    logits = torch.tensor([[1.0, 0.0], [0.0, 1.0], [2.0, 1.0], [0.0, 3.0]])
    assert (
        classification_error(lambda t: t, logits, torch.tensor([0, 0, 0, 0]), batch_size=3) == 0.5
    )


class _Identity(torch.nn.Module):
    """The identity as an invertible classifier: z_s = x[:, :2], z_n = x[:, 2:]."""

    num_classes = 2

    def __init__(self) -> None:
        super().__init__()
        self.scale = torch.nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return x * self.scale, torch.zeros(x.shape[0])

    def split(self, z: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        return z[:, :2], z[:, 2:]


def test_nuisance_classifier_reads_class_information_only_where_it_is() -> None:
    # z_n = x[2:]: labels decided by x[5] are decodable from z_n; labels decided by x[0] (a
    # logit coordinate, independent of the rest) are not.
    model = _Identity()
    x = torch.randn(600, 8)
    x_test = torch.randn(300, 8)
    seen = train_nuisance_classifier(
        model,
        (x, (x[:, 5] > 0).long()),
        (x_test, (x_test[:, 5] > 0).long()),
        hidden=32,
        epochs=25,
        lr=3e-3,
    )
    hidden = train_nuisance_classifier(
        model,
        (x, (x[:, 0] > 0).long()),
        (x_test, (x_test[:, 0] > 0).long()),
        hidden=32,
        epochs=25,
        lr=3e-3,
    )
    assert seen.test_error < 0.1
    assert hidden.test_error > 0.35
    assert len(seen.losses) == 25 and seen.losses[-1] < seen.losses[0]
    assert seen.logits(model, x_test[:4]).shape == (4, 2)


def test_plane_basis_is_orthonormal_and_spans_both_points() -> None:
    a, b = torch.randn(2, 3, 5, dtype=torch.float64)
    e1, e2 = plane_basis(a, b)
    basis = torch.stack((e1.reshape(-1), e2.reshape(-1)))
    np.testing.assert_allclose((basis @ basis.T).numpy(), np.eye(2), atol=1e-12)
    for p in (a, b):
        proj = (basis.T @ (basis @ p.reshape(-1))).reshape(p.shape)
        np.testing.assert_allclose(proj.numpy(), p.numpy(), atol=1e-12)
    with pytest.raises(ConfigError, match="parallel"):
        plane_basis(a, 2 * a)


def test_decision_plane_grid_evaluates_the_plane_points() -> None:
    a = torch.tensor([1.0, 2.0, 2.0], dtype=torch.float64)
    b = torch.tensor([0.0, 4.0, -3.0], dtype=torch.float64)
    w = torch.tensor([0.3, -1.0, 0.5], dtype=torch.float64)
    grid = decision_plane_grid(lambda p: p @ w, a, b, resolution=7, extent=3.0, batch_size=5)
    e1, e2 = plane_basis(a, b)
    u = np.linspace(-3, 3, 7)
    ref = u[None, :] * float(e1 @ w) + u[:, None] * float(e2 @ w)
    np.testing.assert_allclose(grid.values.numpy(), ref, atol=1e-12)
    # The points' coordinates reproduce them.
    ua, va = grid.coords_a
    np.testing.assert_allclose((ua * e1 + va * e2).numpy(), a.numpy(), atol=1e-12)
    ub, vb = grid.coords_b
    np.testing.assert_allclose((ub * e1 + vb * e2).numpy(), b.numpy(), atol=1e-12)
