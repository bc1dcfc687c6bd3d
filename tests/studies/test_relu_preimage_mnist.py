"""Smoke and behaviour tests of the relu-preimage-mnist study."""

from __future__ import annotations

from pathlib import Path

import pytest

from preimage.analysis.relu_preimage import KINDS
from preimage.studies.relu_preimage_mnist import Config, run


def test_smoke_run(tmp_path: Path, data_root: Path) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    config = Config.for_budget("smoke", progress=False, data_dir=str(data_root))
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/preimages.png"):
        assert (tmp_path / name).is_file(), name
    for width in config.widths:
        for key in (f"w{width}_layer1", f"w{width}_layer2", f"w{width}_init_layer1"):
            assert sum(metrics[f"{key}_{kind}"] for kind in KINDS) == pytest.approx(1.0)
            # Every query classifies its own activations: never empty.
            assert metrics[f"{key}_empty"] == 0.0
    # 16 units on 64 inputs: k >= 48 and too few rows for omnidirectionality, decided
    # without any LP; 160 >= 2 x 64 units: (almost) always k = 0.
    assert metrics["w16_layer1_unbounded"] == 1.0 and metrics["w16_layer1_lps_per_query"] == 0
    assert metrics["w16_layer1_mean_null_dim"] >= 48
    assert metrics["w160_layer1_singleton"] == 1.0 and metrics["w160_layer1_mean_null_dim"] == 0
    assert metrics["target_narrow_first_layer_unbounded_met"]
    # From wide_second_layer on, the second layer is asked fewer queries; the first is not.
    assert metrics["w16_layer2_n_queries"] == config.n_queries
    assert metrics["w160_layer1_n_queries"] == config.n_queries
    assert metrics["w160_layer2_n_queries"] == config.n_wide_queries < config.n_queries
    # Before training about half the units are on: 160 units on 64 inputs leave at least 64
    # active rows of full rank, so the initial first layer is injective at every query.
    assert metrics["w160_init_layer1_singleton"] == 1.0
    assert metrics["w160_init_layer1_mean_null_dim"] == 0
    assert metrics["w16_init_layer1_unbounded"] == 1.0
    assert metrics["target_wide_first_layer_singleton_at_init_met"]
