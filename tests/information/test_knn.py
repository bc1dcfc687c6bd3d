from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import integrate, stats

from preimage.errors import ConfigError, DataError, ShapeError
from preimage.information.knn import ksg_mutual_information, mixed_mutual_information


def _correlated(rho: float, n: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(n)
    return x, rho * x + math.sqrt(1 - rho**2) * rng.standard_normal(n)


@pytest.mark.parametrize(("rho", "exact"), [(0.5, 0.143841), (0.9, 0.830366)])
def test_ksg_correlated_gaussians(rho: float, exact: float) -> None:
    assert -0.5 * math.log(1 - rho**2) == pytest.approx(exact, abs=1e-6)
    x, y = _correlated(rho, 2000, seed=0)
    assert ksg_mutual_information(x, y, k=3) == pytest.approx(exact, abs=0.05)


def test_ksg_independent_is_near_zero_and_symmetric() -> None:
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((2000, 2)), rng.standard_normal((2000, 3))
    assert abs(ksg_mutual_information(x, y)) < 0.03
    x1, y1 = _correlated(0.7, 1000, seed=2)
    assert ksg_mutual_information(x1, y1) == pytest.approx(ksg_mutual_information(y1, x1))


def test_ksg_awgn_channel_one_bit() -> None:
    # Y = X + Z with P/N = 3: I = 1/2 log2(1 + 3) = 1 bit (the capacity-achieving Gaussian input).
    rng = np.random.default_rng(3)
    x = math.sqrt(3.0) * rng.standard_normal(2000)
    y = x + rng.standard_normal(2000)
    assert ksg_mutual_information(x, y, unit="bits") == pytest.approx(1.0, abs=0.07)


def test_ksg_invariant_under_translation() -> None:
    # Max-norm neighbourhoods move with the data; (a scaling of one variable would change
    # which coordinate sets the joint distance, so KSG is not scale invariant in finite samples.)
    x, y = _correlated(0.6, 1000, seed=4)
    assert ksg_mutual_information(x + 0.5, y - 0.25) == pytest.approx(
        ksg_mutual_information(x, y), rel=1e-9
    )


def _mixture_mi(separation: float) -> float:
    """I(X;Y) for Y uniform on {0, 1} and X | Y ~ N(+-separation/2, 1), by quadrature."""

    def density(t: float) -> float:
        return 0.5 * (stats.norm.pdf(t, -separation / 2) + stats.norm.pdf(t, separation / 2))

    h_x = integrate.quad(lambda t: -density(t) * math.log(density(t)), -30, 30, limit=200)[0]
    return h_x - 0.5 * math.log(2 * math.pi * math.e)


@pytest.mark.parametrize("separation", [1.0, 2.0, 4.0])
def test_mixed_against_quadrature(separation: float) -> None:
    rng = np.random.default_rng(5)
    labels = rng.integers(0, 2, 4000)
    x = (labels - 0.5) * separation + rng.standard_normal(4000)
    exact = _mixture_mi(separation)
    assert mixed_mutual_information(x, labels) == pytest.approx(exact, abs=0.03)


def test_mixed_independent_and_multidimensional() -> None:
    rng = np.random.default_rng(6)
    labels = rng.integers(0, 3, 3000)
    assert abs(mixed_mutual_information(rng.standard_normal((3000, 2)), labels)) < 0.03
    # Three labels at the corners of a large triangle: I = H(Y) = ln 3 nats.
    corners = np.array([[0.0, 0.0], [20.0, 0.0], [0.0, 20.0]])
    x = corners[labels] + rng.standard_normal((3000, 2))
    h_y = -sum(p * math.log(p) for p in np.bincount(labels) / 3000)
    assert mixed_mutual_information(x, labels, unit="bits") == pytest.approx(
        h_y / math.log(2), abs=0.02
    )


def test_errors() -> None:
    with pytest.raises(ShapeError):
        ksg_mutual_information(np.zeros(5), np.zeros(6))
    with pytest.raises(ConfigError):
        ksg_mutual_information(np.zeros(5), np.zeros(5), k=5)
    with pytest.raises(DataError):
        mixed_mutual_information(np.arange(6.0), [0, 0, 0, 0, 1, 1], k=3)
    with pytest.raises(DataError):
        ksg_mutual_information(np.array([0.0, np.nan, 1.0]), np.zeros(3), k=1)
