"""InvConv1x1 caches W and W^-1 in evaluation mode and rebuilds them when parameters change."""

from __future__ import annotations

import torch

from preimage.nn import InvConv1x1


def _round_trip_error(layer: InvConv1x1, x: torch.Tensor) -> float:
    with torch.no_grad():
        return float((layer.inverse(layer(x)[0]) - x).abs().max())


def _uncached(layer: InvConv1x1, y: torch.Tensor) -> torch.Tensor:
    w_inv = torch.linalg.inv(layer.weight(torch.float64)).to(y.dtype)
    return torch.einsum("oc,bc...->bo...", w_inv, y)


def test_cache_is_reused_and_exact() -> None:
    layer = InvConv1x1(6).eval()
    y = torch.randn(3, 6, 4, 4)
    with torch.no_grad():
        first = layer.inverse(y)
        cache = layer._cache
        second = layer.inverse(y)
        assert layer._cache is cache
        assert torch.equal(first, second) and torch.equal(first, _uncached(layer, y))
    assert _round_trip_error(layer, y) <= 1e-5


def test_cache_invalidated_by_optimiser_step_and_load_state_dict() -> None:
    layer = InvConv1x1(5)
    x = torch.randn(8, 5, 3, 3)
    layer.eval()
    with torch.no_grad():
        layer.inverse(x)
    layer.train()
    opt = torch.optim.SGD(layer.parameters(), lr=0.01)
    y, logdet = layer(x)
    (y.square().sum() - logdet.sum()).backward()
    opt.step()
    layer.eval()
    with torch.no_grad():
        assert torch.equal(layer.inverse(x), _uncached(layer, x))
        assert torch.equal(layer(x)[0], torch.einsum("oc,bc...->bo...", layer.weight(), x))
    assert _round_trip_error(layer, x) <= 1e-5
    other = InvConv1x1(5)
    layer.load_state_dict(other.state_dict())
    with torch.no_grad():
        assert torch.equal(layer.inverse(x), _uncached(other.eval(), x))
    layer.double()
    x64 = x.double()
    assert _round_trip_error(layer, x64) <= 1e-12


def test_no_cache_when_parameter_gradients_are_wanted() -> None:
    layer = InvConv1x1(4).eval()
    x = torch.randn(2, 4)
    y, _ = layer(x)
    y.sum().backward()
    assert all(p.grad is not None and p.grad.abs().sum() > 0 for p in layer.parameters())
    assert layer._cache is None
