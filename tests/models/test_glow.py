"""Tests of preimage.models.glow (the round trip, log-det and save/load cases are in
tests/nn/test_properties.py)."""

from __future__ import annotations

import pytest
import torch

from preimage.errors import ConfigError
from preimage.models import GlowFlow
from preimage.models.density import standard_normal_log_prob


@pytest.mark.parametrize(
    "options",
    [{"stages": 0}, {"hidden": True}, {"coupling": "spline"}, {"logit_alpha": 0.7}, {"depth": 3}],
)
def test_bad_options_are_refused(options: dict) -> None:
    with pytest.raises(ConfigError):
        GlowFlow((1, 4, 4), **options)


def test_additive_steps_with_identity_actnorm_preserve_volume() -> None:
    torch.manual_seed(0)
    flow = GlowFlow((2, 4, 4), stages=1, blocks_per_stage=2, hidden=4, coupling="additive")
    flow = flow.double().eval()
    x = torch.randn(3, 2, 4, 4, dtype=torch.float64)
    with torch.no_grad():
        z, logdet = flow(x)
        log_p = flow.log_prob(x)
    # Before the data-dependent init ActNorm is the identity and the 1x1 convolution is a
    # rotation (QR; its log|diag U| were rounded to float32 when built): the log-det is zero,
    # and log p is the Gaussian's of z.
    assert float(logdet.abs().max()) < 1e-6
    assert torch.allclose(log_p, standard_normal_log_prob(z) + logdet)
    assert flow.code_dim == flow.dim == 32


def test_samples_have_the_data_shape_and_invert_exactly() -> None:
    torch.manual_seed(1)
    flow = GlowFlow((1, 8, 8), stages=2, blocks_per_stage=1, hidden=4, logit_alpha=1e-6)
    flow.train()
    flow(torch.rand(16, 1, 8, 8))  # data-dependent ActNorm init
    flow.eval()
    x = flow.sample(5)
    assert x.shape == (5, 1, 8, 8)
    z, _ = flow(x.clamp(1e-3, 1 - 1e-3))
    assert torch.allclose(flow.inverse(z), x.clamp(1e-3, 1 - 1e-3), atol=1e-4)
