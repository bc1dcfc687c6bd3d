"""Log-det estimators against dense Jacobians, NumPy slogdet and matrix powers in small d."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
import pytest
import torch
from torch import nn

from preimage.errors import ConfigError, ShapeError
from preimage.nn.logdet import (
    _sample_n_terms,
    exact_logdet,
    neumann_logdet,
    power_series_logdet,
    roulette_logdet,
    roulette_survival,
    series_terms_needed,
    series_truncation_bound,
)

DIM = 4


def _branch(lip: float = 0.5, seed: int = 1, dim: int = DIM) -> nn.Sequential:
    """A float64 MLP with orthogonal weights scaled so that Lip(g) <= lip, attained at some x."""
    torch.manual_seed(seed)
    g = nn.Sequential(nn.Linear(dim, dim), nn.ELU(), nn.Linear(dim, dim)).double()
    with torch.no_grad():
        for lin in (g[0], g[2]):
            q, _ = torch.linalg.qr(torch.randn(dim, dim, dtype=torch.float64))
            lin.weight.copy_(math.sqrt(lip) * q)
    return g


def _jacobians(g: nn.Module, x: torch.Tensor) -> np.ndarray:
    return np.stack(
        [torch.autograd.functional.jacobian(g, xi).detach().numpy() for xi in x.detach()]
    )


def _exact(g: nn.Module, x: torch.Tensor) -> np.ndarray:
    jac = _jacobians(g, x)
    return np.linalg.slogdet(np.eye(jac.shape[-1]) + jac)[1]


def _truncated(jac: np.ndarray, n_terms: int) -> float:
    return float(
        sum(
            (-1) ** (k + 1) / k * np.trace(np.linalg.matrix_power(jac, k))
            for k in range(1, n_terms + 1)
        )
    )


def _point(seed: int = 1) -> torch.Tensor:
    return torch.randn(1, DIM, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))


def _mean_and_se(samples: torch.Tensor) -> tuple[float, float]:
    return float(samples.mean()), float(samples.std() / math.sqrt(samples.numel()))


def test_exact_logdet_matches_numpy_slogdet() -> None:
    g = _branch(lip=0.9)
    x = torch.randn(3, DIM, dtype=torch.float64)
    y, logdet = exact_logdet(g, x)
    assert torch.allclose(y, x + g(x))
    assert np.allclose(logdet.detach().numpy(), _exact(g, x), atol=1e-12)


def test_exact_logdet_on_image_batches() -> None:
    torch.manual_seed(0)
    conv = nn.Sequential(nn.Conv2d(2, 2, 3, padding=1), nn.Tanh()).double()
    x = torch.randn(2, 2, 3, 3, dtype=torch.float64)
    _, logdet = exact_logdet(conv, x)
    for i in range(2):
        jac = torch.autograd.functional.jacobian(
            lambda v: conv(v.view(1, 2, 3, 3)).reshape(-1), x[i].reshape(-1)
        )
        expected = np.linalg.slogdet(np.eye(18) + jac.numpy())[1]
        assert float(logdet[i].detach()) == pytest.approx(expected, abs=1e-10)


@pytest.mark.parametrize("probe", ["gaussian", "rademacher"])
def test_power_series_is_unbiased_for_the_truncated_series(probe: str) -> None:
    g = _branch(lip=0.7)
    x = _point()
    jac = _jacobians(g, x)[0]
    gen = torch.Generator().manual_seed(0)
    # 4000 copies of one point: 4000 independent Hutchinson estimates in one call.
    _, est = power_series_logdet(g, x.expand(4000, DIM), n_terms=6, probe=probe, generator=gen)
    mean, se = _mean_and_se(est.detach())
    assert se < 0.05
    assert abs(mean - _truncated(jac, 6)) <= 4 * se
    # The comparison can fail: a shorter series is many standard errors away.
    assert abs(mean - _truncated(jac, 1)) > 10 * se


def test_n_probes_average_probes() -> None:
    g = _branch(lip=0.7)
    x = _point()
    jac = _jacobians(g, x)[0]
    with torch.no_grad():
        _, one = power_series_logdet(g, x.expand(400, DIM), n_terms=5)
        _, many = power_series_logdet(g, x.expand(400, DIM), n_terms=5, n_probes=16)
    assert float(many.std()) < 0.5 * float(one.std())
    mean, se = _mean_and_se(many.detach())
    assert abs(mean - _truncated(jac, 5)) <= 4 * se


def test_rademacher_is_exact_in_one_dimension() -> None:
    g = nn.Linear(1, 1, bias=False).double()
    with torch.no_grad():
        g.weight.fill_(-0.6)
    _, logdet = power_series_logdet(
        g, torch.randn(5, 1, dtype=torch.float64), n_terms=7, probe="rademacher"
    )
    expected = sum((-1) ** (k + 1) * (-0.6) ** k / k for k in range(1, 8))
    assert torch.allclose(logdet, torch.full_like(logdet, expected), atol=1e-14)


@pytest.mark.parametrize("n_terms", [1, 2, 3, 5, 8, 12])
def test_truncation_bound_holds(n_terms: int) -> None:
    g = _branch(lip=0.8)
    x = torch.randn(5, DIM, dtype=torch.float64)
    jac = _jacobians(g, x)
    for j in jac:
        error = abs(_truncated(j, n_terms) - np.linalg.slogdet(np.eye(DIM) + j)[1])
        local = float(np.linalg.norm(j, 2))
        assert error <= series_truncation_bound(local, DIM, n_terms) * (1 + 1e-12)
        assert local <= 0.8 * (1 + 1e-12)


@pytest.mark.parametrize("lip", [0.1, 0.5, 0.9, 0.99])
def test_truncation_bound_is_tight_for_a_negative_scaled_identity(lip: float) -> None:
    # J = -L I: every term of the series has the same sign, so the bound is attained.
    for n in (0, 1, 4, 10):
        error = abs(_truncated(-lip * np.eye(3), n) - 3 * math.log(1 - lip))
        assert series_truncation_bound(lip, 3, n) == pytest.approx(error, rel=1e-9, abs=1e-15)


def test_truncation_bound_closed_form() -> None:
    for lip, n in ((0.3, 2), (0.9, 5), (0.999, 50)):
        closed = -7 * (math.log1p(-lip) + math.fsum(lip**k / k for k in range(1, n + 1)))
        assert series_truncation_bound(lip, 7, n) == pytest.approx(closed, rel=1e-9)
    assert series_truncation_bound(0.0, 3, 2) == 0.0
    assert 0 < series_truncation_bound(0.5, 1, 200) < 1e-60
    with pytest.raises(ConfigError):
        series_truncation_bound(1.0, 3, 2)
    with pytest.raises(ConfigError):
        series_truncation_bound(0.5, 0, 2)


def test_series_terms_needed_is_minimal() -> None:
    for lip, dim, tol in ((0.5, 10, 1e-3), (0.9, 3072, 1e-4 * 3072 * math.log(2)), (0.2, 1, 1.0)):
        n = series_terms_needed(lip, dim, tol)
        assert series_truncation_bound(lip, dim, n) <= tol
        assert n == 0 or series_truncation_bound(lip, dim, n - 1) > tol
    with pytest.raises(ConfigError):
        series_terms_needed(0.999999, 10, 1e-12, max_terms=100)


def test_roulette_truncation_distribution() -> None:
    gen = torch.Generator().manual_seed(0)
    draws = np.array([_sample_n_terms(0.5, 2, gen) for _ in range(20000)])
    assert draws.min() == 3
    for k in range(1, 9):
        empirical = float((draws >= k).mean())
        expected = roulette_survival(k, 0.5, 2)
        assert abs(empirical - expected) <= 4 * math.sqrt(expected * (1 - expected) / 20000) + 1e-12
    assert {_sample_n_terms(1.0, 3, gen) for _ in range(5)} == {4}


def _roulette_draws(
    estimator: Callable, g: nn.Module, x: torch.Tensor, calls: int, batch: int, **kw: object
) -> torch.Tensor:
    gen = torch.Generator().manual_seed(0)
    with torch.no_grad():
        return torch.stack(
            [
                estimator(g, x.expand(batch, DIM), generator=gen, probe="rademacher", **kw)[
                    1
                ].mean()
                for _ in range(calls)
            ]
        )


@pytest.mark.parametrize("estimator", [roulette_logdet, neumann_logdet])
def test_roulette_is_unbiased(estimator: Callable) -> None:
    g = _branch(lip=0.6)
    x = _point(2)
    exact = float(_exact(g, x)[0])
    draws = _roulette_draws(estimator, g, x, calls=150, batch=2048)
    mean, se = _mean_and_se(draws)
    assert se < 0.005
    assert abs(mean - exact) <= 3 * se
    # Always stopping at the smallest possible n (3 terms) is biased by several standard errors.
    assert abs(_truncated(_jacobians(g, x)[0], 3) - exact) > 4 * se


def test_neumann_value_equals_the_series_and_roulette_values() -> None:
    g = _branch(lip=0.7)
    x = torch.randn(6, DIM, dtype=torch.float64)
    for kw in ({"n_terms": 7}, {}):
        reference = power_series_logdet if kw else roulette_logdet
        a = reference(g, x, generator=torch.Generator().manual_seed(5), **kw)
        b = neumann_logdet(g, x, generator=torch.Generator().manual_seed(5), **kw)
        assert torch.allclose(a[0], b[0]) and torch.allclose(a[1], b[1], atol=1e-12)


def _exact_gradients(g: nn.Module, x: torch.Tensor) -> list[torch.Tensor]:
    x = x.clone().requires_grad_(True)
    params = [*g.parameters()]
    _, logdet = exact_logdet(g, x)
    return _grads(logdet.sum(), [x, *params])


def _grads(loss: torch.Tensor, inputs: list[torch.Tensor]) -> list[torch.Tensor]:
    """Gradients with zeros for unused inputs (the last bias does not enter J_g)."""
    grads = torch.autograd.grad(loss, inputs, allow_unused=True)
    return [torch.zeros_like(t) if g is None else g for t, g in zip(inputs, grads, strict=True)]


def test_exact_gradient_matches_finite_differences() -> None:
    g = _branch(lip=0.8)
    x = _point(3)
    grads = _exact_gradients(g, x)
    eps = 1e-6
    with torch.no_grad():
        for tensor, grad in zip([x, *g.parameters()], grads, strict=True):
            flat, gflat = tensor.view(-1), grad.reshape(-1)
            for i in range(0, flat.numel(), max(1, flat.numel() // 5)):
                old = float(flat[i])
                flat[i] = old + eps
                up = float(_exact(g, x)[0])
                flat[i] = old - eps
                down = float(_exact(g, x)[0])
                flat[i] = old
                assert float(gflat[i]) == pytest.approx((up - down) / (2 * eps), abs=1e-7)


def _relative_error(estimate: list[torch.Tensor], exact: list[torch.Tensor]) -> float:
    num = math.sqrt(sum(float((a - b).pow(2).sum()) for a, b in zip(estimate, exact, strict=True)))
    den = math.sqrt(sum(float(b.pow(2).sum()) for b in exact))
    return num / den


@pytest.mark.parametrize(
    ("estimator", "kwargs", "calls", "batch"),
    [
        (power_series_logdet, {"n_terms": 20}, 1, 4000),
        (neumann_logdet, {"n_terms": 20}, 1, 4000),
        (roulette_logdet, {}, 40, 200),
        (neumann_logdet, {}, 40, 200),
    ],
    ids=["series", "neumann-fixed", "roulette", "neumann-roulette"],
)
def test_estimator_gradients_match_the_exact_gradient_on_average(
    estimator: Callable, kwargs: dict, calls: int, batch: int
) -> None:
    g = _branch(lip=0.6)
    x = _point(4)
    exact = _exact_gradients(g, x)
    gen = torch.Generator().manual_seed(0)
    params = [*g.parameters()]
    total = [torch.zeros_like(t) for t in exact]
    for _ in range(calls):
        xr = x.expand(batch, DIM).clone().requires_grad_(True)
        _, logdet = estimator(g, xr, generator=gen, probe="rademacher", **kwargs)
        grads = _grads(logdet.mean(), [xr, *params])
        total = [
            t + gr for t, gr in zip(total, [grads[0].sum(0, keepdim=True), *grads[1:]], strict=True)
        ]
    average = [t / calls for t in total]
    assert _relative_error(average, exact) < 0.05
    # Without the log-det term's dependence on theta the gradient would be zero: not close.
    assert _relative_error([torch.zeros_like(t) for t in exact], exact) == 1.0


@pytest.mark.parametrize(
    "estimator", [power_series_logdet, roulette_logdet, neumann_logdet, exact_logdet]
)
def test_every_parameter_gets_a_gradient(estimator: Callable) -> None:
    g = _branch(lip=0.6)
    x = torch.randn(3, DIM, dtype=torch.float64)
    _, logdet = estimator(g, x)
    assert logdet.shape == (3,) and logdet.requires_grad
    logdet.sum().backward()
    for name, p in g.named_parameters():
        if name == "2.bias":  # the last bias shifts g and leaves J_g unchanged
            continue
        assert p.grad is not None and float(p.grad.abs().sum()) > 0, name


def _saved_bytes(fn: Callable[[], object]) -> int:
    total = 0

    def pack(t: torch.Tensor) -> torch.Tensor:
        nonlocal total
        total += t.numel() * t.element_size()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        fn()
    return total


def test_neumann_memory_does_not_grow_with_the_number_of_terms() -> None:
    g = _branch(lip=0.6)
    x = torch.randn(16, DIM, dtype=torch.float64)
    neumann = [_saved_bytes(lambda n=n: neumann_logdet(g, x, n_terms=n)) for n in (2, 30)]
    series = [_saved_bytes(lambda n=n: power_series_logdet(g, x, n_terms=n)) for n in (2, 30)]
    assert neumann[0] == neumann[1]
    assert series[1] > 5 * series[0]
    assert neumann[1] < series[1] / 5


def test_no_grad_results_are_detached() -> None:
    g = _branch()
    x = torch.randn(2, DIM, dtype=torch.float64)
    with torch.no_grad():
        for estimator in (power_series_logdet, roulette_logdet, neumann_logdet, exact_logdet):
            y, logdet = estimator(g, x)
            assert not y.requires_grad and not logdet.requires_grad


def test_bad_inputs_raise_typed_errors() -> None:
    g = _branch()
    x = torch.randn(2, DIM, dtype=torch.float64)
    with pytest.raises(ShapeError):
        power_series_logdet(lambda v: v[:, :2], x)
    with pytest.raises(ShapeError):
        exact_logdet(g, x[0])
    with pytest.raises(ConfigError):
        power_series_logdet(g, x, n_terms=0)
    with pytest.raises(ConfigError):
        power_series_logdet(g, x, probe="uniform")  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        roulette_logdet(g, x, p=0.0)
    with pytest.raises(ConfigError):
        neumann_logdet(g, x, n_probes=0)


def test_branch_without_dependence_on_x_has_zero_logdet() -> None:
    bias = nn.Parameter(torch.ones(DIM, dtype=torch.float64))
    x = torch.randn(2, DIM, dtype=torch.float64)
    for estimator in (power_series_logdet, neumann_logdet, exact_logdet):
        y, logdet = estimator(lambda v: bias.expand_as(v), x)
        assert torch.equal(logdet.detach(), torch.zeros(2, dtype=torch.float64))
        assert torch.allclose(y, x + 1)


# Estimator tests with power (issue 17). A diagonal linear branch with Rademacher probes makes
# every Hutchinson term exact (v_i^2 = 1), so the only randomness left is the roulette's number
# of terms N: the reweighting 1/P(N >= k) is then what decides unbiasedness, and many cheap
# draws measure the mean to a small fraction of a percent.
# Lip = 0.65 keeps the roulette's variance finite (Lip^2 < 1 - p) for every p used below, while
# terms beyond the second still carry 10% of the log-det.
_DIAG = (0.65, 0.6, 0.5)


def _diagonal_branch() -> nn.Linear:
    g = nn.Linear(len(_DIAG), len(_DIAG), bias=False).double()
    with torch.no_grad():
        g.weight.copy_(torch.diag(torch.tensor(_DIAG, dtype=torch.float64)))
    return g


def _diagonal_exact() -> float:
    return float(sum(math.log1p(a) for a in _DIAG))


def _diagonal_truncated(n_terms: int) -> float:
    return float(sum((-1) ** (k + 1) * sum(a**k for a in _DIAG) / k for k in range(1, n_terms + 1)))


def _rejects(draws: torch.Tensor, exact: float) -> bool:
    """The unbiasedness check: the mean is more than 3 standard errors from the exact value."""
    mean, se = _mean_and_se(draws)
    return abs(mean - exact) > 3 * se


@pytest.mark.parametrize(("p", "n_exact"), [(0.5, 2), (0.3, 1), (0.25, 1)])
def test_roulette_reweighting_is_unbiased_to_a_fraction_of_a_percent(
    p: float, n_exact: int
) -> None:
    g, exact = _diagonal_branch(), _diagonal_exact()
    gen = torch.Generator().manual_seed(0)
    x = torch.zeros(1, len(_DIAG), dtype=torch.float64)
    with torch.no_grad():
        draws = torch.cat(
            [
                roulette_logdet(g, x, p=p, n_exact_terms=n_exact, probe="rademacher",
                                generator=gen)[1]
                for _ in range(4000)
            ]
        )  # fmt: skip
    # The draws reach far beyond the always-computed terms, so the reweighting is exercised.
    _, se = _mean_and_se(draws)
    assert 3 * se < 0.01 * abs(exact), "the test would not see a 1% bias"
    assert not _rejects(draws, exact)
    # Power, shown by planting the bias: 1% off the log-det is rejected ...
    assert _rejects(draws * 1.01, exact) and _rejects(draws * 0.99, exact)
    # ... and so is the estimator without its reweighting, sum_{k<=N} t_k.
    unweighted = torch.tensor(
        [_diagonal_truncated(n) for n in _roulette_lengths(p, n_exact, 4000)], dtype=torch.float64
    )
    assert _rejects(unweighted, exact)


def _roulette_lengths(p: float, n_exact: int, n: int) -> list[int]:
    gen = torch.Generator().manual_seed(1)
    u = torch.rand(n, generator=gen, dtype=torch.float64).clamp_min(1e-300)
    return [n_exact + 1 + math.floor(math.log(float(v)) / math.log1p(-p)) for v in u]


def test_iresblock_passes_n_terms_to_the_series_estimator() -> None:
    from preimage.nn.iresblock import IResBlock

    x = torch.zeros(2, len(_DIAG), dtype=torch.float64)
    for n_terms in (1, 3, 6):
        block = IResBlock(_diagonal_branch(), logdet="series", n_terms=n_terms, probe="rademacher")
        with torch.no_grad():
            _, logdet = block(x)
        assert torch.allclose(logdet, torch.full_like(logdet, _diagonal_truncated(n_terms)))


@pytest.mark.parametrize("logdet", ["roulette", "neumann"])
def test_iresblock_passes_roulette_p_and_n_exact_terms(logdet: str) -> None:
    from preimage.nn.iresblock import IResBlock

    # p = 1 stops right after the always-computed terms: exactly n_exact_terms + 1 terms.
    x = torch.zeros(1, len(_DIAG), dtype=torch.float64)
    for n_exact in (0, 4):
        block = IResBlock(
            _diagonal_branch(), logdet=logdet, roulette_p=1.0, n_exact_terms=n_exact,
            probe="rademacher",
        )  # fmt: skip
        with torch.no_grad():
            _, value = block(x)
        assert float(value) == pytest.approx(_diagonal_truncated(n_exact + 1), abs=1e-12)
    # A smaller p draws longer series: the mean number of terms reaches the estimator.
    block = IResBlock(_diagonal_branch(), logdet=logdet, roulette_p=0.2, n_exact_terms=0,
                      probe="rademacher")  # fmt: skip
    torch.manual_seed(0)
    with torch.no_grad():
        values = torch.cat([block(x)[1] for _ in range(400)])
    assert abs(float(values.mean()) - _diagonal_exact()) < 0.1 * abs(_diagonal_exact())


def test_iresblock_passes_n_probes_and_probe() -> None:
    from preimage.nn.iresblock import IResBlock

    g = _branch(lip=0.6)
    x = _point(2).expand(256, DIM)

    def spread(**kw: object) -> float:
        torch.manual_seed(0)
        with torch.no_grad():
            options = {"logdet": "series", "n_terms": 4, **kw}
            return float(IResBlock(g, **options)(x)[1].var())  # type: ignore[arg-type]

    # Hutchinson's variance falls as 1/n_probes, in the series and in the roulette path (p = 1:
    # a fixed number of terms, so the probes are the only randomness); Rademacher probes of a
    # diagonal map are exact.
    assert spread(n_probes=1) > 8 * spread(n_probes=16)
    fixed = {"logdet": "roulette", "roulette_p": 1.0}
    assert spread(n_probes=1, **fixed) > 8 * spread(n_probes=16, **fixed)
    diagonal = IResBlock(_diagonal_branch(), logdet="series", n_terms=4, probe="rademacher")
    gaussian = IResBlock(_diagonal_branch(), logdet="series", n_terms=4, probe="gaussian")
    z = torch.zeros(64, len(_DIAG), dtype=torch.float64)
    with torch.no_grad():
        assert float(diagonal(z)[1].var()) < 1e-20 < float(gaussian(z)[1].var())
