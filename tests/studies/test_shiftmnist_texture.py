"""Smoke test of the texture shiftMNIST study (figure 8)."""

from __future__ import annotations

from preimage.studies import shiftmnist_texture


def test_shiftmnist_texture_smoke(shift_smoke) -> None:
    metrics = shift_smoke(shiftmnist_texture, "texture")
    assert metrics["baseline_architecture"] in ("cnn", "mlp")
