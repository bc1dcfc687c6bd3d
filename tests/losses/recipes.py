"""Training configs shared by the loss tests: no augmentation, no weight decay, on the CPU."""

from __future__ import annotations

from typing import Any

from preimage.train import TrainConfig

__all__ = ["plain_recipe"]


def plain_recipe(**fields: Any) -> TrainConfig:
    """A :class:`TrainConfig` without shifts, dequantisation or weight decay, plus ``fields``."""
    base: dict[str, Any] = {
        "weight_decay": 0.0,
        "max_shift": 0,
        "dequantize": False,
        "device": "cpu",
    }
    return TrainConfig(**{**base, **fields})
