from __future__ import annotations

import math

import pytest
import torch
from scipy import integrate, stats

from preimage.errors import ConfigError
from preimage.information.kernel import kernel_mi_bounds


def _two_point_mi(distance: float, sigma: float) -> float:
    """I(X;T) for X uniform on two points ``distance`` apart and T = h(X) + N(0, sigma^2)."""

    def density(t: float) -> float:
        return 0.5 * (stats.norm.pdf(t, 0.0, sigma) + stats.norm.pdf(t, distance, sigma))

    lo, hi = -12 * sigma, distance + 12 * sigma
    h_t = integrate.quad(lambda t: -density(t) * math.log(density(t)), lo, hi, limit=200)[0]
    return h_t - 0.5 * math.log(2 * math.pi * math.e * sigma**2)


@pytest.mark.parametrize("distance", [0.3, 1.0, 2.0, 3.0, 6.0])
def test_bounds_bracket_quadrature(distance: float) -> None:
    sigma = 0.7
    exact = _two_point_mi(distance, sigma)
    lower, upper = kernel_mi_bounds(torch.tensor([[0.0], [distance]], dtype=torch.float64), sigma)
    assert float(lower) <= exact + 1e-9
    assert exact <= float(upper) + 1e-9
    assert float(upper) - float(lower) > 1e-4  # a real bracket, not one value twice


def test_limits_and_units() -> None:
    # Coincident codes carry nothing; far-apart codes carry log n.
    same = torch.zeros(8, 3, dtype=torch.float64)
    lower, upper = kernel_mi_bounds(same, 1.0)
    assert float(lower) == pytest.approx(0.0, abs=1e-12)
    assert float(upper) == pytest.approx(0.0, abs=1e-12)
    far = 1e3 * torch.eye(8, dtype=torch.float64)
    lower, upper = kernel_mi_bounds(far, 1.0, unit="bits")
    assert float(lower) == pytest.approx(3.0)
    assert float(upper) == pytest.approx(3.0)


def test_bounds_are_differentiable_and_grow_with_spread() -> None:
    h = torch.randn(16, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    h.requires_grad_(True)
    lower, upper = kernel_mi_bounds(h, 0.5)
    (lower + upper).backward()
    lower, upper = lower.detach(), upper.detach()
    assert h.grad is not None and torch.isfinite(h.grad).all()
    with torch.no_grad():
        wider = kernel_mi_bounds(2 * h, 0.5)
    assert float(wider[0]) > float(lower) and float(wider[1]) > float(upper)


def test_rejects_bad_noise() -> None:
    with pytest.raises(ConfigError):
        kernel_mi_bounds(torch.zeros(2, 1), 0.0)
