from __future__ import annotations

from pathlib import Path

import pytest

from preimage.studies.iresnet_reconstruction import Config, iteration_grid, run


def test_iteration_grid() -> None:
    grid = iteration_grid(100, dense_until=10, n_log=5)
    assert grid[:10] == list(range(1, 11))
    assert grid[-1] == 100 and grid == sorted(set(grid))
    assert iteration_grid(5) == [1, 2, 3, 4, 5]


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
    assert metrics["unconstrained_inverts"] == (
        metrics["unconstrained_final_relative_error"] <= 1e-3
    )


def test_rejects_bad_coefficients(tmp_path: Path) -> None:
    from preimage.errors import ConfigError

    with pytest.raises(ConfigError):
        run(Config.for_budget("smoke", progress=False, coeffs=(1.2,)), tmp_path)
