from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from preimage.errors import ConfigError
from preimage.nn.logdet import series_truncation_bound
from preimage.studies.logdet_estimator import Config, run


def test_smoke_run(tmp_path: Path) -> None:
    config = Config.for_budget("smoke", progress=False)
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/estimator_bias_std.png"):
        assert (tmp_path / name).is_file(), name
    assert json.loads((tmp_path / "metrics.json").read_text())["dim"] == config.dim
    # Truncation error decays and never exceeds the theorem 5.8 bound.
    assert metrics["theorem58_violations"] == 0
    assert abs(metrics["truncation_error_last"]) < abs(metrics["truncation_error_1_term"])
    assert abs(metrics["truncation_error_1_term"]) <= metrics["theorem58_bound_1_term"]
    # The bound at one term is the closed form with L = the largest Jacobian norm or less.
    closed = series_truncation_bound(metrics["max_jacobian_norm"], config.dim, 1)
    assert metrics["theorem58_bound_1_term"] <= closed + 1e-12
    # The roulette estimator is unbiased: its mean lies within a few standard errors.
    assert metrics["roulette_standard_error"] > 0
    assert metrics["roulette_z_score"] < 4.0
    assert math.isclose(
        metrics["roulette_mean_terms"], config.n_exact_terms + 1 / config.roulette_p
    )
    assert metrics["target_theorem58_violations_met"] is True


def test_rejects_large_dimension(tmp_path: Path) -> None:
    with pytest.raises(ConfigError):
        run(Config.for_budget("smoke", progress=False, dim=32), tmp_path)
