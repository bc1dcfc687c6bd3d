"""Tests of preimage.attacks.metamer against closed forms of an affine bijection."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from preimage.attacks.metamer import interpolate_nuisance, metamer_grid, metameric_sample
from preimage.errors import ConfigError, ShapeError
from preimage.models import FiRevNet
from tests.attacks.toy import AffineInvertibleClassifier

SHAPE = (1, 3, 3)
CLASSES = 3


@pytest.fixture
def toy() -> AffineInvertibleClassifier:
    return AffineInvertibleClassifier(SHAPE, CLASSES, seed=1)


def _rand(n: int, seed: int) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.rand(n, *SHAPE, generator=gen, dtype=torch.float64)


def _numpy_preimage(toy: AffineInvertibleClassifier, z: np.ndarray) -> np.ndarray:
    w, b = toy.numpy_params()
    return np.linalg.solve(w, (z - b).T).T.reshape(z.shape[0], *SHAPE)


def _numpy_code(toy: AffineInvertibleClassifier, x: torch.Tensor) -> np.ndarray:
    w, b = toy.numpy_params()
    return x.reshape(x.shape[0], -1).numpy() @ w.T + b


def test_metamer_keeps_logits_and_takes_nuisance(toy: AffineInvertibleClassifier) -> None:
    a, b = _rand(4, 0), _rand(4, 1)
    x_met = metameric_sample(toy, a, b)
    assert x_met.shape == a.shape and not x_met.requires_grad
    z_met = _numpy_code(toy, x_met)
    za, zb = _numpy_code(toy, a), _numpy_code(toy, b)
    assert np.abs(z_met[:, :CLASSES] - za[:, :CLASSES]).max() <= 1e-4
    np.testing.assert_allclose(z_met[:, CLASSES:], zb[:, CLASSES:], atol=1e-8)
    expected = _numpy_preimage(toy, np.concatenate([za[:, :CLASSES], zb[:, CLASSES:]], axis=1))
    np.testing.assert_allclose(x_met.numpy(), expected, atol=1e-10)


def test_metamer_of_itself_is_reconstruction(toy: AffineInvertibleClassifier) -> None:
    a = _rand(3, 2)
    torch.testing.assert_close(metameric_sample(toy, a, a), a)


def test_grid_matches_pairwise_metamers(toy: AffineInvertibleClassifier) -> None:
    a, b = _rand(2, 3), _rand(3, 4)
    grid = metamer_grid(toy, a, b)
    assert grid.shape == (2, 3, *SHAPE)
    for r in range(2):
        for k in range(3):
            torch.testing.assert_close(
                grid[r, k], metameric_sample(toy, a[r : r + 1], b[k : k + 1])[0]
            )


def test_interpolation_is_linear_in_nuisance(toy: AffineInvertibleClassifier) -> None:
    x, target = _rand(2, 5), _rand(2, 6)
    steps = 4
    path = interpolate_nuisance(toy, x, target, steps)
    assert path.shape == (steps, 2, *SHAPE)
    torch.testing.assert_close(path[0], x)
    torch.testing.assert_close(path[-1], metameric_sample(toy, x, target))
    zx, zt = _numpy_code(toy, x), _numpy_code(toy, target)
    for j, t in enumerate(np.linspace(0.0, 1.0, steps)):
        z = np.concatenate([zx[:, :CLASSES], (1 - t) * zx[:, CLASSES:] + t * zt[:, CLASSES:]], 1)
        np.testing.assert_allclose(path[j].numpy(), _numpy_preimage(toy, z), atol=1e-10)


def test_interpolation_broadcasts_single_target(toy: AffineInvertibleClassifier) -> None:
    x, target = _rand(3, 7), _rand(1, 8)
    path = interpolate_nuisance(toy, x, target, 3)
    torch.testing.assert_close(path[-1], metameric_sample(toy, x, target.expand(3, *SHAPE)))


def test_restores_training_mode_and_validates(toy: AffineInvertibleClassifier) -> None:
    toy.train()
    metameric_sample(toy, _rand(2, 0), _rand(2, 1))
    assert toy.training
    with pytest.raises(ShapeError):
        metameric_sample(toy, _rand(2, 0), _rand(3, 1))
    with pytest.raises(ShapeError):
        metamer_grid(toy, _rand(2, 0), torch.rand(2, 9, dtype=torch.float64))
    with pytest.raises(ConfigError):
        interpolate_nuisance(toy, _rand(2, 0), _rand(2, 1), steps=1)
    with pytest.raises(ShapeError):
        interpolate_nuisance(toy, _rand(3, 0), _rand(2, 1), steps=3)
    with pytest.raises(ConfigError):
        metameric_sample(nn.Linear(9, 9), _rand(2, 0), _rand(2, 1))
    bad = _rand(2, 1)
    bad[0, 0, 0, 0] = float("nan")
    with pytest.raises(ConfigError):
        metameric_sample(toy, _rand(2, 0), bad)


def test_firevnet_metamers_keep_logits() -> None:
    torch.manual_seed(0)
    model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8).eval()
    a, b = torch.rand(3, 1, 8, 8), torch.rand(3, 1, 8, 8)
    x_met = metameric_sample(model, a, b)
    with torch.no_grad():
        z_met, _ = model(x_met)
        za, _ = model(a)
        zb, _ = model(b)
    assert (z_met[:, :10] - za[:, :10]).abs().max() <= 1e-4
    assert (z_met[:, 10:] - zb[:, 10:]).abs().max() <= 1e-4
    path = interpolate_nuisance(model, a, b, 3)
    assert (path[0] - a).abs().max() <= 1e-4
