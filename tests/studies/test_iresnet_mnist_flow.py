from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from preimage.models.iresnet_flow import IResNetFlow
from preimage.studies.iresnet_mnist_flow import Config, bits_loss, run


def test_bits_loss_matches_change_of_variables() -> None:
    torch.manual_seed(0)
    flow = IResNetFlow((1, 2, 2), stages=1, blocks_per_stage=1, hidden=4, logdet="exact")
    flow = flow.double().eval()
    x = torch.rand(3, 1, 2, 2, dtype=torch.float64)
    loss, logs = bits_loss(flow, x, torch.zeros(3))
    jac = torch.stack(
        [torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], xi) for xi in x]
    ).reshape(3, 4, 4)
    z, _ = flow(x)
    log_p = -0.5 * z.pow(2).sum(1) - 2 * math.log(2 * math.pi) + torch.linalg.slogdet(jac)[1]
    expected = (-(log_p - 4 * math.log(256)) / (4 * math.log(2))).mean().detach()
    assert float(loss.detach()) == pytest.approx(float(expected), abs=1e-9)
    assert logs["bits_per_dim"] == pytest.approx(float(expected), abs=1e-9)


def test_smoke_run(tmp_path: Path, data_root: Path) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST is not available")
    config = Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "checkpoints/last.safetensors"):
        assert (tmp_path / name).is_file(), name
    for name in ("training_curves.png", "samples.png"):
        assert (tmp_path / "figures" / name).is_file(), name
    assert math.isfinite(metrics["test_bits_per_dim"]) and metrics["test_bits_per_dim"] > 0
    assert math.isfinite(metrics["test_bits_standard_error"])
    assert 0 <= metrics["test_bits_bias_bound"] <= config.bias_tol
    assert metrics["eval_images"] == config.n_eval
    assert metrics["sampled"] is True
    assert metrics["eval_probes"] <= config.max_probes
