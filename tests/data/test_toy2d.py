from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from preimage.data.toy2d import TOY2D, sample_toy2d
from preimage.errors import ConfigError


@pytest.mark.parametrize("name", sorted(TOY2D))
def test_shape_seed_and_range(name: str) -> None:
    x = sample_toy2d(name, 2000, seed=3, dtype=torch.float64)
    assert x.shape == (2000, 2) and x.dtype == torch.float64
    assert torch.equal(x, sample_toy2d(name, 2000, seed=3, dtype=torch.float64))
    assert not torch.equal(x, sample_toy2d(name, 2000, seed=4, dtype=torch.float64))
    assert bool(torch.isfinite(x).all())
    assert float(x.abs().max()) < 6.0


def test_eight_gaussians_modes() -> None:
    x = sample_toy2d("8gaussians", 8000, seed=0).numpy()
    angles = np.arctan2(x[:, 1], x[:, 0])
    modes = np.round(angles / (2 * math.pi / 8)) % 8
    counts = np.bincount(modes.astype(int), minlength=8)
    assert counts.min() > 800
    assert abs(np.linalg.norm(x, axis=1).mean() - 2 * math.sqrt(2)) < 0.1


def test_checkerboard_occupies_alternate_cells() -> None:
    x = sample_toy2d("checkerboard", 4000, seed=0).numpy() / 2.0
    cells = (np.floor(x[:, 0]) + np.floor(x[:, 1])) % 2
    assert np.all(cells == cells[0])


def test_rings_radii() -> None:
    r = sample_toy2d("rings", 4000, seed=0).norm(dim=1).numpy()
    nearest = np.abs(r[:, None] - 0.9 * np.arange(1, 5)[None]).min(axis=1)
    assert np.quantile(nearest, 0.99) < 0.35


def test_moons_two_components() -> None:
    x = sample_toy2d("moons", 4000, seed=0).numpy()
    assert abs(x.mean(axis=0)).max() < 0.3


def test_errors() -> None:
    with pytest.raises(ConfigError):
        sample_toy2d("spiral", 3)
    with pytest.raises(ConfigError):
        sample_toy2d("moons", 0)
