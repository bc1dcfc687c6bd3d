from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from preimage.analysis.fault_tolerance import interpolate_on_snr, label_information_curve
from preimage.errors import ShapeError


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
