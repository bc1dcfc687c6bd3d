"""Tests of preimage.models.invnet: shapes, the feature-classifier contract."""

from __future__ import annotations

import pytest
import torch

from preimage.errors import ConfigError
from preimage.losses import FeatureClassifier
from preimage.models import InvNet


def test_lenet_300_100_shapes_and_non_negative_features() -> None:
    model = InvNet((1, 28, 28), 10)
    x = torch.rand(3, 1, 28, 28)
    f = model.features(x)
    assert f.shape == (3, 100) and bool((f >= 0).all())
    assert [m.out_features for m in model.encoder if isinstance(m, torch.nn.Linear)] == [300, 100]
    assert model.head.in_features == 100 and model.head.out_features == 10
    recon = model.decode(f)
    assert recon.shape == x.shape and bool(((recon > 0) & (recon < 1)).all())
    assert torch.equal(model(x), model.head(f))
    assert isinstance(model, FeatureClassifier)


def test_bad_widths_raise() -> None:
    with pytest.raises(ConfigError):
        InvNet((1, 8, 8), 10, hidden=())
