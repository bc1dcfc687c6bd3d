"""Smoke test of the nuisance-information study (table 2)."""

from __future__ import annotations

from preimage.studies import nuisance_info


def test_nuisance_info_smoke(tmp_path, data_root, ice_trained_ice) -> None:
    # The post-hoc readout gets enough steps to read z_n at smoke scale (2 epochs are 6 steps).
    config = nuisance_info.Config.for_budget(
        "smoke", progress=False, data_dir=str(data_root), nuisance_epochs=25
    )
    metrics = nuisance_info.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html"):
        assert (tmp_path / name).is_file()
    for objective in ("ce", "ice"):
        assert metrics[f"{objective}_model_reused"] is False
    # The barely trained CE logits are at chance, yet z_n, which they ignore, holds the label:
    # the readout on z_n beats the logits by far (excessive invariance in its plainest form).
    assert metrics["ce_logit_test_error"] > 0.7
    assert metrics["ce_nuisance_test_error"] < metrics["ce_logit_test_error"] - 0.3
    assert metrics["target_ice_nuisance_test_error_met"] == (
        metrics["ice_nuisance_test_error"] >= 0.20
    )
    ckpt = tmp_path / "checkpoints"
    ice_trained_ice(ckpt / "ce.safetensors", ckpt / "ice.safetensors")

    # A second run reuses the checkpoints instead of training (-o model_dir=...).
    again = nuisance_info.run(
        nuisance_info.Config.for_budget(
            "smoke", progress=False, data_dir=str(data_root), model_dir=str(tmp_path)
        ),
        tmp_path / "reuse",
    )
    assert again["ce_model_reused"] is True and again["ice_model_reused"] is True
    assert again["ce_logit_test_error"] == metrics["ce_logit_test_error"]
