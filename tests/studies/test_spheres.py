"""Smoke test of the spheres study (figure 4, appendix A, thesis figure 6.3)."""

from __future__ import annotations

import json

import numpy as np

from preimage.studies import spheres


def test_spheres_smoke_writes_the_run_directory(tmp_path, ice_trained_ice) -> None:
    config = spheres.Config.for_budget("smoke", progress=False)
    metrics = spheres.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "misaligned_curves.npz"):
        assert (tmp_path / name).is_file(), name
    for fig in (
        "plane_random_logits",
        "plane_random_nuisance",
        "plane_metamer_logits",
        "plane_metamer_nuisance",
        "misaligned_attacks",
        "training_ce",
        "training_ice",
    ):
        assert (tmp_path / "figures" / f"{fig}.png").stat().st_size > 1000
    assert (tmp_path / "checkpoints" / "ce.safetensors").is_file()
    stored = json.loads((tmp_path / "config.json").read_text())["config"]
    assert stored["ice_coupling"] == "affine"
    assert (
        json.loads((tmp_path / "metrics.json").read_text())["ce_holdout_accuracy"]
        == (metrics["ce_holdout_accuracy"])
    )
    # Metamers F^-1(z_s(inner), z_n(outer)) keep the model's decision on their inner source
    # exactly, and take the outer radius from z_n: the CE model calls them inner, the radius
    # oracle outer (figure 4), and the post-hoc classifier on z_n reads the radius.
    for o in ("ce", "ice"):
        assert metrics[f"{o}_metamer_decision_kept"] == 1.0
    assert metrics["ce_metamer_invariance_success"] >= 0.9
    assert metrics["ce_metamer_mean_norm"] > (config.r1 + config.r2) / 2
    assert metrics["ce_nuisance_holdout_accuracy"] >= 0.95
    assert metrics["ce_nuisance_accuracy_on_metamers"] >= 0.95
    ice_trained_ice(tmp_path / "checkpoints" / "ce.safetensors",
                    tmp_path / "checkpoints" / "ice.safetensors")  # fmt: skip
    # The analytic attacks are exact: the mis-aligned classifier is clean-perfect, every attack
    # succeeds, and the inner sphere needs a larger budget than the outer one (figure 6.3).
    assert metrics["misaligned_clean_accuracy"] >= 0.99
    assert metrics["misaligned_perturbation_success"] == 1.0
    assert metrics["misaligned_invariance_success"] == 1.0
    assert metrics["misaligned_invariance_median_l2"] > metrics["misaligned_perturbation_median_l2"]
    curves = np.load(tmp_path / "misaligned_curves.npz")
    for name in ("perturbation", "invariance"):
        assert curves[name][0] >= 0.99 and curves[name][-1] == 0.0
        assert np.all(np.diff(curves[name]) <= 0)
    report = (tmp_path / "report.html").read_text()
    assert "Targets" in report and "misaligned_clean_accuracy" in report
    assert isinstance(metrics["target_ce_holdout_accuracy_met"], bool)
