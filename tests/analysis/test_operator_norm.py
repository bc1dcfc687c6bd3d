"""Operator norms against NumPy SVDs of autograd Jacobians; certificates of i-ResNet blocks."""

from __future__ import annotations

import copy
import importlib
import math

import numpy as np
import pytest
import torch
from torch import nn

from preimage.analysis.operator_norm import (
    BlockCertificate,
    LayerBound,
    SpectralNormMonitor,
    format_certificates,
    lipschitz_certificate,
    operator_norm,
    realign_exact,
    spectral_norm_ratios,
)
from preimage.errors import ConfigError, ConvergenceError, ShapeError
from preimage.models.residual import ResidualClassifier
from preimage.nn.base import InvertibleSequential
from preimage.nn.iresblock import IResBlock, conv_branch, dense_branch
from preimage.nn.spectral import SpectralConv2d, SpectralLinear, spectral_layers
from preimage.train import Callback, TrainConfig, Trainer


@pytest.fixture(autouse=True)
def _seed() -> None:
    torch.manual_seed(0)


def _jacobian_norm(layer: nn.Module, shape: tuple[int, ...]) -> float:
    """Largest singular value of the layer's Jacobian (its linear part), in float64 NumPy."""
    layer = copy.deepcopy(layer).double().eval()
    jac = torch.autograd.functional.jacobian(
        lambda v: layer(v.unsqueeze(0)).reshape(-1),
        torch.zeros(shape, dtype=torch.float64),
        vectorize=True,
    )
    return float(np.linalg.norm(jac.reshape(jac.shape[0], -1).detach().numpy(), 2))


@pytest.mark.parametrize(
    ("c_in", "c_out", "k", "h", "w"),
    [(2, 3, 3, 5, 5), (3, 2, 3, 4, 6), (1, 4, 5, 6, 5), (3, 3, 1, 3, 4), (2, 2, 5, 3, 3)],
)
def test_fft_equals_dense_for_circular_convolutions(
    c_in: int, c_out: int, k: int, h: int, w: int
) -> None:
    conv = nn.Conv2d(c_in, c_out, k, padding=k // 2, padding_mode="circular")
    fft = operator_norm(conv, (c_in, h, w), method="fft")
    dense = operator_norm(conv, (c_in, h, w), method="dense")
    assert fft == pytest.approx(dense, rel=1e-10)
    assert fft == pytest.approx(_jacobian_norm(conv, (c_in, h, w)), rel=1e-10)
    assert operator_norm(conv, (c_in, h, w)) == fft  # auto picks fft


def test_fft_on_a_spectral_circular_conv_uses_the_effective_weight() -> None:
    conv = SpectralConv2d(
        2, 2, 3, padding=1, padding_mode="circular", coeff=0.8, input_shape=(5, 5)
    ).double()
    with torch.no_grad():
        conv.weight.mul_(10.0)
    conv.converge(500, rtol=1e-10)
    assert operator_norm(conv, method="fft") == pytest.approx(0.8, rel=1e-4)
    assert operator_norm(conv, method="fft") == pytest.approx(
        _jacobian_norm(conv, (2, 5, 5)), rel=1e-9
    )


@pytest.mark.parametrize(
    ("stride", "padding", "mode", "dilation", "groups"),
    [
        (1, 1, "zeros", 1, 1),
        (2, 1, "zeros", 1, 1),
        (1, "same", "zeros", 2, 1),
        (1, 1, "reflect", 1, 1),
        (2, 1, "circular", 1, 2),
        (1, 0, "zeros", 1, 1),
    ],
)
def test_dense_and_lanczos_match_the_jacobian(
    stride: int, padding: int | str, mode: str, dilation: int, groups: int
) -> None:
    conv = nn.Conv2d(
        4, 4, 3, stride=stride, padding=padding, padding_mode=mode, dilation=dilation, groups=groups
    )
    shape = (4, 6, 5)
    expected = _jacobian_norm(conv, shape)
    assert operator_norm(conv, shape, method="dense") == pytest.approx(expected, rel=1e-10)
    lanczos = operator_norm(conv, shape, method="lanczos", rtol=1e-12)
    assert lanczos == pytest.approx(expected, rel=1e-9)
    with pytest.raises(ConfigError):
        operator_norm(conv, shape, method="fft")


def test_power_iteration_converges_to_the_norm_from_below() -> None:
    conv = nn.Conv2d(4, 4, 3, stride=2, padding=1)
    expected = _jacobian_norm(conv, (4, 6, 5))
    for rtol in (1e-6, 1e-10):
        power = operator_norm(conv, (4, 6, 5), method="power", rtol=rtol)
        assert expected * (1 - rtol) <= power <= expected * (1 + 1e-12)


def test_auto_switches_to_lanczos_for_large_inputs() -> None:
    conv = nn.Conv2d(2, 2, 3, padding=1)
    dense = operator_norm(conv, (2, 12, 12), method="dense")
    assert operator_norm(conv, (2, 12, 12), max_dense_dim=100) == pytest.approx(dense, rel=1e-7)
    with pytest.raises(ConvergenceError):
        operator_norm(conv, (2, 12, 12), method="power", rtol=1e-14, max_iter=3)


def test_linear_layers() -> None:
    lin = nn.Linear(6, 3)
    expected = float(np.linalg.norm(lin.weight.detach().double().numpy(), 2))
    assert operator_norm(lin) == pytest.approx(expected, rel=1e-12)
    assert operator_norm(lin, (6,), method="power", rtol=1e-12) == pytest.approx(expected, rel=1e-8)
    spectral = SpectralLinear(6, 3, coeff=0.5)
    with torch.no_grad():
        spectral.weight.mul_(10.0)
    spectral.converge()
    assert operator_norm(spectral) == pytest.approx(0.5, rel=1e-6)
    with pytest.raises(ShapeError):
        operator_norm(lin, (5,))
    with pytest.raises(ConfigError):
        operator_norm(nn.ELU(), (3,))
    with pytest.raises(ShapeError):
        operator_norm(nn.Conv2d(2, 2, 3))
    with pytest.raises(ShapeError):
        operator_norm(SpectralConv2d(2, 2, 3))


def test_certificate_of_contractive_blocks() -> None:
    model = InvertibleSequential(
        IResBlock(conv_branch(2, 4, coeff=0.8, input_shape=(5, 5)), logdet="none"),
        IResBlock(conv_branch(2, 4, coeff=0.7, kernel_sizes=(3, 3)), logdet="none"),
    )
    model.double()
    model(torch.randn(1, 2, 5, 5, dtype=torch.float64))  # locks the second block to 5 x 5
    for m in model.modules():
        if isinstance(m, SpectralConv2d):
            with torch.no_grad():
                m.weight.mul_(3.0)
            m.converge(100, rtol=1e-10)
    certs = lipschitz_certificate(model, torch.randn(1, 2, 5, 5, dtype=torch.float64))
    assert [c.block for c in certs] == ["layers.0", "layers.1"]
    for cert, coeff, n in zip(certs, (0.8, 0.7), (3, 2), strict=True):
        convs = [layer for layer in cert.layers if layer.kind == "SpectralConv2d"]
        assert len(convs) == n and all(layer.input_shape[1:] == (5, 5) for layer in convs)
        assert cert.bound <= coeff**n * 1.01  # power iteration is slow for sigma_2 ~ sigma_1
        assert cert.is_contractive
        block = dict(model.named_modules())[cert.block]
        modules = [m for m in block.g if isinstance(m, SpectralConv2d)]
        independent = math.prod(
            _jacobian_norm(m, layer.input_shape) for layer, m in zip(convs, modules, strict=True)
        )
        assert cert.bound == pytest.approx(independent, rel=1e-9)
    assert model.training  # the mode is restored


def test_certificate_flags_an_unconstrained_layer() -> None:
    lin = nn.Linear(3, 3)
    with torch.no_grad():
        lin.weight.copy_(2.0 * torch.eye(3))
    model = InvertibleSequential(
        IResBlock(dense_branch(3, 6), logdet="none"),
        IResBlock(nn.Sequential(lin, nn.ELU()), logdet="none", lipschitz=0.5),
    )
    certs = lipschitz_certificate(model, torch.randn(1, 3))
    assert certs[0].is_contractive
    assert certs[1].bound == pytest.approx(2.0, rel=1e-12) and not certs[1].is_contractive
    assert "NOT contractive" in str(certs[1])
    table = format_certificates(certs)
    assert table.splitlines()[1].endswith("yes") and table.splitlines()[2].endswith("no")


def test_certificate_catches_torch_spectral_norm_on_convolutions() -> None:
    """torch's spectral_norm bounds the reshaped kernel by 1; the operator norm is larger."""
    conv = nn.utils.parametrizations.spectral_norm(nn.Conv2d(2, 2, 3, padding=1))
    block = IResBlock(nn.Sequential(nn.ELU(), conv), logdet="none", lipschitz=0.9)
    conv.train()
    for _ in range(20):
        conv(torch.randn(2, 2, 6, 6))
    [cert] = lipschitz_certificate(block, torch.randn(1, 2, 6, 6))
    assert cert.bound > 1.1 and not cert.is_contractive


def test_uncertified_modules_make_the_bound_infinite() -> None:
    block = IResBlock(
        nn.Sequential(SpectralLinear(3, 3), nn.BatchNorm1d(3)), logdet="none", lipschitz=0.5
    )
    [cert] = lipschitz_certificate(block, torch.randn(2, 3))
    assert cert.bound == math.inf and not cert.is_contractive
    assert cert.uncertified == ("1 (BatchNorm1d)",)


def test_certificate_value_types() -> None:
    cert = BlockCertificate(
        "b",
        (
            LayerBound("0", "SpectralLinear", (3,), 0.5, "dense"),
            LayerBound("1", "ELU", (), 1.0, "activation"),
        ),
    )
    assert cert.bound == 0.5 and cert.is_contractive
    assert "0.500000" in str(cert) and "contractive" in str(cert)
    assert lipschitz_certificate(nn.Linear(2, 2), torch.randn(1, 2)) == []


def _hidden_direction_layer() -> SpectralLinear:
    """A layer whose power iteration has converged on e1 (sigma 2) before the optimiser grew
    the orthogonal direction e2 to 4: the estimate still reads 2, the operator has norm 4."""
    layer = SpectralLinear(4, 4, coeff=0.5, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(torch.diag(torch.tensor([2.0, 1.0, 1.0, 1.0])))
        layer.converge(100, rtol=1e-14)
        layer.weight[1, 1] = 4.0
    return layer


def test_norm_ratios_catch_what_the_estimate_misses() -> None:
    layer = _hidden_direction_layer()
    net = nn.Sequential(layer)
    # The estimate says the layer is normalised to c exactly; the operator is twice that.
    assert float(layer.sigma) == pytest.approx(2.0, rel=1e-12)
    ratios = spectral_norm_ratios(net)
    assert ratios == {"0": pytest.approx(2.0, rel=1e-10)}
    assert ratios["0"] * 0.5 == pytest.approx(_jacobian_norm(layer.eval(), (4,)), rel=1e-10)
    assert float(layer.sigma) == pytest.approx(2.0, rel=1e-12)  # measuring changed nothing


def test_realign_exact_finds_the_lost_direction() -> None:
    layer = _hidden_direction_layer()
    layer.converge(50)  # warm-started power steps never leave e1: its e2 component is zero
    assert spectral_norm_ratios(nn.Sequential(layer))["0"] == pytest.approx(2.0, rel=1e-10)
    gen = torch.Generator().manual_seed(0)
    assert realign_exact(layer, generator=gen) == pytest.approx(4.0, rel=1e-10)
    assert spectral_norm_ratios(nn.Sequential(layer))["0"] == pytest.approx(1.0, abs=1e-9)
    conv = SpectralConv2d(2, 3, 3, padding=1, coeff=0.5, input_shape=(5, 5)).double()
    with torch.no_grad():
        conv.weight.mul_(4.0)
        conv.v.copy_(torch.randn_like(conv.v))
        conv.u.copy_(torch.randn_like(conv.u))
    sigma = realign_exact(conv)
    assert sigma == pytest.approx(_jacobian_norm(conv, (2, 5, 5)) * sigma / 0.5, rel=1e-6)
    assert spectral_norm_ratios(nn.Sequential(conv))["0"] == pytest.approx(1.0, abs=1e-8)


def test_realign_exact_falls_back_when_lanczos_stalls(monkeypatch: pytest.MonkeyPatch) -> None:
    # A stall at the strict tolerance must not end a training run: the correction retries at
    # 1e-8, which still finds the top pair.
    # The package re-exports the function under the module's name, so look the module up.
    module = importlib.import_module("preimage.analysis.operator_norm")
    real = module._lanczos
    tolerances: list[float] = []

    def stalls_at_1e_10(op, rtol, max_iter, generator, krylov):  # type: ignore[no-untyped-def]
        tolerances.append(rtol)
        if rtol < 1e-9:
            raise ConvergenceError("stalled")
        return real(op, rtol, max_iter, generator, krylov)

    monkeypatch.setattr(module, "_lanczos", stalls_at_1e_10)
    layer = _hidden_direction_layer()
    gen = torch.Generator().manual_seed(0)
    assert realign_exact(layer, generator=gen) == pytest.approx(4.0, rel=1e-7)
    assert tolerances == [1e-10, 1e-8]


class _LoseTheTopDirection(Callback):
    """After step ``at``, a layer's weight grows while its power vectors point elsewhere: what
    a lagging power iteration leaves behind after a large optimiser step."""

    def __init__(self, at: int) -> None:
        self.at = at

    def on_batch_end(self, trainer: Trainer, step: int, metrics: dict[str, float]) -> None:
        if step != self.at:
            return
        _, layer = spectral_layers(trainer.model)[0]
        with torch.no_grad():
            layer.weight.mul_(3.0 * layer.coeff / operator_norm(layer))
            layer.v.copy_(torch.randn_like(layer.v))
            layer.u.copy_(torch.randn_like(layer.u))
            layer.v.div_(layer.v.norm() * 1e3)  # sigma~ ~ 0: no normalisation at all


def _train_with(monitor: SpectralNormMonitor, plant_at: int | None) -> tuple[Trainer, nn.Module]:
    torch.manual_seed(0)
    net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=4, coeff=0.9)
    data = (torch.rand(24, 1, 4, 4), torch.randint(0, 10, (24,)))
    config = TrainConfig(epochs=2, batch_size=8, device="cpu", max_shift=0, dequantize=False)
    callbacks = ([] if plant_at is None else [_LoseTheTopDirection(plant_at)]) + [monitor]
    trainer = Trainer(net, data, None, config, callbacks=callbacks, progress=False)
    trainer.fit()
    return trainer, net


def test_monitor_catches_a_layer_above_tolerance_after_a_training_step() -> None:
    monitor = SpectralNormMonitor(check_every=1, tolerance=1e-3)
    trainer, net = _train_with(monitor, plant_at=2)
    first, second = monitor.epochs
    assert first.checks == 3 and second.checks == 3  # every step; the epoch end reuses step 3
    assert first.max_ratio > 2.9 and first.corrections >= 1
    assert first.worst_layer == spectral_layers(net)[0][0]
    assert trainer.history[0]["max_norm_ratio"] == first.max_ratio
    assert trainer.history[1]["norm_checks"] == 3


def test_check_records_before_it_corrects() -> None:
    layer = _hidden_direction_layer()
    net = nn.Sequential(SpectralLinear(4, 4).double(), layer)
    monitor = SpectralNormMonitor(tolerance=1e-3)
    before = monitor.check(net)
    assert before["1"] == pytest.approx(2.0, rel=1e-10)
    after = monitor.check(net)
    assert after["1"] == pytest.approx(1.0, abs=1e-9)
    assert after["0"] == pytest.approx(before["0"], rel=1e-12)  # within tolerance: untouched
    assert monitor._current.max_ratio == before["1"] and monitor._current.corrections == 1


def test_monitor_without_correction_only_records() -> None:
    monitor = SpectralNormMonitor(check_every=2, correct=False)
    _train_with(monitor, plant_at=2)
    assert [c.checks for c in monitor.epochs] == [2, 2]  # steps 2, 3 (end); 4, 6 (end, reused)
    assert monitor.epochs[0].max_ratio > 2.9
    assert sum(c.corrections for c in monitor.epochs) == 0


@pytest.mark.parametrize("kwargs", [{"check_every": 0}, {"tolerance": -1.0}])
def test_monitor_rejects_bad_settings(kwargs: dict) -> None:
    with pytest.raises(ConfigError):
        SpectralNormMonitor(**kwargs)


def test_pointwise_convolutions_are_measured_exactly_from_their_matrix() -> None:
    conv = SpectralConv2d(3, 4, 1, coeff=0.5, input_shape=(6, 5)).double()
    with torch.no_grad():
        conv.weight.mul_(3.0)
    matrix = conv.normalized_weight().detach()[:, :, 0, 0]
    expected = float(torch.linalg.matrix_norm(matrix, 2))
    assert operator_norm(conv) == pytest.approx(expected, rel=1e-12)
    assert operator_norm(conv) == pytest.approx(_jacobian_norm(conv, (3, 6, 5)), rel=1e-10)
    plain = nn.Conv2d(3, 4, 1)
    reference = operator_norm(plain, (3, 6, 5), method="lanczos", rtol=1e-12)
    assert operator_norm(plain, (3, 6, 5)) == pytest.approx(reference, rel=1e-8)


def test_lanczos_converges_on_a_continuum_of_top_singular_values() -> None:
    """Singular values 1 - 0.05 (i/n)^2, the dense top of a zero-padded convolution's
    spectrum: Lanczos reaches 1e-10 within 3 000 products (restarting from the one top Ritz
    vector took 18 000 for 1e-8 and did not reach 1e-10 in 20 000) and finds the largest."""
    gen = torch.Generator().manual_seed(3)
    n = 600
    u, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    v, _ = torch.linalg.qr(torch.randn(n, n, generator=gen, dtype=torch.float64))
    values = 1.0 - 0.05 * (torch.arange(n, dtype=torch.float64) / n) ** 2
    layer = nn.Linear(n, n, bias=False).double()
    with torch.no_grad():
        layer.weight.copy_(u @ torch.diag(values) @ v.T)
    found = operator_norm(layer, method="lanczos", rtol=1e-10, max_iter=3000, generator=gen)
    assert found == pytest.approx(1.0, abs=1e-10)
    assert found <= 1.0 + 1e-12
