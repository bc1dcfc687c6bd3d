"""Tests of the i-ResNet classifier and density model (preimage/models/iresnet.py)."""

from __future__ import annotations

import math

import pytest
import torch
from safetensors.torch import load, save

from preimage.analysis import lipschitz_certificate
from preimage.attacks import metameric_sample
from preimage.data import load_digits
from preimage.errors import ConfigError, ConvergenceError, ShapeError
from preimage.losses import IndependenceCrossEntropy
from preimage.models import (
    MODELS,
    IResNet,
    IResNetFlow,
    IResNetLinear,
    build_iresnet,
    build_model,
)
from preimage.models.iresnet_flow import _standard_error
from preimage.nn import BijectiveClassifier, Classifier
from preimage.nn.logdet import series_truncation_bound

TINY = {"stages": 2, "blocks_per_stage": 1, "hidden": 8}


def _initialised(model: torch.nn.Module, x: torch.Tensor) -> torch.nn.Module:
    """Run the data-dependent ActNorm initialisation, then switch to evaluation mode."""
    with torch.no_grad():
        model.train()
        model(x)
    return model.eval()


@pytest.mark.parametrize(("readout", "code_dim"), [("linear", 16 * 64), ("first", 64), ("dct", 64)])
def test_classifier_shapes(readout: str, code_dim: int) -> None:
    model = build_model("i-resnet", (1, 8, 8), 10, readout=readout, **TINY)
    assert type(model) is (IResNetLinear if readout == "linear" else IResNet)
    x = torch.rand(3, 1, 8, 8)
    z, logdet = model(x)
    assert z.shape == (3, code_dim)
    assert model.output_shape((1, 8, 8)) == (code_dim,)
    assert logdet.shape == (3,)
    # logdet="none": the blocks add nothing, only ActNorm's data-independent exact term is left.
    assert torch.equal(logdet, logdet[:1].expand(3))
    assert model.logits(x).shape == (3, 10)


def test_linear_readout_pads_to_pad_channels_and_has_no_split() -> None:
    model = IResNetLinear((3, 4, 4), 5, stages=1, blocks_per_stage=1, hidden=4, pad_channels=16)
    assert model.feature_shape == (16, 4, 4)
    assert not model.bijective
    assert not hasattr(model, "split") and not hasattr(model, "merge")
    assert isinstance(model, Classifier) and not isinstance(model, BijectiveClassifier)
    assert isinstance(IResNet((3, 4, 4), 5, **TINY), BijectiveClassifier)
    with pytest.raises(ConfigError, match="IResNetLinear"):
        IResNet((3, 4, 4), 5, readout="linear")
    with pytest.raises(ConfigError, match="IResNet"):
        IResNetLinear((3, 4, 4), 5, readout="first")
    # A.1 architecture: the final map goes through batch norm, ELU, pooling, linear.
    kinds = [type(m).__name__ for m in model.head]
    assert kinds == ["BatchNorm2d", "ELU", "AdaptiveAvgPool2d", "Flatten", "Linear"]


def test_bijective_readout_split_merge_and_logits() -> None:
    model = _initialised(IResNet((1, 4, 4), 3, readout="first", **TINY), torch.rand(8, 1, 4, 4))
    x = torch.rand(2, 1, 4, 4)
    with torch.no_grad():
        z, _ = model(x)
        z_s, z_n = model.split(z)
        assert z_s.shape == (2, 3) and z_n.shape == (2, 13)
        assert torch.equal(model.merge(z_s, z_n), z)
        assert torch.equal(model.logits(x), z[:, :3])
    with pytest.raises(ShapeError):
        model.merge(z_s, z_n[:1])


@pytest.mark.parametrize("readout", ["linear", "first"])
def test_round_trip_at_reported_tolerance(readout: str) -> None:
    torch.manual_seed(1)
    model = build_model("i-resnet", (1, 8, 8), 10, readout=readout, **TINY)
    model = _initialised(model, torch.rand(16, 1, 8, 8))
    x = torch.rand(4, 1, 8, 8)
    with torch.no_grad():
        z, _ = model(x)
        x_rec = model.inverse(z)
    diagnostics = model.last_inverse
    assert len(diagnostics) == len(model.blocks) == 2
    assert all(d is not None and d.converged for d in diagnostics)
    assert float((x_rec - x).abs().max()) <= 1e-4
    with torch.no_grad():
        x_tight = model.inverse(z, atol=0.0, rtol=0.0)
    assert float((x_tight - x).abs().max()) <= 1e-5
    assert max(d.iterations for d in model.last_inverse) >= max(d.iterations for d in diagnostics)


def test_inverse_float64_and_overrides_are_restored() -> None:
    model = IResNet((1, 4, 4), 2, readout="first", **TINY).double()
    model = _initialised(model, torch.rand(8, 1, 4, 4, dtype=torch.float64))
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        z, _ = model(x)
        x_rec = model.inverse(z, atol=0.0, rtol=0.0, max_iter=500)
    assert float((x_rec - x).abs().max()) <= 1e-10
    assert all(b.inverse_atol is None and b.max_iter == 100 for b in model.blocks)
    with pytest.raises(ConvergenceError), torch.no_grad():
        model.inverse(z, atol=0.0, rtol=0.0, max_iter=1)
    assert model.blocks[0].max_iter == 100
    assert not model.last_inverse[-1].converged
    with pytest.raises(ShapeError):
        model.inverse(z[:, :5])


def test_every_block_is_certified_contractive_after_training() -> None:
    torch.manual_seed(0)
    model = IResNet((1, 8, 8), 10, readout="first", coeff=0.8, **TINY)
    x, y = torch.rand(16, 1, 8, 8), torch.randint(0, 10, (16,))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    for _ in range(4):
        loss = torch.nn.functional.cross_entropy(model.logits(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    model.converge()
    certificates = lipschitz_certificate(model, x[:1])
    assert len(certificates) == 2
    for cert in certificates:
        assert cert.is_contractive
        assert cert.bound <= 0.8**3 * (1 + 1e-3)


def test_metameric_sample_keeps_logits() -> None:
    torch.manual_seed(2)
    model = _initialised(IResNet((1, 8, 8), 10, readout="first", **TINY), torch.rand(16, 1, 8, 8))
    a, b = torch.rand(4, 1, 8, 8), torch.rand(4, 1, 8, 8)
    x_met = metameric_sample(model, a, b)
    with torch.no_grad():
        z_met, _ = model(x_met)
        z_a, _ = model(a)
        z_b, _ = model(b)
    assert float((z_met[:, :10] - z_a[:, :10]).abs().max()) <= 1e-4
    assert float((z_met[:, 10:] - z_b[:, 10:]).abs().max()) <= 1e-4
    assert float((x_met - a).abs().max()) > 1e-2  # a different input with the same logits


def test_independence_cross_entropy_trains_the_bijective_iresnet() -> None:
    model = IResNet((1, 4, 4), 4, readout="first", logdet="roulette", **TINY)
    ice = IndependenceCrossEntropy(model, 4, 12, nuisance_hidden=8)
    x, y = torch.rand(6, 1, 4, 4), torch.randint(0, 4, (6,))
    model.train()
    loss, metrics = ice(model, x, y)
    loss.backward()
    assert math.isfinite(float(loss.detach())) and math.isfinite(metrics["mle"])
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert any(float(g.abs().sum()) > 0 for g in grads if g is not None)


def test_flow_log_prob_matches_dense_change_of_variables() -> None:
    torch.manual_seed(3)
    flow = IResNetFlow((1, 4, 4), logdet="exact", **TINY).double()
    flow = _initialised(flow, torch.rand(8, 1, 4, 4, dtype=torch.float64))
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.05 * torch.randn_like(p))
    x = torch.rand(2, 1, 4, 4, dtype=torch.float64)
    log_prob = flow.log_prob(x).detach()
    for i in range(2):

        def f(v: torch.Tensor) -> torch.Tensor:
            return flow(v.reshape(1, 1, 4, 4))[0].reshape(-1)

        jac = torch.autograd.functional.jacobian(f, x[i].reshape(-1))
        z = f(x[i].reshape(-1)).detach()
        expected = -0.5 * float((z**2).sum()) - 8 * math.log(2 * math.pi)
        expected += float(torch.linalg.slogdet(jac)[1])
        assert abs(float(log_prob[i]) - expected) <= 1e-8
    bits = flow.bits_from_log_prob(log_prob, levels=256)
    expected_bits = -(log_prob - 16 * math.log(256)) / (16 * math.log(2))
    assert torch.allclose(bits, expected_bits)


def test_bits_per_dim_series_protocol_agrees_with_exact() -> None:
    torch.manual_seed(4)
    flow = _initialised(IResNetFlow((1, 4, 4), **TINY).double(), torch.rand(8, 1, 4, 4).double())
    x = torch.rand(5, 1, 4, 4, dtype=torch.float64)
    exact = flow.bits_per_dim(x, exact=True)
    flow.train()
    est = flow.bits_per_dim(x, bias_tol=1e-3, se_tol=1e-3, max_probes=512)
    assert flow.training  # restored
    assert not est.capped and est.standard_error <= 1e-3
    assert est.bias_bound <= 1e-3
    assert abs(est.value - exact.value) <= est.bias_bound + 5 * est.standard_error
    certs = lipschitz_certificate(flow, x[:1])
    tol = 1e-3 * 16 * math.log(2) / 2
    for cert, n, d in zip(certs, est.n_terms, flow.block_dims, strict=True):
        assert series_truncation_bound(cert.bound, d, n) <= tol
        assert n == 0 or series_truncation_bound(cert.bound, d, n - 1) > tol
    # The blocks' training estimator is restored.
    assert flow.blocks[0].logdet == "roulette" and flow.blocks[0].n_probes == 1


def test_standard_error_pools_the_per_sample_spread() -> None:
    torch.manual_seed(7)
    sigma = torch.linspace(0.5, 2.0, 50, dtype=torch.float64)
    rounds = 3.0 + sigma * torch.randn(4, 50, dtype=torch.float64)
    truth = math.sqrt(float((sigma**2).sum()) / 4) / 50
    assert abs(_standard_error(rounds) - truth) <= 0.15 * truth


def test_bits_per_dim_flags_the_probe_cap() -> None:
    flow = _initialised(IResNetFlow((1, 4, 4), **TINY), torch.rand(8, 1, 4, 4))
    with pytest.warns(RuntimeWarning, match="standard error"):
        result = flow.bits_per_dim(
            torch.rand(3, 1, 4, 4), se_tol=1e-12, max_probes=2, probes_per_round=1
        )
    assert result.capped and result.n_probes == 2
    fixed = flow.bits_per_dim(torch.rand(3, 1, 4, 4), n_terms=3, n_probes=2, probes_per_round=1)
    assert not fixed.capped and fixed.n_terms == (3, 3) and fixed.n_probes == 2


def test_bits_per_dim_decreases_when_training_on_digits() -> None:
    torch.manual_seed(5)
    images, _ = load_digits("train")
    x = images[:64]
    flow = _initialised(IResNetFlow((1, 8, 8), **TINY), x)
    flow.train()
    optimizer = torch.optim.Adam(flow.parameters(), lr=5e-3)
    torch.manual_seed(6)
    test = IResNetFlow.dequantize(images[64:96], levels=17)
    before = flow.bits_per_dim(test, levels=17, exact=True).value
    for _ in range(15):
        loss = -flow.log_prob(x, dequantize=True, levels=17).mean() / flow.dim
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = flow.bits_per_dim(test, levels=17, exact=True).value
    assert math.isfinite(before) and math.isfinite(after)
    assert after < before


def test_sample_shape_and_temperature() -> None:
    flow = _initialised(IResNetFlow((1, 8, 8), **TINY), torch.rand(16, 1, 8, 8))
    samples = flow.sample(3, temperature=0.7)
    assert samples.shape == (3, 1, 8, 8) and torch.isfinite(samples).all()
    assert all(d.converged for d in flow.last_inverse)
    cold = flow.sample(2, temperature=0.0)
    with torch.no_grad():
        z, _ = flow(cold)
    assert float(z.abs().max()) <= 1e-4  # the sample at T=0 is the pre-image of z = 0


def test_dequantize_stays_in_its_bin() -> None:
    k = torch.randint(0, 17, (200,)).double()
    x = IResNetFlow.dequantize((k / 16).view(1, -1), levels=17).view(-1)
    assert bool(((x >= k / 17) & (x < (k + 1) / 17)).all())


def test_registry_and_config_rebuild_an_identical_model() -> None:
    assert MODELS["i-resnet"] is build_iresnet
    model = build_model("i-resnet", (1, 8, 8), 10, readout="dct", **TINY)
    assert isinstance(model, IResNet)
    cfg = model.config
    rebuilt = build_model(
        "i-resnet",
        cfg["in_shape"],
        cfg["num_classes"],
        **{k: v for k, v in cfg.items() if k not in ("in_shape", "num_classes")},
    )
    x = torch.rand(16, 1, 8, 8)
    model = _initialised(model, x)
    rebuilt.load_state_dict(load(save({k: v.contiguous() for k, v in model.state_dict().items()})))
    rebuilt.eval()
    with torch.no_grad():
        assert torch.equal(model.logits(x), rebuilt.logits(x))
    flow = build_model("i-resnet-flow", (1, 4, 4), 10, **TINY)
    assert isinstance(flow, IResNetFlow)
    assert IResNetFlow(**flow.config).config == flow.config


@pytest.mark.parametrize(
    ("factory", "kwargs"),
    [
        (IResNet, {"readout": "linear", "split": True}),
        (IResNet, {"readout": "softmax"}),
        (IResNet, {"coeff": 1.0}),
        (IResNet, {"depth": 3}),
        (IResNetFlow, {"logdet": "none"}),
        (IResNetFlow, {"stages": 0}),
    ],
)
def test_bad_configs_raise(factory: type, kwargs: dict[str, object]) -> None:
    args = ((1, 8, 8), 10) if factory is IResNet else ((1, 8, 8),)
    with pytest.raises(ConfigError):
        factory(*args, **kwargs)


def test_bad_shapes_raise() -> None:
    with pytest.raises(ShapeError):
        IResNet((64,), 10)
    with pytest.raises(ConfigError):
        IResNet((1, 2, 2), 10, readout="first")
    model = IResNet((1, 8, 8), 10, **TINY)
    with pytest.raises(ShapeError):
        model(torch.rand(2, 1, 4, 4))


def test_training_pass_tracks_all_layers_grouped_like_each_layer_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """With ``krylov``, a training pass first re-aligns every spectral layer at once (grouped
    convolutions); logits and stored pairs match a twin whose layers each track themselves."""
    import copy

    from preimage.nn import spectral

    torch.manual_seed(0)
    options = {**TINY, "blocks_per_stage": 2, "krylov": 6}
    model = build_iresnet((1, 8, 8), 3, readout="linear", **options).double()
    x = torch.rand(4, 1, 8, 8, dtype=torch.float64)
    _initialised(model, x)
    twin = copy.deepcopy(model)
    twin.net._forward_pre_hooks.clear()
    group_sizes: list[int] = []
    grouped = spectral._track_convolutions

    def recording(items, steps):  # type: ignore[no-untyped-def]
        group_sizes.append(len(items))
        return grouped(items, steps)

    monkeypatch.setattr(spectral, "_track_convolutions", recording)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05)
    for net in (model, twin):
        net.train()
        with torch.no_grad():
            for p in net.parameters():
                p.add_(0.05 * torch.randn_like(p, generator=torch.Generator().manual_seed(1)))
    group_sizes.clear()
    logits = model.logits(x)
    assert max(group_sizes) > 1  # same-shaped layers shared their products
    hooked = len(group_sizes)
    group_sizes.clear()
    expected = twin.logits(x)
    assert len(group_sizes) > hooked  # the twin's layers ran one by one
    assert torch.allclose(logits, expected, atol=1e-10)
    for (_, a), (_, b) in zip(
        spectral.spectral_layers(model), spectral.spectral_layers(twin), strict=True
    ):
        assert torch.allclose(a.v, b.v, atol=1e-9)
    group_sizes.clear()
    model.logits(x)
    assert group_sizes == []  # nothing moved: no layer re-aligns
    logits.sum().backward()
    optimiser.step()
    model.logits(x)
    assert group_sizes  # the step moved every weight
