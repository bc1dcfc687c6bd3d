from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from preimage.studies._iresnet_common import ResidualClassifier, converge_spectral
from preimage.studies.iresnet_singular_values import Config, conv_norms, conv_shapes, run


def test_conv_norms_match_dense_svd() -> None:
    net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=3, coeff=None, pad_channels=0)
    sample = torch.zeros(1, 1, 4, 4)
    shapes = dict(conv_shapes(net, sample))
    modules = dict(net.body.named_modules())
    for name, value in conv_norms(net, sample):
        conv = modules[name].double()
        c, h, w = shapes[name]
        basis = torch.eye(c * h * w, dtype=torch.float64).reshape(-1, c, h, w)
        bias = conv.bias.view(1, -1, 1, 1)
        matrix = (conv(basis) - bias).detach().reshape(c * h * w, -1).numpy()
        assert abs(value - np.linalg.norm(matrix, 2)) < 1e-8


def test_converged_spectral_layers_sit_at_coeff() -> None:
    net = ResidualClassifier((1, 4, 4), n_blocks=1, hidden=3, coeff=0.6, pad_channels=0)
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(10.0)
    converge_spectral(net)
    values = [v for _, v in conv_norms(net, torch.zeros(1, 1, 4, 4))]
    assert max(values) <= 0.6 * (1 + 1e-4) and min(values) > 0.6 * (1 - 1e-4)


def test_smoke_run(tmp_path: Path) -> None:
    config = Config.for_budget("smoke", progress=False)
    metrics = run(config, tmp_path)
    for key in ["vanilla", "c05", "c09"]:
        assert (tmp_path / "checkpoints" / f"{key}.safetensors").is_file(), key
    for name in ("config.json", "metrics.json", "report.html", "figures/singular_values.png"):
        assert (tmp_path / name).is_file(), name
    assert metrics["max_norm_over_coeff"] <= 1 + config.tolerance
    assert metrics["normalised_all_certified"] is True
    assert metrics["violating_layer_flagged"] is True
    assert metrics["violating_block_bound"] == pytest.approx(config.violating_bound, rel=1e-4)
    assert metrics["violating_layer_norm"] > max(config.coeffs)
    for c in config.coeffs:
        key = f"c{str(c).replace('.', '')}"
        assert metrics[f"{key}_max_norm"] <= c * (1 + config.tolerance)
        assert metrics[f"{key}_layers_above_one"] == 0
