"""Fixtures shared by the study smoke tests."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

SHIFT_FILES = (
    "config.json",
    "metrics.json",
    "report.html",
    "figures/examples.png",
    "figures/errors.png",
    "figures/training_cnn.png",
    "figures/training_ce.png",
    "figures/training_ice.png",
)


@pytest.fixture
def shift_smoke(tmp_path: Path, data_root: Path) -> Callable[[ModuleType, str], dict[str, Any]]:
    """Run a shiftMNIST study module at its smoke budget and check its run directory."""

    def check(module: ModuleType, variant: str) -> dict[str, Any]:
        if not (data_root / "mnist").is_dir():
            pytest.skip("MNIST not available")
        config = module.Config.for_budget("smoke", progress=False, data_dir=str(data_root))
        metrics: dict[str, Any] = module.run(config, tmp_path)
        for name in SHIFT_FILES:
            assert (tmp_path / name).is_file(), name
        for model in ("cnn", "ce", "ice"):
            for split in ("train", "test", "adv"):
                assert 0.0 <= metrics[f"{model}_{split}_error"] <= 1.0
            checkpoint = tmp_path / "checkpoints" / f"shift_{variant}_{model}.safetensors"
            assert checkpoint.is_file()
        gain = 100 * (metrics["ce_adv_error"] - metrics["ice_adv_error"])
        assert metrics["ice_gain_points"] == pytest.approx(gain)
        assert metrics["target_ice_gain_points_met"] == (gain >= module.MIN_GAIN_POINTS)
        return metrics

    return check


@pytest.fixture
def mnist_root(data_root: Path) -> Path:
    """The data root, skipping the test where MNIST is not on disk."""
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    return data_root
