"""Tests of preimage.losses.autoencoder: which objective each training call optimises."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from preimage.errors import ConfigError
from preimage.losses import AlternatingAutoencoderLoss, InformationRegularizedLoss
from preimage.losses.autoencoder import reconstruction_error
from preimage.models import InvNet
from preimage.train import Trainer, cross_entropy_loss
from tests.losses.recipes import plain_recipe


def _setup() -> tuple[InvNet, torch.Tensor, torch.Tensor]:
    torch.manual_seed(0)
    model = InvNet((1, 4, 4), 3, hidden=(12, 6))
    gen = torch.Generator().manual_seed(1)
    # Images on a 2-d manifold, which a 6-unit code can reconstruct.
    codes = torch.randn(10, 2, generator=gen)
    x = torch.sigmoid(3 * codes @ torch.randn(2, 16, generator=gen)).reshape(10, 1, 4, 4)
    return model, x, (codes[:, 0] > 0).long() + (codes[:, 1] > 0).long()


def test_calls_alternate_between_classifier_and_reconstruction_gradients() -> None:
    model, x, y = _setup()
    alt = AlternatingAutoencoderLoss(cross_entropy_loss)
    loss, metrics = alt(model, x, y)
    assert torch.equal(loss, F.cross_entropy(model.logits(x), y)) and metrics["phase"] == 0.0
    loss.backward()
    assert all(p.grad is None for p in model.decoder.parameters())
    model.zero_grad(set_to_none=True)
    loss, metrics = alt(model, x, y)
    assert torch.equal(loss, reconstruction_error(model.decode(model.features(x)), x))
    assert float(loss.detach()) == pytest.approx(
        16 * float(F.mse_loss(model.decode(model.features(x)), x).detach())
    )
    assert metrics["loss"] == pytest.approx(metrics["recon"])
    loss.backward()
    assert model.head.weight.grad is None and model.decoder[0].weight.grad is not None


def test_inner_regularised_loss_counts_classifier_steps_only() -> None:
    model, x, y = _setup()
    inner = InformationRegularizedLoss(0.01, 0.01, l1="proximal")
    alt = AlternatingAutoencoderLoss(inner)
    for _ in range(6):
        alt(model, x, y)
    with torch.no_grad():
        alt(model, x, y)  # evaluation: no step counted
    assert int(alt.steps) == 6 and int(inner.steps) == 3


def test_alternating_training_reconstructs_better_than_classifier_training() -> None:
    cfg = plain_recipe(epochs=20, batch_size=5, lr=0.03, optimizer="adam")
    errors = {}
    for name, loss_fn in {
        "ce": cross_entropy_loss,
        "alternating": AlternatingAutoencoderLoss(cross_entropy_loss),
    }.items():
        model, x, y = _setup()
        Trainer(model, (x, y), None, cfg, loss_fn=loss_fn, progress=False).fit()
        with torch.no_grad():
            errors[name] = float(F.mse_loss(model.decode(model.features(x)), x))
    assert errors["alternating"] < 0.7 * errors["ce"]


def test_model_without_decoder_is_refused() -> None:
    with pytest.raises(ConfigError):
        AlternatingAutoencoderLoss(cross_entropy_loss)(
            torch.nn.Linear(2, 2), torch.zeros(1, 2), torch.zeros(1).long()
        )
