"""Information-theoretic estimators; :mod:`~preimage.information.predictive` measures the
information in a classifier's soft predictions (information-regularised networks)."""

from __future__ import annotations

from preimage.information.predictive import (
    ConstrainLogger,
    irrelevant_information,
    predictive_information,
    relevant_information,
    soft_confusion,
)

__all__ = [
    "ConstrainLogger",
    "irrelevant_information",
    "predictive_information",
    "relevant_information",
    "soft_confusion",
]
