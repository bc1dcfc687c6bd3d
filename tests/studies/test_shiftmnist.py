"""Smoke tests of the shiftMNIST study (figure 8), both variants, and its splits."""

from __future__ import annotations

import pytest
import torch

from preimage.data.shiftmnist import binary_code_rows
from preimage.studies import get_study, shiftmnist
from preimage.studies.shiftmnist import BinaryConfig, load_shift_splits

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


# Texture runs 48 steps at a higher learning rate instead of the smoke budget's 6, enough for
# the CE baseline to pick up the planted texture (a few seconds more).
LEARNS = {"n_train": 1536, "train.epochs": 2, "train.lr_step": 2, "train.lr": 3e-3}


@pytest.mark.parametrize(
    ("name", "variant", "extra"),
    [("shiftmnist-binary", "binary", {}), ("shiftmnist-texture", "texture", LEARNS)],
)
def test_shiftmnist_smoke(name, variant, extra, tmp_path, data_root, ice_trained_ice) -> None:
    study = get_study(name)
    assert variant == study.Config.VARIANT and study.run is shiftmnist.run
    config = study.Config.for_budget("smoke", progress=False, data_dir=str(data_root), **extra)
    metrics = study.run(config, tmp_path)
    for file in SHIFT_FILES:
        assert (tmp_path / file).is_file(), file
    for model in ("cnn", "ce", "ice"):
        for split in ("train", "test", "adv"):
            assert 0.0 <= metrics[f"{model}_{split}_error"] <= 1.0
        assert (tmp_path / "checkpoints" / f"shift_{variant}_{model}.safetensors").is_file()
    assert metrics["baseline_architecture"] == "cnn"
    gain = 100 * (metrics["ce_adv_error"] - metrics["ice_adv_error"])
    assert metrics["ice_gain_points"] == pytest.approx(gain)
    assert metrics["target_ice_gain_points_met"] == (gain >= config.MIN_GAIN_POINTS)
    ckpt = tmp_path / "checkpoints"
    ice_trained_ice(
        ckpt / f"shift_{variant}_ce.safetensors", ckpt / f"shift_{variant}_ice.safetensors"
    )
    assert f"{variant.capitalize()} shiftMNIST" in (tmp_path / "report.html").read_text()
    if extra:
        # Excessive invariance: the cross-entropy baseline uses the planted texture, so it fails
        # where D_adv pairs textures with digits at random (figure 8).
        assert metrics["cnn_adv_error"] > metrics["cnn_test_error"] + 0.2


def test_binary_splits_carry_the_code_only_in_d_train(data_root) -> None:
    config = BinaryConfig.for_budget("smoke", data_dir=str(data_root), n_train=64, n_test=32)
    splits = load_shift_splits(config)
    assert splits["train"][0].shape == (64, 1, 28, 28)
    rows = torch.tensor(binary_code_rows(28))
    for name in ("train", "test"):
        x, y = splits[name]
        assert bool((x[torch.arange(len(y)), 0, rows[y], 0] == 1).all())
    x_adv, _ = splits["adv"]
    assert float(x_adv[:, 0, :, 0].abs().max()) == 0.0
    # D_adv is built from the same images as the held-out D_train, minus the code.
    assert torch.equal(splits["adv"][1], splits["test"][1])
    assert torch.equal(splits["adv"][0][:, :, :, 1:], splits["test"][0][:, :, :, 1:])
