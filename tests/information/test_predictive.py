"""Tests of preimage.information.predictive against closed forms, SciPy and a property."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import mutual_info_score
from torch import nn

from preimage.errors import ConfigError, ShapeError
from preimage.information import (
    ConstrainLogger,
    irrelevant_information,
    predictive_information,
    relevant_information,
    soft_confusion,
)
from preimage.train import TrainConfig, Trainer


def _probs(n: int, c: int, seed: int, scale: float = 2.0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return torch.softmax(scale * torch.randn(n, c, generator=gen, dtype=torch.float64), dim=1)


@pytest.mark.parametrize("marginal", ["uniform", "empirical"])
def test_uniform_probabilities_carry_no_information(marginal: str) -> None:
    assert float(predictive_information(torch.full((7, 5), 0.2), marginal)) == pytest.approx(
        0.0, abs=1e-7
    )


@pytest.mark.parametrize("marginal", ["uniform", "empirical"])
def test_balanced_one_hot_predictions_give_log_c(marginal: str) -> None:
    probs = torch.eye(6).repeat(3, 1)
    assert float(predictive_information(probs, marginal)) == pytest.approx(math.log(6))
    bits = float(predictive_information(probs, marginal, unit="bits"))
    assert bits == pytest.approx(math.log2(6))


def test_uniform_marginal_is_an_upper_bound_with_the_gap_of_the_entropies() -> None:
    probs = _probs(50, 4, 0) * torch.tensor([4.0, 1.0, 1.0, 1.0], dtype=torch.float64)
    probs = probs / probs.sum(dim=1, keepdim=True)  # a skewed mean prediction
    upper = float(predictive_information(probs, "uniform"))
    empirical = float(predictive_information(probs, "empirical"))
    gap = math.log(4) - stats.entropy(probs.mean(dim=0).numpy())
    assert upper - empirical == pytest.approx(gap) and gap > 0.05


def test_empirical_version_against_scipy() -> None:
    probs = _probs(40, 3, 1)
    p = probs.numpy()
    expected = stats.entropy(p.mean(axis=0)) - np.mean([stats.entropy(row) for row in p])
    assert float(predictive_information(probs, "empirical")) == pytest.approx(expected)


def test_soft_confusion_of_hard_predictions_is_the_confusion_matrix_and_its_mi() -> None:
    gen = torch.Generator().manual_seed(2)
    y = torch.randint(0, 4, (60,), generator=gen)
    y_hat = torch.where(torch.rand(60, generator=gen) < 0.7, y, torch.randint(0, 4, (60,)))
    probs = nn.functional.one_hot(y_hat, 4).double()
    pi = soft_confusion(probs, y, 4)
    counts = np.zeros((4, 4))
    np.add.at(counts, (y.numpy(), y_hat.numpy()), 1)
    np.testing.assert_allclose(pi.numpy(), counts / 60)
    mi = float(relevant_information(probs, y, 4))
    assert mi == pytest.approx(mutual_info_score(y.numpy(), y_hat.numpy()))


def test_uniform_prior_reweights_rows_to_one_over_c() -> None:
    probs = _probs(9, 3, 3)
    y = torch.tensor([0, 0, 0, 0, 0, 0, 1, 1, 2])
    pi = soft_confusion(probs, y, 3, prior="uniform")
    np.testing.assert_allclose(pi.sum(dim=1).numpy(), [1 / 3] * 3)
    with pytest.raises(ConfigError):
        soft_confusion(probs, torch.zeros(9, dtype=torch.long), 3, prior="uniform")


@settings(max_examples=30, deadline=None)
@given(
    n=st.integers(2, 40),
    c=st.integers(2, 6),
    seed=st.integers(0, 10_000),
    scale=st.floats(0.0, 8.0),
)
def test_relevant_information_never_exceeds_predictive_information(
    n: int, c: int, seed: int, scale: float
) -> None:
    probs = _probs(n, c, seed, scale)
    y = torch.randint(0, c, (n,), generator=torch.Generator().manual_seed(seed + 1))
    i_y = float(relevant_information(probs, y, c))
    for marginal in ("empirical", "uniform"):
        assert i_y <= float(predictive_information(probs, marginal)) + 1e-9
    assert float(irrelevant_information(probs, y, c)) >= -1e-9


def test_constrain_vanishes_when_predictions_depend_on_the_label_only() -> None:
    y = torch.tensor([0, 1, 2, 0, 1, 2])
    per_class = _probs(3, 3, 4)
    assert float(irrelevant_information(per_class[y], y, 3)) == pytest.approx(0.0, abs=1e-12)
    noisy = per_class[y] + 0.2 * _probs(6, 3, 5)
    assert float(irrelevant_information(noisy / 1.2, y, 3)) > 1e-4


def test_estimators_are_differentiable() -> None:
    logits = torch.randn(8, 3, dtype=torch.float64, requires_grad=True)
    y = torch.tensor([0, 1, 2, 0, 1, 2, 0, 1])
    irrelevant_information(torch.softmax(logits, dim=1), y, 3).backward()
    assert logits.grad is not None and torch.isfinite(logits.grad).all()


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(ShapeError):
        predictive_information(torch.ones(3, 2))
    with pytest.raises(ShapeError):
        soft_confusion(torch.full((3, 2), 0.5), torch.tensor([0, 1]), 2)
    with pytest.raises(ShapeError):
        soft_confusion(torch.full((2, 2), 0.5), torch.tensor([0, 2]), 2)
    with pytest.raises(ConfigError):
        predictive_information(torch.full((3, 2), 0.5), "maximal")
    with pytest.raises(ConfigError):
        relevant_information(torch.full((2, 2), 0.5), torch.tensor([0, 1]), 2, unit="bans")


def test_constrain_logger_records_every_epoch_from_the_model_predictions() -> None:
    torch.manual_seed(0)
    x = torch.randn(40, 5)
    y = (x[:, 0] > 0).long()
    model = nn.Linear(5, 2)
    logger = ConstrainLogger((x, y), 2)
    cfg = TrainConfig(epochs=3, batch_size=10, lr=0.1, device="cpu", max_shift=0, dequantize=False)
    Trainer(model, (x, y), None, cfg, callbacks=[logger], progress=False).fit()
    assert [h["epoch"] for h in logger.history] == [1, 2, 3]
    with torch.no_grad():
        probs = torch.softmax(model(x).double(), dim=1)
    last = logger.history[-1]
    assert last["constrain"] == pytest.approx(float(irrelevant_information(probs, y, 2)))
    assert last["i_y_yhat"] == pytest.approx(float(relevant_information(probs, y, 2)))
    assert logger.mean_constrain == pytest.approx(np.mean([h["constrain"] for h in logger.history]))
