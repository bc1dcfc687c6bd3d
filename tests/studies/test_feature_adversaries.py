"""Smoke test of the feature-adversaries study (appendix B)."""

from __future__ import annotations

import pytest

from preimage.studies import feature_adversaries


def test_feature_adversaries_smoke(tmp_path, data_root) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    config = feature_adversaries.Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = feature_adversaries.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "figures" / "feature_adversaries.png").is_file()
    # The analytic metamer is exact whatever the training; LogitMetamer is approximate.
    assert metrics["analytic_logit_mse"] <= 1e-8
    assert metrics["analytic_wall_time_s"] > 0
    assert metrics["speedup_firevnet"] == pytest.approx(
        metrics["logitmetamer_firevnet_wall_time_s"] / metrics["analytic_wall_time_s"]
    )
    for name in ("cnn", "firevnet"):
        assert 0.0 <= metrics[f"logitmetamer_{name}_success_rate"] <= 1.0
        assert metrics[f"logitmetamer_{name}_max_steps_used"] <= config.steps
    assert metrics["target_analytic_logit_mse_met"] is True
