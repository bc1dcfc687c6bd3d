"""Tests of the analytic attacks on the mis-aligned spheres classifier (thesis example 6.6)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from preimage.attacks.base import AttackResult
from preimage.attacks.spheres import (
    MisalignedSpheresClassifier,
    SpheresInvarianceAttack,
    SpheresPerturbationAttack,
    accuracy_under_attack,
)
from preimage.data import sample_spheres
from preimage.errors import ConfigError, ShapeError

R1, R2, D, N_UNUSED = 1.0, 1.3, 60, 6


@pytest.fixture
def data() -> tuple[torch.Tensor, torch.Tensor, MisalignedSpheresClassifier]:
    x, y = sample_spheres(400, d=D, r1=R1, r2=R2, seed=3, dtype=torch.float64)
    return x, y, MisalignedSpheresClassifier.fit(x, y, unused=N_UNUSED)


def test_fit_is_max_margin_against_numpy(data) -> None:
    x, y, clf = data
    used = np.linalg.norm(x.numpy()[:, : D - N_UNUSED], axis=1)
    low, high = used[y.numpy() == 0].max(), used[y.numpy() == 1].min()
    assert clf.bias == pytest.approx((low + high) / 2)
    assert bool((clf(x).argmax(1) == y).all())


def test_fit_refuses_inseparable_data() -> None:
    x, y = sample_spheres(400, d=20, r1=1.0, r2=1.05, seed=0)
    with pytest.raises(ConfigError, match="separable"):
        MisalignedSpheresClassifier.fit(x, y, unused=15)


def test_perturbation_attack_stays_on_outer_sphere_and_flips(data) -> None:
    x, y, clf = data
    res = SpheresPerturbationAttack(r1=R1, r2=R2)(clf, x)
    outer = y == 1
    adv = res.x_adv.numpy()
    np.testing.assert_allclose(np.linalg.norm(adv[outer.numpy()], axis=1), R2, rtol=1e-9)
    assert bool((clf(res.x_adv[outer]).argmax(1) == 0).all())
    assert bool(res.success[outer].all()) and not bool(res.success[~outer].any())
    # Inner points are not applicable and stay put.
    assert torch.equal(res.x_adv[~outer], x[~outer])
    np.testing.assert_allclose(res.distance.numpy(), np.linalg.norm(adv - x.numpy(), axis=1))


def test_invariance_attack_keeps_used_block_and_reaches_outer_sphere(data) -> None:
    x, y, clf = data
    res = SpheresInvarianceAttack(r1=R1, r2=R2)(clf, x)
    inner = y == 0
    assert torch.equal(res.x_adv[:, : D - N_UNUSED], x[:, : D - N_UNUSED])
    np.testing.assert_allclose(res.x_adv[inner].norm(dim=1).numpy(), R2, rtol=1e-9)
    assert bool((clf(res.x_adv[inner]).argmax(1) == 0).all())
    assert bool(res.success[inner].all()) and not bool(res.success[~inner].any())
    # Closed form of the distance: only the unused block grows, from r_n to sqrt(R2^2 - r_u^2).
    r_u = x[inner, : D - N_UNUSED].norm(dim=1)
    r_n = x[inner, D - N_UNUSED :].norm(dim=1)
    np.testing.assert_allclose(
        res.distance[inner].numpy(), (torch.sqrt(R2**2 - r_u**2) - r_n).numpy(), rtol=1e-9
    )


def test_attacks_need_the_misaligned_classifier() -> None:
    with pytest.raises(ConfigError, match="MisalignedSpheresClassifier"):
        SpheresInvarianceAttack(r1=R1, r2=R2)(torch.nn.Linear(4, 2), torch.zeros(2, 4))


def test_accuracy_under_attack_is_a_survival_curve(data) -> None:
    x, y, clf = data
    res = SpheresInvarianceAttack(r1=R1, r2=R2)(clf, x)
    correct = clf(x).argmax(1) == y
    budgets = np.linspace(0, 1.5, 16)
    acc = accuracy_under_attack(correct, res, budgets).numpy()
    d = res.distance.numpy()
    ok = res.success.numpy()
    expected = [np.mean(correct.numpy() & ~(ok & (d <= e))) for e in budgets]
    np.testing.assert_allclose(acc, expected, rtol=1e-6)
    assert acc[0] == pytest.approx(1.0) and acc[-1] == pytest.approx(0.5)
    assert np.all(np.diff(acc) <= 0)


def test_accuracy_under_attack_checks_shapes() -> None:
    r = AttackResult(torch.zeros(2, 2), torch.ones(2, dtype=torch.bool), torch.zeros(2))
    with pytest.raises(ShapeError):
        accuracy_under_attack(torch.ones(3, dtype=torch.bool), r, [0.1])
