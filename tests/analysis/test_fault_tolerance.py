from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from scipy.stats import spearmanr
from torch import nn

from preimage.analysis.fault_tolerance import (
    falling_phase_spearman,
    interpolate_on_snr,
    label_information_curve,
)
from preimage.errors import ConfigError, ShapeError


class _Sign(nn.Module):
    """Predicts class 1 when the first coordinate is positive: a known decision rule."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.stack([-x[:, 0], x[:, 0]], dim=1)


def test_curve_on_a_known_rule() -> None:
    x = torch.tensor([[1.0, 0.0], [2.0, 0.0], [-1.0, 0.0], [-2.0, 0.0]])
    y = torch.tensor([1, 1, 0, 0])
    flipped = -x  # every decision wrong, yet fully informative about y
    constant = torch.zeros_like(x) + torch.tensor([5.0, 0.0])
    curve = label_information_curve(_Sign(), x, y, [x * 1.1, flipped, constant], correction="none")
    assert curve["accuracy"].tolist() == [1.0, 0.0, 0.5]
    assert curve["i_ty_bits"].tolist() == pytest.approx([1.0, 1.0, 0.0])
    assert curve["snr_db"][0] == pytest.approx(20.0)  # delta = 0.1 x
    assert curve["snr_db"][1] == pytest.approx(20 * math.log10(0.5))
    with pytest.raises(ShapeError):
        label_information_curve(_Sign(), x, y, [x[:2]])


def test_miller_madow_default_removes_the_bias_of_random_decisions() -> None:
    gen = torch.Generator().manual_seed(0)
    x = torch.randn(400, 2, generator=gen)
    y = torch.randint(0, 2, (400,), generator=gen)  # unrelated to the decision rule
    plug = label_information_curve(_Sign(), x, y, [x], correction="none")["i_ty_bits"][0]
    corrected = label_information_curve(_Sign(), x, y, [x])["i_ty_bits"][0]
    assert corrected < plug
    assert abs(corrected) < 0.01


def test_interpolation() -> None:
    c = {"snr_db": np.array([30.0, 20.0, 10.0]), "i_ty_bits": np.array([1.0, 0.8, 0.2])}
    got = interpolate_on_snr(c, np.array([25.0, 15.0, 5.0]))
    assert got[:2].tolist() == pytest.approx([0.9, 0.5]) and np.isnan(got[2])


def _trajectory(information: np.ndarray, accuracy: np.ndarray) -> dict[str, np.ndarray]:
    return {
        "snr_db": np.linspace(30.0, 0.0, information.size),
        "i_ty_bits": information,
        "accuracy": accuracy,
    }


def test_falling_phase_ends_where_the_accuracy_drops_below_chance() -> None:
    # Figure 5's shape: the information falls until the attack has fooled the model, then
    # slowly rises as the wrong classes become consistent (a targeted-like mapping).
    fall = np.linspace(3.0, 0.8, 10)
    rise = np.linspace(0.85, 1.0, 20)
    accuracy = np.concatenate([np.linspace(0.95, 0.12, 10), np.zeros(20)])
    curve = _trajectory(np.concatenate([fall, rise]), accuracy)
    assert falling_phase_spearman(curve, chance=0.1) == (pytest.approx(1.0), 10)
    # Over the whole trajectory the rise drags the correlation far below 0.9.
    assert spearmanr(curve["snr_db"], curve["i_ty_bits"]).statistic < 0.5


def test_information_rising_during_the_attack_is_caught() -> None:
    accuracy = np.linspace(0.95, 0.2, 12)
    rising = _trajectory(np.linspace(1.0, 2.0, 12), accuracy)
    rho, n = falling_phase_spearman(rising, chance=0.1)
    assert n == 12 and rho == pytest.approx(-1.0)
    # A flat curve carrying only estimator noise is no fall either.
    noise = np.random.default_rng(0).normal(1.0, 0.05, 12)
    rho, _ = falling_phase_spearman(_trajectory(noise, accuracy), chance=0.1)
    assert rho < 0.9


def test_falling_phase_needs_three_points_and_a_valid_chance() -> None:
    curve = _trajectory(np.array([2.0, 1.0, 0.5, 0.4]), np.array([0.9, 0.3, 0.05, 0.0]))
    rho, n = falling_phase_spearman(curve, chance=0.1)
    assert n == 2 and math.isnan(rho)
    with_clean = {k: np.concatenate([[v[0]], v]) for k, v in curve.items()}
    with_clean["snr_db"][0] = np.inf  # the unperturbed inputs are not a point of the curve
    assert falling_phase_spearman(with_clean, chance=0.1)[1] == 2
    with pytest.raises(ConfigError):
        falling_phase_spearman(curve, chance=1.5)
