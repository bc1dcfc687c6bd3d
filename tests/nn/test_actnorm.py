"""ActNorm's initialisation flag: a Python bool in the forward pass, the buffer for save/load."""

from __future__ import annotations

import torch

from preimage.nn import ActNorm


class _NoBool(torch.Tensor):
    def __bool__(self) -> bool:
        raise AssertionError("the forward pass read a tensor as a Python bool")


def test_forward_reads_no_tensor_flag() -> None:
    layer = ActNorm(3)
    layer.initialized = torch.Tensor._make_subclass(_NoBool, layer.initialized)
    x = 2.0 + 3.0 * torch.randn(64, 3, 4, 4)
    y, _ = layer(x)  # the data-dependent initialisation, then normalised output
    assert abs(float(y.detach().mean())) < 1e-5
    assert int(layer.initialized) == 1
    before = layer.loc.detach().clone()
    layer(x + 10.0)  # no second initialisation
    assert torch.equal(layer.loc.detach(), before)


def test_flag_follows_load_state_dict() -> None:
    trained = ActNorm(2)
    trained(torch.randn(32, 2))
    fresh = ActNorm(2)
    fresh.load_state_dict(trained.state_dict())
    x = 5.0 + torch.randn(32, 2)
    assert torch.equal(fresh(x)[0], trained(x)[0])  # loaded: not re-initialised on x
    fresh.load_state_dict(ActNorm(2).state_dict())  # an uninitialised state
    y, _ = fresh(x)
    assert abs(float(y.detach().mean())) < 1e-5  # initialised again, on x
