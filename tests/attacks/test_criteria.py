"""Tests of preimage.attacks.criteria on hand-made cases (definitions 2-4, appendix A)."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from preimage.attacks.criteria import (
    ClassifierOracle,
    Oracle,
    RadiusOracle,
    decision,
    invariance_success,
    perturbation_success,
)
from preimage.errors import ConfigError, ShapeError
from tests.attacks.toy import AffineInvertibleClassifier


def _first_coordinate_classifier() -> nn.Linear:
    """Decides class 1 iff x[0] > 0, whatever the other coordinates (a mis-aligned classifier)."""
    model = nn.Linear(3, 2)
    with torch.no_grad():
        model.weight.zero_()
        model.bias.zero_()
        model.weight[1, 0] = 1.0
    return model


def test_radius_oracle_labels_by_norm() -> None:
    oracle = RadiusOracle(1.0, 10.0)
    assert oracle.threshold == 5.5
    x = torch.tensor([[0.5, 0.0], [5.4, 0.0], [3.0, 4.7], [5.5, 0.0], [0.0, 12.0]])
    expected = (np.linalg.norm(x.numpy(), axis=1) > 5.5).astype(np.int64)
    np.testing.assert_array_equal(oracle(x).numpy(), expected)
    assert oracle(x).tolist() == [0, 0, 1, 0, 1]
    images = torch.zeros(2, 1, 2, 2)
    images[1] = 3.0  # norm 6 over all four entries
    assert oracle(images).tolist() == [0, 1]
    for r1, r2 in [(10.0, 1.0), (-1.0, 1.0), (1.0, float("inf"))]:
        with pytest.raises(ConfigError):
            RadiusOracle(r1, r2)
    with pytest.raises(ShapeError):
        oracle(torch.ones(3))


def test_classifier_oracle_is_argmax_in_eval_mode_and_chunked() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Dropout(0.9), nn.Linear(8, 3)).train()
    x = torch.randn(50, 4)
    with torch.no_grad():
        w1, b1 = model[0].weight.numpy(), model[0].bias.numpy()
        w2, b2 = model[3].weight.numpy(), model[3].bias.numpy()
    expected = (np.maximum(x.numpy() @ w1.T + b1, 0.0) @ w2.T + b2).argmax(axis=1)
    whole = ClassifierOracle(model)(x)
    chunked = ClassifierOracle(model, batch_size=7)(x)
    np.testing.assert_array_equal(whole.numpy(), expected)
    np.testing.assert_array_equal(chunked.numpy(), expected)
    assert model.training and model[2].training
    assert isinstance(ClassifierOracle(model), Oracle)
    with pytest.raises(ConfigError):
        ClassifierOracle(model, batch_size=0)
    with pytest.raises(ConfigError):
        ClassifierOracle(lambda x: x)  # type: ignore[arg-type]


def test_decision_of_invertible_classifier_uses_logits() -> None:
    toy = AffineInvertibleClassifier((5,), 3, seed=0, dtype=torch.float32)
    x = torch.randn(6, 5)
    w, b = toy.numpy_params()
    expected = (x.numpy() @ w.T + b)[:, :3].argmax(axis=1)
    np.testing.assert_array_equal(decision(toy, x).numpy(), expected)


def test_invariance_success_needs_kept_decision_and_changed_oracle() -> None:
    model = _first_coordinate_classifier()
    oracle = RadiusOracle(1.0, 10.0)
    x = torch.tensor([[1.0, 0.0, 0.0]] * 4)
    x_adv = torch.tensor(
        [
            [1.0, 0.0, 9.0],  # decision kept (x0 > 0), oracle 0 -> 1: invariance example
            [-1.0, 0.0, 9.0],  # decision changed, oracle changed
            [1.0, 0.5, 0.0],  # decision kept, oracle kept
            [-1.0, 0.0, 0.0],  # decision changed, oracle kept: a perturbation example
        ]
    )
    assert invariance_success(model, oracle, x, x_adv).tolist() == [True, False, False, False]
    assert perturbation_success(model, oracle, x, x_adv).tolist() == [False, False, False, True]
    assert invariance_success(model, oracle, x, x_adv).dtype == torch.bool


def test_criteria_with_a_classifier_oracle_and_bad_shapes() -> None:
    model = _first_coordinate_classifier()

    class SecondCoordinate(nn.Module):
        def forward(self, x: Tensor) -> Tensor:
            return torch.stack([-x[:, 1], x[:, 1]], dim=1)

    oracle = ClassifierOracle(SecondCoordinate())
    x = torch.tensor([[1.0, -1.0, 0.0], [1.0, -1.0, 0.0]])
    x_adv = torch.tensor([[2.0, 1.0, 0.0], [-2.0, -1.0, 0.0]])
    assert invariance_success(model, oracle, x, x_adv).tolist() == [True, False]
    assert perturbation_success(model, oracle, x, x_adv).tolist() == [False, True]
    with pytest.raises(ShapeError):
        invariance_success(model, oracle, x, x_adv[:1])

    def bad_oracle(x: Tensor) -> Tensor:
        return torch.zeros(x.shape[0], 2)

    with pytest.raises(ShapeError):
        perturbation_success(model, bad_oracle, x, x_adv)
