"""Smoke test of the nuisance-information study (table 2)."""

from __future__ import annotations

import pytest

from preimage.studies import nuisance_info


def test_nuisance_info_smoke(tmp_path, data_root) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    config = nuisance_info.Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = nuisance_info.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html"):
        assert (tmp_path / name).is_file()
    for objective in ("ce", "ice"):
        assert (tmp_path / "checkpoints" / f"{objective}.safetensors").is_file()
        for key in ("logit_test_error", "nuisance_test_error", "nuisance_train_error"):
            assert 0.0 <= metrics[f"{objective}_{key}"] <= 1.0
        assert metrics[f"{objective}_model_reused"] is False
    gap = abs(metrics["ice_logit_test_error"] - metrics["ce_logit_test_error"])
    assert metrics["logit_error_gap_points"] == pytest.approx(100 * gap)
    assert metrics["target_ice_nuisance_test_error_met"] == (
        metrics["ice_nuisance_test_error"] >= 0.20
    )

    # A second run reuses the checkpoints instead of training (-o model_dir=...).
    again = nuisance_info.run(
        nuisance_info.Config.for_budget(
            "smoke", progress=False, data_dir=str(data_root), model_dir=str(tmp_path)
        ),
        tmp_path / "reuse",
    )
    assert again["ce_model_reused"] is True and again["ice_model_reused"] is True
    assert again["ce_logit_test_error"] == metrics["ce_logit_test_error"]
