"""Typed exceptions of preimage.

The API raises these; :mod:`preimage.cli` turns every :class:`PreimageError` into a one-line
message and exit code 2, so a user never sees a traceback for bad input.
"""

from __future__ import annotations

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvergenceError",
    "DTypeError",
    "DataError",
    "PreimageError",
    "ShapeError",
    "TrainingError",
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
