"""Tests of preimage.models.flow_features: the invertible F under a linear head."""

from __future__ import annotations

import pytest
import torch

from preimage.errors import ConfigError
from preimage.losses import InformationRegularizedLoss
from preimage.models import FiRevNet, FlowFeatureClassifier


def test_features_are_the_invertible_code_and_the_loss_trains_the_flow() -> None:
    torch.manual_seed(0)
    flow = FiRevNet((1, 8, 8), 10, stages=2, blocks_per_stage=1, hidden=8)
    model = FlowFeatureClassifier(flow, 64, 10)
    x = torch.rand(4, 1, 8, 8)
    z, _ = flow(x)
    torch.testing.assert_close(model.features(x), z)
    loss, _ = InformationRegularizedLoss(0.01, 0.01)(model, x, torch.tensor([0, 1, 2, 3]))
    loss.backward()
    assert all(p.grad is not None for p in flow.parameters() if p.requires_grad)


def test_non_invertible_flow_is_refused() -> None:
    with pytest.raises(ConfigError):
        FlowFeatureClassifier(torch.nn.Linear(2, 2), 2, 2)  # type: ignore[arg-type]
