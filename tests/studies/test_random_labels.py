from __future__ import annotations

from pathlib import Path

import numpy as np
import scipy.io

from preimage.studies.random_labels import Config, run


def test_smoke_run_on_mnist(tmp_path: Path, mnist_root: Path) -> None:
    config = Config.for_budget("smoke", progress=False, data_dir=str(mnist_root), dataset="mnist")
    metrics = run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html"):
        assert (tmp_path / name).is_file(), name
    assert metrics["dataset"] == "mnist"
    assert 0.1 <= metrics["chance_accuracy"] < 0.25
    # Batch norm fits (random) labels fastest; weight decay cannot help a model fit them.
    assert metrics["C_random_train_accuracy"] > metrics["B_random_train_accuracy"] + 0.05
    assert metrics["B_random_train_accuracy"] <= metrics["A_random_train_accuracy"] + 1e-9
    # Lambda is the smallest candidate that keeps B within 1% of chance (or the largest).
    assert metrics["selected_weight_decay"] in config.weight_decays
    if metrics["selected_weight_decay"] != max(config.weight_decays):
        assert metrics["B_random_excess"] <= 0.01
    # Random labels carry nothing about the true test labels.
    for m in ("A", "B", "C"):
        assert metrics[f"{m}_random_test_accuracy"] < 0.3
    assert metrics["target_B_random_excess_met"] == (metrics["B_random_excess"] <= 0.01)


def test_svhn_files_are_used_when_present(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    folder = tmp_path / "data" / "svhn"
    folder.mkdir(parents=True)
    for split, n in (("train", 96), ("test", 48)):
        scipy.io.savemat(
            folder / f"{split}_32x32.mat",
            {
                "X": rng.integers(0, 256, (32, 32, 3, n), dtype=np.uint8),
                "y": rng.integers(1, 11, (n, 1)).astype(np.uint8),
            },
        )
    config = Config.for_budget(
        "smoke",
        progress=False,
        data_dir=str(tmp_path / "data"),
        n_train=64,
        n_test=32,
        **{"train.epochs": 1},
    )
    metrics = run(config, tmp_path / "run")
    assert metrics["dataset"] == "svhn"
    assert 0.0 <= metrics["A_true_test_accuracy"] <= 1.0
