from __future__ import annotations

import itertools
from pathlib import Path

import pytest
import torch

from preimage.data import load_dataset
from preimage.studies.iresnet_reconstruction import Config, iteration_grid, run
from preimage.studies.residual_parts import ResidualClassifier, invert_with_iterations
from preimage.train.checkpoint import load_checkpoint


def test_iteration_grid() -> None:
    grid = iteration_grid(100, dense_until=10, n_log=5)
    assert grid[:10] == list(range(1, 11))
    assert grid[-1] == 100 and grid == sorted(set(grid))
    assert iteration_grid(5) == [1, 2, 3, 4, 5]


def _errors_from_checkpoint(path: Path, config: Config, coeff: float | None) -> list[float]:
    """Worst relative reconstruction error of the saved network after 1, 2, 5, 10, 30 steps."""
    model = ResidualClassifier(
        (1, 8, 8),
        coeff=coeff,
        n_blocks=config.model.n_blocks,
        hidden=config.model.hidden,
        pad_channels=config.model.pad_channels,
    )
    load_checkpoint(path, model=model)
    x = load_dataset("digits", "test").images[:16]
    norms = x.flatten(1).norm(dim=1)
    with torch.no_grad():
        z, _ = model.eval().body(x)
        return [
            float(
                (
                    (invert_with_iterations(model.body, z, k) - x).flatten(1).norm(dim=1) / norms
                ).max()
            )
            for k in (1, 2, 5, 10, 30)
        ]


def test_smoke_run(tmp_path: Path) -> None:
    config = Config.for_budget("smoke", progress=False)
    metrics = run(config, tmp_path)
    for key in ["c05", "c07", "c09", "unconstrained"]:
        assert (tmp_path / "checkpoints" / f"{key}.safetensors").is_file(), key
    for name in ("config.json", "metrics.json", "report.html"):
        assert (tmp_path / name).is_file(), name
    for name in ("error_vs_iterations.png", "reconstructions.png"):
        assert (tmp_path / "figures" / name).is_file(), name
    # Constrained networks invert to float32 round-off; their certificate is below 1.
    for key in ("c05", "c07", "c09"):
        assert metrics[f"{key}_final_relative_error"] < 1e-5
        assert 0 < metrics[f"{key}_iterations_to_tolerance"] <= config.max_iter
        assert metrics[f"{key}_max_certified_lipschitz"] < 1.0
    # Smaller c converges at least as fast (lemma 4.5).
    assert metrics["c05_iterations_to_tolerance"] <= metrics["c09_iterations_to_tolerance"]
    assert metrics["bound_violations"] == 0 and metrics["bound_checks"] > 0
    assert metrics["uncertified_constrained_blocks"] == 0
    # At this seed the unconstrained ResNet is not contractive and does not invert.
    assert metrics["unconstrained_max_certified_lipschitz"] > 1.0
    assert metrics["unconstrained_inverts"] is False
    # Measured here, from the saved networks: the contractive model's error falls with every
    # added fixed-point step to round-off; the unconstrained one's never comes close.
    contractive = _errors_from_checkpoint(tmp_path / "checkpoints" / "c09.safetensors", config, 0.9)
    assert all(b < a for a, b in itertools.pairwise(contractive))
    assert contractive[-1] < 1e-5 and contractive[0] > 1e-2
    plain = _errors_from_checkpoint(
        tmp_path / "checkpoints" / "unconstrained.safetensors", config, None
    )
    assert min(plain) > 0.1


def test_rejects_bad_coefficients(tmp_path: Path) -> None:
    from preimage.errors import ConfigError

    with pytest.raises(ConfigError):
        run(Config.for_budget("smoke", progress=False, coeffs=(1.2,)), tmp_path)


def test_nested_options_reach_the_training() -> None:
    config = Config.for_budget("smoke", **{"train.epochs": "3", "model.hidden": "8"})
    assert (config.train.epochs, config.train.max_steps_per_epoch) == (3, 20)
    assert (config.model.hidden, config.model.n_blocks) == (8, 2)
    assert config.train.optimizer == "adam" and config.train.lr_decay == 1.0
