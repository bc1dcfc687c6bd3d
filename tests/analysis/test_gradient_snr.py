from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from preimage.analysis.gradient_snr import GradientSNR, RunningMoments, gradient_snr
from preimage.errors import ConfigError
from preimage.train import TrainConfig, Trainer


def _sgd(**options: float) -> TrainConfig:
    """Plain SGD on raw tensors (no shifts, dequantisation nor weight decay)."""
    base = {"device": "cpu", "max_shift": 0, "dequantize": False, "weight_decay": 0.0}
    return TrainConfig(optimizer="sgd", **base, **options)  # type: ignore[arg-type]


def test_running_moments_match_numpy() -> None:
    rng = np.random.default_rng(0)
    values = rng.standard_normal((50, 3, 4)) * 3.0 + 1.0
    m = RunningMoments()
    for v in values:
        m.update(torch.tensor(v))
    assert m.count == 50
    np.testing.assert_allclose(m.mean.numpy(), values.mean(axis=0), rtol=1e-12)
    np.testing.assert_allclose(m.std.numpy(), values.std(axis=0), rtol=1e-10)
    with pytest.raises(ConfigError):
        _ = RunningMoments().mean


class _Constant(nn.Module):
    """A model whose weight gradient at batch t is a + (-1)^t b, by construction."""

    def __init__(self, a: torch.Tensor, b: torch.Tensor) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.full((2, 2), 2.0, dtype=torch.float64))
        self.a, self.b = a, b
        self.calls = 0

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        sign = 1.0 if self.calls % 2 == 0 else -1.0
        self.calls += 1
        target = self.a + sign * self.b
        # d/dw of sum(w * target) is target, whatever w is: the gradients are the constructed ones.
        value = (self.weight * target).sum()
        return torch.stack([value, 0 * value]).expand(x.shape[0], 2) / x.shape[0]


def test_gradient_snr_on_constructed_gradients() -> None:
    a = torch.tensor([[3.0, 0.0], [0.0, 4.0]], dtype=torch.float64)
    b = torch.tensor([[0.0, 1.0], [1.0, 0.0]], dtype=torch.float64)
    model = _Constant(a, b)
    snr = GradientSNR()
    x = torch.zeros(8, 1, dtype=torch.float64)
    y = torch.zeros(8, dtype=torch.long)

    def loss_fn(m: nn.Module, xb: torch.Tensor, yb: torch.Tensor):  # type: ignore[no-untyped-def]
        return m(xb)[:, 0].sum(), {}

    cfg = _sgd(epochs=1, batch_size=2, momentum=0.0, lr=1e-12)  # ||w|| stays 4
    Trainer(model, (x, y), None, cfg, loss_fn=loss_fn, callbacks=[snr], progress=False).fit()
    # Four batches: mean gradient a, element-wise std |b|; ||a|| = 5, ||w|| = 4, ||b|| = sqrt 2.
    detail = snr.details[0]
    assert detail["signal"] == pytest.approx(5.0 / 4.0)
    assert detail["noise"] == pytest.approx(math.sqrt(2.0))
    assert snr.history == [{"epoch": 1, "weight": pytest.approx(5.0 / 4.0 / math.sqrt(2.0))}]


def test_formula() -> None:
    out = gradient_snr(torch.ones(4), torch.full((4,), 0.5), torch.full((4,), 2.0))
    assert out == {"signal": 0.5, "noise": 1.0, "snr": 0.5}


def test_real_training_gives_one_value_per_layer_and_epoch() -> None:
    torch.manual_seed(0)
    x, y = torch.randn(128, 6), torch.randint(0, 3, (128,))
    net = nn.Sequential(nn.Linear(6, 16), nn.ReLU(), nn.Linear(16, 16), nn.ReLU(), nn.Linear(16, 3))
    snr = GradientSNR()
    cfg = _sgd(epochs=3, batch_size=16, lr=0.05)
    Trainer(net, (x, y), None, cfg, callbacks=[snr], progress=False).fit()
    assert [h["epoch"] for h in snr.history] == [1, 2, 3]
    assert all(set(h) == {"epoch", "0", "2", "4"} for h in snr.history)
    assert all(0 < h[k] < math.inf for h in snr.history for k in ("0", "2", "4"))
