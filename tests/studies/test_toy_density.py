from __future__ import annotations

import math
from pathlib import Path

import torch

from preimage.studies.toy_density import Config, coupling_flow, iresnet_flow, log_density, run


def test_log_density_matches_change_of_variables() -> None:
    torch.manual_seed(0)
    flow = iresnet_flow(2, 8, 0.9).double()
    x = torch.randn(4, 2, dtype=torch.float64)
    expected = torch.zeros(4, dtype=torch.float64)
    h = x
    for block in flow:
        jac = torch.stack(
            [torch.autograd.functional.jacobian(lambda v, b=block: v + b.g(v), hi) for hi in h]
        )
        expected += torch.linalg.slogdet(jac)[1]
        h = h + block.g(h)
    expected += -0.5 * h.pow(2).sum(1) - math.log(2 * math.pi)
    assert torch.allclose(log_density(flow, x), expected, atol=1e-10)


def test_coupling_flow_density_integrates_to_one() -> None:
    torch.manual_seed(0)
    flow = coupling_flow(2, 8)
    with torch.no_grad():
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
    axis = torch.linspace(-8, 8, 301, dtype=torch.float64)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    pts = torch.stack([gx.flatten(), gy.flatten()], 1)
    with torch.no_grad():
        mass = float(log_density(flow.double(), pts).exp().sum()) * float(axis[1] - axis[0]) ** 2
    assert abs(mass - 1.0) < 2e-2


def test_smoke_run(tmp_path: Path) -> None:
    config = Config.for_budget("smoke", progress=False)
    metrics = run(config, tmp_path)
    for key in ["8gaussians_iresnet", "8gaussians_coupling"]:
        assert (tmp_path / "checkpoints" / f"{key}.safetensors").is_file(), key
    for name in ("config.json", "metrics.json", "report.html", "figures/densities.png"):
        assert (tmp_path / name).is_file(), name
    for dataset in config.datasets:
        for model in ("iresnet", "coupling"):
            nll = metrics[f"{dataset}_{model}_test_nll"]
            assert math.isfinite(nll)
            assert nll < metrics[f"{dataset}_{model}_initial_nll"]
            assert 0.5 < metrics[f"{dataset}_{model}_grid_mass"] <= 1.0 + 1e-3
