"""Tests of preimage.attacks.feature (LogitMetamer, appendix B feature adversaries)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from preimage.attacks.base import Bounds
from preimage.attacks.feature import LogitMetamer
from preimage.errors import ConfigError, ShapeError
from tests.attacks.toy import AffineInvertibleClassifier


def _cnn() -> nn.Sequential:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5)
    )


def _images(n: int, seed: int) -> Tensor:
    return torch.rand(n, 1, 6, 6, generator=torch.Generator().manual_seed(seed))


def _numpy_mse(a: Tensor, b: Tensor) -> np.ndarray:
    d = a.detach().reshape(a.shape[0], -1).numpy() - b.detach().reshape(b.shape[0], -1).numpy()
    return (d**2).mean(axis=1)


def test_drives_logit_mse_down_within_bounds_without_side_effects() -> None:
    model = _cnn().train()
    x, target = _images(3, 0), _images(3, 1)
    x_before, params_before = x.clone(), [p.detach().clone() for p in model.parameters()]
    result = LogitMetamer(steps=60, lr=0.05)(model, x, target)
    initial = _numpy_mse(model(x), model(target))
    final = _numpy_mse(model(result.x_adv), model(target))
    assert (final < 0.05 * initial).all()
    np.testing.assert_allclose(result.distance.numpy(), final, rtol=1e-4, atol=1e-7)
    np.testing.assert_allclose(result.extras["initial_distance"].numpy(), initial, rtol=1e-5)
    assert result.success.all()  # no tol, no criterion: success = the MSE went down
    assert result.x_adv.min() >= 0.0 and result.x_adv.max() <= 1.0
    assert not torch.equal(result.x_adv, x)
    torch.testing.assert_close(x, x_before)
    assert all(p.grad is None for p in model.parameters())
    assert all(torch.equal(p, q) for p, q in zip(model.parameters(), params_before, strict=True))
    assert model.training
    history = result.extras["history"]
    assert len(history) == 60 and history[-1] < 0.05 * history[0]
    assert result.extras["steps_used"].tolist() == [60, 60, 60]
    assert result.extras["wall_time_s"] > 0


def test_bounds_are_respected_for_a_narrow_box() -> None:
    model = _cnn()
    bounds = Bounds(0.4, 0.6)
    x, target = 0.4 + 0.2 * _images(2, 2), _images(2, 3)
    result = LogitMetamer(steps=20, lr=0.05, bounds=bounds)(model, x, target)
    assert result.x_adv.min() >= 0.4 and result.x_adv.max() <= 0.6


def test_batch_follows_the_same_trajectories_as_single_runs() -> None:
    model = _cnn()
    x, target = _images(2, 4), _images(2, 5)
    attack = LogitMetamer(steps=15, lr=0.01)
    batched = attack(model, x, target).x_adv
    for i in range(2):
        single = attack(model, x[i : i + 1], target[i : i + 1]).x_adv
        torch.testing.assert_close(batched[i : i + 1], single, atol=1e-5, rtol=0)


@pytest.mark.parametrize("by_name", [True, False])
def test_layer_features_by_name_or_module(by_name: bool) -> None:
    model = _cnn()
    x, target = _images(2, 6), _images(2, 7)
    layer = "0" if by_name else model[0]
    result = LogitMetamer(steps=30, lr=0.05, layer=layer)(model, x, target)
    conv = model[0]
    initial = _numpy_mse(conv(x), conv(target))
    final = _numpy_mse(conv(result.x_adv), conv(target))
    np.testing.assert_allclose(result.distance.numpy(), final, rtol=1e-4, atol=1e-7)
    assert (final < 0.5 * initial).all()
    assert not model[0]._forward_hooks  # the capture hook is removed afterwards


def test_tol_freezes_samples_and_defines_success() -> None:
    model = _cnn()
    x, target = _images(4, 8), _images(4, 9)
    everything = LogitMetamer(steps=50, tol=1e9)(model, x, target)
    assert everything.extras["steps_used"].tolist() == [0, 0, 0, 0]
    torch.testing.assert_close(everything.x_adv, x)
    assert everything.success.all()

    initial = _numpy_mse(model(x), model(target))
    tol = float(np.median(initial)) * 0.3
    result = LogitMetamer(steps=100, lr=0.05, tol=tol)(model, x, target)
    final = _numpy_mse(model(result.x_adv), model(target))
    np.testing.assert_array_equal(result.success.numpy(), final <= tol)
    assert result.success.all()
    used = result.extras["steps_used"]
    assert (used < 100).all() and (used > 0).all()


def test_criterion_decides_success_and_sees_the_target() -> None:
    model = _cnn()
    x, target = _images(3, 10), _images(3, 11)
    seen: list[Tensor] = []

    def criterion(reference: Tensor, x_adv: Tensor) -> Tensor:
        seen.append(reference)
        return torch.tensor([True, False, True])

    result = LogitMetamer(steps=5)(model, x, target, criterion=criterion)
    assert result.success.tolist() == [True, False, True]
    torch.testing.assert_close(seen[0], target)


def test_invertible_model_matches_logits_only() -> None:
    toy = AffineInvertibleClassifier((9,), 3, seed=2, dtype=torch.float32)
    x = torch.full((2, 9), 0.5)
    target = torch.rand(2, 9, generator=torch.Generator().manual_seed(12))
    result = LogitMetamer(steps=100, lr=0.3, optimizer="sgd")(toy, x, target)
    final = _numpy_mse(toy.logits(result.x_adv), toy.logits(target))
    initial = _numpy_mse(toy.logits(x), toy.logits(target))
    np.testing.assert_allclose(result.distance.numpy(), final, rtol=1e-4, atol=1e-7)
    assert (final < 0.01 * initial).all()
    # z_n was free: the metamer is not the target itself.
    assert (result.x_adv - target).abs().max() > 0.05


def test_progress_bar_runs() -> None:
    result = LogitMetamer(steps=3, progress=True)(_cnn(), _images(1, 0), _images(1, 1))
    assert len(result.extras["history"]) == 3


@pytest.mark.parametrize(
    "kwargs",
    [
        {"steps": 0},
        {"lr": 0.0},
        {"optimizer": "rmsprop"},
        {"tol": -1.0},
        {"layer": 3},
    ],
)
def test_rejects_bad_hyper_parameters(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        LogitMetamer(**kwargs)  # type: ignore[arg-type]


def test_rejects_bad_layers_and_targets() -> None:
    model = _cnn()
    x = _images(2, 0)
    with pytest.raises(ConfigError):
        LogitMetamer(steps=2, layer="9.conv")(model, x, x)
    with pytest.raises(ConfigError):
        LogitMetamer(steps=2, layer=nn.Linear(2, 2))(model, x, x)
    with pytest.raises(ShapeError):
        LogitMetamer(steps=2)(model, x, _images(3, 0))
    with pytest.raises(ConfigError):
        LogitMetamer(steps=2)(model, x, torch.full_like(x, float("nan")))

    class Tuple(nn.Module):
        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return x, x

    with pytest.raises(ConfigError):
        LogitMetamer(steps=2)(Tuple(), x, x)
