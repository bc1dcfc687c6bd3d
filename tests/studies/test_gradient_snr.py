from __future__ import annotations

import json
import math
from pathlib import Path

from preimage.studies.gradient_snr import MODELS, Config, run


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
    # Batch norm speeds up SGD at the same learning rate (figure 2: 100 vs 1 000 epochs).
    assert metrics["bn_train_accuracy"] > metrics["relu_train_accuracy"] + 0.2
    order = [saved[f"{m}_plateau_epoch"] for m in ("bn", "relu", "tanh")]
    assert saved["target_plateau_order_bn_relu_tanh_met"] == (order[0] < order[1] < order[2])
