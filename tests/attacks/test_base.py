"""Tests of preimage.attacks.base: value types, results, eval mode and input validation."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import Tensor, nn

from preimage.attacks.base import (
    Attack,
    AttackResult,
    Bounds,
    EpsilonResult,
    eval_mode,
)
from preimage.errors import ConfigError, ShapeError
from preimage.nn import logits_of, model_output
from tests.attacks.toy import AffineInvertibleClassifier


class _ModeRecorder(nn.Module):
    """Records its training flag at every forward."""

    def __init__(self) -> None:
        super().__init__()
        self.linear = nn.Linear(3, 2)
        self.dropout = nn.Dropout(0.5)
        self.seen: list[bool] = []

    def forward(self, x: Tensor) -> Tensor:
        self.seen.append(self.training)
        return self.dropout(self.linear(x))


class _ScaleAttack(Attack[AttackResult]):
    """Moves inputs half-way to the lower bound in place on its own copy."""

    def run(self, model: nn.Module, inputs: Tensor) -> AttackResult:
        model(inputs)
        inputs.mul_(0.5)
        ok = torch.ones(inputs.shape[0], dtype=torch.bool)
        return AttackResult(inputs, ok, torch.zeros(inputs.shape[0]))


class _FailingAttack(Attack[AttackResult]):
    def run(self, model: nn.Module, inputs: Tensor) -> AttackResult:
        raise RuntimeError("boom")


def test_bounds_clip_matches_numpy_and_validates() -> None:
    b = Bounds(-1.0, 2.0)
    x = torch.linspace(-3, 3, 13)
    np.testing.assert_allclose(b.clip(x).numpy(), np.clip(x.numpy(), -1.0, 2.0))
    assert b.width == 3.0
    assert b.contains(torch.tensor([-1.0, 2.0])) and not b.contains(torch.tensor([2.5]))
    with pytest.raises(ConfigError):
        Bounds(1.0, 1.0)
    with pytest.raises(ConfigError):
        Bounds(0.0, float("inf"))


def test_attack_result_post_conditions() -> None:
    x = torch.zeros(3, 2)
    r = AttackResult(x, torch.tensor([True, False, True]), torch.zeros(3))
    assert r.success_rate == pytest.approx(2 / 3)
    with pytest.raises(ShapeError):
        AttackResult(x, torch.tensor([1, 0, 1]), torch.zeros(3))
    with pytest.raises(ShapeError):
        AttackResult(x, torch.ones(2, dtype=torch.bool), torch.zeros(3))
    with pytest.raises(ShapeError):
        AttackResult(x, torch.ones(3, dtype=torch.bool), torch.zeros(3, 1))


def test_epsilon_result_unpacks_like_foolbox() -> None:
    raw, clipped = torch.full((2, 2), 2.0), torch.ones(2, 2)
    success = torch.tensor([True, False])
    r = EpsilonResult(x_adv=clipped, success=success, distance=torch.ones(2), epsilon=0.3, raw=raw)
    a, b, c = r
    assert a is raw and b is clipped and c is success
    assert r.clipped is clipped and r.epsilon == 0.3


def test_eval_mode_restores_mixed_flags_even_on_error() -> None:
    net = _ModeRecorder().train()
    net.dropout.eval()
    with pytest.raises(RuntimeError), eval_mode(net):
        assert not net.training and not net.linear.training
        raise RuntimeError("inside")
    assert net.training and net.linear.training and not net.dropout.training


def test_model_output_and_logits_of() -> None:
    toy = AffineInvertibleClassifier((4,), 2, dtype=torch.float32)
    x = torch.rand(5, 4)
    torch.testing.assert_close(logits_of(toy, x), toy(x)[0][:, :2])

    class TupleNet(nn.Module):
        def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
            return x, x

    with pytest.raises(ConfigError):
        model_output(TupleNet(), x)

    class NamedLogits(nn.Module):
        """A submodule called ``logits`` is not the contract's method."""

        def __init__(self) -> None:
            super().__init__()
            self.body = nn.Linear(4, 6)
            self.logits = nn.Linear(6, 3)

        def forward(self, x: Tensor) -> Tensor:
            return self.logits(torch.relu(self.body(x)))

    assert logits_of(NamedLogits(), x).shape == (5, 3)
    with pytest.raises(ShapeError):
        logits_of(nn.Identity(), torch.rand(5, 2, 2))


def test_attack_runs_in_eval_mode_on_a_clone_and_restores_flags() -> None:
    net = _ModeRecorder().train()
    x = torch.rand(4, 3)
    before = x.clone()
    result = _ScaleAttack()(net, x)
    assert net.seen == [False]
    assert net.training and net.dropout.training
    torch.testing.assert_close(x, before)
    torch.testing.assert_close(result.x_adv, 0.5 * before)
    with pytest.raises(RuntimeError):
        _FailingAttack()(net, x)
    assert net.training


@pytest.mark.parametrize(
    ("inputs", "error"),
    [
        ([[0.1, 0.2, 0.3]], ConfigError),
        (torch.rand(3), ShapeError),
        (torch.rand(0, 3), ShapeError),
        (torch.ones(2, 3, dtype=torch.long), ConfigError),
        (torch.tensor([[0.1, float("nan"), 0.2]]), ConfigError),
        (torch.tensor([[0.1, 1.5, 0.2]]), ConfigError),
    ],
)
def test_attack_rejects_bad_inputs(inputs: object, error: type[Exception]) -> None:
    with pytest.raises(error):
        _ScaleAttack()(_ModeRecorder(), inputs)  # type: ignore[arg-type]


def test_attack_rejects_bad_construction() -> None:
    with pytest.raises(ConfigError):
        _ScaleAttack(bounds=(0.0, 1.0))  # type: ignore[arg-type]
    with pytest.raises(ConfigError):
        _ScaleAttack()("not a model", torch.rand(2, 3))  # type: ignore[arg-type]
    assert "bounds=Bounds(lower=0.0, upper=1.0)" in repr(_ScaleAttack())
