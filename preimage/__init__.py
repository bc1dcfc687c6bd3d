"""preimage: make visible, measure and reduce what neural-network classifiers ignore."""

from __future__ import annotations

from preimage.errors import (
    CheckpointError,
    ConfigError,
    ConvergenceError,
    DataError,
    PreimageError,
    ShapeError,
    TrainingError,
)

__version__ = "0.1.0"

__all__ = [
    "CheckpointError",
    "ConfigError",
    "ConvergenceError",
    "DataError",
    "PreimageError",
    "ShapeError",
    "TrainingError",
    "__version__",
]
