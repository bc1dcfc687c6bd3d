from __future__ import annotations

import math
from pathlib import Path

import pytest
import torch

from preimage.data.toy2d import sample_toy2d
from preimage.nn.base import InvertibleSequential
from preimage.studies.toy_density import (
    Config,
    coupling_flow,
    iresnet_flow,
    log_density,
    nll_loss,
    run,
)
from preimage.train.checkpoint import load_checkpoint


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


def test_nll_loss_is_the_mean_negative_log_density() -> None:
    torch.manual_seed(0)
    flow = iresnet_flow(2, 8, 0.9)
    x = torch.randn(5, 2)
    loss, logs = nll_loss(flow, x, torch.zeros(5, dtype=torch.long))
    expected = float(-log_density(flow, x).mean().detach())
    assert float(loss.detach()) == pytest.approx(expected, abs=1e-6)
    assert logs["nll"] == pytest.approx(expected, abs=1e-6)


def _saved_flows(path: Path, config: Config, dataset: str) -> dict[str, InvertibleSequential]:
    flows = {
        "iresnet": iresnet_flow(config.n_blocks, config.hidden, config.coeff),
        "coupling": coupling_flow(config.n_couplings, config.hidden),
    }
    for key, flow in flows.items():
        load_checkpoint(path / "checkpoints" / f"{dataset}_{key}.safetensors", model=flow)
        flow.double().eval()
    return flows


def test_smoke_run(tmp_path: Path) -> None:
    config = Config.for_budget("smoke", progress=False, datasets=("moons", "8gaussians"))
    metrics = run(config, tmp_path)
    for dataset in config.datasets:
        for key in ("iresnet", "coupling"):
            assert (tmp_path / "checkpoints" / f"{dataset}_{key}.safetensors").is_file(), key
    for name in ("config.json", "metrics.json", "report.html", "figures/densities.png"):
        assert (tmp_path / name).is_file(), name
    for dataset in config.datasets:
        for model in ("iresnet", "coupling"):
            nll = metrics[f"{dataset}_{model}_test_nll"]
            assert math.isfinite(nll)
            assert nll < metrics[f"{dataset}_{model}_initial_nll"]
            assert 0.5 < metrics[f"{dataset}_{model}_grid_mass"] <= 1.0 + 1e-3
    # Measured here from the saved models: each learned density integrates to 1 over the plane
    # (a fine grid on [-9, 9]^2), and each fits its own dataset better than the model trained
    # on the other one does (moons vs eight Gaussians: the densities differ).
    axis = torch.linspace(-9, 9, 181, dtype=torch.float64)
    gy, gx = torch.meshgrid(axis, axis, indexing="ij")
    plane = torch.stack([gx.flatten(), gy.flatten()], 1)
    area = float(axis[1] - axis[0]) ** 2
    flows = {d: _saved_flows(tmp_path, config, d) for d in config.datasets}
    points = {d: sample_toy2d(d, 1000, seed=7).double() for d in config.datasets}
    with torch.no_grad():
        for dataset, other in (("moons", "8gaussians"), ("8gaussians", "moons")):
            for key, flow in flows[dataset].items():
                mass = float(log_density(flow, plane).exp().sum()) * area
                assert abs(mass - 1.0) < 2e-3, (dataset, key, mass)
                own = -log_density(flow, points[dataset]).mean()
                foreign = -log_density(flows[other][key], points[dataset]).mean()
                assert own < foreign - 0.2, (dataset, key, float(own), float(foreign))
        # What the coupling flow learned of the moons is not their first two moments: it scores
        # them better than Gaussian points with the same mean and covariance (a Gaussian model
        # would score both alike, since its log-density is quadratic).
        moons = points["moons"]
        cholesky = torch.linalg.cholesky(torch.cov(moons.T))
        noise = torch.randn(
            moons.shape, generator=torch.Generator().manual_seed(1), dtype=moons.dtype
        )
        blob = moons.mean(0) + noise @ cholesky.T
        coupling = flows["moons"]["coupling"]
        margin = -log_density(coupling, blob).mean() + log_density(coupling, moons).mean()
        assert margin > 0.2, float(margin)
