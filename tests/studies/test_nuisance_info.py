"""Smoke test of the nuisance-information study (table 2)."""

from __future__ import annotations

import json

import numpy as np
import torch

from preimage.data import load_train_test
from preimage.models import FiRevNet
from preimage.studies import nuisance_info
from preimage.train import load_checkpoint, read_checkpoint_metadata


def test_nuisance_info_smoke(tmp_path, data_root, ice_trained_ice) -> None:
    # The post-hoc readout gets enough steps to read z_n at smoke scale (2 epochs are 6 steps).
    config = nuisance_info.Config.for_budget(
        "smoke", progress=False, data_dir=str(data_root), nuisance_epochs=25
    )
    metrics = nuisance_info.run(config, tmp_path)
    for name in ("config.json", "metrics.json", "report.html"):
        assert (tmp_path / name).is_file()
    for objective in ("ce", "ice"):
        assert metrics[f"{objective}_model_reused"] is False
    # The barely trained CE logits are at chance, yet z_n, which they ignore, holds the label:
    # the readout on z_n beats the logits by far (excessive invariance in its plainest form).
    assert metrics["ce_logit_test_error"] > 0.7
    assert metrics["ce_nuisance_test_error"] < metrics["ce_logit_test_error"] - 0.3
    assert metrics["target_ice_nuisance_test_error_met"] == (
        metrics["ice_nuisance_test_error"] >= 0.20
    )
    ckpt = tmp_path / "checkpoints"
    ice_trained_ice(ckpt / "ce.safetensors", ckpt / "ice.safetensors")
    _check_codes(tmp_path, config, ckpt)
    curve = [k for k in metrics if k.endswith("_nuisance_test_error_min")]
    assert sorted(curve) == ["ce_nuisance_test_error_min", "ice_nuisance_test_error_min"]
    for name in ("probe_length_curve", "game_ice", "training_ice"):
        assert (tmp_path / "figures" / f"{name}.png").stat().st_size > 1000

    # A second run reuses the checkpoints instead of training (-o model_dir=...).
    again = nuisance_info.run(
        nuisance_info.Config.for_budget(
            "smoke", progress=False, data_dir=str(data_root), model_dir=str(tmp_path)
        ),
        tmp_path / "reuse",
    )
    assert again["ce_model_reused"] is True and again["ice_model_reused"] is True
    assert again["ce_logit_test_error"] == metrics["ce_logit_test_error"]


def _check_codes(run_dir, config, ckpt) -> None:
    """codes.npz: for each objective float32 z_n of >= 10 000 training images and of the
    10 000 test images, int64 labels and the logits; merged and inverted through the saved
    model, the test codes give back the MNIST test images."""
    codes = np.load(run_dir / "codes.npz")
    _, (x_test, y_test) = load_train_test(
        "mnist", n_train=10, n_test=None, seed=config.seed + 6, data_dir=config.data_dir
    )
    for o in ("ce", "ice"):
        zn_train, zn_test = codes[f"{o}_zn_train"], codes[f"{o}_zn_test"]
        assert zn_train.dtype == zn_test.dtype == codes[f"{o}_logits_test"].dtype == np.float32
        assert zn_train.shape == (10_000, 784 - 10) and zn_test.shape == (10_000, 784 - 10)
        assert codes[f"{o}_y_train"].dtype == codes[f"{o}_y_test"].dtype == np.int64
        assert codes[f"{o}_y_train"].shape == (10_000,)
        np.testing.assert_array_equal(codes[f"{o}_y_test"], y_test.numpy())
        path = ckpt / f"{o}.safetensors"
        cfg = dict(json.loads(read_checkpoint_metadata(path)["state"])["model_config"])
        model = FiRevNet(tuple(cfg.pop("in_shape")), cfg.pop("num_classes"), **cfg)
        load_checkpoint(path, model=model)
        model.eval()
        z = model.merge(
            torch.from_numpy(codes[f"{o}_logits_test"][:8]), torch.from_numpy(zn_test[:8])
        )
        with torch.no_grad():
            x = model.inverse(z)
        assert float((x - x_test[:8]).abs().max()) < 1e-3
