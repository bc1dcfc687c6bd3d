"""Training objectives: the independence cross-entropy and its nuisance classifier."""

from __future__ import annotations

from preimage.losses.ice import IceConfig, IndependenceCrossEntropy, gaussian_nll
from preimage.losses.nuisance import NuisanceClassifier

__all__ = ["IceConfig", "IndependenceCrossEntropy", "NuisanceClassifier", "gaussian_nll"]
