from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from preimage.studies.gradient_snr import MODELS, Config, converged_spread, run


def test_converged_spread_reads_the_hidden_layers_late_levels() -> None:
    epochs = np.arange(100)[:, None]
    # Hidden layers settle at 1, 2 and 4 (with noise early on), the output layer keeps falling.
    hidden = np.array([1.0, 2.0, 4.0]) + np.where(epochs < 50, 3.0 * np.sin(epochs), 0.0)
    curves = np.hstack([hidden, -0.1 * epochs])
    assert converged_spread(curves) == pytest.approx(3.0)
    collapsed = np.hstack([np.ones((100, 3)), -0.1 * epochs])
    assert converged_spread(collapsed) == 0.0


def test_smoke_run(tmp_path: Path, mnist_root: Path) -> None:
    config = Config.for_budget("smoke", progress=False, data_dir=str(mnist_root))
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/snr.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    for name in MODELS:
        assert 1 <= saved[f"{name}_plateau_epoch"] <= config.train.epochs
        assert math.isfinite(saved[f"{name}_final_log10_snr_mean"])
        assert saved[f"{name}_final_log10_snr_spread"] > 0  # layers differ
        assert saved[f"{name}_converged_log10_snr_spread_hidden"] >= 0
    # Batch norm speeds up SGD at the same learning rate (figure 2: 100 vs 1 000 epochs).
    assert metrics["bn_train_accuracy"] > metrics["relu_train_accuracy"] + 0.2
    order = [saved[f"{m}_plateau_epoch"] for m in ("bn", "relu", "tanh")]
    assert saved["target_plateau_order_bn_relu_tanh_met"] == (order[0] < order[1] < order[2])
    bn, relu = (saved[f"{m}_converged_log10_snr_spread_hidden"] for m in ("bn", "relu"))
    assert saved["target_bn_layers_collapse_met"] == (bn < relu)
