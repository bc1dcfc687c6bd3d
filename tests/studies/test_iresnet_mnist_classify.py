from __future__ import annotations

import json
from pathlib import Path

import pytest

from preimage.studies.iresnet_mnist_classify import Config, run


def test_smoke_run(tmp_path: Path, data_root: Path) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST is not available")
    config = Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "checkpoints/last.safetensors"):
        assert (tmp_path / name).is_file(), name
    for name in ("training_curves.png", "reconstructions.png"):
        assert (tmp_path / "figures" / name).is_file(), name
    assert json.loads((tmp_path / "metrics.json").read_text())["test_images"] == config.n_test
    assert 0.0 <= metrics["test_error"] <= 1.0
    assert metrics["test_accuracy"] == pytest.approx(1.0 - metrics["test_error"])
    # The converged i-ResNet inverts to float32 precision within a few fixed-point steps.
    assert metrics["inverted"] is True
    assert metrics["reconstruction_max_abs_error"] < 1e-4
    assert 1 <= metrics["max_fixed_point_steps"] <= 100
    assert metrics["samples_per_s"] > 0
    assert metrics["target_invertible_met"] is True
