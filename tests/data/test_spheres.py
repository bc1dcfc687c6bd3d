from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import stats

from preimage.data.spheres import sample_spheres, sphere_label
from preimage.errors import ConfigError, ShapeError


@pytest.mark.parametrize(("n", "d", "r1", "r2"), [(100, 100, 1.0, 10.0), (7, 2, 1.0, 1.3)])
def test_points_lie_on_their_sphere(n: int, d: int, r1: float, r2: float) -> None:
    x, y = sample_spheres(n, d=d, r1=r1, r2=r2, seed=3, dtype=torch.float64)
    assert x.shape == (n, d) and x.dtype == torch.float64
    assert y.shape == (n,) and y.dtype == torch.int64
    norms = np.linalg.norm(x.numpy(), axis=1)
    np.testing.assert_allclose(norms, np.where(y.numpy() == 0, r1, r2), rtol=1e-12)
    assert int((y == 0).sum()) == n // 2 and int((y == 1).sum()) == n - n // 2


def test_shuffled() -> None:
    _, y = sample_spheres(200, d=3, seed=0)
    assert not torch.equal(y, torch.sort(y).values)


def test_uniform_direction() -> None:
    # For u uniform on S^{d-1}, (u_1 + 1) / 2 ~ Beta((d-1)/2, (d-1)/2); E[u u^T] = I / d.
    d = 5
    x, y = sample_spheres(4000, d=d, r1=2.0, r2=3.0, seed=11, dtype=torch.float64)
    u = (x / torch.where(y == 0, 2.0, 3.0).to(torch.float64)[:, None]).numpy()
    for k in range(d):
        beta = stats.beta((d - 1) / 2, (d - 1) / 2)
        assert stats.kstest((u[:, k] + 1) / 2, beta.cdf).pvalue > 1e-3
    np.testing.assert_allclose(u.T @ u / len(u), np.eye(d) / d, atol=0.02)
    for label in (0, 1):  # directions independent of the class
        np.testing.assert_allclose(u[y.numpy() == label].mean(axis=0), 0.0, atol=0.05)


def test_seeded_and_private_generator() -> None:
    state = torch.get_rng_state()
    torch.manual_seed(123)
    a = sample_spheres(10, d=4, seed=5)
    torch.manual_seed(456)
    b = sample_spheres(10, d=4, seed=5)
    c = sample_spheres(10, d=4, seed=6)
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1])
    assert not torch.equal(a[0], c[0])
    before = torch.get_rng_state()
    sample_spheres(10, d=4, seed=7)
    assert torch.equal(torch.get_rng_state(), before)
    torch.set_rng_state(state)


def test_dtypes_share_points() -> None:
    x64, y64 = sample_spheres(9, d=6, seed=2, dtype=torch.float64)
    x32, y32 = sample_spheres(9, d=6, seed=2, dtype=torch.float32)
    assert x32.dtype == torch.float32
    assert torch.equal(x32, x64.to(torch.float32)) and torch.equal(y32, y64)


def test_sphere_label_matches_reference() -> None:
    rng = np.random.default_rng(0)
    pts = rng.standard_normal((3, 50, 4)) * rng.uniform(0, 4, size=(3, 50, 1))
    got = sphere_label(torch.from_numpy(pts), r1=1.0, r2=5.0)
    assert got.shape == (3, 50) and got.dtype == torch.int64
    expected = (np.linalg.norm(pts, axis=-1) >= 3.0).astype(np.int64)
    np.testing.assert_array_equal(got.numpy(), expected)
    on_threshold = torch.tensor([[3.0, 0.0], [0.0, 2.999]])
    assert sphere_label(on_threshold, r1=1.0, r2=5.0).tolist() == [1, 0]


def test_sphere_label_recovers_sampled_labels() -> None:
    x, y = sample_spheres(64, d=10, r1=1.0, r2=1.3, seed=0)
    assert torch.equal(sphere_label(x, r1=1.0, r2=1.3), y)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"n": 0}, "n must be"),
        ({"d": 1}, "d must be"),
        ({"r1": 0.0}, "radii"),
        ({"r1": 2.0, "r2": 2.0}, "radii"),
        ({"r1": 3.0, "r2": 2.0}, "radii"),
        ({"seed": -1}, "seed"),
        ({"dtype": torch.int64}, "floating-point"),
    ],
)
def test_sample_errors(kwargs: dict, message: str) -> None:
    kwargs = {"n": 4, **kwargs}
    with pytest.raises(ConfigError, match=message):
        sample_spheres(**kwargs)


def test_label_errors() -> None:
    with pytest.raises(ConfigError, match="radii"):
        sphere_label(torch.zeros(2, 3), r1=2.0, r2=1.0)
    with pytest.raises(ShapeError):
        sphere_label(torch.tensor(1.0), r1=1.0, r2=2.0)
