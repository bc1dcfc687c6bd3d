from __future__ import annotations

import math
from dataclasses import asdict
from pathlib import Path

import pytest
import torch

from preimage.data import load_train_test
from preimage.errors import ConfigError
from preimage.models.glow import GlowFlow
from preimage.models.iresnet_flow import IResNetFlow
from preimage.studies.iresnet_mnist_flow import Config, bits_loss, run
from preimage.train.augment import dequantize
from preimage.train.checkpoint import load_checkpoint


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


def test_smoke_run(tmp_path: Path, mnist_root: Path) -> None:
    data_root = mnist_root
    config = Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "checkpoints/last.safetensors"):
        assert (tmp_path / name).is_file(), name
    for name in ("training_curves", "samples", "glow_training_curves", "glow_samples"):
        assert (tmp_path / "figures" / f"{name}.png").is_file(), name
    # The coupling-flow baseline trains on the same budget, in its own folder, exactly scored.
    assert (tmp_path / "glow" / "checkpoints" / "last.safetensors").is_file()
    assert (
        math.isfinite(metrics["glow_test_bits_per_dim"]) and metrics["glow_test_bits_per_dim"] > 0
    )
    assert metrics["glow_test_bits_standard_error"] == 0.0
    assert metrics["glow_eval_images"] == config.n_eval
    assert math.isfinite(metrics["test_bits_per_dim"]) and metrics["test_bits_per_dim"] > 0
    assert math.isfinite(metrics["test_bits_standard_error"])
    assert 0 <= metrics["test_bits_bias_bound"] <= config.bias_tol
    assert metrics["eval_images"] == config.n_eval
    assert metrics["sampled"] is True
    assert metrics["eval_probes"] <= config.max_probes


def _dense_bits_per_dim(model: IResNetFlow, x: torch.Tensor) -> float:
    """Mean bits/dim of ``x`` with each log-det from the dense Jacobian of ``x -> z``."""
    model = model.double().eval()
    dim = x[0].numel()
    bits = []
    for xi in x.double():
        z = model(xi[None])[0][0]
        jac = torch.autograd.functional.jacobian(lambda v: model(v[None])[0][0], xi)
        logdet = torch.linalg.slogdet(jac.reshape(dim, dim))[1]
        log_p = -0.5 * (z.pow(2) + math.log(2 * math.pi)).sum() + logdet
        bits.append(float(-(log_p.detach() - dim * math.log(256)) / (dim * math.log(2))))
    return sum(bits) / len(bits)


def test_evaluated_bits_match_the_dense_jacobian(tmp_path: Path) -> None:
    # On the 8x8 digits (D = 64) the dense Jacobian is cheap: the A.2 estimate (series length
    # from theorem 5.8, Hutchinson probes) must agree with it within its reported bias bound
    # and a few standard errors.
    config = Config.for_budget("smoke", progress=False, dataset="digits")
    metrics = run(config, tmp_path)
    model = IResNetFlow((1, 8, 8), **asdict(config.model))
    load_checkpoint(tmp_path / "checkpoints" / "last.safetensors", model=model)
    model.eval().converge(2000, rtol=1e-10)
    _, (x_test, _) = load_train_test(
        "digits", n_train=config.n_train, n_test=config.n_eval, seed=config.seed
    )
    x = dequantize(x_test, torch.Generator().manual_seed(config.seed + 1))
    exact = _dense_bits_per_dim(model, x)
    slack = metrics["test_bits_bias_bound"] + 4 * metrics["test_bits_standard_error"] + 1e-4
    assert abs(metrics["test_bits_per_dim"] - exact) <= slack
    # Training moved the model: the trained estimate is below an untrained flow's exact value.
    torch.manual_seed(config.seed)
    untrained = IResNetFlow((1, 8, 8), **asdict(config.model))
    untrained.eval().converge(2000, rtol=1e-10)
    assert metrics["test_bits_per_dim"] < _dense_bits_per_dim(untrained, x)


def test_glow_baseline_bits_are_exact_and_alone_it_skips_the_target(tmp_path: Path) -> None:
    config = Config.for_budget("smoke", progress=False, dataset="digits", models=("glow",))
    metrics = run(config, tmp_path)
    assert "test_bits_per_dim" not in metrics and "target_bits_per_dim_met" not in metrics
    model = GlowFlow((1, 8, 8), **asdict(config.glow))
    load_checkpoint(tmp_path / "glow" / "checkpoints" / "last.safetensors", model=model)
    _, (x_test, _) = load_train_test(
        "digits", n_train=config.n_train, n_test=config.n_eval, seed=config.seed
    )
    x = dequantize(x_test, torch.Generator().manual_seed(config.seed + 1))
    # The exact log-det of the coupling flow equals the dense Jacobian's.
    assert metrics["glow_test_bits_per_dim"] == pytest.approx(
        _dense_bits_per_dim(model, x), abs=1e-4
    )


def test_unknown_model_is_refused_before_the_run_directory(tmp_path: Path) -> None:
    config = Config.for_budget("smoke", progress=False, models=("realnvp",))
    with pytest.raises(ConfigError, match="models"):
        run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
