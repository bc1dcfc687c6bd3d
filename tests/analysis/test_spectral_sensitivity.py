"""Class-averaged input gradients of spectrum classifiers."""

from __future__ import annotations

import numpy as np
import torch
from torch import nn

from preimage.analysis.spectral_sensitivity import class_sensitivity
from preimage.models import IsotopeNet


def test_linear_model_sensitivity_is_its_weight_row() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(7, 3))
    y = np.array([0, 2, 2, 0, 0])
    sens = class_sensitivity(model, np.random.rand(5, 7), y, num_classes=3, batch_size=2)
    w = model[1].weight.detach().double().numpy()
    np.testing.assert_allclose(sens[[0, 2]], w[[0, 2]], rtol=1e-6)
    np.testing.assert_array_equal(sens[1], 0.0)  # no spectrum of class 1


def test_sensitivity_matches_autograd_average_for_a_nonlinear_net() -> None:
    torch.manual_seed(1)
    net = IsotopeNet((1, 60), 2).double().eval()
    x = torch.rand(6, 60, dtype=torch.float64)
    y = torch.tensor([0, 1, 1, 0, 1, 1])
    sens = class_sensitivity(net, x, y.numpy(), batch_size=4)
    for c in (0, 1):
        grads = []
        for i in torch.nonzero(y == c).flatten():
            xi = x[i : i + 1, None].clone().requires_grad_(True)
            net(xi)[0, c].backward()
            grads.append(xi.grad[0, 0])
        np.testing.assert_allclose(
            sens[c], torch.stack(grads).mean(0).numpy(), rtol=1e-7, atol=1e-12
        )
