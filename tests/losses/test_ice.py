"""Tests of preimage.losses.ice: the minimax steps, gradients and the MLE term vs NumPy/SciPy."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from scipy import special, stats
from torch import Tensor, nn

from preimage.errors import ConfigError, ShapeError
from preimage.losses.ice import IndependenceCrossEntropy, gaussian_nll
from tests.attacks.toy import AffineInvertibleClassifier

DIM, CLASSES = 6, 2
NUISANCE = DIM - CLASSES


def _data(n: int = 64, seed: int = 0) -> tuple[Tensor, Tensor]:
    """Labels given by the sign of a direction, so z_n of a random bijection holds them."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, DIM, generator=gen, dtype=torch.float64)
    y = (x[:, 0] + 0.5 * x[:, 1] > 0).long()
    return x, y


def _setup(**kwargs: object) -> tuple[AffineInvertibleClassifier, IndependenceCrossEntropy]:
    torch.manual_seed(0)
    toy = AffineInvertibleClassifier((DIM,), CLASSES, seed=3)
    # The NumPy references read raw z_n; tests of the standardised input ask for it.
    options: dict[str, object] = {
        "nuisance_hidden": 16,
        "lr_nuisance": 1e-2,
        "adversary_input": "raw",
    }
    options.update(kwargs)
    ice = IndependenceCrossEntropy(toy, CLASSES, NUISANCE, **options)  # type: ignore[arg-type]
    return toy, ice


def _nuisance_ce(toy: AffineInvertibleClassifier, ice: IndependenceCrossEntropy, x, y) -> float:
    with torch.no_grad():
        z, _ = toy(x)
        return float(F.cross_entropy(ice.nuisance(toy.split(z)[1]), y))


def _min_steps(
    toy: AffineInvertibleClassifier, ice: IndependenceCrossEntropy, x, y, steps: int = 20
) -> None:
    """SGD steps of the network on the min objective, the nuisance classifier frozen."""
    opt = torch.optim.SGD(toy.parameters(), lr=0.05)
    for _ in range(steps):
        z, logdet = toy(x)
        z_s, z_n = toy.split(z)
        loss, _ = ice.min_objective(z_s, z_n, logdet, y)
        opt.zero_grad()
        loss.backward()
        opt.step()


def _numpy_mlp(ice: IndependenceCrossEntropy, h: np.ndarray) -> np.ndarray:
    linears = [m for m in ice.nuisance.modules() if isinstance(m, nn.Linear)]
    for i, layer in enumerate(linears):
        if i > 0:
            h = np.maximum(h, 0.0)
        h = h @ layer.weight.detach().numpy().T + layer.bias.detach().numpy()
    return h


def _numpy_objective(
    w: np.ndarray, b: np.ndarray, x: np.ndarray, y: np.ndarray, ice: IndependenceCrossEntropy
) -> float:
    z = x @ w.T + b
    zs, zn = z[:, :CLASSES], z[:, CLASSES:]
    rows = np.arange(len(y))
    sce = -special.log_softmax(zs, axis=1)[rows, y].mean()
    nce = -special.log_softmax(_numpy_mlp(ice, zn), axis=1)[rows, y].mean()
    beta, gamma = ice.beta.detach().numpy(), ice.gamma.detach().numpy()
    nll = -stats.norm.logpdf(zn, loc=beta, scale=np.exp(gamma)).sum(axis=1)
    mle = ((nll - np.linalg.slogdet(w)[1]) / DIM).mean()
    return sce - ice.nce_weight * nce + ice.mle_weight * mle


def test_mle_term_matches_scipy_gaussian_nll() -> None:
    toy, ice = _setup()
    with torch.no_grad():
        ice.beta.copy_(torch.linspace(-0.5, 0.5, NUISANCE))
        ice.gamma.copy_(torch.linspace(-0.3, 0.4, NUISANCE))
    x, _ = _data(8)
    z, logdet = toy(x)
    z_n = toy.split(z)[1].detach()
    mle = ice.mle_term(z_n, logdet.detach())
    w, _ = toy.numpy_params()
    scale = np.exp(ice.gamma.detach().numpy())
    logpdf = stats.norm.logpdf(z_n.numpy(), loc=ice.beta.detach().numpy(), scale=scale)
    expected = (-logpdf.sum(axis=1) - np.linalg.slogdet(w)[1]) / DIM
    np.testing.assert_allclose(mle.detach().numpy(), expected, rtol=1e-12)
    np.testing.assert_allclose(
        gaussian_nll(z_n, ice.beta, ice.gamma).detach().numpy(), -logpdf.sum(axis=1), rtol=1e-12
    )


def test_max_step_raises_nuisance_likelihood_and_leaves_network_alone() -> None:
    toy, ice = _setup()
    x, y = _data()
    weight_before = toy.weight.detach().clone()
    before = _nuisance_ce(toy, ice, x, y)
    z, _ = toy(x)
    z_n = toy.split(z)[1]
    reported = ice.max_step(z_n, y)
    assert reported == pytest.approx(before, rel=1e-10)
    for _ in range(60):
        ice.max_step(z_n, y)
    after = _nuisance_ce(toy, ice, x, y)
    assert after < 0.7 * before
    assert toy.weight.grad is None and torch.equal(toy.weight, weight_before)
    assert all(p.grad is None for p in ice.parameters())


def test_min_steps_lower_the_frozen_classifiers_likelihood() -> None:
    toy, ice = _setup()
    x, y = _data()
    z, _ = toy(x)
    for _ in range(80):
        ice.max_step(toy.split(z)[1], y)
    frozen = [p.detach().clone() for p in ice.parameters()]
    before = _nuisance_ce(toy, ice, x, y)
    _min_steps(toy, ice, x, y)
    after = _nuisance_ce(toy, ice, x, y)
    assert after > before + 0.1
    assert all(torch.equal(p, q) for p, q in zip(ice.parameters(), frozen, strict=True))
    assert all(p.grad is None for p in ice.parameters())


def test_min_objective_value_and_gradient_match_numpy_finite_differences() -> None:
    toy, ice = _setup(nce_weight=0.7, mle_weight=1.3)
    with torch.no_grad():
        ice.beta.copy_(torch.linspace(-0.2, 0.3, NUISANCE))
        ice.gamma.copy_(torch.linspace(0.1, -0.2, NUISANCE))
    x, y = _data(16)
    z, logdet = toy(x)
    z_s, z_n = toy.split(z)
    loss, _ = ice.min_objective(z_s, z_n, logdet, y)
    loss.backward()
    w, b = toy.numpy_params()
    xn, yn = x.numpy(), y.numpy()
    assert float(loss.detach()) == pytest.approx(_numpy_objective(w, b, xn, yn, ice), rel=1e-10)
    h = 1e-6
    grad_w = np.zeros_like(w)
    for i, j in np.ndindex(*w.shape):
        step = np.zeros_like(w)
        step[i, j] = h
        grad_w[i, j] = (
            _numpy_objective(w + step, b, xn, yn, ice) - _numpy_objective(w - step, b, xn, yn, ice)
        ) / (2 * h)
    grad_b = np.array(
        [
            (
                _numpy_objective(w, b + h * e, xn, yn, ice)
                - _numpy_objective(w, b - h * e, xn, yn, ice)
            )
            / (2 * h)
            for e in np.eye(DIM)
        ]
    )
    np.testing.assert_allclose(toy.weight.grad.numpy(), grad_w, rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(toy.bias.grad.numpy(), grad_b, rtol=1e-5, atol=1e-8)
    assert all(p.grad is None for p in ice.parameters())


def test_network_receives_minus_nce_gradient_through_z_n() -> None:
    toy, ice = _setup(mle_weight=0.0)
    x, y = _data(16)
    z, logdet = toy(x)
    z_s, z_n = toy.split(z)
    loss, terms = ice.min_objective(z_s, z_n, logdet, y)
    (g_zn,) = torch.autograd.grad(loss, z_n, retain_graph=True)
    (g_nce,) = torch.autograd.grad(terms["nce"], z_n)
    torch.testing.assert_close(g_zn, -g_nce)
    assert g_nce.abs().max() > 0


def test_uniform_adversary_value_matches_numpy_confusion_loss() -> None:
    toy, ice = _setup(adversary="uniform", nce_weight=0.7, mle_weight=0.0)
    x, y = _data(16)
    z, logdet = toy(x)
    z_s, z_n = toy.split(z)
    loss, _ = ice.min_objective(z_s, z_n, logdet, y)
    zn = z_n.detach().numpy()
    rows = np.arange(len(y))
    sce = -special.log_softmax(z_s.detach().numpy(), axis=1)[rows, y.numpy()].mean()
    confusion = -special.log_softmax(_numpy_mlp(ice, zn), axis=1).mean()
    assert float(loss.detach()) == pytest.approx(sce + 0.7 * confusion, rel=1e-10)


def test_uniform_adversary_keeps_its_gradient_where_minus_nce_saturates() -> None:
    """A confident, correct nuisance classifier: -L_nCE's gradient on z_n all but vanishes,
    the confusion loss's does not, and min steps on it make the classifier less confident."""
    x, y = _data()
    grads = {}
    for adversary in ("nce", "uniform"):
        toy, ice = _setup(adversary=adversary, mle_weight=0.0)
        z, _ = toy(x)
        for _ in range(400):
            ice.max_step(toy.split(z)[1], y)
        z, logdet = toy(x)
        z_s, z_n = toy.split(z)
        loss, _ = ice.min_objective(z_s, z_n, logdet, y)
        (g_zn,) = torch.autograd.grad(loss, z_n)
        grads[adversary] = float(g_zn.norm())
        if adversary == "uniform":
            before = _nuisance_ce(toy, ice, x, y)
            _min_steps(toy, ice, x, y)
            assert _nuisance_ce(toy, ice, x, y) > before + 0.05
    assert grads["uniform"] > 10 * grads["nce"]


@pytest.mark.parametrize("normalize", [True, False])
def test_max_step_normalisation_multiplies_the_cross_entropy(normalize: bool) -> None:
    toy, ice = _setup(normalize_by_dim=normalize, nuisance_depth=1)
    last = ice.nuisance.net[-1]
    ice.optimizer = torch.optim.SGD([last.bias], lr=1.0)
    x, y = _data(16)
    with torch.no_grad():
        z_n = toy.split(toy(x)[0])[1]
        logits = ice.nuisance(z_n).numpy()
    probs = special.softmax(logits, axis=1)
    probs[np.arange(len(y)), y.numpy()] -= 1.0
    bias_before = last.bias.detach().numpy().copy()
    ice.max_step(z_n, y)
    scale = 1.0 / NUISANCE if normalize else 1.0
    assert ice.max_step_scale == scale
    np.testing.assert_allclose(
        last.bias.detach().numpy() - bias_before, -scale * probs.mean(axis=0), rtol=1e-10
    )


def test_trainer_hook_runs_max_step_only_in_training() -> None:
    toy, ice = _setup()
    x, y = _data(32)
    snapshot = [p.detach().clone() for p in ice.nuisance.parameters()]
    toy.eval()
    loss, metrics = ice(toy, x, y)
    assert all(torch.equal(p, q) for p, q in zip(ice.nuisance.parameters(), snapshot, strict=True))
    toy.train()
    with torch.no_grad():
        ice(toy, x, y)
    assert all(torch.equal(p, q) for p, q in zip(ice.nuisance.parameters(), snapshot, strict=True))
    loss, metrics = ice(toy, x, y)
    assert any(
        not torch.equal(p, q) for p, q in zip(ice.nuisance.parameters(), snapshot, strict=True)
    )
    loss.backward()
    assert toy.weight.grad is not None and toy.weight.grad.abs().max() > 0
    assert all(p.grad is None for p in ice.parameters())
    assert set(metrics) == {"loss", "sce", "nce", "mle", "nce_max", "acc", "nuisance_acc"}
    assert all(isinstance(v, float) for v in metrics.values())
    with torch.no_grad():
        zs = toy.logits(x).numpy()
    sce = -special.log_softmax(zs, axis=1)[np.arange(32), y.numpy()].mean()
    assert metrics["sce"] == pytest.approx(sce, rel=1e-10)
    assert metrics["acc"] == pytest.approx(float((zs.argmax(1) == y.numpy()).mean()))
    assert metrics["loss"] == pytest.approx(
        metrics["sce"] - metrics["nce"] + metrics["mle"], rel=1e-10
    )


def test_max_steps_fit_the_prior_to_z_n() -> None:
    # z_n ~ N(3, 2^2) per entry: the inner steps move beta towards 3 and gamma towards log 2,
    # and the prior's likelihood of z_n rises (the MLE term of definition 5 needs a fitted prior).
    _, ice = _setup(lr_nuisance=5e-2)
    gen = torch.Generator().manual_seed(1)
    z = 3.0 + 2.0 * torch.randn(256, NUISANCE, generator=gen, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (256,), generator=gen)
    ice.double()
    before = float(ice.prior_nll(z).mean().detach())
    for _ in range(200):
        ice.max_step(z, y)
    assert float(ice.prior_nll(z).mean().detach()) < before - 0.5 * NUISANCE
    assert torch.allclose(ice.beta.detach(), torch.full((NUISANCE,), 3.0, dtype=torch.float64),
                          atol=0.6)  # fmt: skip
    assert float(ice.gamma.detach().mean()) > 0.3


def test_firevnet_as_the_trained_model() -> None:
    from preimage.models import FiRevNet

    torch.manual_seed(0)
    model = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
    ice = IndependenceCrossEntropy(model, 10, 54, nuisance_hidden=16)
    loss, _ = ice(model, torch.rand(8, 1, 8, 8), torch.arange(8))
    loss.backward()
    assert any(p.grad is not None and p.grad.abs().max() > 0 for p in model.parameters())
    assert all(p.grad is None for p in ice.parameters())
    assert "nuisance.net.0.weight" in ice.state_dict() and "beta" in ice.state_dict()
    assert not any(k.startswith("net.") for k in ice.state_dict())


def test_rejects_bad_configuration_and_inputs() -> None:
    toy, ice = _setup()
    x, y = _data(8)
    with pytest.raises(ConfigError):
        IndependenceCrossEntropy(toy, 3, NUISANCE)
    with pytest.raises(ConfigError):
        IndependenceCrossEntropy(toy, CLASSES, NUISANCE, nce_weight=-1.0)
    with pytest.raises(ConfigError, match="adversary"):
        IndependenceCrossEntropy(toy, CLASSES, NUISANCE, adversary="gan")
    with pytest.raises(ConfigError):
        IndependenceCrossEntropy("model", CLASSES, NUISANCE)  # type: ignore[arg-type]
    with pytest.raises(ShapeError):
        IndependenceCrossEntropy(toy, CLASSES, NUISANCE + 1)(toy, x, y)
    with pytest.raises(ConfigError):
        ice(toy, x, y + 2)
    with pytest.raises(ConfigError):
        ice(toy, x, y.double())
    with pytest.raises(ShapeError):
        ice(toy, x, y[:-1])


def test_ice_config_mirrors_the_constructor_and_builds_the_loss() -> None:
    import dataclasses
    import inspect

    from preimage.losses import IceConfig

    params = {
        name: p.default
        for name, p in inspect.signature(IndependenceCrossEntropy.__init__).parameters.items()
        if p.kind is inspect.Parameter.KEYWORD_ONLY
    }
    fields = {f.name: f.default for f in dataclasses.fields(IceConfig)}
    # warmup_epochs is the training schedule's (IceWarmup), not the loss's.
    assert fields.pop("warmup_epochs") == 1
    assert fields == params
    toy = AffineInvertibleClassifier((DIM,), CLASSES, seed=3)
    config = IceConfig(nuisance_hidden=8, max_steps=2, nce_weight=0.25, adversary="uniform")
    ice = IndependenceCrossEntropy.from_config(toy, CLASSES, NUISANCE, config)
    assert (ice.max_steps, ice.nce_weight, ice.adversary) == (2, 0.25, "uniform")
    with pytest.raises(ConfigError):
        IndependenceCrossEntropy.from_config(toy, CLASSES, NUISANCE, {"max_steps": 2})  # type: ignore[arg-type]


def test_shuffled_adversary_is_the_cross_entropy_to_permuted_labels() -> None:
    toy, ice = _setup(adversary="shuffled", nce_weight=0.05, mle_weight=0.0)
    x, y = _data(16)
    z, logdet = toy(x)
    z_s, z_n = toy.split(z)
    torch.manual_seed(11)
    order = torch.randperm(16)
    torch.manual_seed(11)
    loss, terms = ice.min_objective(z_s, z_n, logdet, y)
    rows = np.arange(16)
    log_q = special.log_softmax(_numpy_mlp(ice, z_n.detach().numpy()), axis=1)
    sce = -special.log_softmax(z_s.detach().numpy(), axis=1)[rows, y.numpy()].mean()
    shuffled = -log_q[rows, y.numpy()[order.numpy()]].mean()
    assert float(loss.detach()) == pytest.approx(sce + 0.05 * shuffled, rel=1e-10)
    # The true-label cross-entropy is still reported, and differs from the shuffled one.
    assert float(terms["nce"].detach()) == pytest.approx(-log_q[rows, y.numpy()].mean(), rel=1e-10)


@pytest.mark.parametrize("adversary_input", ["raw", "standardized"])
def test_standardized_adversary_closes_the_scaling_loophole(adversary_input: str) -> None:
    """Scaling z_n about its mean fools a raw adversary (its cross-entropy moves) but leaves
    what a standardised adversary sees, and so the network's nuisance term, unchanged."""
    _, ice = _setup(adversary_input=adversary_input, mle_weight=0.0)
    x, y = _data(64)
    z_n = x[:, CLASSES:] + 0.3 * x[:, :1]
    z_s = torch.zeros(64, CLASSES, dtype=z_n.dtype)
    logdet = torch.zeros(64, dtype=z_n.dtype)
    for _ in range(50):
        ice.max_step(z_n, y)
    values = []
    for scale in (1.0, 8.0):
        scaled = z_n.mean(0) + scale * (z_n - z_n.mean(0))
        _, terms = ice.min_objective(z_s, scaled, logdet, y)
        values.append(float(terms["nce"]))
    if adversary_input == "standardized":
        # Equal up to the 1e-6 guard added to the standard deviation.
        assert values[1] == pytest.approx(values[0], rel=1e-5)
    else:
        assert abs(values[1] - values[0]) > 0.1


def test_standardized_features_have_zero_mean_unit_std_and_carry_gradients() -> None:
    _, ice = _setup(adversary_input="standardized")
    z = (3.0 * torch.randn(32, NUISANCE, dtype=torch.float64) + 5.0).requires_grad_()
    f = ice.adversary_features(z)
    torch.testing.assert_close(f.mean(0), torch.zeros(NUISANCE, dtype=torch.float64))
    torch.testing.assert_close(
        f.std(0), torch.ones(NUISANCE, dtype=torch.float64), rtol=1e-5, atol=0
    )
    (f[:, 0] * torch.arange(32.0, dtype=torch.float64)).sum().backward()
    assert z.grad is not None and z.grad.abs().max() > 0


def test_logit_prior_adds_the_standard_normal_density_of_z_s() -> None:
    x, y = _data(16)
    results = {}
    for logit_prior in (False, True):
        toy, ice = _setup(logit_prior=logit_prior, nce_weight=0.0)
        z, logdet = toy(x)
        z_s, z_n = toy.split(z)
        _, terms = ice.min_objective(z_s, z_n, logdet, y)
        results[logit_prior] = (float(terms["mle"].detach()), z_s.detach().numpy())
    zs = results[True][1]
    extra = -stats.norm.logpdf(zs).sum(axis=1).mean() / DIM
    assert results[True][0] - results[False][0] == pytest.approx(extra, rel=1e-10)
    toy, ice = _setup(logit_prior=True)
    z, logdet = toy(x)
    z_s, z_n = toy.split(z)
    per_sample = ice.mle_term(z_n, logdet, z_s)
    assert float(per_sample.mean().detach()) == pytest.approx(results[True][0], rel=1e-10)


def test_logit_prior_bounds_the_logit_expansion() -> None:
    """Without a density on z_s, scaling the logits up lowers L_MLE (the log-det grows) with
    no bound; with N(0, I) on z_s the same scaling eventually costs more than it gains."""
    x, _ = _data(16)
    for logit_prior, grows in ((False, False), (True, True)):
        toy, ice = _setup(logit_prior=logit_prior, nce_weight=0.0)
        z, logdet = toy(x)
        z_s, z_n = toy.split(z)
        mles = []
        for scale in (1.0, 10.0, 100.0):
            shifted = logdet + CLASSES * math.log(scale)
            mles.append(float(ice.mle_term(z_n, shifted, scale * z_s).mean().detach()))
        assert (mles[2] > mles[1]) is grows
        assert mles[1] < mles[0] or grows


def test_inner_optimizer_option_picks_adamax() -> None:
    _, ice = _setup(inner_optimizer="adamax")
    assert isinstance(ice.optimizer, torch.optim.Adamax)
    _, ice = _setup()
    assert type(ice.optimizer) is torch.optim.Adam


@pytest.mark.parametrize(
    ("option", "value"), [("adversary_input", "whitened"), ("inner_optimizer", "sgd")]
)
def test_unknown_choices_are_refused(option: str, value: str) -> None:
    toy = AffineInvertibleClassifier((DIM,), CLASSES, seed=3)
    with pytest.raises(ConfigError, match=option):
        IndependenceCrossEntropy(toy, CLASSES, NUISANCE, **{option: value})  # type: ignore[arg-type]


def test_a_model_with_a_logit_head_is_trained_through_it() -> None:
    toy, ice = _setup(nce_weight=0.0, mle_weight=0.0)
    toy.classify = lambda z_s: 3.0 * z_s + 1.0  # type: ignore[attr-defined]
    x, y = _data(16)
    loss, metrics = ice(toy.eval(), x, y)
    z, _ = toy(x)
    expected = F.cross_entropy(3.0 * toy.split(z)[0] + 1.0, y)
    assert float(loss.detach()) == pytest.approx(float(expected.detach()), rel=1e-10)
    assert metrics["sce"] == pytest.approx(float(expected.detach()), rel=1e-10)


def test_warmup_trains_plain_cross_entropy_first_and_ramps_the_terms_in() -> None:
    from preimage.losses.ice import IceWarmup
    from preimage.train import TrainConfig, Trainer

    x, y = _data(64)
    toy, ice = _setup()
    z, logdet = toy(x)
    z_s, z_n = toy.split(z)
    full, _ = ice.min_objective(z_s, z_n, logdet, y)
    ice.term_scale = 0.0
    plain, terms = ice.min_objective(z_s, z_n, logdet, y)
    assert float(plain.detach()) == pytest.approx(float(terms["sce"].detach()), rel=1e-12)
    assert float(full.detach()) != pytest.approx(float(plain.detach()))
    seen = []

    class Spy(IceWarmup):
        def on_epoch_start(self, trainer, epoch) -> None:
            super().on_epoch_start(trainer, epoch)
            seen.append(ice.term_scale)

    cfg = TrainConfig(epochs=3, device="cpu", max_shift=0, dequantize=False, batch_size=32)
    Trainer(toy, (x, y), None, cfg, loss_fn=ice, callbacks=[Spy(ice, 2)], progress=False).fit()
    assert seen == [0.0, 0.5, 1.0]
    assert ice.term_scale == 1.0
    with pytest.raises(ConfigError, match="warmup_epochs"):
        IceWarmup(ice, -1)


@pytest.mark.parametrize(
    ("field", "value"),
    [("nce_weight", -1.0), ("warmup_epochs", -1), ("max_steps", -2), ("adversary", "gan")],
)
def test_ice_config_refuses_bad_values_when_it_is_built(field: str, value: object) -> None:
    from preimage.losses import IceConfig

    with pytest.raises(ConfigError, match=field):
        IceConfig(**{field: value})  # type: ignore[arg-type]
