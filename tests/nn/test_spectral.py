"""Spectral normalisation on the true operator: against dense Jacobians of torch's own conv."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load, save
from torch import nn

from preimage.errors import ConfigError, ShapeError
from preimage.nn.spectral import (
    SpectralConv2d,
    SpectralLinear,
    conv2d_adjoint,
    conv2d_operator,
    spectral_layers,
    track_spectral,
)


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _dense_conv_norm(weight: torch.Tensor, shape: tuple[int, ...], stride: int, pad: int) -> float:
    """Largest singular value of the zero-padded conv operator, from torch's autograd Jacobian."""
    w = weight.detach().double()
    x0 = torch.zeros(shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(
        lambda x: F.conv2d(x.unsqueeze(0), w, stride=stride, padding=pad).reshape(-1),
        x0,
        vectorize=True,
    )
    return float(np.linalg.norm(jac.reshape(jac.shape[0], -1).numpy(), 2))


def _layer_jacobian_norm(layer: nn.Module, shape: tuple[int, ...]) -> float:
    x0 = torch.zeros(shape, dtype=torch.float64)
    jac = torch.autograd.functional.jacobian(
        lambda x: layer(x.unsqueeze(0)).reshape(-1), x0, vectorize=True
    )
    return float(np.linalg.norm(jac.reshape(jac.shape[0], -1).detach().numpy(), 2))


CONV_CASES = [
    # (c_in, c_out, kernel, stride, padding, H, W)
    (2, 3, 3, 1, 1, 5, 5),
    (3, 2, 3, 1, 1, 4, 5),
    (2, 3, 3, 2, 1, 6, 6),
    (2, 2, 3, 2, 1, 7, 5),
    (1, 3, 5, 2, 2, 6, 7),
]


@pytest.mark.parametrize(("c_in", "c_out", "k", "stride", "pad", "h", "w"), CONV_CASES)
def test_conv_sigma_is_the_operator_norm_not_the_reshaped_weight_norm(
    c_in: int, c_out: int, k: int, stride: int, pad: int, h: int, w: int
) -> None:
    conv = SpectralConv2d(c_in, c_out, k, stride=stride, padding=pad, input_shape=(h, w)).double()
    sigma = float(conv.converge(400, rtol=1e-12))
    exact = _dense_conv_norm(conv.weight, (c_in, h, w), stride, pad)
    assert sigma == pytest.approx(exact, rel=1e-5)
    # What torch.nn.utils.spectral_norm bounds: the (C_out, C_in k^2) matrix. It is another number.
    reshaped = float(torch.linalg.matrix_norm(conv.weight.detach().reshape(c_out, -1), 2))
    assert abs(reshaped - exact) > 0.05 * exact


def test_torch_spectral_norm_does_not_bound_the_conv_operator() -> None:
    conv = nn.utils.parametrizations.spectral_norm(nn.Conv2d(3, 3, 3, padding=1, bias=False))
    conv.train()
    x = torch.randn(2, 3, 6, 6)
    for _ in range(20):
        conv(x)
    conv.eval()
    weight = conv.weight.detach()
    assert float(torch.linalg.matrix_norm(weight.reshape(3, -1), 2)) == pytest.approx(1, abs=1e-3)
    assert _dense_conv_norm(weight, (3, 6, 6), 1, 1) > 1.2


@pytest.mark.parametrize(("c_in", "c_out", "k", "stride", "pad", "h", "w"), CONV_CASES)
@pytest.mark.parametrize("coeff", [0.5, 0.9])
def test_normalised_conv_operator_norm_is_at_most_coeff(
    c_in: int, c_out: int, k: int, stride: int, pad: int, h: int, w: int, coeff: float
) -> None:
    # Power iteration approaches sigma from below at a rate set by the gap sigma_2 / sigma_1,
    # which is close to 1 for several of these operators: let the adaptive mode converge.
    conv = SpectralConv2d(
        c_in,
        c_out,
        k,
        stride=stride,
        padding=pad,
        coeff=coeff,
        rtol=1e-7,
        max_power_iterations=3000,
    ).double()
    with torch.no_grad():
        conv.weight.mul_(5.0)
    conv.train()
    x = torch.randn(2, c_in, h, w, dtype=torch.float64)
    for _ in range(3):
        conv(x)
    conv.eval()
    assert _layer_jacobian_norm(conv, (c_in, h, w)) <= coeff * (1 + 1e-3)


@pytest.mark.parametrize("coeff", [0.5, 0.97])
def test_normalised_linear_has_spectral_norm_at_most_coeff(coeff: float) -> None:
    layer = SpectralLinear(7, 5, coeff=coeff).double()
    with torch.no_grad():
        layer.weight.mul_(4.0)
    layer.train()
    for _ in range(30):
        layer(torch.randn(3, 7, dtype=torch.float64))
    layer.eval()
    exact = np.linalg.norm(layer.normalized_weight().detach().numpy(), 2)
    assert exact <= coeff * (1 + 1e-3)
    assert exact == pytest.approx(coeff, rel=1e-3)
    assert _layer_jacobian_norm(layer, (7,)) == pytest.approx(exact, rel=1e-10)


def test_soft_normalisation_leaves_small_weights_unchanged() -> None:
    layer = SpectralLinear(4, 4, coeff=0.9)
    with torch.no_grad():
        layer.weight.copy_(0.3 * torch.linalg.qr(torch.randn(4, 4))[0])
    layer.converge()
    assert torch.allclose(layer.normalized_weight(), layer.weight)
    with torch.no_grad():
        layer.weight.mul_(10.0)
    layer.converge()
    ratio = layer.normalized_weight() / layer.weight
    assert torch.allclose(ratio, torch.full_like(ratio, 0.9 / 3.0), rtol=1e-5)


@pytest.mark.parametrize(
    ("stride", "pad", "mode", "h", "w"),
    [
        (1, 1, "zeros", 5, 6),
        (2, 1, "zeros", 7, 8),
        (3, 0, "zeros", 8, 7),
        (1, 1, "circular", 4, 5),
        (2, 2, "circular", 5, 6),
        (1, 2, "circular", 2, 3),
    ],
)
def test_adjoint_matches_autograd_transpose(
    stride: int, pad: int, mode: str, h: int, w: int
) -> None:
    weight = torch.randn(3, 2, 3, 3, dtype=torch.float64)
    x = torch.randn(2, 2, h, w, dtype=torch.float64, requires_grad=True)
    kw = {"stride": stride, "padding": pad, "padding_mode": mode}
    if mode == "circular":
        reference = F.conv2d(F.pad(x, (pad,) * 4, mode="circular"), weight, stride=stride)
    else:
        reference = F.conv2d(x, weight, stride=stride, padding=pad)
    out = conv2d_operator(x, weight, **kw)
    assert torch.allclose(out, reference)
    cot = torch.randn_like(out)
    (vjp,) = torch.autograd.grad(out, x, cot)
    assert torch.allclose(conv2d_adjoint(cot, weight, input_size=(h, w), **kw), vjp)


@pytest.mark.parametrize(
    ("k_h", "k_w", "pad"),
    [(1, 1, 0), (2, 2, 1), (3, 3, 0), (3, 3, 1), (3, 3, 2), (5, 3, 2), (3, 3, 3), (2, 2, 4)],
)
def test_stride_one_adjoint_as_flipped_convolution_matches_autograd(
    k_h: int, k_w: int, pad: int
) -> None:
    """Stride 1 with padding below the kernel size takes the flipped-kernel convolution (the
    last two cases fall back to the transposed convolution); both are the exact adjoint."""
    weight = torch.randn(3, 2, k_h, k_w, dtype=torch.float64)
    x = torch.randn(2, 2, 6, 7, dtype=torch.float64, requires_grad=True)
    kw = {"stride": 1, "padding": pad, "padding_mode": "zeros"}
    out = conv2d_operator(x, weight, **kw)
    cot = torch.randn_like(out)
    (vjp,) = torch.autograd.grad(out, x, cot)
    adjoint = conv2d_adjoint(cot, weight, input_size=(6, 7), **kw)
    assert torch.allclose(adjoint, vjp, rtol=1e-12, atol=1e-12)


def test_circular_conv_matches_torch_circular_conv() -> None:
    layer = SpectralConv2d(2, 3, 3, padding=1, padding_mode="circular", coeff=10.0)
    ref = nn.Conv2d(2, 3, 3, padding=1, padding_mode="circular")
    with torch.no_grad():
        ref.weight.copy_(layer.weight)
        ref.bias.copy_(layer.bias)
    x = torch.randn(2, 2, 5, 4)
    layer.eval()
    assert torch.allclose(layer(x), ref(x), atol=1e-6)


def test_power_iteration_updates_only_in_training_mode() -> None:
    conv = SpectralConv2d(2, 2, 3, padding=1, input_shape=(4, 4))
    with torch.no_grad():
        conv.u.copy_(torch.randn_like(conv.u))
        conv.v.copy_(torch.randn_like(conv.v))
    x = torch.randn(3, 2, 4, 4)
    conv.eval()
    u, v = conv.u.clone(), conv.v.clone()
    first, second = conv(x), conv(x)
    assert torch.equal(first, second)
    assert torch.equal(conv.u, u) and torch.equal(conv.v, v)
    conv.train()
    conv(x)
    assert not torch.equal(conv.u, u) and not torch.equal(conv.v, v)


def test_relative_tolerance_is_scale_invariant() -> None:
    """With rtol the stopping step depends on the relative change only, so scaling W changes
    nothing; an absolute comparison (the residual-flows pitfall) would stop at another step."""
    torch.manual_seed(3)
    base = SpectralLinear(30, 30, rtol=1e-3, max_power_iterations=1000).double()
    scaled = SpectralLinear(30, 30, rtol=1e-3, max_power_iterations=1000).double()
    absolute = SpectralLinear(30, 30, atol=1e-3, max_power_iterations=1000).double()
    start_u = torch.randn(1, 30, dtype=torch.float64)
    start_v = torch.randn(1, 30, dtype=torch.float64)
    for layer, scale in ((base, 1.0), (scaled, 1000.0), (absolute, 1000.0)):
        with torch.no_grad():
            layer.weight.copy_(scale * base.weight)
            layer.u.copy_(start_u / start_u.norm())
            layer.v.copy_(start_v / start_v.norm())
        layer(torch.randn(1, 30, dtype=torch.float64))
    assert torch.allclose(base.u, scaled.u, atol=1e-12)
    assert not torch.allclose(base.u, absolute.u, atol=1e-6)


def test_adaptive_mode_converges_from_a_bad_start() -> None:
    fixed = SpectralLinear(20, 20, coeff=10.0).double()
    adaptive = SpectralLinear(20, 20, coeff=10.0, rtol=1e-10, max_power_iterations=5000).double()
    with torch.no_grad():
        adaptive.weight.copy_(fixed.weight)
        for layer in (fixed, adaptive):
            layer.u.copy_(torch.ones_like(layer.u))
            layer.v.copy_(torch.ones_like(layer.v))
    x = torch.randn(1, 20, dtype=torch.float64)
    fixed(x)
    adaptive(x)
    exact = float(np.linalg.norm(fixed.weight.detach().numpy(), 2))
    assert float(adaptive.sigma) == pytest.approx(exact, rel=1e-6)
    assert abs(float(fixed.sigma) - exact) > abs(float(adaptive.sigma) - exact)


def test_gradient_flows_through_sigma() -> None:
    layer = SpectralLinear(5, 4, coeff=0.5, bias=False).double()
    with torch.no_grad():
        layer.weight.mul_(5.0)
    layer.converge(5000, rtol=1e-14)
    x = torch.randn(3, 5, dtype=torch.float64)
    r = torch.randn(3, 4, dtype=torch.float64)
    layer.train()
    (layer(x) * r).sum().backward()
    weight = layer.weight.detach().clone().requires_grad_(True)
    reference = F.linear(x, 0.5 * weight / torch.linalg.matrix_norm(weight, 2))
    (expected,) = torch.autograd.grad((reference * r).sum(), weight)
    assert torch.allclose(layer.weight.grad, expected, atol=1e-7)


def test_lazy_size_lock_and_state_dict_round_trip() -> None:
    conv = SpectralConv2d(2, 3, 3, stride=2, padding=1)
    assert conv.input_size is None
    with pytest.raises(ShapeError):
        _ = conv.sigma
    conv.train()
    conv(torch.randn(2, 2, 6, 5))
    assert conv.input_size == (6, 5)
    with pytest.raises(ShapeError, match="locked"):
        conv(torch.randn(2, 2, 6, 6))
    blob = save({k: v.contiguous() for k, v in conv.state_dict().items()})
    fresh = SpectralConv2d(2, 3, 3, stride=2, padding=1)
    fresh.load_state_dict(load(blob))
    conv.eval()
    fresh.eval()
    x = torch.randn(4, 2, 6, 5)
    assert torch.equal(conv(x), fresh(x))
    assert fresh.input_size == (6, 5)


def test_input_shape_accepts_channels_and_rejects_mismatch() -> None:
    assert SpectralConv2d(2, 2, 3, padding=1, input_shape=(2, 5, 4)).input_size == (5, 4)
    with pytest.raises(ShapeError):
        SpectralConv2d(2, 2, 3, padding=1, input_shape=(3, 5, 4))
    with pytest.raises(ShapeError):
        SpectralConv2d(2, 2, 3, padding=1)(torch.randn(1, 3, 4, 4))


def test_same_padding_keeps_size() -> None:
    conv = SpectralConv2d(2, 4, 5, padding="same")
    assert conv(torch.randn(1, 2, 7, 6)).shape == (1, 4, 7, 6)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"padding": "same", "stride": 2},
        {"padding": "same", "kernel_size": 2},
        {"coeff": 0.0},
        {"n_power_iterations": 0},
        {"padding_mode": "reflect"},
        {"padding": -1},
        {"rtol": -1.0},
        {"krylov": -1},
    ],
)
def test_bad_configuration_raises_config_error(kwargs: dict) -> None:
    args = {"kernel_size": 3, **kwargs}
    with pytest.raises(ConfigError):
        SpectralConv2d(2, 2, **args)


def test_follows_dtype() -> None:
    conv = SpectralConv2d(1, 1, 3, padding=1, input_shape=(4, 4)).double()
    out = conv(torch.randn(1, 1, 4, 4, dtype=torch.float64))
    assert out.dtype == torch.float64 and conv.u.dtype == torch.float64


def test_first_forward_under_inference_mode_leaves_trainable_buffers() -> None:
    conv = SpectralConv2d(2, 2, 3, padding=1).eval()
    with torch.inference_mode():
        conv(torch.randn(1, 2, 4, 4))
    conv.train()
    conv(torch.randn(1, 2, 4, 4)).sum().backward()
    assert conv.weight.grad is not None and not conv.u.is_inference()


def test_sigma_property_is_u_a_v() -> None:
    layer = SpectralLinear(5, 3).double()
    expected = float(layer.u @ layer.weight.detach() @ layer.v.T)
    assert float(layer.sigma) == pytest.approx(expected, rel=1e-12)
    exact = float(np.linalg.norm(layer.weight.detach().numpy(), 2))
    assert float(layer.converge(2000, rtol=1e-14)) == pytest.approx(exact, rel=1e-8)


def _moved(conv: SpectralConv2d, seed: int, size: float) -> float:
    """Converge ``conv``, then move its weight by ``size`` (relative, random direction) as an
    optimiser step would; returns the exact norm of the moved operator."""
    conv.converge(2000, rtol=1e-12)
    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        step = torch.randn(conv.weight.shape, generator=gen, dtype=conv.weight.dtype)
        conv.weight.add_(size * conv.weight.norm() * step / step.norm())
    pad = conv.padding
    return _dense_conv_norm(conv.weight, (conv.in_channels, *conv.input_size), 1, pad)


def test_track_realigns_after_a_weight_step_where_power_steps_lag() -> None:
    """After a 10% weight step, 10 Lanczos steps from the stored vector recover the exact norm
    to < 1e-3 in every case, while 10 power steps from the same start stay up to 3% low."""
    track_errors, power_errors = [], []
    for seed in range(5):
        torch.manual_seed(seed)
        conv = SpectralConv2d(4, 4, 3, padding=1, input_shape=(8, 8)).double()
        exact = _moved(conv, seed, 0.1)
        u, v = conv.u.clone(), conv.v.clone()
        track_errors.append(1 - float(conv.track(10)) / exact)
        assert torch.allclose(conv.sigma, (conv.u * conv._op(conv.v, conv.weight)).sum())
        with torch.no_grad():
            conv.u.copy_(u)
            conv.v.copy_(v)
        power_errors.append(1 - float(conv.converge(10, rtol=0.0)) / exact)
    assert min(track_errors) >= -1e-12  # a Ritz value never exceeds the norm
    assert max(track_errors) < 1e-3
    assert max(power_errors) > 1e-2
    assert all(t <= p for t, p in zip(track_errors, power_errors, strict=True))


def test_krylov_option_tracks_in_every_training_forward() -> None:
    """A training step with ``krylov`` applies a weight of norm <= c (1 + 1e-3) right after
    the weights moved; the plain one-power-step layer applies one above it."""
    norms = {}
    for krylov in (0, 12):
        torch.manual_seed(1)
        conv = SpectralConv2d(4, 4, 3, padding=1, coeff=0.5, input_shape=(8, 8), krylov=krylov)
        conv = conv.double()
        with torch.no_grad():
            conv.weight.mul_(3.0)  # normalised from here on
        _moved(conv, 4, 0.1)
        conv.train()
        conv(torch.randn(2, 4, 8, 8, dtype=torch.float64))
        shape = (4, 8, 8)
        norms[krylov] = _dense_conv_norm(conv.normalized_weight(), shape, 1, 1) / 0.5
    assert norms[12] <= 1 + 1e-3
    assert norms[0] > 1 + 1e-3


def test_track_of_a_pointwise_conv_is_exact_and_keeps_the_dtype() -> None:
    for dtype in (torch.float32, torch.float64):
        conv = SpectralConv2d(3, 5, 1, input_shape=(4, 6)).to(dtype)
        sigma = float(conv.track(1))
        exact = float(torch.linalg.matrix_norm(conv.weight.detach()[:, :, 0, 0].double(), 2))
        assert sigma == pytest.approx(exact, rel=1e-5 if dtype == torch.float32 else 1e-12)
        assert conv.u.dtype == dtype and conv.v.dtype == dtype
        assert float(conv.v.norm()) == pytest.approx(1.0, rel=1e-5)
    # A stored v with no component on the top channel direction anywhere: uniform profile.
    conv = SpectralConv2d(3, 5, 1, input_shape=(4, 6)).double()
    v_w = torch.linalg.svd(conv.weight.detach()[:, :, 0, 0])[2]
    with torch.no_grad():
        conv.v.copy_(v_w[1][None, :, None, None].expand(1, 3, 4, 6))
    exact = float(torch.linalg.matrix_norm(conv.weight.detach()[:, :, 0, 0], 2))
    assert float(conv.track(1)) == pytest.approx(exact, rel=1e-12)


def test_track_spectral_uses_each_layers_krylov_and_skips_unlocked_layers() -> None:
    net = nn.Sequential(
        SpectralLinear(3, 3, krylov=2), SpectralLinear(3, 3), SpectralConv2d(1, 1, 3, krylov=2)
    )
    assert [name for name, _ in spectral_layers(net)] == ["0", "1", "2"]
    assert track_spectral(net) == 1  # the convolution has no input size yet
    assert track_spectral(net, 3) == 2
    with pytest.raises(ConfigError):
        net[0].track(0)


def _dense_conv_matrix(conv: SpectralConv2d) -> torch.Tensor:
    """The layer's raw operator A as a float64 matrix, from torch's autograd Jacobian."""
    shape = (conv.in_channels, *conv.input_size)
    w, pad = conv.weight.detach().double(), conv.padding
    jac = torch.autograd.functional.jacobian(
        lambda x: F.conv2d(x.unsqueeze(0), w, padding=pad).reshape(-1),
        torch.zeros(shape, dtype=torch.float64),
        vectorize=True,
    )
    return jac.reshape(jac.shape[0], -1)


def _krylov_ritz(gram: torch.Tensor, start: torch.Tensor, steps: int) -> torch.Tensor:
    """Top Ritz vector of ``gram`` on K_steps(gram, start): QR of the power basis."""
    columns = [start / start.norm()]
    for _ in range(steps - 1):
        nxt = gram @ columns[-1]
        columns.append(nxt / nxt.norm())
    q, _ = torch.linalg.qr(torch.stack(columns, dim=1))
    return q @ torch.linalg.eigh(q.T @ gram @ q)[1][:, -1]


def _rayleigh(gram: torch.Tensor, x: torch.Tensor) -> float:
    return float(x @ gram @ x / (x @ x))


def test_track_runs_lanczos_on_the_smaller_side_of_each_convolution() -> None:
    """A 6 -> 2 channel convolution tracks K_k(A A^T, u), a 2 -> 6 one K_k(A^T A, v): the pair
    is the dense reference's top Ritz vector (v = A^T r / |A^T r| on the output side, a half
    step more), and the output side's Ritz value is never below the input side's
    (K(AA^T, Av) = A K(A^T A, v))."""
    for c_in, c_out in ((6, 2), (2, 6)):
        conv = SpectralConv2d(c_in, c_out, 3, padding=1, input_shape=(5, 5)).double()
        _moved(conv, 3, 0.2)
        a = _dense_conv_matrix(conv)
        u, v = conv.u.reshape(-1).clone(), conv.v.reshape(-1).clone()
        ata, aat = a.T @ a, a @ a.T
        input_side = _krylov_ritz(ata, v, 4)
        assert _rayleigh(aat, _krylov_ritz(aat, a @ v, 4)) >= _rayleigh(ata, input_side) - 1e-12
        expected = a.T @ _krylov_ritz(aat, u, 4) if c_out < c_in else input_side
        expected = expected / expected.norm()
        sigma = float(conv.track(4))
        assert abs(float(conv.v.reshape(-1) @ expected)) == pytest.approx(1.0, abs=1e-10)
        assert sigma == pytest.approx(float((a @ expected).norm()), rel=1e-10)
        assert float(conv.v.norm()) == pytest.approx(1.0, rel=1e-12)
        av = conv._op(conv.v, conv.weight)
        assert torch.allclose(conv.u, av / av.norm())


def test_track_spectral_groups_same_shaped_layers_as_if_each_ran_alone() -> None:
    """Three same-shaped convolutions share grouped products, a fourth of another shape runs
    alone: every pair equals the one each layer's own ``track`` gives, to float64 round-off."""
    layers = [SpectralConv2d(3, 5, 3, padding=1, input_shape=(6, 6)) for _ in range(3)]
    layers.append(SpectralConv2d(5, 3, 3, padding=1, input_shape=(6, 6)))
    net = nn.Sequential(*[layer.double() for layer in layers])
    for seed, layer in enumerate(net):
        _moved(layer, seed, 0.1)
    alone = []
    for layer in net:
        twin = SpectralConv2d(layer.in_channels, layer.out_channels, 3, padding=1)
        twin = twin.double()
        twin.load_state_dict(layer.state_dict())
        twin.track(7)
        alone.append(twin)
    assert track_spectral(net, 7) == 4
    for layer, twin in zip(net, alone, strict=True):
        assert torch.allclose(layer.v, twin.v, atol=1e-10)
        assert torch.allclose(layer.u, twin.u, atol=1e-10)
        assert float(layer.sigma) == pytest.approx(float(twin.sigma), rel=1e-12)


def test_training_forward_realigns_only_after_the_weight_changed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    conv = SpectralConv2d(2, 2, 3, padding=1, input_shape=(5, 5), krylov=4).double()
    conv.train()
    calls: list[int] = []
    original = conv.track

    def counting(steps: int) -> torch.Tensor:
        calls.append(steps)
        return original(steps)

    monkeypatch.setattr(conv, "track", counting)
    x = torch.randn(1, 2, 5, 5, dtype=torch.float64)
    conv(x)
    assert calls == [4]  # the first pass: never re-aligned
    conv(x)
    assert calls == [4]  # nothing moved since
    with torch.no_grad():
        conv.weight.mul_(1.01)  # an optimiser step does the same: an in-place update
    conv(x)
    assert calls == [4, 4]
    with torch.no_grad():
        conv.weight.mul_(1.01)
    assert track_spectral(conv) == 1
    conv(x)  # re-aligned just before: the pass skips it
    assert calls == [4, 4]
    assert track_spectral(conv, stale_only=True) == 0
    conv.double()  # no copy: same storage and version
    conv.float()  # a new tensor
    assert track_spectral(conv, stale_only=True) == 1
