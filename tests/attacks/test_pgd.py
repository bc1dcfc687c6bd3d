"""Tests of preimage.attacks.pgd: budgets checked with NumPy, closed-form steps, accuracy drop."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import stats
from torch import Tensor, nn

from preimage.attacks.pgd import L2PGD, LinfPGD
from preimage.errors import ConfigError, ShapeError
from tests.attacks.toy import AffineInvertibleClassifier

DIM = 8


def _blobs(n: int, seed: int) -> tuple[Tensor, Tensor]:
    """Two separable Gaussian blobs in [0, 1]^8, centred at 0.3 and 0.7 in every coordinate."""
    gen = torch.Generator().manual_seed(seed)
    y = torch.randint(0, 2, (n,), generator=gen)
    x = 0.3 + 0.4 * y[:, None].float() + 0.06 * torch.randn(n, DIM, generator=gen)
    return x.clamp(0.0, 1.0), y


@pytest.fixture(scope="module")
def trained() -> tuple[nn.Linear, Tensor, Tensor]:
    torch.manual_seed(0)
    model = nn.Linear(DIM, 2)
    x, y = _blobs(256, 0)
    opt = torch.optim.Adam(model.parameters(), lr=0.1)
    for _ in range(100):
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
    model.zero_grad(set_to_none=True)
    x_test, y_test = _blobs(64, 1)
    return model, x_test, y_test


def _numpy_predict(model: nn.Linear, x: Tensor) -> np.ndarray:
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    return (x.numpy() @ w.T + b).argmax(axis=1)


def test_linf_budget_bounds_success_and_accuracy_drop(trained) -> None:
    model, x, y = trained
    x_before = x.clone()
    clean_acc = float((_numpy_predict(model, x) == y.numpy()).mean())
    assert clean_acc >= 0.95
    epsilons = [0.0, 0.05, 0.3]
    results = LinfPGD()(model, x, y, epsilons=epsilons, seed=0)
    accs = []
    for eps, result in zip(epsilons, results, strict=True):
        raw, clipped, success = result
        delta = clipped.numpy() - x.numpy()
        assert np.abs(delta).max() <= eps + 1e-6
        assert clipped.min() >= 0.0 and clipped.max() <= 1.0
        np.testing.assert_allclose(result.distance.numpy(), np.abs(delta).max(axis=1), atol=1e-7)
        pred = _numpy_predict(model, clipped)
        np.testing.assert_array_equal(success.numpy(), pred != y.numpy())
        torch.testing.assert_close(raw, clipped)  # PGD projects every iterate already
        accs.append(float((pred == y.numpy()).mean()))
    torch.testing.assert_close(results[0].clipped, x)
    assert accs[0] == clean_acc
    assert accs[2] < 0.1 < clean_acc
    assert accs[0] >= accs[1] >= accs[2]
    torch.testing.assert_close(x, x_before)
    assert all(p.grad is None for p in model.parameters())


def test_l2_budget_bounds_and_accuracy_drop(trained) -> None:
    model, x, y = trained
    epsilons = [0.1, 1.5]
    results = L2PGD()(model, x, y, epsilons=epsilons, seed=0)
    for eps, result in zip(epsilons, results, strict=True):
        norms = np.linalg.norm(result.clipped.numpy() - x.numpy(), axis=1)
        assert norms.max() <= eps * (1 + 1e-6)
        np.testing.assert_allclose(result.distance.numpy(), norms, rtol=1e-5, atol=1e-7)
        assert result.clipped.min() >= 0.0 and result.clipped.max() <= 1.0
    clean_acc = float((_numpy_predict(model, x) == y.numpy()).mean())
    adv_acc = float((_numpy_predict(model, results[1].clipped) == y.numpy()).mean())
    assert adv_acc < 0.1 < clean_acc
    assert results[1].success_rate > 0.9


def _ce_input_gradient(model: nn.Linear, x: Tensor, y: Tensor) -> np.ndarray:
    """Closed form of d CE / d x for logits W x + b: W^T (softmax - onehot)."""
    w, b = model.weight.detach().numpy(), model.bias.detach().numpy()
    logits = x.numpy() @ w.T + b
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    p[np.arange(len(y)), y.numpy()] -= 1.0
    return p @ w


@pytest.mark.parametrize("norm", ["l2", "linf"])
def test_single_step_matches_closed_form(trained, norm: str) -> None:
    model, x, y = trained
    x, y = x[:5], y[:5]
    step = 0.02
    attack_cls = L2PGD if norm == "l2" else LinfPGD
    attack = attack_cls(steps=1, abs_stepsize=step, random_start=False)
    (result,) = attack(model, x, y, epsilons=[10.0])
    g = _ce_input_gradient(model, x, y)
    unit = g / np.linalg.norm(g, axis=1, keepdims=True)
    direction = unit if norm == "l2" else np.sign(g)
    expected = np.clip(x.numpy() + step * direction, 0.0, 1.0)
    np.testing.assert_allclose(result.raw.numpy(), expected, atol=1e-6)


def test_random_starts_are_uniform_and_seeded() -> None:
    x = torch.zeros(3000, 2, dtype=torch.float64)
    eps = 0.5

    def start(attack: L2PGD | LinfPGD, seed: int) -> torch.Tensor:
        return attack.random_start_delta(x, eps, torch.Generator().manual_seed(seed))

    l2 = start(L2PGD(), 3)
    radii = np.linalg.norm(l2.numpy(), axis=1) / eps
    # Uniform in the 2-D disc: P(|delta| <= r eps) = r^2; uniform angle.
    assert stats.kstest(radii, lambda r: np.clip(r, 0, 1) ** 2).pvalue > 1e-3
    angles = np.arctan2(l2[:, 1].numpy(), l2[:, 0].numpy())
    assert stats.kstest(angles, stats.uniform(-np.pi, 2 * np.pi).cdf).pvalue > 1e-3
    coords = start(LinfPGD(), 3).numpy().ravel()
    assert stats.kstest(coords, stats.uniform(-eps, 2 * eps).cdf).pvalue > 1e-3

    torch.testing.assert_close(start(L2PGD(), 3), l2)
    assert not torch.equal(start(L2PGD(), 4), l2)


def test_zero_steps_and_shared_constructor() -> None:
    for cls in (L2PGD, LinfPGD):
        with pytest.raises(ConfigError, match="positive integer"):
            cls(steps=0)
    assert L2PGD().rel_stepsize == 0.025 and LinfPGD().rel_stepsize == pytest.approx(0.01 / 0.3)
    assert L2PGD.__init__ is LinfPGD.__init__


def test_invertible_classifier_is_attacked_through_its_logits() -> None:
    toy = AffineInvertibleClassifier((6,), 3, seed=4, dtype=torch.float32)
    x = torch.rand(10, 6, generator=torch.Generator().manual_seed(0))
    y = toy.logits(x).argmax(dim=1).detach()
    (result,) = LinfPGD(steps=10)(toy, x, y, epsilons=[0.2], seed=0)
    w, b = toy.numpy_params()
    pred = (result.clipped.numpy() @ w.T + b)[:, :3].argmax(axis=1)
    np.testing.assert_array_equal(result.success.numpy(), pred != y.numpy())
    assert result.success.any()


def test_rejects_bad_arguments(trained) -> None:
    model, x, y = trained
    attack = LinfPGD(steps=1)
    with pytest.raises(ShapeError):
        attack(model, x, y[:-1], epsilons=[0.1])
    with pytest.raises(ConfigError):
        attack(model, x, y.float(), epsilons=[0.1])
    with pytest.raises(ConfigError):
        attack(model, x, y + 5, epsilons=[0.1])
    with pytest.raises(ConfigError):
        attack(model, x, y, epsilons=[])
    with pytest.raises(ConfigError):
        attack(model, x, y, epsilons=[-0.1])
    with pytest.raises(ConfigError):
        attack(model, x, y, epsilons=["0.1"])  # type: ignore[list-item]
    with pytest.raises(ConfigError):
        LinfPGD(steps=-1)
    with pytest.raises(ConfigError):
        L2PGD(abs_stepsize=float("nan"))
    single = attack(model, x, y, epsilons=0.1, seed=0)
    assert len(single) == 1 and single[0].epsilon == 0.1
