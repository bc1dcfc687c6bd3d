from __future__ import annotations

import json
import math
from pathlib import Path

from preimage.studies.info_plane import Config, run


def test_smoke_run(tmp_path: Path, mnist_root: Path) -> None:
    config = Config.for_budget("smoke", progress=False, data_dir=str(mnist_root))
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/information_plane.png"):
        assert (tmp_path / name).is_file(), name
    saved = json.loads((tmp_path / "metrics.json").read_text())
    assert saved["target_random_compresses_less_met"] == (
        saved["random_compression_last_bits"] < saved["true_compression_last_bits"]
    )
    # The true labels are learnt (3 vs 7 is easy) and carried by the last layer far better
    # than labels drawn at random, which two epochs cannot memorise.
    assert metrics["true_test_accuracy"] > 0.8
    assert metrics["true_final_i_ty_last_bits"] > metrics["random_final_i_ty_last_bits"] + 0.2
    # A deterministic code of n distinct probe inputs holds at most log2 n bits about them.
    for key in ("true", "random"):
        assert 0.0 < metrics[f"{key}_final_i_xt_last_bits"] <= math.log2(config.n_probe) + 1e-9
        assert metrics[f"{key}_final_i_ty_last_bits"] <= 1.0 + 1e-9
