"""Smoke test of the RegInvNet feature study (figures 2, 3, 6, 8)."""

from __future__ import annotations

import json

import pytest

from preimage.errors import ConfigError
from preimage.studies import get_study, reginvnet_features

FIGURES = ("features", "roc", "auc_curve", "features_all_digits", "histogram")


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
        # One row per epoch (smoke: auc_every 1); the features do not depend on the head, so
        # the last row (measured before the final proximal step) is the reported AUC.
        curve = metrics[f"{model}_auc_curve"]
        assert [row[0] for row in curve] == [1.0, 2.0]
        assert curve[-1][1:] == [metrics[f"{model}_auc_micro"], metrics[f"{model}_auc_macro"]]
    assert json.loads((tmp_path / "metrics.json").read_text())["auc_gain"] == metrics["auc_gain"]
    assert get_study("reginvnet-features") is reginvnet_features


def test_reginvnet_features_refuses_bad_auc_every(tmp_path) -> None:
    config = reginvnet_features.Config.for_budget("smoke", progress=False, auc_every=0)
    with pytest.raises(ConfigError, match="auc_every"):
        reginvnet_features.run(config, tmp_path / "run")
    assert not (tmp_path / "run").exists()
