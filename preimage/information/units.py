"""The unit of every information quantity of :mod:`preimage.information` (nats or bits)."""

from __future__ import annotations

import math
from typing import Literal

from preimage.errors import ConfigError

__all__ = ["Unit", "unit_divisor"]

Unit = Literal["nats", "bits"]


def unit_divisor(unit: str) -> float:
    """What to divide a value in nats by to express it in ``unit``.

    Example:
        >>> unit_divisor("nats"), round(unit_divisor("bits"), 6)
        (1.0, 0.693147)
    """
    if unit == "nats":
        return 1.0
    if unit == "bits":
        return math.log(2.0)
    raise ConfigError(f"unknown unit {unit!r}; use 'nats' or 'bits'")
