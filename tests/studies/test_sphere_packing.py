from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from preimage.studies.sphere_packing import VARIANTS, Config, cluster_geometry, run


def test_cluster_geometry_scales_with_the_codes() -> None:
    rng = np.random.default_rng(0)
    labels = np.repeat(np.arange(3), 50)
    codes = np.array([[0, 0], [5, 0], [0, 5]])[labels] + rng.standard_normal((150, 2))
    base = cluster_geometry(codes, labels)
    doubled = cluster_geometry(2 * codes, labels)
    for key in ("inter_cluster", "cluster_radius"):
        assert doubled[key] == pytest.approx(2 * base[key])
    assert doubled["power"] == pytest.approx(4 * base["power"])
    assert base["inter_cluster"] == pytest.approx((5 + 5 + 5 * np.sqrt(2)) / 3, rel=0.1)


def test_smoke_run(tmp_path: Path, mnist_root: Path) -> None:
    config = Config.for_budget("smoke", progress=False, data_dir=str(mnist_root))
    metrics = run(config, tmp_path)
    assert (tmp_path / "figures" / "bottleneck.png").is_file()
    for name in VARIANTS:
        assert metrics[f"{name}_i_xt_upper_nats"] >= 0.0
    # Batch norm before the bottleneck spreads the codes out from initialisation on: more of
    # the input gets through the noisy 2-D channel (figure 6(b), the "short circuit").
    assert metrics["bn_i_xt_upper_nats"] > 10 * metrics["plain_i_xt_upper_nats"]
