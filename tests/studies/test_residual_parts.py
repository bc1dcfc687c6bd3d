from __future__ import annotations

import pytest
import torch

from preimage.nn.spectral import SpectralConv2d
from preimage.studies.residual_parts import (
    ResidualClassifier,
    adam_recipe,
    converge_spectral,
    fixed_point_trace,
    invert_with_iterations,
    plain_conv_branch,
    trained_classifier,
)


def test_fixed_point_error_shrinks_geometrically_under_its_bound() -> None:
    torch.manual_seed(0)
    weight = torch.randn(6, 6, dtype=torch.float64)
    weight *= 0.6 / torch.linalg.matrix_norm(weight, ord=2)  # Lip(g) = 0.6 exactly
    x = torch.randn(5, 6, dtype=torch.float64)
    errors, bounds = fixed_point_trace(lambda v: torch.tanh(v @ weight.T), x, 0.6, 25)
    assert (errors <= bounds + 1e-12).all()
    # Banach: the error after k steps is at most 0.6^k times the initial distance / (1 - 0.6).
    assert errors[-1] < 1e-4 * errors[0]
    # A Lipschitz bound >= 1 gives no a-posteriori bound.
    assert torch.isnan(torch.as_tensor(fixed_point_trace(torch.tanh, x, 1.0, 3)[1])).all()


def test_invert_with_iterations_converges_for_contractive_blocks() -> None:
    torch.manual_seed(0)
    x = torch.rand(4, 1, 8, 8)
    contractive = ResidualClassifier((1, 8, 8), n_blocks=2, hidden=8, coeff=0.7).eval()
    with torch.no_grad():
        for p in contractive.parameters():
            p.mul_(5.0)  # every layer then sits at its coefficient after convergence
    converge_spectral(contractive)
    with torch.no_grad():
        z, _ = contractive.body(x)
        errors = [(invert_with_iterations(contractive.body, z, k) - x).abs().max() for k in (1, 40)]
    assert errors[1] < 1e-5 < errors[0]


def test_plain_branch_is_unconstrained_and_the_classifier_checks_its_input() -> None:
    branch = plain_conv_branch(4, 8)
    assert not any(isinstance(m, SpectralConv2d) for m in branch.modules())
    net = ResidualClassifier((1, 8, 8), n_blocks=1, hidden=4, coeff=None)
    assert not any(isinstance(m, SpectralConv2d) for m in net.modules())
    from preimage.errors import ConfigError

    with pytest.raises(ConfigError):
        ResidualClassifier((1, 7, 8), n_blocks=1, hidden=4, coeff=0.9)


def test_trained_classifier_learns_a_separable_task() -> None:
    torch.manual_seed(0)
    x = torch.rand(64, 1, 4, 4) * 0.2
    y = torch.arange(64) % 2
    x[y == 1, :, :2] += 0.8  # class 1: bright top half
    recipe = adam_recipe(epochs=6, batch_size=16, lr=1e-2, device="cpu")
    net = trained_classifier((x, y), recipe, coeff=0.9, n_blocks=1, hidden=8)
    assert not net.training
    with torch.no_grad():
        assert (net.logits(x).argmax(1) == y).float().mean() > 0.95
