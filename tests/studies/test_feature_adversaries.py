"""Smoke test of the feature-adversaries study (appendix B)."""

from __future__ import annotations

from preimage.studies import feature_adversaries


def test_feature_adversaries_smoke(tmp_path, data_root) -> None:
    config = feature_adversaries.Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = feature_adversaries.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html"):
        assert (tmp_path / name).is_file()
    assert (tmp_path / "figures" / "feature_adversaries.png").is_file()
    # The analytic metamer is exact whatever the training; LogitMetamer is approximate.
    assert metrics["analytic_logit_mse"] <= 1e-8
    assert metrics["analytic_wall_time_s"] > 0
    # LogitMetamer has to work for it on the fi-RevNet (its source logits are far from the
    # target's) and reaches the tolerance within its step limit; the one inverse pass is faster.
    assert 0 < metrics["logitmetamer_firevnet_max_steps_used"] <= config.steps
    assert metrics["logitmetamer_firevnet_success_rate"] == 1.0
    assert metrics["logitmetamer_firevnet_mean_mse"] <= config.tol
    assert metrics["logitmetamer_firevnet_mean_mse"] > 1e3 * metrics["analytic_logit_mse"]
    assert metrics["speedup_firevnet"] > 1.0
    assert metrics["logitmetamer_cnn_max_steps_used"] <= config.steps
    assert metrics["target_analytic_logit_mse_met"] is True
