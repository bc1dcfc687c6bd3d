"""Tests of preimage.nn.logit: the logit pre-transform and its place in IResNetFlow."""

from __future__ import annotations

import math

import pytest
import torch

from preimage.errors import ConfigError
from preimage.models import IResNetFlow
from preimage.nn import LogitTransform


def test_logdet_is_the_elementwise_derivative() -> None:
    alpha = 1e-6
    x = torch.tensor([[0.0, 1e-3, 0.5, 0.999, 1.0]], dtype=torch.float64)
    y, logdet = LogitTransform(alpha)(x)
    s = alpha + (1 - 2 * alpha) * x
    expected = (math.log(1 - 2 * alpha) - torch.log(s) - torch.log(1 - s)).sum()
    assert float(logdet) == pytest.approx(float(expected), rel=1e-12)
    # The ends stay finite: logit(alpha) = -logit(1 - alpha).
    assert float(y[0, 0]) == pytest.approx(math.log(alpha / (1 - alpha)), rel=1e-9)
    assert float(y[0, -1]) == pytest.approx(-float(y[0, 0]), rel=1e-9)


def test_float32_ends_do_not_overflow() -> None:
    y, logdet = LogitTransform(1e-6)(torch.tensor([[0.0, 1.0]]))
    assert torch.isfinite(y).all() and torch.isfinite(logdet).all()


@pytest.mark.parametrize("alpha", [0.0, 0.5, -0.1, True])
def test_alpha_outside_the_open_interval_is_refused(alpha: float) -> None:
    with pytest.raises(ConfigError, match="alpha"):
        LogitTransform(alpha)
    with pytest.raises(ConfigError, match="alpha"):
        IResNetFlow((1, 4, 4), stages=1, blocks_per_stage=1, hidden=4, logit_alpha=alpha)


def test_flow_density_is_the_change_of_variables_through_the_logit() -> None:
    """log p(x) = log p_body(logit(x)) + log|d logit / dx|, with one body for both."""
    torch.manual_seed(0)
    kwargs = {"stages": 2, "blocks_per_stage": 1, "hidden": 4, "logdet": "exact"}
    plain = IResNetFlow((1, 4, 4), **kwargs).double().eval()
    with_logit = IResNetFlow((1, 4, 4), logit_alpha=0.05, **kwargs).double().eval()
    # The body is with_logit.net[1]; give it the plain model's weights.
    with_logit.net[1].load_state_dict(plain.net.state_dict())
    x = torch.rand(3, 1, 4, 4, dtype=torch.float64)
    y, transform_logdet = LogitTransform(0.05)(x)
    with torch.no_grad():
        expected = plain.log_prob(y) + transform_logdet
        assert torch.allclose(with_logit.log_prob(x), expected, atol=1e-10)
        samples = with_logit.sample(4)
    # Samples come back through the sigmoid into the data range.
    assert float(samples.min()) >= -0.05 / 0.9 and float(samples.max()) <= 1 + 0.05 / 0.9
    assert "logit_alpha" in with_logit.config and with_logit.config["logit_alpha"] == 0.05
