"""Smoke test of the information-regularised ResNet study (tables 1-2)."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from preimage.studies import get_study, info_regularized


def test_info_regularized_smoke(tmp_path) -> None:
    config = info_regularized.Config.for_budget("smoke", progress=False)
    metrics = info_regularized.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html", "figures/constrain.png"):
        assert (tmp_path / name).is_file(), name
    keys = [s.key for s in info_regularized.settings(config)]
    assert len(keys) == 8 and "resnet_naive_0.002" in keys and "plainnet_proposed_0.3" in keys
    for key in keys:
        assert len(metrics[f"{key}_accuracy"]) == config.seeds
        assert min(metrics[f"{key}_constrain"]) >= 0.0
    # Seeds give different runs, and a strong regulariser compresses the predictions.
    assert (
        len(set(metrics["resnet_proposed_0_accuracy"] + metrics["resnet_proposed_0_constrain"])) > 2
    )
    for arch in ("resnet", "plainnet"):
        strong = metrics[f"{arch}_proposed_0.3_constrain_mean"]
        assert strong < 0.5 * metrics[f"{arch}_proposed_0_constrain_mean"]
    assert get_study("info-regularized") is info_regularized


def _write_cifar100(folder: Path, name: str, n: int, seed: int) -> None:
    """``n`` records of the binary layout: coarse label, fine label, 3072 pixel bytes."""
    rng = np.random.default_rng(seed)
    fine = np.arange(n) % 100
    head = np.stack([fine // 5, fine], axis=1).astype(np.uint8)
    pixels = rng.integers(0, 256, (n, 3 * 32 * 32), dtype=np.uint8)
    folder.mkdir(parents=True, exist_ok=True)
    (folder / name).write_bytes(np.concatenate([head, pixels], axis=1).tobytes())


def test_info_regularized_runs_on_local_cifar100(tmp_path) -> None:
    # Fine labels up to 99: a head of 10 classes would fail the cross-entropy.
    _write_cifar100(tmp_path / "data" / "cifar100", "train.bin", 200, seed=0)
    _write_cifar100(tmp_path / "data" / "cifar100", "test.bin", 100, seed=1)
    config = info_regularized.Config.for_budget(
        "smoke",
        progress=False,
        dataset="cifar100",
        data_dir=str(tmp_path / "data"),
        n_train=None,
        n_test=None,
        seeds=1,
        alpha2s=(0.0, 0.05),
        n_constrain=50,
    )
    metrics = info_regularized.run(config, tmp_path / "run")
    assert metrics["resnet_proposed_0_accuracy"][0] <= 1.0
    written = json.loads((tmp_path / "run" / "config.json").read_text())
    assert written["config"]["dataset"] == "cifar100"
    assert info_regularized.Config.for_budget("paper").dataset == "cifar100"
