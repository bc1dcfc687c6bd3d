"""Tests of :mod:`preimage.information.units`."""

from __future__ import annotations

import math

import pytest

from preimage.errors import ConfigError
from preimage.information.units import unit_divisor


def test_bits_divide_by_log_two() -> None:
    assert unit_divisor("nats") == 1.0
    assert unit_divisor("bits") == pytest.approx(math.log(2.0), abs=0.0)
    # one bit is log 2 nats: dividing log 2 nats by the divisor gives exactly one bit
    assert math.log(2.0) / unit_divisor("bits") == 1.0


def test_unknown_unit_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="unknown unit 'hartleys'"):
        unit_divisor("hartleys")
