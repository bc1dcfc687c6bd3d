"""Tests of preimage.analysis.stability: exact linearisations and their singular values."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import Tensor, nn

from preimage.analysis.stability import (
    linear_classifier_diagnostic,
    linearization,
    stability_profile,
)
from preimage.errors import ConfigError, ShapeError


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1),
        nn.ReLU(),
        nn.Conv2d(4, 3, 3, stride=2, padding=1),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(12, 5),
    ).double()


class Branchy(nn.Module):
    """Not a Sequential: a residual connection and a nested layer."""

    def __init__(self) -> None:
        super().__init__()
        self.inner = nn.Sequential(nn.Linear(4, 6), nn.ReLU())
        self.skip = nn.Linear(4, 6)
        self.head = nn.Linear(6, 3)

    def forward(self, x: Tensor) -> Tensor:
        return self.head(self.inner(x) + self.skip(x))


def _dense(f: nn.Module, x: Tensor) -> Tensor:
    out = f(x)
    return torch.autograd.functional.jacobian(f, x).reshape(out.numel(), x.numel())


def test_profile_singular_values_match_dense_svd_of_the_jacobian() -> None:
    net = _cnn()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    records = stability_profile(net, x)
    assert [r.layer for r in records] == ["0", "1", "2", "3", "4", "5"]
    for index, record in enumerate(records):
        expected = torch.linalg.svdvals(_dense(net[: index + 1], x))
        assert record.complete and record.inputs == 32
        assert record.outputs == net[: index + 1](x).numel()
        assert torch.allclose(record.singular_values, expected, atol=1e-12)
        assert record.rank == torch.linalg.matrix_rank(_dense(net[: index + 1], x))
        assert record.invariant_directions == 32 - record.rank
        nonzero = expected[expected > 1e-10]
        assert record.condition == pytest.approx(float(nonzero[0] / nonzero[-1]))


@pytest.mark.parametrize("active", [0, 2, 5, 9])
def test_switched_off_units_leave_the_spectrum_unchanged(active: int) -> None:
    # Units a ReLU switches off are zero rows of the Jacobian; the profile drops them before
    # its SVD, which must give the full matrix's singular values, zeros included.
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(6, 9), nn.ReLU(), nn.Linear(9, 7)).double()
    x = torch.randn(1, 6, dtype=torch.float64)
    with torch.no_grad():
        pre = net[0](x)[0]
        net[0].bias.sub_(pre)  # every pre-activation 0 at x ...
        net[0].bias[:active].add_(1.0)  # ... then the first `active` units on, the rest off
        net[0].bias[active:].sub_(1.0)
    records = stability_profile(net, x)
    for index, record in enumerate(records):
        expected = torch.linalg.svdvals(_dense(net[: index + 1], x))
        assert record.singular_values.shape == expected.shape
        assert torch.allclose(record.singular_values, expected, atol=1e-12)
    assert records[1].rank == min(active, 6)


def test_linearization_of_any_module_and_named_layers() -> None:
    torch.manual_seed(1)
    net = Branchy().double()
    x = torch.randn(1, 4, dtype=torch.float64)
    assert torch.allclose(linearization(net, x), _dense(net, x))
    assert torch.allclose(linearization(net, x, upto="inner"), _dense(net.inner, x))
    assert torch.allclose(linearization(net, x, upto="inner.0"), net.inner[0].weight)
    records = stability_profile(net, x, layers=["inner", "head"])
    expected = torch.linalg.svdvals(_dense(net, x))
    assert torch.allclose(records[1].singular_values, expected, atol=1e-12)
    with pytest.raises(ConfigError):
        linearization(net, x, upto="nope")
    with pytest.raises(ShapeError):
        linearization(net, torch.randn(2, 4, dtype=torch.float64))


def test_linearization_is_the_matrix_chain_of_definition_3_4() -> None:
    torch.manual_seed(2)
    net = nn.Sequential(nn.Linear(5, 7), nn.ReLU(), nn.Linear(7, 6), nn.ReLU(), nn.Linear(6, 3))
    net = net.double()
    x = torch.randn(1, 5, dtype=torch.float64)
    d1 = torch.diag((net[0](x)[0] > 0).double())
    d2 = torch.diag((net[:3](x)[0] > 0).double())
    chain = net[4].weight @ d2 @ net[2].weight @ d1 @ net[0].weight
    assert torch.allclose(linearization(net, x), chain.detach())


def test_lanczos_extremes_match_the_dense_spectrum() -> None:
    net = _cnn()
    x = torch.randn(1, 2, 4, 4, dtype=torch.float64)
    dense = stability_profile(net, x, layers=["0"])[0].singular_values
    sparse = stability_profile(net, x, layers=["0"], k=3)[0]
    assert not sparse.complete and sparse.rank is None
    assert torch.allclose(sparse.singular_values[:3], dense[:3], atol=1e-8)
    assert torch.allclose(sparse.singular_values[-3:], dense[-3:], atol=1e-8)
    assert sparse.condition <= dense[0] / dense[dense > 1e-10][-1] + 1e-9
    with pytest.raises(ConfigError):
        stability_profile(net, x, layers=["0"], k=40)


@settings(max_examples=60, deadline=None)
@given(st.integers(1, 6), st.integers(1, 6), st.integers(0, 2**31 - 1))
def test_lemma_3_5_bounds_the_singular_values_under_relu(m: int, n: int, seed: int) -> None:
    gen = torch.Generator().manual_seed(seed)
    layer = nn.Linear(n, m).double()
    with torch.no_grad():
        layer.weight.copy_(torch.randn(m, n, generator=gen, dtype=torch.float64))
        layer.bias.copy_(torch.randn(m, generator=gen, dtype=torch.float64))
    x = torch.randn(1, n, generator=gen, dtype=torch.float64)
    after = stability_profile(nn.Sequential(layer, nn.ReLU()), x, layers=["1"])[0]
    sigma = torch.linalg.svdvals(layer.weight.detach())
    sigma = sigma[sigma > 1e-12]
    inactive = int((layer(x) <= 0).sum())
    assert after.singular_values.max() <= sigma[0] + 1e-12
    k = len(sigma) - inactive
    nonzero = after.singular_values[after.singular_values > 1e-12]
    if k >= 1 and nonzero.numel():
        assert nonzero.min() <= sigma[k - 1] + 1e-12


def test_linear_classifier_diagnostic() -> None:
    gen = torch.Generator().manual_seed(3)
    a = torch.randn(3, 7, generator=gen, dtype=torch.float64)
    d = linear_classifier_diagnostic(a)
    s = torch.linalg.svdvals(a)
    assert (d.rank, d.null_dim) == (3, 4)
    assert d.sigma_max == pytest.approx(float(s[0])) and d.sigma_min == pytest.approx(float(s[-1]))
    assert torch.allclose(a @ d.null_space, torch.zeros(3, 4, dtype=torch.float64), atol=1e-12)
    assert torch.allclose(d.null_space.T @ d.null_space, torch.eye(4, dtype=torch.float64))
    # Perturbation bound and invariance: a null-space step changes nothing at all.
    delta = d.null_space @ torch.randn(4, generator=gen, dtype=torch.float64)
    assert torch.linalg.norm(a @ delta) < 1e-12
    step = torch.randn(7, generator=gen, dtype=torch.float64)
    assert torch.linalg.norm(a @ step) <= d.sigma_max * torch.linalg.norm(step) + 1e-12
    with pytest.raises(ShapeError):
        linear_classifier_diagnostic(torch.zeros(3))
