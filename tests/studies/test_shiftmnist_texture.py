"""Smoke test of the texture shiftMNIST study (figure 8)."""

from __future__ import annotations

import pytest

from preimage.studies import shiftmnist_texture


def test_shiftmnist_texture_smoke(tmp_path, data_root) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    config = shiftmnist_texture.Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = shiftmnist_texture.run(config, tmp_path)
    for name in (
        "config.json",
        "metrics.json",
        "report.html",
        "figures/examples.png",
        "figures/training_cnn.png",
        "figures/training_ce.png",
        "figures/training_ice.png",
    ):
        assert (tmp_path / name).is_file()
    for model in ("cnn", "ce", "ice"):
        for split in ("train", "test", "adv"):
            assert 0.0 <= metrics[f"{model}_{split}_error"] <= 1.0
        assert (tmp_path / "checkpoints" / f"shift_texture_{model}.safetensors").is_file()
    gain = 100 * (metrics["ce_adv_error"] - metrics["ice_adv_error"])
    assert metrics["ice_gain_points"] == pytest.approx(gain)
    assert metrics["target_ice_gain_points_met"] == (gain >= shiftmnist_texture.MIN_GAIN_POINTS)
