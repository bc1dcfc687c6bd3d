"""Chains of couplings pass the two halves on: same function as layer-by-layer application."""

from __future__ import annotations

import pytest
import torch

from preimage.nn import ActNorm, AdditiveCoupling, AffineCoupling, InvertibleSequential
from preimage.nn.fast_layers import ChannelsLastConv2d


def _chain(kind: type, channels: int, subnet: str, *, actnorm_at: int | None = None):
    layers = []
    for i in range(4):
        if i == actnorm_at:
            layers.append(ActNorm(channels))
        layers.append(kind(channels, subnet=subnet, hidden=6, swap=i % 2 == 1))
    torch.manual_seed(0)
    chain = InvertibleSequential(layers).double()
    with torch.no_grad():
        for p in chain.parameters():
            p.add_(0.2 * torch.randn_like(p))
    return chain


def _layer_by_layer(chain: InvertibleSequential, x: torch.Tensor):
    logdet = torch.zeros(x.shape[0], dtype=x.dtype)
    for layer in chain:
        x, ld = layer(x)
        logdet = logdet + ld
    return x, logdet


@pytest.mark.parametrize("kind", [AffineCoupling, AdditiveCoupling])
@pytest.mark.parametrize(
    ("channels", "subnet", "shape"), [(5, "mlp", (5,)), (3, "conv", (3, 4, 5))]
)
@pytest.mark.parametrize("actnorm_at", [None, 2])
def test_fused_chain_is_the_layerwise_chain(kind, channels, subnet, shape, actnorm_at) -> None:
    chain = _chain(kind, channels, subnet, actnorm_at=actnorm_at).train()
    x = torch.randn(7, *shape, dtype=torch.float64)
    xa, xb = x.clone().requires_grad_(True), x.clone().requires_grad_(True)
    y, logdet = chain(xa)
    y_ref, logdet_ref = _layer_by_layer(chain, xb)
    assert torch.equal(y, y_ref)
    assert torch.allclose(logdet, logdet_ref, rtol=0, atol=1e-12)  # summed in another order
    w = torch.randn_like(y)
    grads = torch.autograd.grad((y * w).sum() + logdet.sum(), [xa, *chain.parameters()])
    refs = torch.autograd.grad((y_ref * w).sum() + logdet_ref.sum(), [xb, *chain.parameters()])
    assert all(torch.allclose(g, r, rtol=0, atol=1e-12) for g, r in zip(grads, refs, strict=True))
    chain.eval()
    with torch.no_grad():
        y = chain(x)[0]
        x_rec = chain.inverse(y)
        layerwise = y
        for layer in reversed(list(chain)):
            layerwise = layer.inverse(layerwise)
    assert torch.equal(x_rec, layerwise)
    assert float((x_rec - x).abs().max()) <= 1e-12


def test_a_single_coupling_still_checks_its_input() -> None:
    from preimage.errors import ShapeError

    chain = InvertibleSequential(AffineCoupling(4, hidden=4), AffineCoupling(4, hidden=4))
    with pytest.raises(ShapeError, match="4"):
        chain(torch.randn(2, 3, 5, 5))


@pytest.mark.parametrize("kind", [AdditiveCoupling, AffineCoupling])
def test_conv_subnets_use_channels_last_convolutions(kind: type) -> None:
    layer = kind(4, hidden=8)
    layer.subnet[-1].weight.data.normal_()
    convs = [m for m in layer.subnet if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(isinstance(m, ChannelsLastConv2d) for m in convs)
    x = torch.randn(2, 4, 5, 5)
    y, _ = layer(x)
    x_back = layer.inverse(y)
    # The layout stays inside the sub-network: what a user gets back is contiguous NCHW.
    assert y.is_contiguous() and x_back.is_contiguous()
    torch.testing.assert_close(x_back, x, rtol=0, atol=1e-5)
