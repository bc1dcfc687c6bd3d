"""Smoke test of the RegInvNet feature study (figures 2, 3, 6, 8)."""

from __future__ import annotations

import json

from preimage.studies import get_study, reginvnet_features

FIGURES = ("features", "roc", "features_all_digits", "histogram")


def test_reginvnet_features_smoke(tmp_path) -> None:
    config = reginvnet_features.Config.for_budget("smoke", progress=False)
    metrics = reginvnet_features.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html"):
        assert (tmp_path / name).is_file()
    for name in FIGURES:
        assert (tmp_path / "figures" / f"{name}.png").is_file(), name
    # Only the regularised model's proximal L1 step zeroes weights exactly.
    assert metrics["invnet_zero_fraction"] == 0.0
    assert metrics["reginvnet_zero_fraction"] > 0.0
    for model in ("invnet", "reginvnet"):
        assert 0.0 <= metrics[f"{model}_auc_macro"] <= 1.0
        assert metrics[f"{model}_mean_constrain"] >= 0.0
    assert json.loads((tmp_path / "metrics.json").read_text())["auc_gain"] == metrics["auc_gain"]
    assert get_study("reginvnet-features") is reginvnet_features
