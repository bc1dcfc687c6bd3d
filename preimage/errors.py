"""Typed exceptions of preimage.

The API raises these; :mod:`preimage.cli` turns every :class:`PreimageError` into a one-line
message and exit code 2, so a user never sees a traceback for bad input.
"""

from __future__ import annotations

import math

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvergenceError",
    "DTypeError",
    "DataError",
    "PreimageError",
    "ShapeError",
    "TrainingError",
    "require_int",
    "require_non_negative",
]


class PreimageError(Exception):
    """Base class of every error preimage raises on purpose."""


class ConfigError(PreimageError, ValueError):
    """An unknown model, dataset, study or an invalid hyper-parameter."""


class ShapeError(PreimageError, ValueError):
    """An input whose shape a model or block cannot take."""


class DTypeError(PreimageError, TypeError):
    """An input whose dtype differs from the model's (e.g. float64 data for a float32 model)."""


class DataError(PreimageError, OSError):
    """A missing, unreadable or corrupted dataset, or a failed download."""


class CheckpointError(PreimageError, OSError):
    """A missing, corrupted or foreign checkpoint."""


class TrainingError(PreimageError, RuntimeError):
    """Training cannot go on, e.g. the loss became NaN or infinite."""


class ConvergenceError(PreimageError, RuntimeError):
    """An iterative inverse or estimator did not reach its tolerance."""


def require_int(name: str, value: object, low: int = 1) -> int:
    """``value`` if it is an integer (not a bool) ``>= low``, else a :class:`ConfigError`.

    Example:
        >>> require_int("max_steps", 5)
        5
    """
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        raise ConfigError(f"{name} must be an integer >= {low}, got {value!r}")
    return value


def require_non_negative(name: str, value: object) -> float:
    """``value`` as a float if it is a finite number ``>= 0``, else a :class:`ConfigError`.

    Example:
        >>> require_non_negative("nce_weight", 1)
        1.0
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{name} must be a number, got {value!r}")
    if not (math.isfinite(value) and value >= 0):
        raise ConfigError(f"{name} must be finite and >= 0, got {value!r}")
    return float(value)
