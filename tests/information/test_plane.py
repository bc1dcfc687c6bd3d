from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from preimage.errors import ConfigError, ShapeError
from preimage.information.binning import AdaptiveBinner
from preimage.information.plane import InformationPlane, layer_activations
from preimage.models import MLP
from preimage.train import TrainConfig, Trainer


class _Probe(nn.Module):
    """Three 'layers' with known information: a copy of x, a constant and the sign of x."""

    def __init__(self) -> None:
        super().__init__()
        self.copy, self.const, self.sign = nn.Identity(), nn.Identity(), nn.Identity()

    def layers(self) -> dict[str, nn.Module]:
        return {"copy": self.copy, "const": self.const, "sign": self.sign}

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        a = self.copy(x)
        self.const(torch.zeros_like(x))
        return self.sign((a > 0).to(x.dtype))


def test_known_layers() -> None:
    x = torch.randn(600, 1, generator=torch.Generator().manual_seed(0))
    y = (x[:, 0] > 0).long()
    plane = InformationPlane(x, y, binner=AdaptiveBinner(n_bins=30), unit="bits")
    rows = {r["layer"]: r for r in plane.measure(_Probe(), epoch=3)}
    assert rows["copy"]["i_xt"] == pytest.approx(math.log2(30), abs=1e-9)
    assert rows["const"]["i_xt"] == 0.0 and rows["const"]["i_ty"] == 0.0
    # The sign keeps exactly the label: I(X;T) = I(T;Y) = H(Y).
    p = float(y.float().mean())
    h_y = -(p * math.log2(p) + (1 - p) * math.log2(1 - p))
    assert rows["sign"]["i_xt"] == pytest.approx(h_y)
    assert rows["sign"]["i_ty"] == pytest.approx(h_y)
    assert all(r["epoch"] == 3 for r in rows.values())
    assert len(plane.seconds) == 1


def test_training_moves_the_output_layer_up_the_plane() -> None:
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(400, 1, 4, 4, generator=gen)
    y = (x.flatten(1)[:, :8].sum(1) > x.flatten(1)[:, 8:].sum(1)).long()
    torch.manual_seed(0)
    model = MLP((1, 4, 4), 2, widths=(32, 16))
    plane = InformationPlane(x[:300], y[:300], every=2)
    cfg = TrainConfig(epochs=5, batch_size=32, device="cpu", max_shift=0, lr=0.01)
    Trainer(model, (x, y), None, cfg, callbacks=[plane], progress=False).fit()
    curves = plane.curves()
    assert list(curves) == ["layer1", "layer2", "output"]
    assert curves["output"]["epoch"].tolist() == [0, 2, 4, 5]
    assert curves["output"]["i_ty"][-1] > curves["output"]["i_ty"][0] + 0.2


def test_layer_activations_restore_mode_and_errors() -> None:
    net = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4), nn.Linear(4, 2)).train()
    acts = layer_activations(net, torch.randn(7, 3), {"bn": net[1]}, batch_size=3)
    assert acts["bn"].shape == (7, 4) and net.training
    with pytest.raises(ShapeError):
        InformationPlane(torch.zeros(3, 2), torch.zeros(4))
    with pytest.raises(ConfigError):
        InformationPlane(torch.zeros(3, 2), torch.zeros(3)).measure(nn.Linear(2, 2), 0)
