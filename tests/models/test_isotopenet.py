"""IsotopeNet and ResidualNet1D: shapes, parameter counts, receptive fields, unshared weights."""

from __future__ import annotations

import math

import pytest
import torch

from preimage.errors import ConfigError, ShapeError
from preimage.models import MODELS, IsotopeNet, ResidualNet1D, build_model, count_parameters
from preimage.models.isotopenet import LocallyConnected1d, receptive_field

# Residual layers of IsotopeNet with our conventions: (1->8), (8->8, stride 5), (8->8), (8->1,
# stride 3); batch-norm scales and shifts included, shortcuts 1x1 where the shape changes.
ISO_CONV_PARAMS = (
    (2 + 32 + 16 + 200 + 16)
    + (16 + 200 + 16 + 200 + 72)
    + (16 + 200 + 16 + 200)
    + (16 + 25 + 2 + 4 + 9)
)


@pytest.mark.parametrize("n_bins", [300, 1000, 3067])
def test_isotopenet_shapes_and_parameters(n_bins: int) -> None:
    net = IsotopeNet((1, n_bins), 2)
    out = net(torch.randn(3, 1, n_bins))
    assert out.shape == (3, 2)
    l4 = math.ceil(math.ceil(n_bins / 5) / 3)
    assert net.feature_length == l4
    # locally connected: 3 weights + 1 bias per position; dense: l4 * 2 + 2
    assert count_parameters(net) == ISO_CONV_PARAMS + 4 * l4 + 2 * l4 + 2


def test_receptive_fields() -> None:
    assert receptive_field([(3, 1)] * 4) == (9, 1)
    assert IsotopeNet((1, 200), 2).receptive_field() == 49
    assert IsotopeNet((1, 200), 2, stride_position="first").receptive_field() == 77
    # Brute force: the output position depends on exactly `rf` input bins.
    net = IsotopeNet((1, 600), 2).eval()
    x = torch.zeros(1, 1, 600, requires_grad=True)
    net.layers(x)[0, :, 20].sum().backward()
    touched = (x.grad[0, 0] != 0).nonzero().flatten()
    assert int(touched.max() - touched.min() + 1) <= 49


def test_residualnet_shape_and_parameter_count() -> None:
    net = ResidualNet1D((1, 2187), 2)
    assert net(torch.randn(2, 1, 2187)).shape == (2, 2)
    assert count_parameters(net) == 1_626_036  # independent of the input length
    assert count_parameters(ResidualNet1D((1, 500), 2)) == 1_626_036
    assert ResidualNet1D((1, 100), 2, width=0.25)(torch.randn(2, 1, 100)).shape == (2, 2)


def test_locally_connected_weights_are_unshared() -> None:
    torch.manual_seed(0)
    lc = LocallyConnected1d(6, 2, 1, 3)
    x = torch.randn(4, 2, 6)
    padded = torch.nn.functional.pad(x, (1, 1))
    expected = torch.stack(
        [
            padded[:, :, i : i + 3].reshape(4, -1) @ lc.weight[i, 0] + lc.bias[0, i]
            for i in range(6)
        ],
        dim=1,
    )
    torch.testing.assert_close(lc(x)[:, 0], expected)
    shared = torch.nn.Conv1d(2, 1, 3, padding=1)
    assert not torch.allclose(lc.weight[0], lc.weight[1])  # would be equal in a convolution
    assert shared.weight.numel() < lc.weight.numel()


def test_registry_and_shape_errors() -> None:
    assert MODELS["isotopenet"] is IsotopeNet and MODELS["residualnet-1d"] is ResidualNet1D
    assert build_model("isotopenet", (1, 90), 2)(torch.zeros(1, 1, 90)).shape == (1, 2)
    with pytest.raises(ShapeError):
        IsotopeNet((1, 28, 28), 2)
    with pytest.raises(ShapeError):
        IsotopeNet((1, 90), 2)(torch.zeros(1, 1, 91))


def test_gradients_reach_every_parameter_in_float64() -> None:
    net = IsotopeNet((1, 120), 2).double()
    net(torch.randn(4, 1, 120, dtype=torch.float64)).sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in net.parameters())


@pytest.mark.parametrize("maps", [1, 16])
def test_isotopenet_maps_set_the_first_three_layers(maps: int) -> None:
    net = IsotopeNet((1, 300), 2, maps=maps)
    assert [layer.conv1.out_channels for layer in net.layers] == [maps, maps, maps, 1]
    assert net(torch.randn(2, 1, 300)).shape == (2, 2)
    assert net.receptive_field() == 49  # widths do not change the receptive field
    # Per layer as ISO_CONV_PARAMS: bn1, conv1, bn2, conv2, 1x1 shortcut where the shape changes.
    m = maps
    conv = 3 * m * m + m  # an m -> m convolution of kernel 3 with its bias
    layer1 = 2 + 4 * m + 2 * m + conv + (2 * m if m != 1 else 0)
    layer2 = 2 * m + conv + 2 * m + conv + (m * m + m)
    layer3 = 2 * m + conv + 2 * m + conv
    layer4 = 2 * m + (3 * m + 1) + 2 + 4 + (m + 1)
    tail = 4 * 20 + 2 * 20 + 2  # locally connected and dense layers on 20 positions
    assert count_parameters(net) == layer1 + layer2 + layer3 + layer4 + tail
    with pytest.raises(ConfigError):
        IsotopeNet((1, 300), 2, maps=0)
