"""Smoke test of the binary shiftMNIST study (figure 8)."""

from __future__ import annotations

from preimage.studies import shiftmnist_binary


def test_shiftmnist_binary_smoke(shift_smoke) -> None:
    metrics = shift_smoke(shiftmnist_binary, "binary")
    assert metrics["baseline_architecture"] in ("cnn", "mlp")
