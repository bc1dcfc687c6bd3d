"""Tests of preimage.losses.info_reg: the value on hand cases, gradients, the proximal step."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from preimage.errors import ConfigError
from preimage.losses import InformationRegularizedLoss, soft_threshold
from preimage.models import InvNet
from preimage.train import Trainer
from tests.losses.recipes import plain_recipe


class Identity(nn.Module):
    """F(x) = x, so a test controls the features exactly."""

    def __init__(self, d: int, c: int, dtype: torch.dtype = torch.float64) -> None:
        super().__init__()
        self.head = nn.Linear(d, c, dtype=dtype)

    def features(self, x: Tensor) -> Tensor:
        return x


def _batch(n: int = 12, d: int = 5, c: int = 3, seed: int = 0) -> tuple[Tensor, Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, d, generator=gen, dtype=torch.float64)
    return x, torch.randint(0, c, (n,), generator=gen)


@pytest.mark.parametrize("mode", ["proposed", "naive"])
@pytest.mark.parametrize("l1", ["penalty", "proximal"])
def test_zero_alphas_give_the_cross_entropy(mode: str, l1: str) -> None:
    torch.manual_seed(0)
    model = Identity(5, 3)
    x, y = _batch()
    loss, metrics = InformationRegularizedLoss(0.0, 0.0, mode=mode, l1=l1)(model, x, y)
    expected = F.cross_entropy(model.head(x), y)
    assert torch.equal(loss, expected)
    assert metrics["ce"] == pytest.approx(float(expected.detach()))


def test_regulariser_on_the_hand_case() -> None:
    model = Identity(2, 2)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, 2.0], [7.0, -9.0]]))
        model.head.bias.zero_()
    x, y = torch.tensor([[3.0, 4.0]], dtype=torch.float64), torch.tensor([0])
    alpha2 = 0.3
    loss, metrics = InformationRegularizedLoss(0.0, alpha2)(model, x, y)
    ce = F.cross_entropy(model.head(x), y)
    # Only the true class's column w_0 = (1, 2) enters: alpha2 * sqrt(5) * ||(3, 4)||.
    assert float((loss - ce).detach()) == pytest.approx(alpha2 * math.sqrt(5) * 5)
    assert metrics["reg"] == pytest.approx(math.sqrt(5) * 5)


def test_naive_and_l1_terms_on_the_hand_case() -> None:
    model = Identity(2, 2)
    with torch.no_grad():
        model.head.weight.copy_(torch.tensor([[1.0, 2.0], [2.0, -4.0]]))
    x, y = torch.tensor([[3.0, 4.0]], dtype=torch.float64), torch.tensor([1])
    ce = F.cross_entropy(model.head(x), y)
    naive, _ = InformationRegularizedLoss(0.0, 0.5, mode="naive")(model, x, y)
    assert float((naive - ce).detach()) == pytest.approx(
        0.5 * 5.0
    )  # ||w||_F = sqrt(1 + 4 + 4 + 16)
    l1, metrics = InformationRegularizedLoss(0.1, 0.0)(model, x, y)
    assert float((l1 - ce).detach()) == pytest.approx(0.1 * 9.0) and metrics["l1"] == pytest.approx(
        9.0
    )


def test_regulariser_is_a_batch_mean_over_true_columns() -> None:
    torch.manual_seed(1)
    model = Identity(4, 3)
    x, y = _batch(8, 4, 3, seed=1)
    reg = InformationRegularizedLoss(0.0, 1.0).regularizer(model.head.weight, x, y)
    expected = (
        sum(float((model.head.weight[int(y[k])].norm() * x[k].norm()).detach()) for k in range(8))
        / 8
    )
    assert float(reg.detach()) == pytest.approx(expected)


@pytest.mark.parametrize("mode", ["proposed", "naive"])
def test_gradcheck_in_float64(mode: str) -> None:
    x, y = _batch(6, 4, 3, seed=2)
    loss_fn = InformationRegularizedLoss(0.05, 0.2, mode=mode)
    weight = torch.randn(3, 4, dtype=torch.float64, requires_grad=True)
    bias = torch.randn(3, dtype=torch.float64, requires_grad=True)
    features = x.clone().requires_grad_(True)

    def objective(w: Tensor, b: Tensor, f: Tensor) -> Tensor:
        model = Identity(4, 3)
        # Plain tensors in place of the parameters, so that gradcheck differentiates through w.
        del model.head.weight, model.head.bias
        model.head.weight, model.head.bias = w, b  # type: ignore[assignment]
        return loss_fn(model, f, y)[0]

    assert torch.autograd.gradcheck(objective, (weight, bias, features))


def test_soft_threshold_gives_exact_zeros() -> None:
    w = torch.tensor([[-0.3, 0.05, 1.0], [0.1, -0.1, -2.0]])
    out = soft_threshold(w, 0.1)
    assert torch.equal(out == 0, w.abs() <= 0.1)
    torch.testing.assert_close(out[w.abs() > 0.1], torch.tensor([-0.2, 0.9, -1.9]))


def test_proximal_mode_thresholds_every_n_training_calls() -> None:
    torch.manual_seed(0)
    model = Identity(5, 3)
    x, y = _batch()
    loss_fn = InformationRegularizedLoss(0.5, 0.0, l1="proximal", prox_every=3, prox_lr=0.1)
    w0 = model.head.weight.detach().clone()
    for _ in range(3):
        loss, _ = loss_fn(model, x, y)  # no optimiser: only the proximal step moves w
        assert torch.equal(loss, F.cross_entropy(model.head(x), y))
    assert torch.equal(model.head.weight, w0)
    loss_fn(model, x, y)  # the 4th call applies the 3 accumulated steps first
    torch.testing.assert_close(model.head.weight.detach(), soft_threshold(w0, 0.5 * 0.1 * 3))
    assert (model.head.weight == 0).any()
    with torch.no_grad():
        loss_fn(model, x, y)  # evaluation calls neither count nor threshold
    assert int(loss_fn.steps) == 4
    w1 = model.head.weight.detach().clone()
    loss_fn.flush(model)
    torch.testing.assert_close(model.head.weight.detach(), soft_threshold(w1, 0.5 * 0.1 * 1))


def test_trained_regnet_has_exact_zeros_and_a_smaller_logit_scale() -> None:
    torch.manual_seed(0)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(96, 1, 8, 8, generator=gen)
    y = torch.randint(0, 4, (96,), generator=gen)
    cfg = plain_recipe(epochs=4, batch_size=16, lr=0.1, optimizer="sgd")
    weights = {}
    for name, loss_fn in {
        "plain": InformationRegularizedLoss(0.0, 0.0),
        "reg": InformationRegularizedLoss(0.02, 0.05, l1="proximal", prox_every=5, prox_lr=0.1),
    }.items():
        torch.manual_seed(1)
        model = InvNet((1, 8, 8), 4, hidden=(32, 16))
        Trainer(model, (x, y), None, cfg, loss_fn=loss_fn, progress=False).fit()
        loss_fn.flush(model)
        weights[name] = model.head.weight.detach()
    assert float((weights["plain"] == 0).float().mean()) == 0.0
    assert float((weights["reg"] == 0).float().mean()) > 0.1
    assert weights["reg"].norm() < weights["plain"].norm()


def test_bad_configuration_raises() -> None:
    with pytest.raises(ConfigError):
        InformationRegularizedLoss(-1.0, 0.0)
    with pytest.raises(ConfigError):
        InformationRegularizedLoss(0.0, 0.0, mode="columns")
    with pytest.raises(ConfigError):
        InformationRegularizedLoss(0.0, 0.0, l1="lasso")
    with pytest.raises(ConfigError):
        InformationRegularizedLoss(0.0, 0.0)(
            nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1).long()
        )
