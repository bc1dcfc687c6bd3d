"""Tests of preimage.losses.nuisance against a NumPy MLP."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from preimage.errors import ConfigError, ShapeError
from preimage.losses.nuisance import NuisanceClassifier


def _numpy_forward(clf: NuisanceClassifier, x: np.ndarray) -> np.ndarray:
    linears = [m for m in clf.modules() if isinstance(m, nn.Linear)]
    h = x
    for i, layer in enumerate(linears):
        if i > 0:
            h = np.maximum(h, 0.0)
        h = h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
    return h


@pytest.mark.parametrize(("depth", "hidden"), [(3, 16), (1, 16), (4, 5)])
def test_architecture_and_forward_match_numpy(depth: int, hidden: int) -> None:
    torch.manual_seed(0)
    clf = NuisanceClassifier(6, 3, hidden=hidden, depth=depth)
    linears = [m for m in clf.modules() if isinstance(m, nn.Linear)]
    assert len(linears) == depth
    widths = [(m.in_features, m.out_features) for m in linears]
    assert widths[0][0] == 6 and widths[-1][1] == 3
    assert all(w[1] == hidden for w in widths[:-1])
    assert sum(isinstance(m, nn.ReLU) for m in clf.modules()) == depth - 1
    x = torch.randn(5, 6)
    np.testing.assert_allclose(
        clf(x).detach().numpy(), _numpy_forward(clf, x.numpy()), rtol=1e-5, atol=1e-6
    )


def test_paper_defaults_and_flattening() -> None:
    clf = NuisanceClassifier(12, 10)
    linears = [m for m in clf.modules() if isinstance(m, nn.Linear)]
    assert [m.out_features for m in linears] == [512, 512, 10]
    x = torch.randn(4, 3, 2, 2)
    torch.testing.assert_close(clf(x), clf(x.reshape(4, 12)))
    with pytest.raises(ShapeError):
        clf(torch.randn(4, 11))


@pytest.mark.parametrize(
    "kwargs",
    [
        {"in_features": 0, "num_classes": 2},
        {"in_features": 4, "num_classes": 1},
        {"in_features": 4, "num_classes": 2, "hidden": 0},
        {"in_features": 4, "num_classes": 2, "depth": 0},
        {"in_features": 4.0, "num_classes": 2},
    ],
)
def test_rejects_bad_configuration(kwargs: dict[str, object]) -> None:
    with pytest.raises(ConfigError):
        NuisanceClassifier(**kwargs)  # type: ignore[arg-type]
