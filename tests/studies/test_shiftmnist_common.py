"""Tests of the shared shiftMNIST pieces."""

from __future__ import annotations

import pytest
import torch

from preimage.data.shiftmnist import binary_code_rows
from preimage.studies.shiftmnist_binary import Config
from preimage.studies.shiftmnist_common import load_shift_splits


def test_binary_splits_carry_the_code_only_in_d_train(data_root) -> None:
    if not (data_root / "mnist").is_dir():
        pytest.skip("MNIST not available")
    config = Config.for_budget("smoke", data_dir=str(data_root), n_train=64, n_test=32)
    splits = load_shift_splits(config, "binary")
    assert splits["train"][0].shape == (64, 1, 28, 28)
    rows = torch.tensor(binary_code_rows(28))
    for name in ("train", "test"):
        x, y = splits[name]
        assert bool((x[torch.arange(len(y)), 0, rows[y], 0] == 1).all())
    x_adv, _ = splits["adv"]
    assert float(x_adv[:, 0, :, 0].abs().max()) == 0.0
    # D_adv is built from the same images as the held-out D_train, minus the code.
    assert torch.equal(splits["adv"][1], splits["test"][1])
