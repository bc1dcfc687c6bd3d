"""IResBlock: fixed-point inverse within its a-posteriori bound, exact log-det, gradients, I/O."""

from __future__ import annotations

import copy
import functools

import numpy as np
import pytest
import torch
from safetensors.torch import load, save
from torch import nn

from preimage.errors import ConfigError, ConvergenceError, ShapeError
from preimage.nn.iresblock import (
    IResBlock,
    activation_lipschitz,
    branch_lipschitz,
    conv_branch,
    dense_branch,
    iterate_contraction,
)
from preimage.nn.spectral import SpectralConv2d, SpectralLinear

SHAPES = {"dense": (4,), "conv": (2, 4, 4)}


def _saturate(g: nn.Module) -> nn.Module:
    """Scale the raw weights up so every spectral layer sits at its bound, then converge."""
    with torch.no_grad():
        for m in g.modules():
            if isinstance(m, SpectralLinear | SpectralConv2d):
                m.weight.mul_(3.0)
                m.converge(2000, rtol=1e-13)
    return g


@functools.cache
def _prototype(kind: str, dtype: torch.dtype) -> nn.Module:
    torch.manual_seed(0)
    if kind == "dense":
        return _saturate(dense_branch(4, 8).to(dtype))
    return _saturate(conv_branch(2, 3, input_shape=(4, 4)).to(dtype))


def _block(kind: str, logdet: str = "exact", dtype: torch.dtype = torch.float64) -> IResBlock:
    """A fresh block whose spectral layers sit converged at their bound (copied, not shared)."""
    return IResBlock(copy.deepcopy(_prototype(kind, dtype)), logdet=logdet)  # type: ignore[arg-type]


def _x(kind: str, batch: int = 3, dtype: torch.dtype = torch.float64) -> torch.Tensor:
    return torch.randn(
        batch, *SHAPES[kind], dtype=dtype, generator=torch.Generator().manual_seed(1)
    )


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_inverse_error_never_exceeds_the_reported_bound(kind: str) -> None:
    block = _block(kind).eval()
    x = 3.0 * _x(kind)
    with torch.no_grad():
        y, _ = block(x)
        iterations = []
        for atol in (1.0, 1e-1, 1e-3, 1e-6, 1e-10):
            x_rec = block.inverse(y, atol=atol, rtol=0.0, max_iter=500)
            diag = block.last_inverse
            assert diag is not None and diag.converged
            error = float((x_rec - x).reshape(3, -1).norm(dim=1).max())
            assert error <= diag.error_bound * (1 + 1e-9) + 1e-13
            iterations.append(diag.iterations)
    assert iterations == sorted(iterations) and iterations[0] < iterations[-1]
    assert error <= 1e-9


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_float32_round_trip_with_default_tolerances(kind: str) -> None:
    block = _block(kind, dtype=torch.float32).eval()
    x = _x(kind, dtype=torch.float32)
    with torch.no_grad():
        x_rec = block.inverse(block(x)[0])
    assert float((x_rec - x).abs().max()) <= 1e-5 * max(1.0, float(x.abs().max()))


@pytest.mark.parametrize(("dtype", "tol"), [(torch.float32, 1e-5), (torch.float64, 1e-10)])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_zero_tolerances_iterate_to_machine_precision(
    kind: str, dtype: torch.dtype, tol: float
) -> None:
    block = _block(kind, dtype=dtype)
    block.inverse_atol = block.inverse_rtol = 0.0
    with torch.no_grad():
        for p in block.parameters():  # move off the converged state, as training would
            p.add_(0.05 * torch.randn_like(p))
        block.train()
        block(_x(kind, 8, dtype))
    block.eval()
    x = _x(kind, 5, dtype)
    with torch.no_grad():
        x_rec = block.inverse(block(x)[0])
    assert block.last_inverse is not None and block.last_inverse.converged
    assert float((x_rec - x).abs().max()) <= tol * max(1.0, float(x.abs().max()))


def test_contraction_bound_holds_at_every_step() -> None:
    torch.manual_seed(0)
    a = torch.randn(6, 6, dtype=torch.float64)
    a *= 0.8 / torch.linalg.matrix_norm(a, 2)
    c = torch.randn(4, 6, dtype=torch.float64)
    fixed = torch.linalg.solve(torch.eye(6, dtype=torch.float64) - a, c.T).T
    for k in range(1, 40):
        z, diag = iterate_contraction(lambda v: v @ a.T + c, c, 0.8, 0.0, 0.0, k)
        error = float((z - fixed).norm(dim=1).max())
        assert diag.iterations == k and error <= diag.error_bound * (1 + 1e-12)
    assert diag.error_bound < 1e-2


def test_convergence_error_when_max_iter_is_too_small() -> None:
    block = _block("dense").eval()
    with torch.no_grad():
        y, _ = block(_x("dense"))
        with pytest.raises(ConvergenceError, match="did not converge in 2 steps"):
            block.inverse(y, atol=1e-12, rtol=0.0, max_iter=2)
    assert block.last_inverse is not None
    assert not block.last_inverse.converged and block.last_inverse.iterations == 2


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_exact_logdet_matches_autograd_jacobian(kind: str) -> None:
    block = _block(kind).eval()
    x = _x(kind)
    with torch.no_grad():
        _, logdet = block(x)
    for i in range(3):
        jac = torch.autograd.functional.jacobian(
            lambda v: block(v.reshape(1, *SHAPES[kind]))[0].reshape(-1), x[i].reshape(-1)
        )
        expected = float(torch.linalg.slogdet(jac)[1])
        assert abs(float(logdet[i]) - expected) <= 1e-6


@pytest.mark.parametrize("logdet", ["roulette", "series", "neumann", "exact", "none"])
@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_every_parameter_gets_a_gradient(kind: str, logdet: str) -> None:
    block = _block(kind, logdet).train()
    x = _x(kind).requires_grad_(True)
    y, ld = block(x)
    assert ld.shape == (3,)
    (y.pow(2).sum() + ld.sum()).backward()
    assert x.grad is not None
    for name, p in block.named_parameters():
        assert p.grad is not None, name
        assert torch.isfinite(p.grad).all() and float(p.grad.abs().sum()) > 0, name


@pytest.mark.parametrize("logdet", ["roulette", "series", "neumann"])
def test_estimators_share_the_forward_map(logdet: str) -> None:
    block = _block("conv", logdet).eval()
    reference = _block("conv", "none").eval()
    x = _x("conv")
    with torch.no_grad():
        y, ld = block(x)
        y_ref, zeros = reference(x)
    assert torch.allclose(y, y_ref) and torch.equal(zeros, torch.zeros(3, dtype=x.dtype))
    assert torch.isfinite(ld).all()


def test_state_dict_round_trip_preserves_outputs() -> None:
    torch.manual_seed(0)
    block = IResBlock(conv_branch(2, 3), logdet="series")
    x = torch.randn(2, 2, 5, 5)
    block.train()
    block(x)  # locks the input size and advances the power iteration
    blob = save({k: v.contiguous() for k, v in block.state_dict().items()})
    torch.manual_seed(1)
    fresh = IResBlock(conv_branch(2, 3), logdet="series")
    fresh.load_state_dict(load(blob))
    block.eval()
    fresh.eval()
    outputs = []
    for module in (block, fresh):
        torch.manual_seed(7)
        with torch.no_grad():
            outputs.append(module(x))
    assert torch.equal(outputs[0][0], outputs[1][0])
    assert torch.equal(outputs[0][1], outputs[1][1])


def test_eval_forward_is_deterministic_and_inverse_leaves_the_power_iteration_alone() -> None:
    block = _block("conv").train()
    x = _x("conv")
    with torch.no_grad():
        y, _ = block(x)
        buffers = {k: v.clone() for k, v in block.state_dict().items() if k.endswith((".u", ".v"))}
        x_rec = block.inverse(y)
    assert block.training and block.g.training
    assert all(torch.equal(block.state_dict()[k], v) for k, v in buffers.items())
    assert float((x_rec - x).abs().max()) < 1e-4
    block.eval()
    with torch.no_grad():
        assert torch.equal(block(x)[0], block(x)[0])


def test_inverse_is_differentiable_by_the_implicit_function_theorem() -> None:
    block = _block("dense", "none").eval()
    x = _x("dense", batch=1)
    with torch.no_grad():
        y = block(x)[0]
    jac = torch.autograd.functional.jacobian(
        lambda v: block.inverse(v.reshape(1, 4), atol=1e-13, rtol=0.0, max_iter=500).reshape(-1),
        y.reshape(-1),
    )
    jac_g = torch.autograd.functional.jacobian(lambda v: block.g(v), x[0])
    assert np.allclose(jac.numpy(), np.linalg.inv(np.eye(4) + jac_g.numpy()), atol=1e-9)

    # Parameters: against back-propagation through 200 unrolled fixed-point steps.
    r = torch.randn(1, 4, dtype=torch.float64)
    params = [p for p in block.parameters()]
    implicit = torch.autograd.grad(
        (block.inverse(y, atol=1e-13, rtol=0.0, max_iter=500) * r).sum(), params
    )
    x_k = y
    for _ in range(200):
        x_k = y - block.g(x_k)
    unrolled = torch.autograd.grad((x_k * r).sum(), params)
    for a, b in zip(implicit, unrolled, strict=True):
        assert torch.allclose(a, b, atol=1e-9)


def test_lipschitz_bound_and_overrides() -> None:
    block = _block("dense")
    assert block.lipschitz == pytest.approx(0.9**3)
    assert IResBlock(dense_branch(4, 8), lipschitz=0.3).lipschitz == 0.3
    unconstrained = IResBlock(nn.Sequential(nn.Linear(4, 4), nn.ELU()))
    with pytest.raises(ConfigError, match="lipschitz="):
        unconstrained.inverse(torch.randn(2, 4))
    assert IResBlock(nn.Sequential(nn.Linear(4, 4)), lipschitz=0.5).inverse(
        torch.zeros(1, 4)
    ).shape == (1, 4)
    with pytest.raises(ConfigError):
        IResBlock(dense_branch(4, 8), lipschitz=1.0)
    too_large = IResBlock(dense_branch(4, 8, coeff=1.0, depth=2))
    with pytest.raises(ConfigError, match="not below 1"):
        _ = too_large.lipschitz

    class Parallel(nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = SpectralLinear(4, 4, coeff=0.5)
            self.b = SpectralLinear(4, 4, coeff=0.5)

        def forward(self, v: torch.Tensor) -> torch.Tensor:
            return self.a(v) + self.b(v)

    with pytest.raises(ConfigError, match="chain"):
        branch_lipschitz(Parallel())


def test_activation_constants() -> None:
    x = torch.linspace(-6, 6, 20001, dtype=torch.float64)
    attained = (nn.ELU(), nn.ReLU(), nn.LeakyReLU(0.3), nn.Tanh(), nn.SiLU(), nn.GELU())
    for act in (*attained, nn.Sigmoid(), nn.ELU(2.0), nn.Softplus()):
        slope = float(((act(x[1:]) - act(x[:-1])) / (x[1:] - x[:-1])).abs().max())
        bound = activation_lipschitz(act)
        assert bound is not None and slope <= bound + 1e-6
        if act in attained:
            assert slope >= bound - 1e-3
    assert activation_lipschitz(nn.BatchNorm1d(2)) is None


def test_training_keeps_the_block_invertible() -> None:
    torch.manual_seed(0)
    block = IResBlock(dense_branch(2, 16, coeff=0.9), logdet="neumann")
    opt = torch.optim.Adam(block.parameters(), lr=0.01)
    data = torch.randn(64, 2) * torch.tensor([2.0, 0.5])
    for _ in range(15):
        z, logdet = block(data)
        loss = (0.5 * z.pow(2).sum(1) - logdet).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    block.eval()
    layers = [m for m in block.g.modules() if isinstance(m, SpectralLinear)]

    def norms() -> list[float]:
        return [float(torch.linalg.matrix_norm(m.normalized_weight().detach(), 2)) for m in layers]

    # One power step per update lags behind fast-moving weights (thesis remark 4.9) ...
    assert max(norms()) <= 0.9 * 1.05
    with torch.no_grad():
        assert float((block.inverse(block(data)[0]) - data).abs().max()) < 1e-4
    # ... and converging the iteration restores the bound.
    for m in layers:
        m.converge()
    assert max(norms()) <= 0.9 * (1 + 1e-5)


def test_factories_build_the_thesis_branches() -> None:
    g = conv_branch(3, 5)
    kinds = [type(m).__name__ for m in g]
    assert kinds == ["ELU", "SpectralConv2d"] * 3
    assert [m.kernel_size for m in g if isinstance(m, SpectralConv2d)] == [3, 1, 3]
    assert g(torch.randn(2, 3, 6, 5)).shape == (2, 3, 6, 5)
    d = dense_branch(3, 7, depth=1)
    assert len(d) == 1 and isinstance(d[0], SpectralLinear)
    assert [type(m).__name__ for m in dense_branch(3, 7, activation="tanh")] == [
        "SpectralLinear",
        "Tanh",
        "SpectralLinear",
        "Tanh",
        "SpectralLinear",
    ]
    for bad in (
        lambda: conv_branch(2, 3, kernel_sizes=()),
        lambda: conv_branch(2, 3, kernel_sizes=(2,)),
        lambda: dense_branch(2, 3, depth=0),
        lambda: dense_branch(2, 3, activation="swish"),  # type: ignore[arg-type]
        lambda: IResBlock(dense_branch(2, 3), logdet="bogus"),  # type: ignore[arg-type]
        lambda: IResBlock(dense_branch(2, 3), n_terms=0),
        lambda: IResBlock(dense_branch(2, 3), roulette_p=0.0),
        lambda: IResBlock(dense_branch(2, 3), probe="uniform"),  # type: ignore[arg-type]
    ):
        with pytest.raises(ConfigError):
            bad()


def test_inverse_arguments_are_validated() -> None:
    block = _block("dense").eval()
    y = torch.randn(2, 4, dtype=torch.float64)
    for kwargs in ({"atol": -1.0}, {"rtol": -1e-3}, {"max_iter": 0}, {"method": "newton"}):
        with pytest.raises(ConfigError):
            block.inverse(y, **kwargs)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match="non-empty batch"):
        block.inverse(y[:0])
    with pytest.raises(ConfigError):
        IResBlock(dense_branch(4, 8), max_iter=0)


def test_a_false_lipschitz_constant_raises_instead_of_reporting_convergence() -> None:
    # Declared L = 0.5, true constant about 10: the steps grow and no bound would be honest.
    torch.manual_seed(0)
    g = nn.Linear(4, 4).double()
    with torch.no_grad():
        q, _ = torch.linalg.qr(torch.randn(4, 4, dtype=torch.float64))
        g.weight.copy_(-10.0 * q)
    block = IResBlock(g, lipschitz=0.5, logdet="none").eval()
    y = torch.randn(3, 4, dtype=torch.float64)
    with pytest.raises(ConvergenceError, match="not contractive"), torch.no_grad():
        block.inverse(y)
    for method in ("fixed_point", "anderson"):
        with pytest.raises(ConvergenceError), torch.no_grad():
            block.inverse(y, method=method, max_iter=100)  # type: ignore[arg-type]


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_default_tolerances_follow_the_dtype(kind: str) -> None:
    block = _block(kind).eval()  # float64, default tolerances
    x = _x(kind)
    with torch.no_grad():
        x_rec = block.inverse(block(x)[0])
    assert block.last_inverse is not None and block.last_inverse.converged
    assert float((x_rec - x).abs().max()) <= 1e-10


@pytest.mark.parametrize("kind", ["dense", "conv"])
def test_anderson_bound_is_never_below_the_true_error_and_saves_steps(kind: str) -> None:
    block = _block(kind).eval()
    x = 3.0 * _x(kind, batch=4)
    with torch.no_grad():
        y, _ = block(x)
        for atol in (1e-2, 1e-5, 1e-8, 1e-11):
            counts = {}
            for method in ("fixed_point", "anderson"):
                x_rec = block.inverse(y, atol=atol, rtol=0.0, max_iter=500, method=method)
                diag = block.last_inverse
                assert diag is not None and diag.converged and diag.method == method
                errors = (x_rec - x).reshape(4, -1).norm(dim=1)
                assert float(errors.max()) <= diag.error_bound * (1 + 1e-9) + 1e-14
                counts[method] = diag.iterations
            assert counts["anderson"] <= counts["fixed_point"]
        # Tracing: per step, the bound of every sample covers its true error.
        _, diag = iterate_contraction(
            lambda v: y - block.g(v),
            y,
            block.lipschitz,
            0.0,
            0.0,
            60,
            method="anderson",
            stop=False,
            trace=True,
        )
    assert diag.trace is not None
    errors = (diag.trace.iterates - x).reshape(60, 4, -1).norm(dim=2)
    assert bool((errors <= diag.trace.bounds * (1 + 1e-9) + 1e-14).all())


def test_branches_pass_krylov_to_every_spectral_layer() -> None:
    conv = conv_branch(2, 4, krylov=5, input_shape=(4, 4))
    dense = dense_branch(3, 4, krylov=5)
    layers = [m for m in [*conv, *dense] if isinstance(m, SpectralConv2d | SpectralLinear)]
    assert len(layers) == 6 and all(m.krylov == 5 for m in layers)
    assert all(m.krylov == 0 for m in conv_branch(2, 4) if isinstance(m, SpectralConv2d))
