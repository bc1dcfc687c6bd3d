from __future__ import annotations

import pytest
import torch
from torch import nn

from preimage.errors import ConfigError
from preimage.models import MLP, build_model


@pytest.mark.parametrize("activation", ["relu", "tanh"])
@pytest.mark.parametrize("batch_norm", [False, True])
def test_structure(activation: str, batch_norm: bool) -> None:
    net = MLP((1, 8, 8), 3, widths=(16, 8, 4), activation=activation, batch_norm=batch_norm)
    assert net(torch.rand(5, 1, 8, 8)).shape == (5, 3)
    kinds = [type(m) for m in net.blocks[0]]
    act = nn.ReLU if activation == "relu" else nn.Tanh
    assert kinds == ([nn.Linear, nn.BatchNorm1d, act] if batch_norm else [nn.Linear, act])
    assert list(net.layers()) == ["layer1", "layer2", "layer3", "output"]
    # No batch norm after the read-out.
    assert isinstance(net.layers()["output"], nn.Linear)


def test_appendix_a_bottleneck_and_registry() -> None:
    net = build_model(
        "mlp", (1, 28, 28), 10, widths=(392, 196, 2, 49), batch_norm_affine=False, batch_norm=True
    )
    assert [b[0].out_features for b in net.blocks] == [392, 196, 2, 49]
    assert net.blocks[2][1].weight is None  # the scale disabled (figure 6(c))


def test_selected_norm_and_linear_layers() -> None:
    net = MLP(
        (1, 28, 28),
        10,
        widths=(392, 196, 2, 49),
        batch_norm=True,
        norm_layers=(0, 1),
        linear_layers=(2,),
    )
    kinds = [[type(m) for m in block] for block in net.blocks]
    assert kinds == [
        [nn.Linear, nn.BatchNorm1d, nn.ReLU],
        [nn.Linear, nn.BatchNorm1d, nn.ReLU],
        [nn.Linear],
        [nn.Linear, nn.ReLU],
    ]
    # The linear bottleneck takes negative values.
    assert float(net.blocks[2](torch.randn(64, 196)).detach().min()) < 0


def test_rejects_bad_options() -> None:
    with pytest.raises(ConfigError):
        MLP((4,), 2, activation="gelu")
    with pytest.raises(ConfigError):
        MLP((4,), 2, widths=(0,))
