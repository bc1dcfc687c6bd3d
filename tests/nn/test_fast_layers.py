"""Tests for preimage.nn.fast_layers: the same function as torch's layers, other kernels."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from preimage.nn import fast_layers
from preimage.nn.fast_layers import (
    ChannelsLastConv2d,
    OneDNNLinear,
    TapSumConv2d,
    onednn_linear_available,
    onednn_linear_faster,
)


@pytest.fixture
def onednn_everywhere(monkeypatch: pytest.MonkeyPatch) -> None:
    """Take the oneDNN path wherever this build has it, so that it is tested on every CPU."""
    monkeypatch.setattr(fast_layers, "onednn_linear_faster", onednn_linear_available)


def _assert_same_gradients(
    out: torch.Tensor,
    ref: torch.Tensor,
    x: torch.Tensor,
    fast: torch.nn.Module,
    plain: torch.nn.Module,
) -> None:
    """The input and parameter gradients of ``out`` and ``ref`` agree to float64 rounding."""
    g = torch.randn_like(ref)
    grads = torch.autograd.grad(out, [x, *fast.parameters()], g)
    refs = torch.autograd.grad(ref, [x, *plain.parameters()], g)
    for a, b in zip(grads, refs, strict=True):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-12)


@pytest.mark.parametrize("kernel_size, bias", [(3, True), (1, False)])
def test_channels_last_convolution_is_the_plain_one(kernel_size: int, bias: bool) -> None:
    # Same function, gradients and state_dict as nn.Conv2d; only the memory layout differs.
    torch.manual_seed(0)
    conv = ChannelsLastConv2d(3, 5, kernel_size, padding=kernel_size // 2, bias=bias).double()
    plain = torch.nn.Conv2d(3, 5, kernel_size, padding=kernel_size // 2, bias=bias).double()
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(4, 3, 6, 7, dtype=torch.float64, requires_grad=True)
    out, ref = conv(x), plain(x)
    torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
    _assert_same_gradients(out, ref, x, conv, plain)
    # Unbatched (C, H, W) input, which has no channels-last layout, takes the plain path.
    torch.testing.assert_close(conv(x[0]), plain(x[0]), rtol=0, atol=1e-12)


def test_channels_last_parameters_and_gradients_keep_the_usual_layout() -> None:
    # Optimisers, safetensors and weight.view see an ordinary Conv2d, in float32 (the oneDNN
    # channels-last path) as in float64.
    for dtype in (torch.float32, torch.float64):
        conv = ChannelsLastConv2d(2, 6, 3, padding=1).to(dtype)
        conv(torch.randn(3, 2, 5, 5, dtype=dtype)).square().sum().backward()
        for param in conv.parameters():
            assert param.is_contiguous() and param.grad is not None
            assert param.grad.is_contiguous()
        assert conv.weight.view(6, -1).shape == (6, 18)


def _grads(layer: torch.nn.Linear, x: torch.Tensor, g: torch.Tensor) -> list[torch.Tensor]:
    out = layer(x)
    return [out, *torch.autograd.grad(out, [x, *layer.parameters()], g)]


@pytest.mark.parametrize("bias", [True, False])
def test_onednn_linear_is_the_plain_one(bias: bool, onednn_everywhere: None) -> None:
    torch.manual_seed(0)
    # 64 x 160 x 150 = 1.5 M multiply-adds: the smallest product that takes oneDNN.
    fast = OneDNNLinear(160, 150, bias=bias)
    plain = torch.nn.Linear(160, 150, bias=bias)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(64, 160, requires_grad=True)
    g = torch.randn(64, 150)
    for a, b in zip(_grads(fast, x, g), _grads(plain, x, g), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-5, atol=1e-5 * float(b.detach().abs().max()))
    # The parameters' gradients land in the parameters' layout.
    fast(x).square().sum().backward()
    assert all(p.grad is not None and p.grad.is_contiguous() for p in fast.parameters())


def test_onednn_linear_takes_the_onednn_path_where_it_can(onednn_everywhere: None) -> None:
    if not onednn_linear_available():
        pytest.skip("this PyTorch build has no oneDNN linear operator")
    layer = OneDNNLinear(160, 150)
    x = torch.randn(64, 160, requires_grad=True)
    assert "OneDNNLinear" in type(layer(x).grad_fn).__name__
    # Small products, float64 and more than one batch dimension take F.linear.
    for other in (x[:32], x.double(), torch.randn(2, 64, 160, requires_grad=True)):
        assert "OneDNNLinear" not in type(layer.to(other.dtype)(other).grad_fn).__name__
    layer.float()
    assert layer(torch.randn(0, 160)).shape == (0, 150)


def test_onednn_linear_supports_double_backward(onednn_everywhere: None) -> None:
    # create_graph=True: a gradient penalty on the input gradient, as plain nn.Linear computes it.
    torch.manual_seed(1)
    fast = OneDNNLinear(160, 150)
    plain = torch.nn.Linear(160, 150)
    plain.load_state_dict(fast.state_dict())
    x = torch.randn(64, 160, requires_grad=True)
    results = []
    for layer in (fast, plain):
        params = list(layer.parameters())
        first = torch.autograd.grad(layer(x).tanh().sum(), [x, *params], create_graph=True)
        penalty = sum(g.square().sum() for g in first)
        results.append([*first, *torch.autograd.grad(penalty, [x, *params])])
    for a, b in zip(*results, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5 * float(b.detach().abs().max()))


def test_onednn_linear_in_a_stack_trains_like_nn_linear(onednn_everywhere: None) -> None:
    # A few SGD steps of a 3-layer MLP: the two stay within float32 rounding of each other.
    torch.manual_seed(2)
    # The first two products are large enough for oneDNN, the last one is not.
    sizes = [(200, 160), (160, 150), (150, 3)]
    fast = torch.nn.Sequential(
        OneDNNLinear(*sizes[0]), torch.nn.ReLU(), OneDNNLinear(*sizes[1]), OneDNNLinear(*sizes[2])
    )
    plain = torch.nn.Sequential(
        torch.nn.Linear(*sizes[0]), torch.nn.ReLU(), torch.nn.Linear(*sizes[1]),
        torch.nn.Linear(*sizes[2]),
    )  # fmt: skip
    plain.load_state_dict(fast.state_dict())
    x, y = torch.randn(64, 200), torch.randint(0, 3, (64,))
    for net in (fast, plain):
        opt = torch.optim.SGD(net.parameters(), 0.1)
        for _ in range(5):
            opt.zero_grad()
            F.cross_entropy(net(x), y).backward()
            opt.step()
    for a, b in zip(fast.parameters(), plain.parameters(), strict=True):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize(
    "c_in, c_out, kernel_size, bias, shape",
    [(6, 4, 3, True, (3, 5, 7)), (5, 1, 5, False, (2, 6, 4)), (3, 2, (3, 1), True, (2, 4, 3))],
)
def test_tap_sum_convolution_is_the_plain_one(
    c_in: int, c_out: int, kernel_size: int | tuple[int, int], bias: bool, shape: tuple
) -> None:
    # Every tap, border and padding combination: same output and gradients as nn.Conv2d.
    torch.manual_seed(0)
    k = (kernel_size, kernel_size) if isinstance(kernel_size, int) else kernel_size
    pad = (k[0] // 2, k[1] // 2)
    conv = TapSumConv2d(c_in, c_out, kernel_size, padding=pad, bias=bias).double()
    plain = torch.nn.Conv2d(c_in, c_out, kernel_size, padding=pad, bias=bias).double()
    plain.load_state_dict(conv.state_dict())
    b, h, w = shape
    for layout in (torch.contiguous_format, torch.channels_last):
        x = torch.randn(b, c_in, h, w, dtype=torch.float64)
        x = x.contiguous(memory_format=layout).requires_grad_(True)
        out, ref = conv(x), plain(x)
        assert "TapSum" in type(out.grad_fn).__name__
        assert out.is_contiguous()
        torch.testing.assert_close(out, ref, rtol=0, atol=1e-12)
        _assert_same_gradients(out, ref, x, conv, plain)
        with torch.no_grad():
            torch.testing.assert_close(conv(x), ref, rtol=0, atol=1e-12)


def test_tap_sum_float32_and_parameter_layouts() -> None:
    torch.manual_seed(2)
    conv, plain = TapSumConv2d(64, 4, 3, padding=1), torch.nn.Conv2d(64, 4, 3, padding=1)
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(8, 64, 14, 14).contiguous(memory_format=torch.channels_last)
    torch.testing.assert_close(conv(x), plain(x), rtol=1e-5, atol=1e-5)
    conv(x).square().sum().backward()
    for param in conv.parameters():
        assert param.grad is not None and param.grad.is_contiguous()


def test_tap_sum_falls_back_where_it_does_not_apply() -> None:
    # Wide outputs, strides, other paddings, dilation, groups and unbatched inputs take the
    # channels-last convolution; each agrees with nn.Conv2d.
    torch.manual_seed(3)
    cases = [
        dict(in_channels=4, out_channels=8, kernel_size=3, padding=1),
        dict(in_channels=4, out_channels=2, kernel_size=3, padding=1, stride=2),
        dict(in_channels=4, out_channels=2, kernel_size=3, padding=0),
        dict(in_channels=4, out_channels=2, kernel_size=3, padding=2, dilation=2),
        dict(in_channels=4, out_channels=2, kernel_size=3, padding=1, groups=2),
        dict(in_channels=4, out_channels=2, kernel_size=2, padding=1),
        dict(in_channels=4, out_channels=2, kernel_size=3, padding=1, padding_mode="circular"),
    ]
    x = torch.randn(2, 4, 6, 6, dtype=torch.float64, requires_grad=True)
    for kwargs in cases:
        conv = TapSumConv2d(**kwargs).double()
        plain = torch.nn.Conv2d(**kwargs).double()
        plain.load_state_dict(conv.state_dict())
        out = conv(x)
        assert "TapSum" not in type(out.grad_fn).__name__, kwargs
        torch.testing.assert_close(out, plain(x), rtol=0, atol=1e-12)
    conv = TapSumConv2d(4, 2, 3, padding=1).double()
    plain = torch.nn.Conv2d(4, 2, 3, padding=1).double()
    plain.load_state_dict(conv.state_dict())
    torch.testing.assert_close(conv(x[0]), plain(x[0]), rtol=0, atol=1e-12)


def test_tap_sum_supports_double_backward() -> None:
    # A gradient penalty on the input gradient: create_graph=True through the tap sum.
    torch.manual_seed(4)
    conv = TapSumConv2d(3, 2, 3, padding=1).double()
    plain = torch.nn.Conv2d(3, 2, 3, padding=1).double()
    plain.load_state_dict(conv.state_dict())
    x = torch.randn(2, 3, 5, 4, dtype=torch.float64, requires_grad=True)

    def penalty(layer: torch.nn.Module) -> list[torch.Tensor]:
        (gx,) = torch.autograd.grad(layer(x).tanh().sum(), x, create_graph=True)
        return list(torch.autograd.grad(gx.square().sum(), [x, *layer.parameters()]))

    for a, r in zip(penalty(conv), penalty(plain), strict=True):
        torch.testing.assert_close(a, r, rtol=0, atol=1e-10)


def test_onednn_preference_follows_the_cpu_vendor(monkeypatch: pytest.MonkeyPatch) -> None:
    amd = "processor\t: 0\nvendor_id\t: AuthenticAMD\nmodel name\t: AMD EPYC\n"
    intel = "processor\t: 0\nvendor_id\t: GenuineIntel\n"
    assert fast_layers._cpu_vendor(amd) == "AuthenticAMD"
    assert fast_layers._cpu_vendor(intel) == "GenuineIntel"
    assert fast_layers._cpu_vendor("no such field") == ""
    # Whatever the machine, the layer takes oneDNN exactly when the preference says so.
    layer = OneDNNLinear(160, 150)
    x = torch.randn(64, 160, requires_grad=True)
    took = "OneDNNLinear" in type(layer(x).grad_fn).__name__
    assert took == onednn_linear_faster()
    monkeypatch.setattr(fast_layers, "onednn_linear_faster", lambda: False)
    assert "OneDNNLinear" not in type(layer(x).grad_fn).__name__
